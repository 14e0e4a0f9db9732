"""The built-in pricing rule ``pycrm.pricing``: a product's price from the price lists.

Among the lists that apply to the customer on the day (active, valid, for
their group (a tag) and region, or for everyone) and are in the currency
asked for, the most specific wins (group and region, then group, then
region, then everyone; then the latest ``valid_from``; then the name). In it,
the product's price with the largest quantity break the quantity reaches.
Lists and prices are read as the actor may read them.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pycrm.domain.customers import Customer
from pycrm.domain.products import Price, PriceLine, PriceList, Product
from pycrm.domain.query import Eq, In, OrderBy, Range, all_of
from pycrm.rules.context import RuleContext
from pycrm.rules.hookspecs import hookimpl

__all__ = ["PriceLists"]


class PriceLists:
    """Prices products from the tenant's price lists (registered as ``pycrm.pricing``)."""

    @hookimpl(trylast=True)
    def pycrm_price_line(
        self,
        product: Product,
        quantity: Decimal,
        customer: Customer | None,
        currency: str | None,
        on: date,
        ctx: RuleContext,
    ) -> PriceLine | None:
        """The most specific applicable list's price for the quantity, or None."""
        tags = customer.tags if customer is not None else ()
        region = customer.region if customer is not None else None
        key = ("pycrm.pricing", currency, tuple(tags), region, on)
        usable = ctx.memo.get(key)
        if usable is None:  # once per call: a quote's lines share its customer and currency
            lists = ctx.session.read(PriceList, quiet=True).find(
                all_of([Eq("active", True), Eq("currency", currency) if currency else None])
            )
            usable = ctx.memo[key] = [p for p in lists if p.applies(on, tags, region)]
        if not usable:
            return None
        usable.sort(key=lambda p: (-p.specificity, -(p.valid_from or date.min).toordinal(), p.name))
        prices = ctx.session.read(Price, quiet=True).find(
            all_of(
                [
                    Eq("product_id", product.id),
                    In("price_list_id", [p.id for p in usable]),
                    Range("min_quantity", None, int(quantity) + 1),
                ]
            ),
            order_by=[OrderBy("min_quantity", descending=True)],
        )
        for price_list in usable:
            for price in prices:
                if price.price_list_id == price_list.id and price.min_quantity <= quantity:
                    reason = price_list.name
                    if price.min_quantity > 1:
                        reason += f", from {price.min_quantity}"
                    return PriceLine(product.id, quantity, price.unit_price, price_list.id, reason)
        return None
