"""Property tests for Money (DESIGN §3): exact Decimal amounts in an ISO 4217 currency."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pycrm import Money
from pycrm.domain.money import MAX_AMOUNT, minor_units
from pycrm.errors import ValidationError

CURRENCIES = ["EUR", "USD", "GBP", "CNY", "JPY", "KRW", "KWD", "BHD", "CLF"]
currencies = st.sampled_from(CURRENCIES)


def amounts_in(currency: str, limit: int | None = None) -> st.SearchStrategy[Money]:
    top = int(MAX_AMOUNT) * 10 ** minor_units(currency) - 1 if limit is None else limit
    return st.integers(-top, top).map(lambda minor: Money.from_minor(minor, currency))


money = currencies.flatmap(amounts_in)


def unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


@settings(max_examples=120, deadline=None)
@given(amount=money, parts=st.integers(1, 500))
def test_allocate_sums_exactly_and_parts_differ_by_at_most_one_minor_unit(
    amount: Money, parts: int
) -> None:
    shares = amount.allocate(parts)
    assert len(shares) == parts
    assert {s.currency for s in shares} == {amount.currency}
    assert sum((s.amount for s in shares), Decimal(0)) == amount.amount
    total = Money.zero(amount.currency)
    for share in shares:
        total = total + share
    assert total == amount
    minors = [s.minor for s in shares]
    assert max(minors) - min(minors) <= 1
    assert minors == sorted(minors, key=abs, reverse=True)  # the first shares take the remainder
    for share in shares:  # every share is expressible in the currency
        assert share.amount == share.amount.quantize(unit(amount.currency))
        assert (share.amount >= 0) == (amount.amount >= 0) or share.amount == 0


def test_allocate_gives_the_remainder_to_the_first_parts() -> None:
    shares = Money.of("100", "EUR").allocate(3)
    assert [str(s.amount) for s in shares] == ["33.34", "33.33", "33.33"]
    assert [str(s.amount) for s in Money.of("-0.05", "EUR").allocate(2)] == ["-0.03", "-0.02"]
    assert [str(s.amount) for s in Money.of("10", "JPY").allocate(4)] == ["3", "3", "2", "2"]
    assert Money.of("0.01", "EUR").allocate(3)[1:] == (Money.zero("EUR"),) * 2


@pytest.mark.parametrize("parts", [0, -1, 1.0, True, "3", None])
def test_allocate_refuses_anything_but_a_positive_whole_number(parts: object) -> None:
    with pytest.raises(ValidationError) as raised:
        Money.of("10", "EUR").allocate(parts)  # type: ignore[arg-type]
    assert raised.value.field == "parts"


@settings(max_examples=100, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True), currency=currencies)
def test_floats_are_refused_whatever_their_value(value: float, currency: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Money.of(value, currency)
    assert raised.value.field == "amount"
    assert "float" in raised.value.reason
    with pytest.raises(ValidationError):
        Money(value, currency)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(minor=st.integers(-(10**12), 10**12), currency=currencies)
def test_of_accepts_decimal_int_and_numeric_strings_equally(minor: int, currency: str) -> None:
    expected = Money.from_minor(minor, currency)
    text = str(expected.amount)
    assert Money.of(text, currency) == expected
    assert Money.of(Decimal(text), currency) == expected
    assert Money.of(expected.amount, currency).minor == minor
    if minor_units(currency) == 0:
        assert Money.of(minor, currency) == expected


@settings(max_examples=100, deadline=None)
@given(currency=st.text(max_size=5))
def test_a_currency_must_be_three_upper_case_ascii_letters(currency: str) -> None:
    assume(
        not (
            len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()
        )
    )
    with pytest.raises(ValidationError) as raised:
        Money.of("1", currency)
    assert raised.value.field == "currency"
    with pytest.raises(ValidationError):
        Money(Decimal("1.00"), currency)


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "Eur", "€UR", "ÄÖÜ", "", None, 978])
def test_known_bad_currencies_are_refused(currency: object) -> None:
    with pytest.raises(ValidationError) as raised:
        Money.of("1", currency)  # type: ignore[arg-type]
    assert raised.value.field == "currency"


@pytest.mark.parametrize("currency", ["E1R", "00A", "::A", "A-B", "A B"])
def test_a_currency_with_digits_or_punctuation_is_refused(currency: str) -> None:
    with pytest.raises(ValidationError):
        Money.of("1", currency)


def test_jpy_has_no_decimals_and_kwd_has_three() -> None:
    assert Money.of("1234", "JPY").amount == Decimal("1234")
    assert Money.of("1.5", "JPY") == Money.of("2", "JPY")  # rounded half-even to the yen
    assert Money.of("2.5", "JPY") == Money.of("2", "JPY")
    assert str(Money.of("1234", "JPY").amount) == "1234"
    assert Money.of("1234", "JPY").minor == 1234
    with pytest.raises(ValidationError) as raised:
        Money(Decimal("1.5"), "JPY")
    assert raised.value.field == "amount"
    with pytest.raises(ValidationError):
        Money(Decimal("1.00"), "JPY")
    assert str(Money.of("1", "KWD").amount) == "1.000"
    with pytest.raises(ValidationError):
        Money(Decimal("0.0001"), "KWD")
    assert Money(Decimal("0.001"), "KWD").minor == 1
    assert str(Money.of("0.125", "EUR").amount) == "0.12"
    assert str(Money.of("0.135", "EUR").amount) == "0.14"


@pytest.mark.parametrize(
    "rounding", [decimal.ROUND_HALF_UP, decimal.ROUND_DOWN, decimal.ROUND_CEILING]
)
def test_rounding_is_half_even_whatever_the_callers_decimal_context(rounding: str) -> None:
    with decimal.localcontext(rounding=rounding):
        assert Money.of("2.5", "JPY") == Money.of("2", "JPY")
        assert Money.of("0.125", "EUR").amount == Decimal("0.12")
        assert Money.of("-0.135", "EUR").amount == Decimal("-0.14")


@settings(max_examples=100, deadline=None)
@given(currency=currencies, data=st.data())
def test_arithmetic_within_one_currency_is_exact(currency: str, data: st.DataObject) -> None:
    half = int(MAX_AMOUNT) * 10 ** minor_units(currency) // 2 - 1
    a = data.draw(amounts_in(currency, half))
    b = data.draw(amounts_in(currency, half))
    assert (a + b).amount == a.amount + b.amount
    assert (a - b).amount == a.amount - b.amount
    assert (a + b) - b == a
    negated = -a
    assert -negated == a
    assert negated.amount == -a.amount
    assert (a < b) == (a.amount < b.amount)
    assert (a <= b) == (a.amount <= b.amount)
    assert (a > b) == (a.amount > b.amount)
    assert (a >= b) == (a.amount >= b.amount)
    assert Money.from_minor(a.minor, currency) == a


@settings(max_examples=100, deadline=None)
@given(first=currencies, second=currencies, data=st.data())
def test_arithmetic_and_comparison_across_currencies_are_refused(
    first: str, second: str, data: st.DataObject
) -> None:
    assume(first != second)
    a = data.draw(amounts_in(first, 10**6))
    b = data.draw(amounts_in(second, 10**6))
    for operation in (
        lambda: a + b,
        lambda: a - b,
        lambda: a < b,
        lambda: a <= b,
        lambda: a > b,
        lambda: a >= b,
    ):
        with pytest.raises(ValidationError) as raised:
            operation()
        assert raised.value.field == "currency"
    assert a != b


@pytest.mark.parametrize("other", [1, Decimal("1"), "1.00", None])
def test_money_combines_only_with_money(other: object) -> None:
    with pytest.raises(ValidationError):
        Money.of("1", "EUR") + other  # type: ignore[operator]
    with pytest.raises(ValidationError):
        assert Money.of("1", "EUR") < other  # type: ignore[operator]


@pytest.mark.parametrize(
    "amount",
    ["NaN", "sNaN", "Infinity", "-Infinity", "1e14", "-1e14", "1e400", "abc", "", "1,5", b"1"],
)
def test_non_finite_too_large_and_non_numeric_amounts_are_refused(amount: object) -> None:
    with pytest.raises(ValidationError) as raised:
        Money.of(amount, "EUR")  # type: ignore[arg-type]
    assert raised.value.field == "amount"


def test_the_largest_amount_just_fits_and_a_sum_beyond_it_is_refused() -> None:
    top = Money.of("99999999999999.99", "EUR")
    assert top.minor == 10**16 - 1
    with pytest.raises(ValidationError):
        top + Money.of("0.01", "EUR")
    assert str(Money.of("12.3", "EUR")) == "12.30 EUR"
    assert str(Money.of("1234567.5", "EUR")) == "1,234,567.50 EUR"


@pytest.mark.parametrize(
    ("refused", "field", "value"),
    [
        (lambda: Money.of(1.5, "EUR"), "amount", 1.5),
        (lambda: Money.of(True, "EUR", field="price"), "price", True),
        (lambda: Money.of("lots", "EUR", field="price"), "price", "lots"),
        (lambda: Money.of("NaN", "EUR", field="price"), "price", "NaN"),
        (lambda: Money.of("1e400", "EUR", field="price"), "price", "1e400"),
        (lambda: Money.of("1e14", "EUR", field="price"), "price", "1e14"),
        (lambda: Money.of("1", "eur"), "currency", "eur"),
        (lambda: Money.of([1], "EUR", field="price"), "price", [1]),
        (lambda: Money.of("1", "EUR") + 1, "amount", 1),
        (lambda: Money.of("1", "EUR") - Money.of("1", "USD"), "currency", "USD"),
        (lambda: Money.of("1", "EUR").allocate(0), "parts", 0),
    ],
    ids=[
        "float",
        "bool",
        "not a number",
        "not finite",
        "too large",
        "at the limit",
        "lower-case currency",
        "not a number type",
        "not money",
        "other currency",
        "no parts",
    ],
)
def test_a_refusal_names_the_field_the_offending_value_and_a_reason(
    refused: Callable[[], object], field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as raised:
        refused()
    assert (raised.value.field, raised.value.value) == (field, value)
    assert type(raised.value.value) is type(value)
    assert isinstance(raised.value.reason, str)
    assert raised.value.reason
