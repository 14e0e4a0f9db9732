"""The catalogue (``s.products``) and exchange rates (``s.rates``) on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pycrm
import pycrm.rules
from conftest import ConnectFn
from pycrm import Money
from pycrm.domain.money import minor_units
from pycrm.domain.permissions import DEFAULT_POLICY
from pycrm.domain.products import ExchangeRate, PriceLine, convert
from pycrm.errors import DuplicateError, NotFound, PermissionDenied, ValidationError
from pycrm.session import Session
from support import refused, staff

EUR = "EUR"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


# -- products ----------------------------------------------------------------------


def test_a_product_is_found_by_id_sku_and_the_erps_id(system: Session) -> None:
    press = system.products.create(
        "PR-100",
        "Press 100t",
        description="Hydraulic press",
        cost=Money.of("12000", EUR),
        external_id="erp-7",
    )
    assert system.products.get(press.id) == press
    assert system.products.by_sku("PR-100") == press
    assert system.products.by_external_id("erp-7") == press
    assert (press.unit, press.tax_category, press.active) == ("piece", "standard", True)
    with pytest.raises(NotFound):
        system.products.by_sku("pr-100")  # the SKU's case is kept
    with pytest.raises(NotFound):
        system.products.by_external_id("erp-8")


def test_list_offers_active_products_by_sku_and_finds_words_and_categories(
    system: Session,
) -> None:
    system.categories.create("machines", "Machines")
    system.categories.create("presses", "Presses", parent="machines")
    system.products.create("PR-2", "Press 200t", categories=["machines/presses"])
    system.products.create("PR-1", "Press 100t", description="Hydraulic")
    old = system.products.create("AA-1", "Old lathe", categories=["machines"])
    system.products.deactivate(old.id)
    assert [p.sku for p in system.products.list()] == ["PR-1", "PR-2"]
    assert [p.sku for p in system.products.list(active=None)] == ["AA-1", "PR-1", "PR-2"]
    assert [p.sku for p in system.products.list(active=False)] == ["AA-1"]
    assert [p.sku for p in system.products.list(text="hydraulic PRESS")] == ["PR-1"]
    assert [p.sku for p in system.products.list(category="machines", active=None)] == [
        "AA-1",
        "PR-2",
    ]
    assert [p.sku for p in system.products.list(limit=1, offset=1)] == ["PR-2"]
    system.products.activate(old.id)
    assert [p.sku for p in system.products.list()] == ["AA-1", "PR-1", "PR-2"]


def test_a_taken_sku_is_refused_and_nothing_is_written(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        s.products.create("PR-100", "Press")
        other = s.products.create("PR-200", "Other press")
    errors = refused(
        crm,
        crm.system_actor,
        (DuplicateError, lambda s: s.products.create("PR-100", "Again")),
        (DuplicateError, lambda s: s.products.update(other.id, sku="PR-100")),
    )
    assert "PR-100" in str(errors[0])


def test_upsert_creates_then_updates_by_sku_and_writes_nothing_unchanged(
    system: Session,
) -> None:
    made = system.products.upsert("SV-1", name="Service hour", unit="hour")
    assert (made.name, made.unit, made.version) == ("Service hour", "hour", 1)
    again = system.products.upsert("SV-1", name="Service hour", unit="hour")
    assert again.version == 1  # unchanged: not written again
    changed = system.products.upsert("SV-1", description="On site")
    assert (changed.id, changed.version, changed.description) == (made.id, 2, "On site")
    with pytest.raises(ValidationError) as info:
        system.products.upsert("SV-2", unit="hour")
    assert info.value.field == "name"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sku": "", "name": "Press"}, "sku"),
        ({"sku": "PR\x00", "name": "Press"}, "sku"),
        ({"sku": "PR-1", "name": "x" * 301}, "name"),
        ({"sku": "PR-1", "name": "Press", "cost": 12.5}, "cost"),
        ({"sku": "PR-1", "name": "Press", "unit": ""}, "unit"),
        ({"sku": "PR-1", "name": "Press", "active": "yes"}, "active"),
        ({"sku": "PR-1", "name": "Press", "colour": "red"}, "colour"),
        ({"sku": "PR-1", "name": "Press", "categories": ["nowhere"]}, "categories"),
    ],
    ids=[
        "empty-sku",
        "nul",
        "long-name",
        "float-cost",
        "empty-unit",
        "text-bool",
        "unknown",
        "no-category",
    ],
)
def test_bad_product_fields_are_refused_by_name(
    crm: pycrm.CRM, fields: dict[str, object], field: str
) -> None:
    [error] = refused(
        crm, crm.system_actor, (ValidationError, lambda s: s.products.create(**fields))
    )
    assert isinstance(error, ValidationError)
    named = {e.field for e in error.errors} | {error.field}
    assert any(n == field or n.startswith(f"{field}[") for n in named), named


def test_the_cost_is_for_finance_and_sales_managers_and_the_catalogue_for_managers(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm, rep="sales", boss=("sales", ["sales_manager"]), fin="finance")
    with crm.session(actor=people.boss.id) as s:
        press = s.products.create("PR-100", "Press", cost=Money.of("12000", EUR))
        assert s.products.get(press.id).cost == Money.of("12000", EUR)
    with crm.session(actor=people.fin.id) as s:
        assert s.products.get(press.id).cost == Money.of("12000", EUR)
    with crm.session(actor=people.rep.id) as s:
        seen = s.products.by_sku("PR-100")
        assert (seen.name, seen.cost) == ("Press", None)
    refused(
        crm,
        people.rep.id,
        (PermissionDenied, lambda s: s.products.create("PR-200", "Other")),
        (PermissionDenied, lambda s: s.products.update(press.id, name="Mine")),
    )


def test_products_take_custom_fields(system: Session) -> None:
    system.fields.define("product", "voltage", "number", label="Voltage")
    press = system.products.create("PR-100", "Press", custom={"voltage": 400})
    assert press.custom == {"voltage": 400}
    with pytest.raises(ValidationError):
        system.products.create("PR-200", "Press", custom={"voltage": "high"})


# -- exchange rates ----------------------------------------------------------------


def test_a_conversion_uses_the_latest_rate_on_or_before_its_day_and_says_which(
    system: Session,
) -> None:
    system.rates.set("USD", EUR, "0.92", on=date(2026, 1, 1))
    system.rates.set("USD", EUR, Decimal("0.95"), on=date(2026, 6, 1))
    march = system.rates.convert(Money.of("100", "USD"), EUR, on=date(2026, 3, 1))
    assert (march.amount, march.rate, march.rate_date) == (
        Money.of("92.00", EUR),
        Decimal("0.92"),
        date(2026, 1, 1),
    )
    june = system.rates.convert(Money.of("100", "USD"), EUR, on=date(2026, 6, 1))
    assert (june.amount, june.rate_date, june.inverted) == (
        Money.of("95", EUR),
        date(2026, 6, 1),
        False,
    )
    back = system.rates.convert(Money.of("95", EUR), "USD", on=date(2026, 7, 1))
    assert (back.amount, back.inverted, back.rate_date) == (
        Money.of("100", "USD"),
        True,
        date(2026, 6, 1),
    )
    with pytest.raises(NotFound):
        system.rates.convert(Money.of("100", "USD"), EUR, on=date(2025, 12, 31))
    with pytest.raises(NotFound):
        system.rates.convert(Money.of("100", "USD"), "GBP", on=date(2026, 7, 1))
    same = system.rates.convert(Money.of("5", EUR), EUR)
    assert (same.amount, same.rate, same.rate_date) == (Money.of("5", EUR), 1, None)


def test_the_target_currencys_minor_units_and_half_even_rounding(system: Session) -> None:
    system.rates.set(EUR, "JPY", "162.345", on=date(2026, 1, 1))
    system.rates.set(EUR, "KWD", "0.3325", on=date(2026, 1, 1))
    day = date(2026, 2, 1)
    assert system.rates.convert(Money.of("1.00", EUR), "JPY", on=day).amount == Money.of(
        "162", "JPY"
    )
    assert system.rates.convert(Money.of("10.00", EUR), "KWD", on=day).amount == Money.of(
        "3.325", "KWD"
    )
    # Half a minor unit goes to the even neighbour: 12.5 cents -> 12, 37.5 -> 38.
    system.rates.set(EUR, "CHF", "0.125", on=date(2026, 1, 1))
    for eur, chf in (("1.00", "0.12"), ("3.00", "0.38"), ("0.10", "0.01")):
        got = system.rates.convert(Money.of(eur, EUR), "CHF", on=day).amount
        assert got == Money.of(chf, "CHF"), (eur, got)


def test_setting_a_days_rate_again_replaces_it_and_is_audited(system: Session) -> None:
    first = system.rates.set("USD", EUR, "0.92", on=date(2026, 1, 1))
    again = system.rates.set("USD", EUR, "0.93", on=date(2026, 1, 1), source="ecb")
    assert (again.id, again.rate, again.source, again.version) == (
        first.id,
        Decimal("0.93"),
        "ecb",
        2,
    )
    assert [r.rate for r in system.rates.list("USD", EUR)] == [Decimal("0.93")]
    history = system.rates.history(first.id, "rate")
    # History gives values in their JSON form: a Decimal as its text.
    assert [(h.old, h.new) for h in history][-1] == ("0.92", "0.93")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("USD", EUR, 0.92), "rate"),
        (("USD", EUR, "-1"), "rate"),
        (("USD", EUR, "0"), "rate"),
        (("USD", EUR, "NaN"), "rate"),
        (("USD", EUR, "1e20"), "rate"),
        (("usd", EUR, "1"), "base"),
        (("USD", "EURO", "1"), "quote"),
        ((EUR, EUR, "1"), "quote"),
    ],
    ids=["float", "negative", "zero", "nan", "huge", "lower-case", "four-letters", "same"],
)
def test_bad_rates_are_refused_by_name(
    crm: pycrm.CRM, args: tuple[str, str, object], field: str
) -> None:
    [error] = refused(crm, crm.system_actor, (ValidationError, lambda s: s.rates.set(*args)))
    assert isinstance(error, ValidationError)
    assert error.field == field


def test_the_reporting_currency_is_the_crms_currency_until_the_tenant_sets_one(
    system: Session,
) -> None:
    assert system.rates.reporting_currency == system.crm.currency == EUR
    system.rates.set("USD", EUR, "0.9", on=date(2026, 1, 1))
    assert system.rates.to_reporting(Money.of("10", "USD"), on=date(2026, 1, 2)).amount == Money.of(
        "9", EUR
    )
    system.settings.set("reporting_currency", "USD")
    assert system.rates.reporting_currency == "USD"
    assert system.rates.to_reporting(Money.of("9", EUR), on=date(2026, 1, 2)).amount == Money.of(
        "10", "USD"
    )
    with pytest.raises(ValidationError):
        system.settings.set("reporting_currency", "dollars")


class Feed:
    """A rate source: a central bank's feed, one day at a time."""

    name = "ecb"

    def __init__(self, rates: dict[tuple[str, str], object]) -> None:
        self.given = rates

    def rates(self, on: date) -> dict[tuple[str, str], object]:
        return self.given


