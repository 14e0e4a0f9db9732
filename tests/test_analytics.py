"""Analytics figures on one small, hand-built company, on memory, SQLite and PostgreSQL.

Every expected figure below is worked out by hand from the fixture (the
arithmetic is in the comments), not copied from a run, and the same
assertions run on all three backends: the memory adapter's Python
arithmetic and the SQL adapters' GROUP BY queries must agree with the hand
figures, and so with each other.

The fixture, on the fake clock (t0 = Monday 2026-01-05 09:00 UTC):

* leads: Ann and Ben (source ``fair``, campaign ``Spring``, budget 400 EUR),
  Cem and Dan (source ``web``). Ann → Sam and Ben → Kim are contacted,
  qualified and converted; Cem → Sam is disqualified; Dan stays new.
* deals: D1 Ann's (1,000 EUR, expected 2026-02-15, Sam) won at t0 + 3 days;
  D2 Ben's (500 EUR, expected 2026-02-20, Kim) open in ``qualification``
  (10 %); D3 (2,000 EUR, expected 2026-03-10, Kim) lost at t0 + 3 days;
  D4 (300 EUR, expected 2026-02-28, Sam) open in ``proposal`` (50 %).
  Sam's quota for 2026-02 is 2,000 EUR.
* D1's contract, signed at t0 + 3 days, is paid in two receivables of 500 EUR
  due 2026-01-10 and 2026-02-10; 100 EUR of the first is paid.
* tickets: T1 (high) opened at t0 + 3 days and given to Sue, answered 2 h later, resolved
  5 h after opening, rated 4; T2 (normal) opened 5 h after T1, never
  answered, escalated 9 h later, past its 8 h first-response target.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
from pycrm.errors import PermissionDenied, ValidationError
from pycrm.testing import FakeClock
from support import eur, refused, staff

ConnectFn = Callable[..., pycrm.CRM]


def build(crm: pycrm.CRM, clock: FakeClock) -> SimpleNamespace:
    p = staff(crm, sam="sales", kim="sales", fin="finance", sue="service")
    with crm.session(actor=crm.system_actor) as s:
        s.campaigns.create("Spring", channel="event", budget=("400", "EUR"))
        ann = s.leads.capture("Ann Alt", source="fair", campaign="Spring", email="ann@a.example")
        ben = s.leads.capture("Ben Bau", source="fair", campaign="Spring", email="ben@b.example")
        cem = s.leads.capture("Cem Cay", source="web", email="cem@c.example")
        s.leads.capture("Dan Dorn", source="web", email="dan@d.example")
        for lead, owner in ((ann, p.sam), (ben, p.kim), (cem, p.sam)):
            s.leads.assign(lead.id, owner.id)
        for lead in (ann, ben):
            s.leads.mark_contacted(lead.id)
            s.leads.qualify(lead.id)
        s.leads.disqualify(cem.id, "no budget")
        customer, _, d1 = s.leads.convert(
            ann.id, amount=eur("1000"), expected_close=date(2026, 2, 15)
        )
        s.leads.convert(ben.id, amount=eur("500"), expected_close=date(2026, 2, 20))
        d3 = s.deals.create(
            "Lathe", customer_id=customer.id, amount=eur("2000"),
            expected_close=date(2026, 3, 10), owner_id=p.kim.id,
        )  # fmt: skip
        s.deals.create(
            "Spare parts", customer_id=customer.id, amount=eur("300"),
            expected_close=date(2026, 2, 28), owner_id=p.sam.id, stage="proposal",
        )  # fmt: skip
        s.analytics.set_quota("2026-02", ("2000", "EUR"), owner_id=p.sam.id)
    clock.advance(days=3)
    with crm.session(actor=crm.system_actor) as s:
        s.deals.win(d1.id)
        s.deals.lose(d3.id, "price")
        draft = s.contracts.draft(d1.id, instalments=2, first_due=date(2026, 1, 10))
        contract = s.contracts.sign(s.contracts.submit(draft.id).id)
        first = s.receivables.list(contract_id=contract.id)[0]
        s.receivables.record_payment(first.id, eur("100"), reference="TX-1")
        t1 = s.tickets.open("Jam", channel="phone", customer_id=customer.id, priority="high")
        s.tickets.assign(t1.id, p.sue.id)
    clock.advance(hours=2)
    with crm.session(actor=p.sue.id) as s:
        s.tickets.reply(t1.id, "Please restart it.")
    clock.advance(hours=3)
    with crm.session(actor=p.sue.id) as s:
        s.tickets.resolve(t1.id)
    with crm.session(actor=crm.system_actor) as s:
        s.tickets.rate(t1.id, 4)
        s.tickets.open("Noise", channel="email", customer_id=customer.id, priority="normal")
    clock.advance(hours=9)
    with crm.session(actor=crm.system_actor) as s:
        s.tickets.escalate()
    p.customer = customer
    return p


@pytest.fixture
def company(crm: pycrm.CRM, fake_clock: FakeClock) -> SimpleNamespace:
    return build(crm, fake_clock)


def test_funnel_per_source_and_campaign(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        by_source = {r.group: r for r in s.analytics.funnel(by="source")}
        by_campaign = [
            (r.group, r.captured, r.converted, r.won) for r in s.analytics.funnel(by="campaign")
        ]
        (overall,) = s.analytics.funnel()
    # (captured, assigned, contacted, qualified, converted, disqualified, won)
    fair, web = by_source["fair"], by_source["web"]
    assert attrs_of(fair) == (2, 2, 2, 2, 2, 0, 1)  # Ann and Ben all the way; Ann's deal won
    assert attrs_of(web) == (2, 0, 0, 0, 0, 1, 0)  # Cem disqualified (no longer counts), Dan new
    assert (fair.conversion_rate, web.conversion_rate) == (1.0, 0.0)
    assert set(by_source) == {"fair", "web"}
    assert by_campaign == [("Spring", 2, 2, 1), (None, 2, 0, 0)]  # no campaign sorts last
    assert attrs_of(overall) == (4, 2, 2, 2, 2, 1, 1)
    assert overall.conversion_rate == 0.5


def attrs_of(row: Any) -> tuple[int, ...]:
    return (
        row.captured, row.assigned, row.contacted, row.qualified,
        row.converted, row.disqualified, row.won,
    )  # fmt: skip


def test_funnel_by_period_and_the_period_window(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        assert [(r.group, r.captured) for r in s.analytics.funnel(by="period")] == [("2026-01", 4)]
        later = s.analytics.funnel(since=company_start() + timedelta(days=1))
        assert [r.captured for r in later] == [0]  # every lead was captured at t0


def company_start() -> Any:
    return FakeClock().now()


def test_forecast_against_quota(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        rows = {(r.period, r.owner_id): r for r in s.analytics.forecast()}
    sam, kim = company.sam.id, company.kim.id
    assert set(rows) == {("2026-02", sam), ("2026-02", kim), ("2026-03", kim)}
    # Sam in February: D4 open (300 at 50 % = 150), D1 won (1,000); quota 2,000.
    s_feb = rows[("2026-02", sam)]
    assert (s_feb.pipeline, s_feb.weighted, s_feb.won) == (eur("300"), eur("150"), eur("1000"))
    assert s_feb.quota == eur("2000")
    assert s_feb.attainment == pytest.approx((1000 + 150) / 2000)  # 0.575
    # Kim in February: D2 open (500 at 10 % = 50); no quota.
    k_feb = rows[("2026-02", kim)]
    assert (k_feb.pipeline, k_feb.weighted, k_feb.won) == (eur("500"), eur("50"), eur("0"))
    assert (k_feb.quota, k_feb.attainment) == (None, None)
    # Kim in March: only the lost D3, which counts nowhere.
    k_mar = rows[("2026-03", kim)]
    assert (k_mar.pipeline, k_mar.weighted, k_mar.won) == (eur("0"), eur("0"), eur("0"))
    with crm.session(actor=crm.system_actor) as s:
        quarters = s.analytics.forecast(period="quarter", owner_id=kim)
    # Kim's Q1: D2 and D3 together, 500 open (50 weighted).
    assert [(r.period, r.pipeline, r.weighted) for r in quarters] == [
        ("2026-Q1", eur("500"), eur("50"))
    ]


def test_win_rate_and_sales_cycle(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        by_owner = {r.group: r for r in s.analytics.win_rate(by="owner")}
        (overall,) = s.analytics.win_rate()
    sam, kim = by_owner[company.sam.id], by_owner[company.kim.id]
    # D1 opened at t0 and won 3 days later; D3 lost.
    assert (sam.won, sam.lost, sam.avg_cycle_days, sam.win_rate) == (1, 0, 3.0, 1.0)
    assert (kim.won, kim.lost, kim.avg_cycle_days, kim.win_rate) == (0, 1, None, 0.0)
    assert (overall.won, overall.lost, overall.avg_cycle_days, overall.win_rate) == (1, 1, 3.0, 0.5)


def test_campaign_and_source_effectiveness(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        campaigns = {r.source: r for r in s.analytics.sources(by="campaign")}
        sources = {r.source: r for r in s.analytics.sources(by="source")}
    spring = campaigns["Spring"]
    # Two leads, both converted, one won deal of 1,000 EUR for a 400 EUR budget.
    assert (spring.leads, spring.converted, spring.won_deals) == (2, 2, 1)
    assert (spring.revenue, spring.cost, spring.cost_per_won_deal) == (
        eur("1000"),
        eur("400"),
        eur("400"),
    )
    assert spring.conversion_rate == 1.0
    none = campaigns[None]  # Cem and Dan came without a campaign and won nothing
    assert (none.leads, none.converted, none.won_deals, none.revenue, none.cost) == (
        2, 0, 0, None, None,
    )  # fmt: skip
    assert set(sources) == {"fair", "web"}
    assert (sources["fair"].won_deals, sources["fair"].revenue) == (1, eur("1000"))
    assert (sources["web"].leads, sources["web"].converted, sources["web"].revenue) == (2, 0, None)


def test_a_won_deal_from_a_source_no_lead_has_still_counts_its_revenue(
    crm: pycrm.CRM, company: SimpleNamespace
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        deal = s.deals.create(
            "Walk-in", customer_id=company.customer.id, amount=eur("700"), source="referral"
        )
        s.deals.win(deal.id)
        sources = {r.source: r for r in s.analytics.sources(by="source")}
    assert set(sources) == {"fair", "web", "referral"}
    referral = sources["referral"]
    assert (referral.leads, referral.converted, referral.won_deals, referral.revenue) == (
        0, 0, 1, eur("700"),
    )  # fmt: skip
    assert referral.conversion_rate == 0.0  # no lead to convert


def test_receivables_aging(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        march = [
            (r.bucket, r.count, r.outstanding) for r in s.analytics.aging(as_of=date(2026, 3, 1))
        ]
        early = [
            (r.bucket, r.count, r.outstanding) for r in s.analytics.aging(as_of=date(2026, 1, 9))
        ]
        late = [(r.bucket, r.count) for r in s.analytics.aging(as_of=date(2026, 6, 1))]
    # 1 March: the first (due 10 Jan) is 50 days late with 400 left; the second
    # (due 10 Feb) 19 days late with 500 left.
    assert march == [("0-30", 1, eur("500")), ("31-60", 1, eur("400"))]
    assert early == [("current", 2, eur("900"))]  # 9 January: nothing due yet
    assert late == [("90+", 2)]  # 1 June: 142 and 111 days late


def test_rfm(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        (row,) = s.analytics.rfm(as_of=date(2026, 3, 1))
    # One buyer: one signed contract of 1,000 EUR, signed 8 January, 52 days before 1 March.
    assert row.customer_id == company.customer.id
    assert (row.recency_days, row.frequency, row.monetary) == (52, 1, eur("1000"))
    assert (row.r, row.f, row.m, row.segment) == (1, 1, 1, "hibernating")


def test_rfm_counts_each_currency_as_money_not_as_minor_units(crm: pycrm.CRM) -> None:
    """Acme bought for 1,000 EUR and 150,000 JPY, Bolt for 1,200 EUR (signed at t0).

    Their frequency counts both purchases; the monetary value counts the
    reporting currency (EUR) only, or, converted at 0.0062 EUR per yen, 1,930 EUR.
    (Summed as minor units, Acme's purchases made 1,600.00 "EUR".)
    """
    with crm.session(actor=crm.system_actor) as s:
        s.rates.set("JPY", "EUR", "0.0062", on=date(2026, 1, 1))
        buyers = {name: s.customers.create(name).id for name in ("Acme", "Bolt")}
        for name, amount, currency in (
            ("Acme", "1000", "EUR"),
            ("Acme", "150000", "JPY"),
            ("Bolt", "1200", "EUR"),
        ):
            deal = s.deals.create(
                name, customer_id=buyers[name], amount=pycrm.Money.of(amount, currency)
            )
            s.deals.win(deal.id)
            s.contracts.sign(s.contracts.submit(s.contracts.draft(deal.id).id).id)
        plain = {r.customer_id: r for r in s.analytics.rfm(as_of=date(2026, 3, 1))}
        converted = {
            r.customer_id: r
            for r in s.analytics.rfm(as_of=date(2026, 3, 1), in_reporting_currency=True)
        }
    acme, bolt = buyers["Acme"], buyers["Bolt"]
    assert (plain[acme].frequency, plain[acme].monetary) == (2, eur("1000"))
    assert (plain[bolt].frequency, plain[bolt].monetary) == (1, eur("1200"))
    assert (plain[acme].m, plain[bolt].m) == (1, 3)  # two buyers: quintile ranks 1 and 3
    assert (converted[acme].monetary, converted[bolt].monetary) == (eur("1930"), eur("1200"))
    assert (converted[acme].m, converted[bolt].m) == (3, 1)


def test_aging_in_the_reporting_currency_adds_each_buckets_currencies_converted(
    crm: pycrm.CRM, company: SimpleNamespace
) -> None:
    """The fixture's two unpaid EUR receivables, and a 3,000 USD contract in two
    instalments due 10 January and 10 April: on 1 March the first is 50 days
    late (0-30 holds the fixture's 500 EUR), the second not yet due."""
    with crm.session(actor=crm.system_actor) as s:
        s.rates.set("EUR", "USD", "1.25", on=date(2026, 1, 1))  # used inverted: 0.8
        deal = s.deals.create(
            "US order", customer_id=company.customer.id, amount=pycrm.Money.of("3000", "USD")
        )
        s.deals.win(deal.id)
        contract = s.contracts.draft(
            deal.id, instalments=2, first_due=date(2026, 1, 10), every_months=3
        )
        s.contracts.sign(s.contracts.submit(contract.id).id)
        rows = s.analytics.aging(as_of=date(2026, 3, 1), in_reporting_currency=True)
        plain = s.analytics.aging(as_of=date(2026, 3, 1))
    assert [(r.bucket, r.currency, r.count, r.outstanding) for r in rows] == [
        ("current", "EUR", 1, eur("1200")),  # 1,500 USD × 0.8
        ("0-30", "EUR", 1, eur("500")),
        ("31-60", "EUR", 2, eur("1600")),  # 400 EUR and 1,500 USD × 0.8
    ]
    assert [(r.currency, str(r.rate), r.inverted) for r in rows[-1].rates] == [
        ("EUR", "1", False),
        ("USD", "0.8", True),
    ]
    assert len(plain) == 4  # per currency: 31-60 has a row for each


def test_service_metrics(crm: pycrm.CRM, company: SimpleNamespace) -> None:
    with crm.session(actor=crm.system_actor) as s:
        rows = {r.group: r for r in s.analytics.service(by="priority")}
        (overall,) = s.analytics.service()
    high, normal = rows["high"], rows["normal"]
    assert (high.tickets, high.resolved, high.breaches, high.rated, high.avg_csat) == (
        1, 1, 0, 1, 4.0,
    )  # fmt: skip
    assert (high.avg_first_response_hours, high.avg_resolution_hours) == (2.0, 5.0)
    assert (normal.tickets, normal.resolved, normal.breaches, normal.rated) == (1, 0, 1, 0)
    assert (normal.avg_first_response_hours, normal.avg_resolution_hours) == (None, None)
    assert normal.avg_csat is None
    assert (overall.tickets, overall.breaches, overall.breach_rate) == (2, 1, 0.5)


def test_figures_cover_only_what_the_actor_may_read(
    crm: pycrm.CRM, company: SimpleNamespace
) -> None:
    # Sales reads only its own deals' receivables; service reads no leads.
    with crm.session(actor=company.sam.id) as s:
        sam_aging = [(r.bucket, r.count) for r in s.analytics.aging(as_of=date(2026, 3, 1))]
    with crm.session(actor=company.kim.id) as s:
        kim_aging = s.analytics.aging(as_of=date(2026, 3, 1))
    with crm.session(actor=company.sue.id) as s:
        service_desk = s.analytics.service()
    assert sam_aging == [("0-30", 1), ("31-60", 1)]  # D1 is Sam's
    assert kim_aging == []
    assert [r.tickets for r in service_desk] == [2]
    # Leads are no business of service's at all: a refusal, not an empty funnel.
    refused(crm, company.sue.id, (PermissionDenied, lambda s: s.analytics.funnel()))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.analytics.funnel(by="colour"), "by"),
        (lambda s: s.analytics.forecast(period="week"), "period"),
        (lambda s: s.analytics.win_rate(by="region"), "by"),
        (lambda s: s.analytics.sources(by="owner"), "by"),
        (lambda s: s.analytics.aging(as_of="2026-03-01"), "as_of"),
        (lambda s: s.analytics.service(since="yesterday"), "since"),
        (lambda s: s.analytics.set_quota("2026-13", ("1", "EUR"), owner_id="x"), "period"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    crm: pycrm.CRM, call: Callable[[Any], Any], field: str
) -> None:
    (error,) = refused(crm, crm.system_actor, (ValidationError, call))
    assert isinstance(error, ValidationError)
    assert error.field == field


def test_pycrm_report_prints_tables_and_draws_charts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    clock = FakeClock()
    with pycrm.connect(url, clock=clock) as crm:
        build(crm, clock)

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pycrm.cli", "report", *args, "--db", url]
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=120, check=False
        )

    funnel = report("funnel")
    assert funnel.returncode == 0, funnel.stderr
    lines = {line.split("│")[1].strip(): line for line in funnel.stdout.splitlines() if "│" in line}
    assert lines.keys() == {"fair", "web"}
    # captured, assigned, contacted, qualified, converted, won, conversion
    assert [c.strip() for c in lines["fair"].split("│")[2:9]] == [
        "2",
        "2",
        "2",
        "2",
        "2",
        "1",
        "100%",
    ]
    chart = tmp_path / "aging.png"
    aging = report("aging", "--png", str(chart))
    assert aging.returncode == 0, aging.stderr
    assert "90+" in aging.stdout  # by the real clock, both receivables are months late
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    unknown = report("margins")
    assert unknown.returncode == 2
    assert "invalid choice" in unknown.stderr


