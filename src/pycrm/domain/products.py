"""The catalogue, its prices and the currencies: products, price lists, exchange rates.

A :class:`Product` is what a company sells (goods by the piece, services by
the hour, licences by the month), found by its SKU or by the id the ERP gave
it (``external_id``). A :class:`PriceList` holds :class:`Price` entries per
product, with quantity breaks, for everyone or a customer group or region,
for a time. An :class:`ExchangeRate` says how many units of one
currency one unit of another was worth on a day; :func:`convert` turns Money
with it and says which rate and day it used (:class:`Conversion`).

Rounding: a converted amount is rounded once, to the target currency's minor
units (JPY 0, EUR 2, KWD 3), half to even (banker's rounding), so converting
many amounts neither drifts up nor down on average.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, ClassVar

import attrs

from pycrm.domain.contact_points import search_key
from pycrm.domain.customers import category_keys
from pycrm.domain.money import Money, decimal_of, minor_units
from pycrm.domain.records import Record
from pycrm.errors import ValidationError

__all__ = [
    "Conversion",
    "ExchangeRate",
    "Price",
    "PriceLine",
    "PriceList",
    "Product",
    "check_rate",
    "convert",
]

#: Rates are kept to this many significant digits (more than any published rate has).
RATE_DIGITS = 18


@attrs.frozen(kw_only=True)
class Product(Record):
    """A product or service in the catalogue."""

    resource: ClassVar[str] = "product"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("active",),)
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("sku",),)
    computed: ClassVar[tuple[str, ...]] = ("search_text",)

    sku: str
    """The stock-keeping unit: the catalogue's own unique code (case kept, unique per tenant)."""
    name: str
    """What it is called."""
    description: str | None = None
    """What it is, for quotes and the shop."""
    unit: str = "piece"
    """What one of it is: ``piece``, ``hour``, ``month``, ``licence`` …"""
    tax_category: str = "standard"
    """Which tax rate applies (``standard``, ``reduced``, ``exempt`` or the ERP's own code)."""
    cost: Money | None = None
    """What one unit costs the company (for margins; the default policy shows it to
    finance and sales managers only)."""
    active: bool = True
    """Offered: inactive products stay in old quotes and contracts but are not sold anew."""
    categories: tuple[str, ...] = ()
    """Paths in the category trees (``Machines/Presses``)."""
    external_id: str | None = None
    """The id of the product in the ERP or shop that owns the catalogue."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values."""

    @property
    def search_text(self) -> str:
        """SKU, name and description folded for search."""
        return search_key(" ".join([self.sku, self.name, self.description or ""]))

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """The ERP's id and every prefix of the category paths (a parent finds its subtree)."""
        if self.external_id:
            yield "external_id", self.external_id
        yield from category_keys(self.categories)


@attrs.frozen(kw_only=True)
class ExchangeRate(Record):
    """An exchange rate: one ``base`` is worth ``rate`` ``quote`` from ``valid_on`` on.

    It applies until the pair's next rate.
    """

    resource: ClassVar[str] = "exchange_rate"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("base", "quote", "valid_on"),)
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("base", "quote", "valid_on"),)

    base: str
    """The currency converted from (ISO 4217, ``USD``)."""
    quote: str
    """The currency converted to (``EUR``)."""
    rate: Decimal
    """Units of ``quote`` per unit of ``base`` (positive)."""
    valid_on: date
    """The first day the rate applies."""
    source: str = "manual"
    """Who gave it: ``manual`` (entered by finance) or a rate source's name (``ecb``)."""


@attrs.frozen
class Conversion:
    """An amount converted, with what it was converted by."""

    amount: Money
    """The result, in the target currency, rounded to its minor units (half to even)."""
    original: Money
    """The amount given."""
    rate: Decimal
    """Target units per unit of the original currency (1 for the same currency)."""
    rate_date: date | None
    """The day the rate was valid from (None for the same currency)."""
    inverted: bool = False
    """True when only the opposite rate was stored and its inverse was used."""