def test_rates_fetched_from_a_source_are_stored_all_or_none(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        stored = s.rates.fetch(
            Feed({("USD", EUR): "0.91", ("GBP", EUR): "1.16"}), on=date(2026, 3, 2)
        )
        assert sorted((r.base, r.source) for r in stored) == [("GBP", "ecb"), ("USD", "ecb")]
    refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.rates.fetch(Feed({("CHF", EUR): "1.05", ("JPY", EUR): -1}))),
        (ValidationError, lambda s: s.rates.fetch(Feed({"CHF": "1.05"}))),
    )


def test_finance_sets_rates_and_everyone_converts(crm: pycrm.CRM) -> None:
    people = staff(crm, rep="sales", fin="finance")
    with crm.session(actor=people.fin.id) as s:
        s.rates.set("USD", EUR, "0.9", on=date(2026, 1, 1))
    with crm.session(actor=people.rep.id) as s:
        assert s.rates.convert(Money.of("10", "USD"), EUR, on=date(2026, 1, 1)).amount == Money.of(
            "9", EUR
        )
    refused(crm, people.rep.id, (PermissionDenied, lambda s: s.rates.set("USD", EUR, "1.1")))


def test_a_conversion_is_refused_where_the_rate_is_hidden(connect_crm: ConnectFn) -> None:
    policy = DEFAULT_POLICY.extend(
        {
            "fields": [
                {
                    "resource": "exchange_rate",
                    "field": "rate",
                    "hidden": True,
                    "allowed": ["finance"],
                }
            ]
        }
    )
    crm = connect_crm(policy=policy)
    people = staff(crm, rep="sales")
    with crm.session(actor=crm.system_actor) as s:
        s.rates.set("USD", EUR, "0.9", on=date(2026, 1, 1))
    refused(
        crm, people.rep.id, (PermissionDenied, lambda s: s.rates.convert(Money.of("1", "USD"), EUR))
    )