# -- the deal-stage funnel ---------------------------------------------------------------------
#
# Pipeline "sales": a (Lead), b (Demo), c (Offer); the clock starts at t0 = 2026-01-05 09:00.
#
#   D1 Sam: a at t0, b at +1 d, c at +3 d, won at +4 d
#   D2 Sam: a at t0, c at +2 d (skipping b), lost at +6 d
#   D3 Kim: a at +1 d, b at +2 d, back to a at +3 d, b again at +7 d (still there)
#   D4 Kim: a at +40 d (opened in February, still there)
#   D5 Sam: in the default pipeline: never counted here
#
# Reached (a deal that skipped a stage passed it): a 4, b 3 (D1, D2, D3), c 2 (D1, D2), won 1.
# Completed stays, in days: a 1 (D1), 2 (D2), 1 and 4 (D3) → median 1.5; b 2 (D1), 1 (D3)
# → 1.5; c 1 (D1), 4 (D2, until lost) → 2.5; won: none.


def build_stages(crm: pycrm.CRM, clock: FakeClock) -> SimpleNamespace:
    p = staff(crm, sam="sales", kim="sales", lou="marketing")
    with crm.session(actor=crm.system_actor) as s:
        north, south = s.org.create_team("North", "sales"), s.org.create_team("South", "sales")
        s.org.add_to_team(p.sam.id, north.id)
        s.org.add_to_team(p.kim.id, south.id)
        s.deals.create_pipeline(
            "sales", "Sales", [("a", "Lead", 10), ("b", "Demo", 40), ("c", "Offer", 70)]
        )
        acme = s.customers.create("Acme GmbH")

        def deal(name: str, owner: Any, pipeline: str = "sales") -> str:
            made = s.deals.create(
                name, customer_id=acme.id, amount=eur("100"), owner_id=owner.id, pipeline=pipeline
            )
            return made.id

        d1, d2, d5 = deal("D1", p.sam), deal("D2", p.sam), deal("D5", p.sam, "default")
    steps = [
        (1, [("move", d1, "b"), ("create", "D3", p.kim)]),  # +1 d
        (1, [("move", d2, "c"), ("move", "D3", "b")]),  # +2 d
        (1, [("move", d1, "c"), ("move", "D3", "a")]),  # +3 d
        (1, [("win", d1, None)]),  # +4 d
        (2, [("lose", d2, None)]),  # +6 d
        (1, [("move", "D3", "b")]),  # +7 d
        (33, [("create", "D4", p.kim)]),  # +40 d
    ]
    ids = {"D1": d1, "D2": d2, "D5": d5}
    for days, actions in steps:
        clock.advance(days=days)
        with crm.session(actor=crm.system_actor) as s:
            for verb, target, arg in actions:
                if verb == "create":
                    ids[target] = s.deals.create(
                        target, customer_id=acme.id, amount=eur("100"), owner_id=arg.id,
                        pipeline="sales",
                    ).id  # fmt: skip
                elif verb == "move":
                    s.deals.move(ids.get(target, target), arg)
                elif verb == "win":
                    s.deals.win(target)
                else:
                    s.deals.lose(target, "price")
    return SimpleNamespace(**vars(p), ids=ids, north=north, south=south)