def check_rate(field: str, value: Any) -> Decimal:
    """A positive rate as a Decimal (given as a Decimal, int or text; no floats)."""
    rate = decimal_of(value, field)
    if rate <= 0:
        raise ValidationError(field, value, "must be a positive number")
    if rate.adjusted() > 12 or rate.adjusted() < -12:
        raise ValidationError(field, value, "is out of range for an exchange rate (1e-12 to 1e12)")
    return +rate.normalize()


def _rounded(amount: Decimal, currency: str) -> Money:
    quantum = Decimal(1).scaleb(-minor_units(currency))
    return Money(amount.quantize(quantum, rounding=ROUND_HALF_EVEN), currency)


def convert(money: Money, rate: ExchangeRate, *, inverted: bool = False) -> Conversion:
    """``money`` in ``rate``'s other currency.

    With ``inverted``, ``rate`` goes the other way (``quote`` → ``base``) and
    its inverse is used, to 18 significant digits.
    """
    source, target = (rate.quote, rate.base) if inverted else (rate.base, rate.quote)
    if money.currency != source:
        raise ValidationError(
            "money", str(money), f"is in {money.currency}, the rate converts from {source}"
        )
    factor = rate.rate
    if inverted:
        with localcontext() as exact:
            exact.prec = RATE_DIGITS
            factor = +(Decimal(1) / factor).normalize()
    return Conversion(
        _rounded(money.amount * factor, target), money, factor, rate.valid_on, inverted
    )


@attrs.frozen(kw_only=True)
class PriceList(Record):
    """Prices in one currency, for everyone or for a customer group or region, for a time."""

    resource: ClassVar[str] = "price_list"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("name",),)

    name: str
    """What it is called (unique): ``Standard EUR``, ``Wholesale DACH 2026``."""
    currency: str
    """The currency of every price in it."""
    customer_group: str | None = None
    """For customers tagged with this group only (``wholesale``); None: any customer."""
    region: str | None = None
    """For customers in this sales region only (``DACH``); None: any region."""
    valid_from: date | None = None
    """The first day it applies (None: from the start)."""
    valid_until: date | None = None
    """The last day it applies (None: until further notice)."""
    active: bool = True
    """In use: an inactive list prices nothing."""

    def applies(self, on: date, tags: Iterable[str], region: str | None) -> bool:
        """Whether the list prices for a customer with these tags and region on ``on``."""
        return (
            self.active
            and (self.valid_from is None or self.valid_from <= on)
            and (self.valid_until is None or on <= self.valid_until)
            and (self.customer_group is None or self.customer_group in set(tags))
            and (self.region is None or self.region == region)
        )

    @property
    def specificity(self) -> int:
        """How narrowly it targets: a group and a region (3) before a group (2), a region (1)."""
        return 2 * (self.customer_group is not None) + (self.region is not None)


@attrs.frozen(kw_only=True)
class Price(Record):
    """One product's unit price on one price list, from a quantity on (a quantity break)."""

    resource: ClassVar[str] = "price"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("product_id",),)
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("price_list_id", "product_id", "min_quantity"),
    )

    price_list_id: str
    """The list it belongs to."""
    product_id: str
    """The product it prices."""
    min_quantity: int = 1
    """The least quantity it applies to: 1, or a break (10 and more)."""
    unit_price: Money
    """The price of one unit, in the list's currency."""


@attrs.frozen
class PriceLine:
    """A product's unit price for a quantity, and where it came from.

    What :meth:`~pycrm.services.products.PriceListService.price` returns, and
    what a ``pycrm_price_line`` plugin returns to set a price itself.
    """

    product_id: str
    """The product priced."""
    quantity: Decimal
    """The quantity it was priced for."""
    unit_price: Money
    """The price of one unit."""
    price_list_id: str | None = None
    """The price list it came from (None: a plugin's own price)."""
    reason: str = ""
    """Why this price, in words (``Wholesale DACH, from 10``)."""
    decided_by: str = ""
    """The plugin that priced it (set by pycrm: ``pycrm.pricing`` for the price lists)."""