# -- conversions, as properties ------------------------------------------------------

CURRENCIES = ("EUR", "USD", "JPY", "KWD", "CHF", "GBP")


@st.composite
def rates(draw: st.DrawFn) -> ExchangeRate:
    base, quote = draw(st.lists(st.sampled_from(CURRENCIES), min_size=2, max_size=2, unique=True))
    value = draw(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("10000"), places=6))
    stamp = {"created_at": NOW, "created_by": "system", "updated_at": NOW, "updated_by": "system"}
    return ExchangeRate(
        id="r1",
        tenant_id="t",
        base=base,
        quote=quote,
        rate=value,
        valid_on=date(2026, 1, 1),
        **stamp,
    )


@st.composite
def amounts(draw: st.DrawFn, currency: str) -> Money:
    # Up to 10 million of the currency's units: converted at up to 10,000 per
    # unit it stays below Money's largest amount (a larger result is refused).
    minor = draw(st.integers(min_value=-(10**9), max_value=10**9))
    return Money.from_minor(minor, currency)


@given(data=st.data(), rate=rates())
def test_converting_there_and_back_loses_at_most_the_coarser_minor_unit(
    data: st.DataObject, rate: ExchangeRate
) -> None:
    money = data.draw(amounts(rate.base))
    there = convert(money, rate)
    back = convert(there.amount, rate, inverted=True)
    # Half a minor unit of the target lost going there (worth 1/rate of the source),
    # half a minor unit of the source coming back.
    target_unit = Decimal(1).scaleb(-minor_units(rate.quote)) / rate.rate
    source_unit = Decimal(1).scaleb(-minor_units(rate.base))
    assert abs(back.amount.amount - money.amount) <= max(target_unit, source_unit)
    assert there.amount.currency == rate.quote
    assert back.amount.currency == rate.base


