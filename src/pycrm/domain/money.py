"""Money: an exact Decimal amount in an ISO 4217 currency."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import attrs

from pycrm.errors import ValidationError

__all__ = ["MAX_AMOUNT", "Money", "check_currency", "decimal_of", "minor_units"]

#: Currencies whose minor unit is not 1/100 (ISO 4217). Every other
#: three-letter code is taken to have two decimal places.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}  # fmt: skip

#: The largest absolute amount pycrm stores: it fits a signed 64-bit integer of
#: minor units for every currency.
MAX_AMOUNT = Decimal(10) ** 14


def minor_units(currency: str) -> int:
    """Return how many decimal places ``currency`` has (2 unless ISO 4217 says otherwise)."""
    return _EXPONENTS.get(currency, 2)


def decimal_of(value: Any, field: str) -> Decimal:
    """A finite Decimal from a Decimal, int or numeric text (never a float), naming ``field``."""
    if isinstance(value, bool | float):
        raise ValidationError(field, value, "give a Decimal, int or string, never a float")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValidationError(field, value, "not a number") from None
    else:
        raise ValidationError(field, value, "must be a Decimal, int or numeric string")
    if not amount.is_finite():
        raise ValidationError(field, value, "must be a finite number")
    return amount


def check_currency(field: str, value: Any) -> str:
    """A three-letter ISO 4217 code such as ``EUR`` (upper case), or ValidationError naming ``field``."""
    if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha()):
        raise ValidationError(field, value, "must be a three-letter ISO 4217 code such as 'EUR'")
    if not value.isupper():
        raise ValidationError(field, value, f"must be upper case: {value.upper()!r}")
    return value


def _check_currency(_: Any, __: Any, value: Any) -> None:
    check_currency("currency", value)


@attrs.frozen(order=False)
class Money:
    """An amount of money: a ``Decimal`` and an ISO 4217 currency code.

    Amounts are exact: floats are refused, and the amount must be expressible
    in the currency's minor unit (cents for EUR, none for JPY). Arithmetic and
    comparison across currencies raise :class:`~pycrm.errors.ValidationError`.
    """

    amount: Decimal = attrs.field()
    """The amount, with at most the currency's number of decimal places."""
    currency: str = attrs.field(validator=_check_currency)
    """Upper-case ISO 4217 code, e.g. ``"EUR"``, ``"CNY"``, ``"JPY"``."""

    @amount.validator
    def _check_amount(self, _: object, value: object) -> None:
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValidationError("amount", value, "must be a finite Decimal (use Money.of)")
        if abs(value) >= MAX_AMOUNT:
            raise ValidationError(
                "amount", value, f"must be smaller than {MAX_AMOUNT:,} in magnitude"
            )
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > minor_units(self.currency):
            raise ValidationError(
                "amount",
                value,
                f"{self.currency} has {minor_units(self.currency)} decimal places",
            )

    @classmethod
    def of(cls, amount: Any, currency: str, *, field: str = "amount") -> Money:
        """Build Money from a Decimal, int or numeric string, rounding half-even to the minor unit.

        Refuses floats, NaN and infinities with a ValidationError naming ``field``.
        """
        _check_currency(None, None, currency)
        value = decimal_of(amount, field)
        quantum = Decimal(1).scaleb(-minor_units(currency))
        try:
            value = value.quantize(quantum, rounding=ROUND_HALF_EVEN)
        except InvalidOperation:
            raise ValidationError(field, amount, "is too large") from None
        if abs(value) >= MAX_AMOUNT:
            raise ValidationError(
                field, amount, f"must be smaller than {MAX_AMOUNT:,} in magnitude"
            )
        return cls(value, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Return nothing, in ``currency``."""
        return cls.of(0, currency)

    @property
    def minor(self) -> int:
        """The amount in minor units (cents), as stored by the SQL adapter."""
        return int(self.amount.scaleb(minor_units(self.currency)))

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        """Build Money from an integer number of minor units."""
        return cls(Decimal(minor).scaleb(-minor_units(currency)), currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise ValidationError("amount", other, "can only combine Money with Money")
        if other.currency != self.currency:
            raise ValidationError(
                "currency", other.currency, f"cannot combine {self.currency} with {other.currency}"
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money.of(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money.of(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def allocate(self, parts: int) -> tuple[Money, ...]:
        """Split into ``parts`` amounts that differ by at most one minor unit and sum exactly.

        The first amounts take the remainder, so ``Money.of("100", "EUR").allocate(3)``
        is 33.34, 33.33, 33.33.
        """
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValidationError("parts", parts, "must be a positive whole number")
        total = self.minor
        base, remainder = divmod(abs(total), parts)
        sign = -1 if total < 0 else 1
        return tuple(
            Money.from_minor(sign * (base + (1 if i < remainder else 0)), self.currency)
            for i in range(parts)
        )

    def __str__(self) -> str:
        return f"{self.amount:,} {self.currency}"