def stage_figures(rows: Any) -> dict[Any, list[tuple[Any, ...]]]:
    out: dict[Any, list[tuple[Any, ...]]] = {}
    for r in rows:
        out.setdefault(r.group, []).append((r.stage, r.reached, r.advanced, r.stays, r.median_days))
    return out


def test_the_stage_funnel_matches_the_hand_figures(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    w = build_stages(crm, fake_clock)
    with crm.session(actor=w.sam.id) as s:
        whole = s.analytics.stage_funnel("sales")
        by_owner = s.analytics.stage_funnel("sales", by="owner")
        by_team = s.analytics.stage_funnel("sales", by="team")
        by_month = s.analytics.stage_funnel("sales", by="period")
        february = s.analytics.stage_funnel(
            "sales", since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 3, 1, tzinfo=UTC)
        )
        default = s.analytics.stage_funnel()
    assert [(r.stage, r.name, r.position) for r in whole] == [
        ("a", "Lead", 0), ("b", "Demo", 1), ("c", "Offer", 2), ("won", "Won", 3),
    ]  # fmt: skip
    assert stage_figures(whole) == {
        None: [
            ("a", 4, 3, 4, 1.5),
            ("b", 3, 2, 2, 1.5),
            ("c", 2, 1, 2, 2.5),
            ("won", 1, 0, 0, None),
        ]
    }
    assert [r.conversion for r in whole] == [0.75, 2 / 3, 0.5, None]
    sam_rows = [
        ("a", 2, 2, 2, 1.5),
        ("b", 2, 2, 1, 2.0),
        ("c", 2, 1, 2, 2.5),
        ("won", 1, 0, 0, None),
    ]
    kim_rows = [
        ("a", 2, 1, 2, 2.5),
        ("b", 1, 0, 1, 1.0),
        ("c", 0, 0, 0, None),
        ("won", 0, 0, 0, None),
    ]
    assert stage_figures(by_owner) == {w.sam.id: sam_rows, w.kim.id: kim_rows}
    assert stage_figures(by_team) == {"North": sam_rows, "South": kim_rows}
    assert stage_figures(by_month) == {
        "2026-01": [("a", 3, 3, 4, 1.5), ("b", 3, 2, 2, 1.5), ("c", 2, 1, 2, 2.5), ("won", 1, 0, 0, None)],
        "2026-02": [("a", 1, 0, 0, None), ("b", 0, 0, 0, None), ("c", 0, 0, 0, None), ("won", 0, 0, 0, None)],
    }  # fmt: skip
    assert stage_figures(february) == {None: stage_figures(by_month)["2026-02"]}
    assert [(r.stage, r.reached) for r in default] == [
        ("qualification", 1), ("needs_analysis", 0), ("proposal", 0), ("negotiation", 0), ("won", 0),
    ]  # fmt: skip
    # a new owner takes the deal's stays with it
    with crm.session(actor=crm.system_actor) as s:
        s.deals.update(w.ids["D4"], owner_id=w.sam.id)
        s.org.deactivate_user(w.kim.id, reassign_to=w.sam.id)  # D3 is open: it goes to Sam
        moved = stage_figures(s.analytics.stage_funnel("sales", by="owner"))
    assert set(moved) == {w.sam.id}
    assert moved[w.sam.id] == stage_figures(whole)[None]