@given(data=st.data(), rate=rates())
def test_a_conversion_is_the_exact_product_rounded_half_even_to_the_targets_units(
    data: st.DataObject, rate: ExchangeRate
) -> None:
    money = data.draw(amounts(rate.base))
    exact = money.amount * rate.rate
    got = convert(money, rate).amount.amount
    unit = Decimal(1).scaleb(-minor_units(rate.quote))
    assert abs(got - exact) <= unit / 2
    if abs(got - exact) == unit / 2:  # a tie goes to the even neighbour
        assert int(got / unit) % 2 == 0


# -- price lists ---------------------------------------------------------------------


@pytest.fixture
def priced(system: Session) -> dict[str, str]:
    """A press priced on a standard list (with a break at 10) and a wholesale list."""
    press = system.products.create("PR-100", "Press")
    standard = system.price_lists.create("Standard EUR", EUR)
    wholesale = system.price_lists.create("Wholesale", EUR, customer_group="wholesale")
    dach = system.price_lists.create(
        "Wholesale DACH", EUR, customer_group="wholesale", region="DACH",
        valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31),
    )  # fmt: skip
    usd = system.price_lists.create("Standard USD", "USD")
    system.price_lists.set_price(standard.id, press.id, Money.of("100", EUR))
    system.price_lists.set_price(standard.id, press.id, Money.of("90", EUR), min_quantity=10)
    system.price_lists.set_price(wholesale.id, press.id, Money.of("80", EUR))
    system.price_lists.set_price(dach.id, press.id, Money.of("75", EUR))
    system.price_lists.set_price(usd.id, press.id, Money.of("110", "USD"))
    shop = system.customers.create("Shop GmbH")
    trader = system.customers.create("Trader AG", tags=["wholesale"], region="NORDICS")
    local = system.customers.create("Local AG", tags=["wholesale"], region="DACH")
    return {"press": press.id, "standard": standard.id, "dach": dach.id, "shop": shop.id,
            "trader": trader.id, "local": local.id}  # fmt: skip


