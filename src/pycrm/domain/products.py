"""The catalogue and the currencies: products and services, dated exchange rates.

A :class:`Product` is what a company sells (goods by the piece, services by
the hour, licences by the month), found by its SKU or by the id the ERP gave
it (``external_id``). An :class:`ExchangeRate` says how many units of one
currency one unit of another was worth on a day; :func:`convert` turns Money
with it and says which rate and day it used (:class:`Conversion`).

Rounding: a converted amount is rounded once, to the target currency's minor
units (JPY 0, EUR 2, KWD 3), half to even (banker's rounding), so converting
many amounts neither drifts up nor down on average.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, ClassVar

import attrs

from pycrm.domain.contact_points import search_key
from pycrm.domain.customers import category_keys
from pycrm.domain.money import Money, minor_units
from pycrm.domain.records import Record
from pycrm.errors import ValidationError

__all__ = ["Conversion", "ExchangeRate", "Product", "check_currency", "check_rate", "convert"]

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


def check_currency(field: str, value: Any) -> str:
    """A three-letter ISO 4217 code such as ``EUR`` (upper case)."""
    if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha()):
        raise ValidationError(field, value, "must be a three-letter ISO 4217 code such as 'EUR'")
    if not value.isupper():
        raise ValidationError(field, value, f"must be upper case: {value.upper()!r}")
    return value


def check_rate(field: str, value: Any) -> Decimal:
    """A positive, finite rate as a Decimal (given as a Decimal, int or text; no floats)."""
    if isinstance(value, bool | float):
        raise ValidationError(field, value, "must be a Decimal, a whole number or text (no float)")
    try:
        rate = Decimal(value) if isinstance(value, int | str | Decimal) else None
    except (InvalidOperation, ValueError):
        rate = None
    if rate is None or not rate.is_finite() or rate <= 0:
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
