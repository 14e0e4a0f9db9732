"""Reports in the reporting currency, on memory, SQLite and PostgreSQL.

Every expected figure is worked out by hand in the comments, not copied from
a run. The rule under test (docs/analytics.md, "In the reporting currency"):
each currency's sum is converted once, at the rate valid on the report's rate
day, rounded half to even to the reporting currency's minor units, and the
converted sums are added.

The fixture, on the fake clock (today: 2026-01-05), reporting in EUR:

* rates: USD→EUR 0.92 from 2026-01-01 and 0.95 from 2026-06-01; EUR→JPY 160
  from 2026-01-01 (so JPY→EUR is its inverse, 0.00625); KWD→EUR 2.987 from
  2026-01-01.
* Sam: D1 1,000.00 EUR in ``proposal`` (50 %), expected 2026-02-15; D2
  1,000.00 USD in ``qualification`` (10 %), expected 2026-02-20; D3 150,004 JPY
  won, expected 2026-02-10. Quota for 2026-02: 2,000.00 USD.
* Kim: D4 1,234.567 KWD in ``negotiation`` (75 %), expected 2026-02-25; D5
  500.00 USD lost, expected 2026-03-05; D6 333.33 USD won, expected 2026-02-01.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm import Money
from pycrm.errors import NotFound, PermissionDenied, ValidationError
from pycrm.services.analytics import RateUsed
from support import eur, refused, staff


def build(crm: pycrm.CRM) -> SimpleNamespace:
    p = staff(crm, sam="sales", kim="sales", fin="finance")
    with crm.session(actor=p.fin.id) as s:
        s.rates.set("USD", "EUR", Decimal("0.92"), on=date(2026, 1, 1))
        s.rates.set("USD", "EUR", "0.95", on=date(2026, 6, 1))
        s.rates.set("EUR", "JPY", "160", on=date(2026, 1, 1))
        s.rates.set("KWD", "EUR", "2.987", on=date(2026, 1, 1))
    with crm.session(actor=crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")

        def deal(owner: Any, amount: str, currency: str, close: date, **more: Any) -> str:
            return s.deals.create(
                f"{amount} {currency}", customer_id=acme.id, owner_id=owner.id,
                amount=Money.of(amount, currency), expected_close=close, **more,
            ).id  # fmt: skip

        deal(p.sam, "1000", "EUR", date(2026, 2, 15), stage="proposal")
        deal(p.sam, "1000", "USD", date(2026, 2, 20))
        s.deals.win(deal(p.sam, "150004", "JPY", date(2026, 2, 10)))
        deal(p.kim, "1234.567", "KWD", date(2026, 2, 25), stage="negotiation")
        s.deals.lose(deal(p.kim, "500", "USD", date(2026, 3, 5)), "price")
        s.deals.win(deal(p.kim, "333.33", "USD", date(2026, 2, 1)))
        s.analytics.set_quota("2026-02", ("2000", "USD"), owner_id=p.sam.id)
    p.acme = acme
    return p


@pytest.fixture
def world(crm: pycrm.CRM) -> SimpleNamespace:
    return build(crm)


USD_092 = RateUsed("USD", Decimal("0.92"), date(2026, 1, 1))
USD_095 = RateUsed("USD", Decimal("0.95"), date(2026, 6, 1))
JPY = RateUsed("JPY", Decimal("0.00625"), date(2026, 1, 1), inverted=True)
KWD = RateUsed("KWD", Decimal("2.987"), date(2026, 1, 1))
SAME = RateUsed("EUR", Decimal(1), None)


def figures(row: Any) -> tuple[Any, ...]:
    return (row.currency, row.pipeline, row.weighted, row.won, row.quota)


def test_the_forecast_in_the_reporting_currency_matches_the_hand_figures(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        assert s.rates.reporting_currency == "EUR"
        rows = {(r.period, r.owner_id): r for r in s.analytics.forecast(in_reporting_currency=True)}
        quarters = s.analytics.forecast(period="quarter", in_reporting_currency=True)
    sam, kim = world.sam.id, world.kim.id
    assert set(rows) == {("2026-02", sam), ("2026-02", kim), ("2026-03", kim)}
    # Sam, February, per currency then converted:
    #   EUR: pipeline 1,000.00, weighted 500.00, won 0
    #   USD: pipeline 1,000.00 × 0.92 = 920.00; weighted 100.00 × 0.92 = 92.00
    #   JPY: won 150,004 / 160 = 937.525 → 937.52 (half to even; half up would give .53)
    # Quota 2,000.00 USD × 0.92 = 1,840.00.
    s_feb = rows[("2026-02", sam)]
    assert figures(s_feb) == ("EUR", eur("1920.00"), eur("592.00"), eur("937.52"), eur("1840.00"))
    assert s_feb.attainment == pytest.approx((937.52 + 592) / 1840)
    assert s_feb.rates == (SAME, JPY, USD_092)
    # Kim, February:
    #   KWD: pipeline 1,234.567 × 2.987 = 3,687.651629 → 3,687.65; weighted first in
    #        KWD: 1,234.567 × 75 % = 925.92525 → 925.925, × 2.987 = 2,765.737975 → 2,765.74
    #   USD: won 333.33 × 0.92 = 306.6636 → 306.66
    k_feb = rows[("2026-02", kim)]
    assert figures(k_feb) == ("EUR", eur("3687.65"), eur("2765.74"), eur("306.66"), None)
    assert k_feb.rates == (KWD, USD_092)
    # Kim, March: only the lost D5, which counts nowhere, but its currency's rate is named.
    k_mar = rows[("2026-03", kim)]
    assert figures(k_mar) == ("EUR", eur("0"), eur("0"), eur("0"), None)
    assert k_mar.rates == (USD_092,)
    # Q1 per owner: Kim's February and March together; Sam has no quota for the quarter.
    assert [(r.owner_id, r.pipeline, r.weighted, r.won, r.quota) for r in quarters] == sorted(
        [
            (sam, eur("1920.00"), eur("592.00"), eur("937.52"), None),
            (kim, eur("3687.65"), eur("2765.74"), eur("306.66"), None),
        ],
        key=lambda row: row[0],
    )


def test_the_default_forecast_stays_one_row_per_currency(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        rows = {(r.period, r.owner_id, r.currency): r for r in s.analytics.forecast()}
    sam, kim = world.sam.id, world.kim.id
    assert set(rows) == {
        ("2026-02", sam, "EUR"), ("2026-02", sam, "USD"), ("2026-02", sam, "JPY"),
        ("2026-02", kim, "KWD"), ("2026-02", kim, "USD"), ("2026-03", kim, "USD"),
    }  # fmt: skip
    usd = rows[("2026-02", sam, "USD")]
    assert (usd.pipeline, usd.weighted, usd.quota, usd.rates) == (
        Money.of("1000", "USD"), Money.of("100", "USD"), Money.of("2000", "USD"), (),
    )  # fmt: skip
    assert rows[("2026-02", sam, "EUR")].quota is None  # the quota is in USD
    assert rows[("2026-02", kim, "KWD")].weighted == Money.of("925.925", "KWD")


def test_the_rate_day_picks_the_rates(crm: pycrm.CRM, world: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        today = s.analytics.forecast(owner_id=world.sam.id, in_reporting_currency=True)
        january = s.analytics.forecast(
            owner_id=world.sam.id, in_reporting_currency=True, rates_on=date(2026, 1, 5)
        )
        july = s.analytics.forecast(
            owner_id=world.sam.id, in_reporting_currency=True, rates_on=date(2026, 7, 1)
        )
    assert today == january  # the default day is today by the CRM's clock
    (row,) = july
    # From 1 June USD is 0.95: pipeline 1,000 + 950.00; weighted 500 + 95.00; quota 1,900.00.
    assert figures(row) == ("EUR", eur("1950.00"), eur("595.00"), eur("937.52"), eur("1900.00"))
    assert row.rates == (SAME, JPY, USD_095)


def test_a_missing_rate_is_not_found_naming_the_currency(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        s.deals.create(
            "Pounds", customer_id=world.acme.id, owner_id=world.kim.id,
            amount=Money.of("10", "GBP"), expected_close=date(2026, 4, 1),
        )  # fmt: skip
    (early, gbp) = refused(
        crm,
        crm.system_actor,
        # before 1 January no rate exists at all
        (NotFound, lambda s: s.analytics.forecast(
            owner_id=world.sam.id, in_reporting_currency=True, rates_on=date(2025, 12, 31))),
        (NotFound, lambda s: s.analytics.forecast(owner_id=world.kim.id, in_reporting_currency=True)),
    )  # fmt: skip
    assert isinstance(early, NotFound)
    assert isinstance(gbp, NotFound)
    assert early.resource == gbp.resource == "exchange_rate"
    assert "2025-12-31" in early.id
    assert gbp.id.startswith("GBP/EUR")
    with crm.session(actor=crm.system_actor) as s:  # per currency, no rate is needed
        assert {r.currency for r in s.analytics.forecast(owner_id=world.kim.id)} == {
            "KWD", "USD", "GBP",
        }  # fmt: skip


def test_another_reporting_currency_converts_the_other_way(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        s.settings.set("reporting_currency", "USD")
        with pytest.raises(NotFound) as missing:  # JPY has no rate to or from USD yet
            s.analytics.forecast(owner_id=world.sam.id, in_reporting_currency=True)
        s.rates.set("JPY", "USD", "0.0065", on=date(2026, 1, 1))
        (row,) = s.analytics.forecast(owner_id=world.sam.id, in_reporting_currency=True)
    assert missing.value.id.startswith("JPY/USD")
    # EUR → USD: only USD → EUR 0.92 is stored, so its inverse, to 18 significant
    # digits: 1 / 0.92 = 1.08695652173913043(478…).
    #   EUR: pipeline 1,000 × that = 1,086.956… → 1,086.96; weighted 500 → 543.478… → 543.48
    #   USD: pipeline 1,000.00, weighted 100.00, as they are
    #   JPY: won 150,004 × 0.0065 = 975.026 → 975.03
    # The quota is in USD already.
    usd = Money.of
    assert figures(row) == (
        "USD", usd("2086.96", "USD"), usd("643.48", "USD"), usd("975.03", "USD"),
        usd("2000", "USD"),
    )  # fmt: skip
    assert row.rates == (
        RateUsed("EUR", Decimal("1.08695652173913043"), date(2026, 1, 1), inverted=True),
        RateUsed("JPY", Decimal("0.0065"), date(2026, 1, 1)),
        RateUsed("USD", Decimal(1), None),
    )


def test_win_rate_in_the_reporting_currency(crm: pycrm.CRM, world: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        by_owner = {
            r.group: r for r in s.analytics.win_rate(by="owner", in_reporting_currency=True)
        }
        (overall,) = s.analytics.win_rate(in_reporting_currency=True)
        (plain,) = s.analytics.win_rate()
    sam, kim = by_owner[world.sam.id], by_owner[world.kim.id]
    # Sam: D3 won, 150,004 JPY → 937.52. Kim: D6 won 333.33 USD → 306.66; D5 lost
    # 500.00 USD → 460.00.
    assert (sam.won, sam.lost, sam.won_amount, sam.lost_amount) == (1, 0, eur("937.52"), eur("0"))
    assert sam.rates == (JPY,)
    assert (kim.won, kim.lost, kim.won_amount, kim.lost_amount) == (
        1, 1, eur("306.66"), eur("460.00"),
    )  # fmt: skip
    assert kim.rates == (USD_092,)
    # All together: USD won and lost are each summed before converting; the counts and
    # the sales cycle are those of the report without conversion.
    assert (overall.won, overall.lost, overall.won_amount, overall.lost_amount) == (
        2, 1, eur("1244.18"), eur("460.00"),
    )  # fmt: skip
    assert overall.rates == (JPY, USD_092)
    assert (plain.won, plain.lost, plain.avg_cycle_days) == (2, 1, overall.avg_cycle_days)
    assert (plain.won_amount, plain.lost_amount, plain.rates) == (None, None, ())


def test_each_currency_is_summed_before_it_is_converted(crm: pycrm.CRM) -> None:
    p = staff(crm, sam="sales")
    with crm.session(actor=crm.system_actor) as s:
        s.rates.set("EUR", "JPY", "160", on=date(2026, 1, 1))
        acme = s.customers.create("Acme GmbH")
        for _ in range(2):
            s.deals.win(
                s.deals.create(
                    "Bolts", customer_id=acme.id, owner_id=p.sam.id,
                    amount=Money.of("12", "JPY"), expected_close=date(2026, 2, 1),
                ).id
            )  # fmt: skip
        (row,) = s.analytics.forecast(in_reporting_currency=True)
        (rate,) = s.analytics.win_rate(in_reporting_currency=True)
    # 12 + 12 = 24 JPY → 24 / 160 = 0.15 EUR. Converting each deal would give
    # 0.075 → 0.08 twice, 0.16.
    assert row.won == rate.won_amount == eur("0.15")


def test_sources_revenue_in_every_currency(crm: pycrm.CRM) -> None:
    p = staff(crm, sam="sales", fin="finance")
    with crm.session(actor=p.fin.id) as s:
        s.rates.set("EUR", "JPY", "160", on=date(2026, 1, 1))
        s.rates.set("USD", "EUR", "0.92", on=date(2026, 1, 1))
    with crm.session(actor=crm.system_actor) as s:
        s.campaigns.create("Spring", channel="event", budget=("400", "USD"))
        one = s.leads.capture("Ann Alt", source="fair", campaign="Spring", email="a@a.example")
        two = s.leads.capture("Ben Bau", source="fair", email="b@b.example")
        s.leads.capture("Cem Cay", source="web", email="c@c.example")
        for lead, amount in ((one, Money.of("1000", "EUR")), (two, Money.of("100000", "JPY"))):
            s.leads.assign(lead.id, p.sam.id)
            s.leads.mark_contacted(lead.id)
            s.leads.qualify(lead.id)
            *_, deal = s.leads.convert(lead.id, amount=amount, expected_close=date(2026, 2, 1))
            s.deals.win(deal.id)
    with crm.session(actor=crm.system_actor) as s:
        plain = {r.source: r for r in s.analytics.sources()}
        converted = {r.source: r for r in s.analytics.sources(in_reporting_currency=True)}
        campaigns = {
            r.source: r for r in s.analytics.sources(by="campaign", in_reporting_currency=True)
        }
    both = (Money.of("1000", "EUR"), Money.of("100000", "JPY"))
    # Per currency: revenue is the first currency by code, every one in revenues.
    fair = plain["fair"]
    assert (fair.won_deals, fair.currency, fair.revenue, fair.revenues) == (
        2,
        "EUR",
        eur("1000"),
        both,
    )
    # Converted: 1,000.00 + 100,000 / 160 = 625.00 → 1,625.00 EUR.
    fair = converted["fair"]
    assert (fair.won_deals, fair.currency, fair.revenue, fair.revenues) == (
        2, "EUR", eur("1625.00"), both,
    )  # fmt: skip
    assert fair.rates == (SAME, JPY)
    web = converted["web"]
    assert (web.leads, web.currency, web.revenue, web.revenues, web.rates) == (
        1,
        None,
        None,
        (),
        (),
    )
    # Spring: Ann's 1,000 EUR for a budget of 400 USD × 0.92 = 368.00 EUR.
    spring = campaigns["Spring"]
    assert (spring.revenue, spring.cost, spring.cost_per_won_deal) == (
        eur("1000"), eur("368.00"), eur("368.00"),
    )  # fmt: skip
    assert spring.rates == (SAME, USD_092)
    assert campaigns[None].revenue == eur("625.00")  # Ben's deal came without a campaign


def test_a_sales_rep_reports_in_the_reporting_currency_under_the_default_policy(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        everyone = {
            (r.period, r.owner_id): r for r in s.analytics.forecast(in_reporting_currency=True)
        }
    with crm.session(actor=world.sam.id) as s:
        mine = s.analytics.forecast(owner_id=world.sam.id, in_reporting_currency=True)
    assert mine == [everyone[("2026-02", world.sam.id)]]


def test_hidden_rates_refuse_the_conversion_but_not_the_report_per_currency(
    connect_crm: Any,
) -> None:
    from pycrm.domain.permissions import DEFAULT_POLICY, Policy

    data = DEFAULT_POLICY.to_dict()
    data["fields"].append(
        {"resource": "exchange_rate", "field": "rate", "hidden": True, "allowed": ["finance"]}
    )
    crm = connect_crm(policy=Policy.from_dict(data))
    w = build(crm)
    refused(
        crm,
        w.sam.id,
        (PermissionDenied, lambda s: s.analytics.forecast(in_reporting_currency=True)),
        (PermissionDenied, lambda s: s.analytics.win_rate(in_reporting_currency=True)),
    )
    with crm.session(actor=w.sam.id) as s:
        assert s.analytics.forecast()  # per currency: no rate is shown
    with crm.session(actor=w.fin.id) as s:
        assert s.analytics.win_rate(in_reporting_currency=True)[0].won_amount is not None


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.analytics.forecast(in_reporting_currency="yes"), "in_reporting_currency"),
        (lambda s: s.analytics.win_rate(in_reporting_currency=1), "in_reporting_currency"),
        (lambda s: s.analytics.forecast(rates_on=date(2026, 1, 1)), "rates_on"),
        (
            lambda s: s.analytics.sources(in_reporting_currency=True, rates_on="2026-01-01"),
            "rates_on",
        ),
    ],
)
def test_bad_currency_arguments_are_refused_naming_them(
    crm: pycrm.CRM, call: Any, field: str
) -> None:
    (error,) = refused(crm, crm.system_actor, (ValidationError, call))
    assert isinstance(error, ValidationError)
    assert error.field == field


# -- the property: the converted forecast is the hand computation --------------------------------

CURRENCIES = ("EUR", "USD", "JPY", "KWD")
STAGES = ("qualification", "needs_analysis", "proposal", "negotiation")
DAY0 = date(2026, 1, 1)

deals_st = st.lists(
    st.tuples(
        st.integers(0, 10**9),  # minor units
        st.sampled_from(CURRENCIES),
        st.sampled_from([*STAGES, "won", "lost"]),
        st.integers(0, 120),  # expected close: days after DAY0
        st.booleans(),  # owner: Sam or Kim
    ),
    min_size=1,
    max_size=7,
)
rates_st = st.lists(
    st.tuples(
        st.sampled_from(CURRENCIES[1:]),
        st.booleans(),  # stored the other way (EUR → currency)
        st.decimals(Decimal("0.001"), Decimal("500"), places=4),
        st.integers(0, 150),  # valid from: days after DAY0
    ),
    min_size=2,
    max_size=8,
    unique_by=lambda r: (r[0], r[1], r[3]),
)
_tenants = itertools.count()


def hand_rate(
    stored: list[tuple[str, bool, Decimal, int]], currency: str, day: date
) -> Decimal | None:
    """The rate from ``currency`` to EUR on ``day``: the pair's latest, else the opposite's inverse."""
    if currency == "EUR":
        return Decimal(1)
    for inverse in (False, True):
        valid = [
            (d, r)
            for c, inv, r, d in stored
            if c == currency and inv == inverse and DAY0 + timedelta(d) <= day
        ]
        if valid:
            rate = max(valid)[1]
            if not inverse:
                return rate
            with localcontext() as exact:
                exact.prec = 18
                return +(Decimal(1) / rate).normalize()
    return None


def cents(amount: Decimal, places: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


PLACES = {"EUR": 2, "USD": 2, "JPY": 0, "KWD": 3}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(deals=deals_st, stored=rates_st, day=st.integers(20, 200), by_quarter=st.booleans())
def test_the_converted_forecast_is_the_hand_computation(
    crm: pycrm.CRM,
    deals: list[tuple[int, str, str, int, bool]],
    stored: list[tuple[str, bool, Decimal, int]],
    day: int,
    by_quarter: bool,
) -> None:
    tenant = f"prop-{next(_tenants)}"
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        people = [s.org.create_user(n, f"{n}@corp.example", "sales").id for n in ("sam", "kim")]
        acme = s.customers.create("Acme GmbH")
        for currency, inverse, rate, valid in stored:
            pair = ("EUR", currency) if inverse else (currency, "EUR")
            s.rates.set(*pair, rate, on=DAY0 + timedelta(valid))
        records = []
        for minor, currency, stage, close, kim in deals:
            made = s.deals.create(
                "Deal", customer_id=acme.id, owner_id=people[kim],
                amount=Money.from_minor(minor, currency), expected_close=DAY0 + timedelta(close),
                stage=stage if stage in STAGES else None,
            )  # fmt: skip
            if stage == "won":
                made = s.deals.win(made.id)
            elif stage == "lost":
                made = s.deals.lose(made.id, "price")
            records.append(made)
    on = DAY0 + timedelta(day)
    # By hand, over the records: per (period, owner, currency) the open amounts, their
    # amount × probability and the won amounts; the weighted sum rounded to the
    # currency's minor units; each sum converted once and rounded to cents; then added.
    sums: dict[tuple[str, str | None, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for d in records:
        assert d.expected_close is not None
        close = d.expected_close
        period = f"{close.year}-Q{(close.month - 1) // 3 + 1}" if by_quarter else f"{close:%Y-%m}"
        figures = sums[(period, d.owner_id, d.amount.currency)]
        if d.status.value == "open":
            figures[0] += d.amount.amount
            figures[1] += d.amount.amount * d.probability / 100
        elif d.status.value == "won":
            figures[2] += d.amount.amount
    missing = {c for (_, _, c) in sums if hand_rate(stored, c, on) is None}
    expected: dict[tuple[str, str | None], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for (period, owner, currency), (pipeline, weighted, won) in sums.items():
        if missing:
            break
        rate = hand_rate(stored, currency, on)
        assert rate is not None
        weighted = cents(weighted, PLACES[currency])
        total = expected[(period, owner)]
        for i, amount in enumerate((pipeline, weighted, won)):
            total[i] += cents(amount * rate, 2)
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        period = "quarter" if by_quarter else "month"
        event("a rate is missing" if missing else "converted")
        if missing:
            with pytest.raises(NotFound) as error:
                s.analytics.forecast(period=period, in_reporting_currency=True, rates_on=on)
            assert error.value.id[:3] in missing
            return
        rows = s.analytics.forecast(period=period, in_reporting_currency=True, rates_on=on)
    got = {
        (r.period, r.owner_id): [r.pipeline.amount, r.weighted.amount, r.won.amount] for r in rows
    }
    assert got == dict(expected)
    assert {r.currency for r in rows} == {"EUR"}