def test_a_price_comes_from_the_most_specific_list_and_the_largest_break_reached(
    system: Session, priced: dict[str, str]
) -> None:
    price = system.price_lists.price
    day = date(2026, 5, 1)
    cases = [
        (1, "shop", EUR, "100.00", "Standard EUR"),
        (10, "shop", EUR, "90.00", "Standard EUR, from 10"),
        (Decimal("9.5"), "shop", EUR, "100.00", "Standard EUR"),
        (1, "trader", EUR, "80.00", "Wholesale"),
        (1, "local", EUR, "75.00", "Wholesale DACH"),
        (1, "shop", "USD", "110.00", "Standard USD"),
    ]
    for quantity, who, currency, amount, reason in cases:
        line = price(
            priced["press"], quantity=quantity, customer_id=priced[who], currency=currency, on=day
        )
        assert (str(line.unit_price.amount), line.reason) == (amount, reason), (quantity, who)
        assert (line.decided_by, line.quantity) == ("pycrm.pricing", Decimal(quantity))
    # Out of the DACH list's period, the wholesale list applies; an inactive list prices nothing.
    assert price(priced["press"], customer_id=priced["local"], currency=EUR,
                 on=date(2027, 1, 1)).reason == "Wholesale"  # fmt: skip
    system.price_lists.deactivate(priced["standard"])
    with pytest.raises(NotFound):
        price(priced["press"], customer_id=priced["shop"], currency=EUR, on=day)


def test_setting_a_break_again_replaces_its_price_and_prices_are_listed(
    system: Session, priced: dict[str, str]
) -> None:
    again = system.price_lists.set_price(priced["standard"], priced["press"], Money.of("95", EUR))
    assert (again.unit_price, again.version) == (Money.of("95", EUR), 2)
    listed = system.price_lists.prices(priced["standard"])
    assert [(p.min_quantity, str(p.unit_price.amount)) for p in listed] == [
        (1, "95.00"),
        (10, "90.00"),
    ]
    assert [pl.name for pl in system.price_lists.list()] == [
        "Standard EUR", "Standard USD", "Wholesale", "Wholesale DACH"
    ]  # fmt: skip


