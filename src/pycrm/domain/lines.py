"""Priced lines, as quotes and the contracts made from them hold them.

Rounding rule (per line, then totals), in the currency's minor units
(JPY 0, EUR 2, KWD 3), each step half to even:

1. the line's list amount is ``quantity × unit price``, rounded;
2. its discount is ``list amount × discount % / 100``, rounded, and its net
   amount the list amount less the discount;
3. its tax is ``net × tax rate / 100``, rounded;
4. the list total, subtotal (net), tax and total are the exact sums of the
   lines' list amounts, nets, taxes and nets plus taxes.

So a total is always the sum of its lines, to the minor unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs

from pycrm.domain.money import MAX_AMOUNT, Money, decimal_of
from pycrm.errors import ValidationError

__all__ = [
    "QuoteLine",
    "Totals",
    "check_percent",
    "check_quantity",
    "costing",
    "make_line",
    "totals",
]


def check_percent(field: str, value: Any) -> Decimal:
    """A percentage from 0 to 100 with at most two decimals (a Decimal, int or text)."""
    number = decimal_of(value, field)
    if not 0 <= number <= 100:
        raise ValidationError(field, value, "must be a percentage from 0 to 100")
    if -number.as_tuple().exponent > 2:  # type: ignore[operator]
        raise ValidationError(field, value, "at most two decimal places")
    return number


#: Quantities stay below this (and have at most six decimals: 1.5 hours, 0.125 kg).
MAX_QUANTITY = 10**9


def check_quantity(field: str, value: Any) -> Decimal:
    """A positive quantity below :data:`MAX_QUANTITY`, whole or not, as a Decimal; no floats."""
    number = decimal_of(value, field)
    if not 0 < number < MAX_QUANTITY or -number.as_tuple().exponent > 6:  # type: ignore[operator]
        raise ValidationError(
            field, value, "must be a positive number below a billion, at most six decimals"
        )
    return number


@attrs.frozen
class QuoteLine:
    """One line of a quote: a product (or free text), how many, at what price."""

    description: str
    """What is offered, as the customer reads it (the product's name by default)."""
    quantity: Decimal
    """How many units (1.5 hours is fine)."""
    unit_price: Money
    """The price of one unit, before discount, in the quote's currency."""
    list_amount: Money
    """``quantity × unit_price``, rounded to the minor unit."""
    net: Money
    """The list amount less the discount: what the line costs before tax."""
    tax: Money
    """The tax on :attr:`net`."""
    discount_percent: Decimal = Decimal(0)
    """The discount granted on this line, in percent."""
    tax_rate: Decimal = Decimal(0)
    """The tax rate applied, in percent."""
    product_id: str | None = None
    """The product, or None for a free-text line."""
    sku: str | None = None
    """The product's SKU when the line was priced (it stays if the catalogue changes)."""
    unit: str = "piece"
    """What one unit is (``piece``, ``hour``, ``month`` …)."""
    price_list_id: str | None = None
    """The price list the unit price came from (None: given by hand or by a plugin)."""

    @property
    def discount(self) -> Money:
        """How much the discount takes off the list amount."""
        return self.list_amount - self.net

    @property
    def total(self) -> Money:
        """Net plus tax."""
        return self.net + self.tax


def _amount(field: str, value: Decimal, currency: str) -> Money:
    if abs(value) >= MAX_AMOUNT:
        raise ValidationError(field, str(value), f"makes an amount of {MAX_AMOUNT:,} or more")
    return Money.of(value, currency)


def make_line(
    *,
    description: str,
    quantity: Decimal,
    unit_price: Money,
    discount_percent: Decimal = Decimal(0),
    tax_rate: Decimal = Decimal(0),
    product_id: str | None = None,
    sku: str | None = None,
    unit: str = "piece",
    price_list_id: str | None = None,
) -> QuoteLine:
    """A line with its amounts computed by the rounding rule (see the module's docs)."""
    currency = unit_price.currency
    listed = _amount("quantity", quantity * unit_price.amount, currency)
    net = listed - Money.of(listed.amount * discount_percent / 100, currency)
    tax = _amount("tax_rate", net.amount * tax_rate / 100, currency)
    return QuoteLine(
        description=description,
        quantity=quantity,
        unit_price=unit_price,
        list_amount=listed,
        net=net,
        tax=tax,
        discount_percent=discount_percent,
        tax_rate=tax_rate,
        product_id=product_id,
        sku=sku,
        unit=unit,
        price_list_id=price_list_id,
    )


@attrs.frozen
class Totals:
    """A quote's sums, each the exact sum of its lines'."""

    list_total: Money
    subtotal: Money
    tax: Money
    total: Money


def totals(lines: Sequence[QuoteLine], currency: str) -> Totals:
    """The list total, subtotal (net), tax and total of ``lines``: exact sums, no rounding."""
    zero = Money.zero(currency)
    listed, net, tax = zero, zero, zero
    for i, line in enumerate(lines):
        if line.net.currency != currency:
            raise ValidationError(f"lines[{i}]", str(line.net), f"must be in {currency}")
        listed, net, tax = listed + line.list_amount, net + line.net, tax + line.tax
    if abs(net.amount + tax.amount) >= MAX_AMOUNT:
        raise ValidationError("lines", len(lines), f"total {MAX_AMOUNT:,} or more")
    return Totals(listed, net, tax, net + tax)


def costing(
    lines: Sequence[QuoteLine], costs: Sequence[Money | None]
) -> tuple[Money | None, Money | None]:
    """The cost and margin of the lines whose unit cost is known (None, None for none)."""
    known = [(line, unit) for line, unit in zip(lines, costs, strict=True) if unit is not None]
    if not known:
        return None, None
    currency = known[0][0].net.currency
    cost = Money.zero(currency)
    net = Money.zero(currency)
    for line, unit in known:
        cost += _amount("quantity", line.quantity * unit.amount, currency)
        net += line.net
    return cost, net - cost
