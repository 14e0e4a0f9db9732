"""The catalogue (``s.products``) and the exchange rates (``s.rates``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

import attrs

from pycrm.domain.contact_points import search_key
from pycrm.domain.customers import Customer
from pycrm.domain.fields import (
    check_bool,
    check_date,
    check_id,
    check_int,
    check_money,
    check_text,
)
from pycrm.domain.lines import check_quantity
from pycrm.domain.money import Money, check_currency
from pycrm.domain.products import (
    Conversion,
    ExchangeRate,
    Price,
    PriceLine,
    PriceList,
    Product,
    check_rate,
    convert,
)
from pycrm.domain.query import Contains, Eq, Filter, HasKey, OrderBy, Range, all_of
from pycrm.errors import DuplicateError, NotFound, ValidationError
from pycrm.rules.context import RuleContext
from pycrm.services.records import RecordService, write
from pycrm.services.search import category_filter, check_page

__all__ = ["PriceListService", "ProductService", "RateService", "RateSource"]


def _text(field: str, value: Any, limit: int) -> str:
    """Required text, cleaned (see :func:`~pycrm.domain.fields.check_text`)."""
    clean = check_text(field, value, required=True, limit=limit)
    assert clean is not None  # required
    return clean


def _day(field: str, value: Any) -> date:
    """A day that must be given (see :func:`~pycrm.domain.fields.check_date`)."""
    day = check_date(field, value)
    if day is None:
        raise ValidationError(field, value, "must be a date (datetime.date)")
    return day


class ProductService(RecordService[Product]):
    """The catalogue: products and services, found by id, SKU or the ERP's id."""

    record_type = Product

    def _checkers(self) -> dict[str, Any]:
        return {
            "sku": partial(check_text, required=True, limit=64),
            "name": partial(check_text, required=True, limit=300),
            "description": partial(check_text, limit=5000, multiline=True),
            "unit": partial(check_text, required=True, limit=40),
            "tax_category": partial(check_text, required=True, limit=40),
            "cost": check_money,
            "active": check_bool,
            "categories": self._s.categories.check_paths,
            "external_id": partial(check_text, limit=200),
        }

    def _free_sku(self, sku: Any, id: str | None = None) -> None:
        clean = _text("sku", sku, 64)
        taken = self._repo.find(Eq("sku", clean), limit=1)  # unreadable ones count too
        if taken and taken[0].id != id:
            raise DuplicateError(f"product SKU {clean!r} is taken", [taken[0].id])

    @write
    def create(self, sku: str, name: str, **fields: Any) -> Product:
        """Add a product to the catalogue.

        :param sku: its code, unique in the catalogue (case kept).
        :param name: what it is called.
        :param fields: ``description``, ``unit`` (default ``piece``),
            ``tax_category`` (default ``standard``), ``cost`` (Money: what one
            unit costs the company), ``active``, ``categories`` (paths in the
            category trees), ``external_id`` (the ERP's id), ``custom``.
        :raises DuplicateError: when the SKU is taken.
        """
        self._free_sku(sku)
        return self._create({"sku": sku, "name": name, **fields})

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Product:
        """Change a product's fields (the SKU too, while no other product has the new one)."""
        product = self._load(id)
        if "sku" in fields:
            self._free_sku(fields["sku"], id)
        return self._update(product, version, fields)

    @write
    def upsert(self, sku: str, **fields: Any) -> Product:
        """The product with ``sku`` created, or updated with ``fields`` if it exists.

        For keeping the catalogue in step with an ERP or a shop: run it for
        every product of theirs; an unchanged product is not written again.
        """
        clean = _text("sku", sku, 64)
        found = self._repo.find(Eq("sku", clean), limit=1)
        if not found:
            if "name" not in fields:
                raise ValidationError("name", None, "is required for a new product")
            return self._create({"sku": clean, **fields})
        product = found[0]
        if not self._s._guard.allows(product, "read"):
            raise NotFound("product", clean)
        self._s._saw([product])
        return self._update(product, None, dict(fields))

    @write
    def deactivate(self, id: str) -> Product:
        """Stop offering a product (it stays in the quotes and contracts that name it)."""
        return self._change(self._load(id), None, "update", active=False)

    @write
    def activate(self, id: str) -> Product:
        """Offer a product again."""
        return self._change(self._load(id), None, "update", active=True)

    def by_sku(self, sku: str) -> Product:
        """The product with this SKU; NotFound if there is none the actor may read."""
        clean = _text("sku", sku, 64)
        found = self._find(Eq("sku", clean), limit=1)
        if not found:
            raise NotFound("product", clean)
        return found[0]

    def by_external_id(self, external_id: str) -> Product:
        """The product the ERP knows by ``external_id``."""
        clean = _text("external_id", external_id, 200)
        found = self._find(HasKey("external_id", clean), limit=1)
        if not found:
            raise NotFound("product", clean)
        return found[0]

    def list(
        self,
        *,
        text: str | None = None,
        active: bool | None = True,
        category: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Product]:
        """Products by SKU: those on offer by default (``active=None``: all).

        :param text: every word must appear in the SKU, name or description.
        :param category: a category path; its sub-categories' products count too.
        Returns the first 50 by default (``limit`` up to 1,000).
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if text is not None:
            words = search_key(check_text("text", text, limit=300)).split()
            parts += [Contains("search_text", word) for word in words[:10]]
        if active is not None:
            parts.append(Eq("active", check_bool("active", active)))
        parts += category_filter(self._s, category)
        return self._find(all_of(parts), order_by=[OrderBy("sku")], limit=limit, offset=offset)


class RateSource(Protocol):
    """Where exchange rates come from besides finance's own entries (a central bank's feed).

    Pass one to :meth:`RateService.fetch`. ``name`` is stored as each rate's ``source``.
    """

    name: str

    def rates(self, on: date) -> Mapping[tuple[str, str], Decimal]:
        """``(base, quote)`` → units of quote per unit of base, valid on ``on``."""
        ...


class RateService(RecordService[ExchangeRate]):
    """Dated exchange rates and conversions (finance enters them; everyone converts)."""

    record_type = ExchangeRate

    @property
    def reporting_currency(self) -> str:
        """The currency the tenant reports in (the runtime setting ``reporting_currency``)."""
        currency: str = self._s.settings._value("reporting_currency")
        return currency

    def _today(self) -> date:
        return self._s._now().date()

    @write
    def set(
        self,
        base: str,
        quote: str,
        rate: Decimal | int | str,
        *,
        on: date | None = None,
        source: str = "manual",
    ) -> ExchangeRate:
        """Record that one ``base`` is worth ``rate`` ``quote`` from ``on`` (default: today).

        A rate for the same pair and day is replaced (and audited as a change).
        :raises ValidationError: for an unknown currency, the same currency
            twice, or a rate that is not a positive number (floats are refused:
            give a Decimal or text).
        """
        fields = self._pair(base, quote)
        fields["rate"] = check_rate("rate", rate)
        fields["valid_on"] = self._today() if on is None else _day("on", on)
        fields["source"] = _text("source", source, 40)
        same_day = all_of([Eq(k, fields[k]) for k in ("base", "quote", "valid_on")])
        found = self._repo.find(same_day, limit=1)
        if found:
            current = found[0]
            self._s._saw([current])
            return self._change(
                current, None, "update", rate=fields["rate"], source=fields["source"]
            )
        return self._add("create", **fields)

    @staticmethod
    def _pair(base: Any, quote: Any) -> dict[str, Any]:
        pair = {"base": check_currency("base", base), "quote": check_currency("quote", quote)}
        if pair["base"] == pair["quote"]:
            raise ValidationError("quote", quote, "must differ from base")
        return pair

    def _latest(self, base: str, quote: str, on: date) -> ExchangeRate | None:
        after = Range("valid_on", None, on + timedelta(days=1))
        where = all_of([Eq("base", base), Eq("quote", quote), after])
        found = self._find(where, order_by=[OrderBy("valid_on", descending=True)], limit=1)
        return found[0] if found else None

    def convert(self, money: Money, to: str, *, on: date | None = None) -> Conversion:
        """``money`` in currency ``to``, at the latest rate valid on ``on`` (default: today).

        Uses the stored rate from ``money``'s currency to ``to``, else the
        inverse of the one the other way; the result says which rate and day.
        :raises NotFound: when neither way has a rate on or before that day.
        """
        if not isinstance(money, Money):
            raise ValidationError("money", money, "must be Money")
        # A conversion shows the rate: refused where a field rule hides it.
        self._s._guard.check_fields(ExchangeRate, ["rate", "valid_on"])
        target = check_currency("to", to)
        day = self._today() if on is None else _day("on", on)
        if money.currency == target:
            return Conversion(money, money, Decimal(1), None)
        direct = self._latest(money.currency, target, day)
        if direct is not None:
            return convert(money, direct)
        inverse = self._latest(target, money.currency, day)
        if inverse is not None:
            return convert(money, inverse, inverted=True)
        raise NotFound("exchange_rate", f"{money.currency}/{target} on or before {day}")

    def to_reporting(self, money: Money, *, on: date | None = None) -> Conversion:
        """``money`` in the tenant's reporting currency (see :meth:`convert`)."""
        return self.convert(money, self.reporting_currency, on=on)

    def list(
        self,
        base: str | None = None,
        quote: str | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[ExchangeRate]:
        """Stored rates, newest day first (of one currency pair, or all).

        Returns the first 50 by default (``limit`` up to 1,000).
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if base is not None:
            parts.append(Eq("base", check_currency("base", base)))
        if quote is not None:
            parts.append(Eq("quote", check_currency("quote", quote)))
        order = [OrderBy("valid_on", descending=True), OrderBy("base"), OrderBy("quote")]
        return self._find(all_of(parts), order_by=order, limit=limit, offset=offset)

    @write
    def fetch(self, source: RateSource, *, on: date | None = None) -> builtins.list[ExchangeRate]:
        """Store the rates ``source`` gives for ``on`` (default: today), all or none."""
        day = self._today() if on is None else _day("on", on)
        name = _text("source.name", getattr(source, "name", None), 40)
        try:
            given = source.rates(day)
        except Exception as exc:  # a feed's own failure, reported as pycrm's
            raise ValidationError("source", name, f"gave no rates: {exc}") from exc
        if not isinstance(given, Mapping):
            raise ValidationError("source", name, "must give a mapping (base, quote) -> rate")
        stored = []
        for pair, rate in sorted(given.items(), key=lambda item: str(item[0])):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValidationError("source", pair, "keys must be (base, quote) pairs")
            stored.append(self.set(pair[0], pair[1], rate, on=day, source=name))
        return stored


#: The fields of a price list that decide whether it prices a line.
_TERMS = ("currency", "customer_group", "region", "valid_from", "valid_until", "active")


class PriceListService(RecordService[PriceList]):
    """Price lists and their prices, and the price of a product for a customer."""

    record_type = PriceList

    def _checkers(self) -> dict[str, Any]:
        return {
            "name": partial(check_text, required=True, limit=200),
            "currency": check_currency,
            "customer_group": partial(check_text, limit=80),
            "region": partial(check_text, limit=80),
            "valid_from": check_date,
            "valid_until": check_date,
            "active": check_bool,
        }

    def _free_name(self, name: Any, id: str | None = None) -> None:
        clean = _text("name", name, 200)
        taken = self._repo.find(Eq("name", clean), limit=1)
        if taken and taken[0].id != id:
            raise DuplicateError(f"price list name {clean!r} is taken", [taken[0].id])

    @staticmethod
    def _check_period(price_list: PriceList) -> None:
        start, end = price_list.valid_from, price_list.valid_until
        if start is not None and end is not None and end < start:
            raise ValidationError("valid_until", end, f"is before valid_from ({start})")

    @write
    def create(self, name: str, currency: str, **fields: Any) -> PriceList:
        """Add a price list.

        :param name: unique: ``Standard EUR``, ``Wholesale DACH 2026``.
        :param currency: the currency of all its prices.
        :param fields: ``customer_group`` (customers tagged with it only),
            ``region`` (customers of that sales region only), ``valid_from``
            and ``valid_until`` (dates, both days included), ``active``.
        """
        self._free_name(name)
        values = self._parse({"name": name, "currency": currency, **fields}, creating=True)
        self._check_period(PriceList(**self._s._stamp(**values)))
        return self._add("create", **values)

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> PriceList:
        """Change a list's name, group, region, period or state (its currency stays)."""
        price_list = self._load(id)
        if "currency" in fields:
            raise ValidationError(
                "currency", fields["currency"], "cannot change: its prices are in it"
            )
        if "name" in fields:
            self._free_name(fields["name"], id)
        changes = self._parse(fields, creating=False, current=price_list)
        self._check_period(attrs.evolve(price_list, **changes))
        return self._change(price_list, version, "update", **changes)

    @write
    def deactivate(self, id: str) -> PriceList:
        """Stop using a list (it prices nothing until activated)."""
        return self._change(self._load(id), None, "update", active=False)

    @write
    def activate(self, id: str) -> PriceList:
        """Use a list again."""
        return self._change(self._load(id), None, "update", active=True)

    @write
    def set_price(
        self, price_list_id: str, product_id: str, unit_price: Any, *, min_quantity: int = 1
    ) -> Price:
        """Set a product's unit price on a list, from ``min_quantity`` units on.

        Another ``min_quantity`` is another quantity break; the same one
        replaces its price. The price must be in the list's currency.
        """
        price_list = self._load(check_id("price_list_id", price_list_id))
        product = self._s.products._load(check_id("product_id", product_id))
        money = check_money("unit_price", unit_price)
        if money is None:
            raise ValidationError("unit_price", unit_price, "is required")
        if money.currency != price_list.currency:
            raise ValidationError(
                "unit_price", str(money), f"must be in the list's currency, {price_list.currency}"
            )
        if money.amount < 0:
            raise ValidationError("unit_price", str(money), "cannot be negative")
        quantity = check_int("min_quantity", min_quantity, minimum=1, maximum=10**9)
        keys = {"price_list_id": price_list.id, "product_id": product.id, "min_quantity": quantity}
        where = all_of([Eq(k, v) for k, v in keys.items()])
        prices = self._s._uow.repo(Price)
        found = prices.find(where, limit=1)
        if found:
            self._s._saw(found)
            return self._change_price(found[0], money)
        price = Price(
            **self._s._stamp(
                price_list_id=price_list.id,
                product_id=product.id,
                min_quantity=quantity,
                unit_price=money,
            )
        )
        self._s._guard.require(price, "create", ["unit_price"])
        prices.add(price)
        self._s._record("create", None, price)
        return price

    def _change_price(self, price: Price, money: Money) -> Price:
        if price.unit_price == money:
            return price
        self._s._guard.require(price, "update", ["unit_price"])
        self._s._check_fresh(price)
        return self._s._revise(price, "update", unit_price=money)

    def prices(self, price_list_id: str, *, product_id: str | None = None) -> builtins.list[Price]:
        """A list's prices, by product and quantity break (of one product, or all).

        Returns all of them: a list holds one price per product and break.
        """
        price_list = self._load(check_id("price_list_id", price_list_id))
        parts: builtins.list[Filter | None] = [Eq("price_list_id", price_list.id)]
        if product_id is not None:
            product = self._s.products._load(check_id("product_id", product_id))
            parts.append(Eq("product_id", product.id))
        order = [OrderBy("product_id"), OrderBy("min_quantity")]
        return self._s.read(Price).find(all_of(parts), order_by=order)

    def list(
        self, *, active: bool | None = True, limit: int = 50, offset: int = 0
    ) -> builtins.list[PriceList]:
        """Price lists by name: those in use by default (``active=None``: all).

        Returns the first 50 by default (``limit`` up to 1,000).
        """
        limit, offset = check_page(limit, offset)
        where = None if active is None else Eq("active", check_bool("active", active))
        return self._find(where, order_by=[OrderBy("name")], limit=limit, offset=offset)

    def price(
        self,
        product_id: str,
        *,
        quantity: Decimal | int | str = 1,
        customer_id: str | None = None,
        currency: str | None = None,
        on: date | None = None,
    ) -> PriceLine:
        """A product's unit price for a quantity, a customer, a currency and a day.

        The ``pycrm_price_line`` plugins decide (an ERP's own prices first);
        the built-in ``pycrm.pricing`` answers from the price lists: the
        most specific list for the customer's group (a tag) and region in
        that currency, and in it the largest quantity break reached. The
        line says which list and break, and which plugin, decided.
        :raises NotFound: when nothing prices it.
        :raises PermissionDenied: when a field rule hides a price's or a
            list's terms (the quantity break, the unit price, the group,
            region, period or currency) from the actor.
        """
        product = self._s.products._load(check_id("product_id", product_id))
        amount = check_quantity("quantity", quantity)
        customer = None
        if customer_id is not None:
            customer = self._s.customers._load(check_id("customer_id", customer_id))
        wanted = None if currency is None else check_currency("currency", currency)
        day = self._s._now().date() if on is None else _day("on", on)
        return self._price(product, amount, customer, wanted, day, RuleContext(self._s))

    def _price(
        self,
        product: Product,
        amount: Decimal,
        customer: Customer | None,
        wanted: str | None,
        day: date,
        ctx: RuleContext,
    ) -> PriceLine:
        """:meth:`price` of records already loaded and checked.

        The lines of one call share ``ctx``: the built-in rule reads the
        applicable lists once for them all (``ctx.memo``).
        """
        # Pricing reads the lists' terms and shows a unit price: refused where a
        # field rule hides any of them (as filtering on them would be).
        guard = self._s._guard
        guard.check_fields(PriceList, [f.name for f in attrs.fields(PriceList) if f.name in _TERMS])
        guard.check_fields(Price, ["min_quantity", "unit_price"])
        line = self._s.crm.rules.price(product, amount, customer, wanted, day, ctx)
        if line is None:
            raise NotFound(
                "price", f"{product.sku} x {amount}" + (f" in {wanted}" if wanted else "")
            )
        return line