def test_bad_prices_and_lists_are_refused_by_name(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        press = s.products.create("PR-100", "Press")
        standard = s.price_lists.create("Standard EUR", EUR)
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.price_lists.set_price(standard.id, press.id, Money.of("1", "USD"))),
        (ValidationError, lambda s: s.price_lists.set_price(standard.id, press.id, Money.of("-1", EUR))),
        (ValidationError, lambda s: s.price_lists.set_price(standard.id, press.id, Money.of("1", EUR), min_quantity=0)),
        (ValidationError, lambda s: s.price_lists.create("Late", EUR, valid_from=date(2026, 2, 1), valid_until=date(2026, 1, 1))),
        (ValidationError, lambda s: s.price_lists.update(standard.id, currency="USD")),
        (ValidationError, lambda s: s.price_lists.price(press.id, quantity=0)),
        (ValidationError, lambda s: s.price_lists.price(press.id, quantity=1.5)),
        (DuplicateError, lambda s: s.price_lists.create("Standard EUR", "USD")),
        (NotFound, lambda s: s.price_lists.set_price(standard.id, "nope", Money.of("1", EUR))),
    )  # fmt: skip
    fields = [getattr(e, "field", None) for e in errors]
    assert fields[:7] == ["unit_price", "unit_price", "min_quantity", "valid_until", "currency",
                          "quantity", "quantity"]  # fmt: skip


def test_sales_reads_prices_and_sales_managers_set_them(crm: pycrm.CRM) -> None:
    people = staff(crm, rep="sales", boss=("sales", ["sales_manager"]))
    with crm.session(actor=people.boss.id) as s:
        press = s.products.create("PR-100", "Press")
        standard = s.price_lists.create("Standard EUR", EUR)
        s.price_lists.set_price(standard.id, press.id, Money.of("100", EUR))
    with crm.session(actor=people.rep.id) as s:
        assert s.price_lists.price(press.id, currency=EUR).unit_price == Money.of("100", EUR)
    refused(
        crm,
        people.rep.id,
        (PermissionDenied, lambda s: s.price_lists.set_price(standard.id, press.id, Money.of("1", EUR))),
        (PermissionDenied, lambda s: s.price_lists.create("Mine", EUR)),
    )  # fmt: skip


class ErpPrices:
    """An ERP that prices the products it manages itself."""

    def __init__(self, answer: object = None) -> None:
        self.answer = answer

    @pycrm.rules.hookimpl
    def pycrm_price_line(self, product: object, quantity: Decimal, currency: str | None) -> object:
        if self.answer is not None:
            return self.answer
        if getattr(product, "external_id", None) is None:
            return None
        return PriceLine(product.id, quantity, Money.of("42", EUR), reason="ERP")  # type: ignore[attr-defined]


def test_hook_pycrm_price_line(system: Session, priced: dict[str, str]) -> None:
    crm = system.crm
    erp_made = system.products.create("ERP-1", "Managed", external_id="erp-1")
    crm.plugins.register(ErpPrices(), name="erp")
    try:
        line = system.price_lists.price(erp_made.id)
        assert (line.unit_price, line.reason, line.decided_by) == (
            Money.of("42", EUR),
            "ERP",
            "erp",
        )
        # The plugin abstains for the press: the price lists decide.
        assert system.price_lists.price(priced["press"], currency=EUR).decided_by == "pycrm.pricing"
    finally:
        crm.plugins.unregister(name="erp")
    wrong = {
        "another product": PriceLine(priced["press"], Decimal(1), Money.of("1", EUR)),
        "another currency": PriceLine(erp_made.id, Decimal(1), Money.of("1", "USD")),
        "no line": Money.of("1", EUR),
    }
    for answer in wrong.values():  # keyed by what is wrong with each
        crm.plugins.register(ErpPrices(answer), name="erp")
        try:
            with pytest.raises(pycrm.errors.ConfigurationError, match="'erp'"):
                system.price_lists.price(erp_made.id, currency=EUR)
        finally:
            crm.plugins.unregister(name="erp")