def test_the_stage_funnel_counts_only_deals_the_actor_may_read(connect_crm: ConnectFn) -> None:
    from pycrm.domain.permissions import DEFAULT_POLICY, Policy

    data = DEFAULT_POLICY.to_dict()
    data["grants"] = [g for g in data["grants"] if "deal" not in g["resources"]]
    data["grants"] += [
        {"roles": ["sales"], "resources": ["deal"], "actions": ["read", "update"], "scope": "own"},
        {"roles": ["*"], "resources": ["pipeline"], "actions": ["read"], "scope": "all"},
    ]
    data["fields"].append(
        {"resource": "deal", "field": "stage", "hidden": True, "allowed": ["sales"]}
    )
    crm = connect_crm(policy=Policy.from_dict(data))
    clock = crm.clock
    assert isinstance(clock, FakeClock)
    w = build_stages(crm, clock)
    with crm.session(actor=w.kim.id) as s:
        mine = stage_figures(s.analytics.stage_funnel("sales"))
    assert mine == {
        None: [
            ("a", 2, 1, 2, 2.5),
            ("b", 1, 0, 1, 1.0),
            ("c", 0, 0, 0, None),
            ("won", 0, 0, 0, None),
        ]
    }
    # marketing reads no deals, and their stage is hidden from it
    refused(crm, w.lou.id, (PermissionDenied, lambda s: s.analytics.stage_funnel("sales")))


def test_the_stage_funnel_refuses_bad_arguments(crm: pycrm.CRM) -> None:
    from pycrm.errors import NotFound

    p = staff(crm, sam="sales")
    refused(
        crm,
        p.sam.id,
        (NotFound, lambda s: s.analytics.stage_funnel("nope")),
        (ValidationError, lambda s: s.analytics.stage_funnel(by="customer")),
        (ValidationError, lambda s: s.analytics.stage_funnel(period="week")),
        (ValidationError, lambda s: s.analytics.stage_funnel(since=datetime(2026, 1, 1))),
        (ValidationError, lambda s: s.analytics.stage_funnel(["default"])),  # type: ignore[arg-type]
    )
