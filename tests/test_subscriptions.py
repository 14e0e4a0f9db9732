"""Subscriptions: contracts that bill a recurring amount per period, renewed term by term.

A subscription has a ``billing_period`` (monthly, quarterly, yearly) and a
``recurring`` amount instead of a one-off price: its term is a whole number of
periods from ``start`` (default today, a year long), its amount is ``recurring``
× the periods, one instalment due at the start of each. ``s.contracts.renew``
makes the next term (from the day after the end, signed at once, with its
receivables); ``s.contracts.scan_renewals`` reminds the owner ``notice_days``
before the end, or renews an ``auto_renew`` subscription, once per term. A
subscription quote (``billing_period``) accepted makes one. Every refused call
leaves the store as it was. The expected dates and sums are worked out by hand
here, or by the reference month arithmetic below, never by the code under test.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycrm
from conftest import ConnectFn
from pycrm import Money, signals
from pycrm.domain.contracts import (
    BillingPeriod,
    Contract,
    ContractStatus,
    subscription_schedule,
    term_end,
    term_periods,
)
from pycrm.domain.deals import Deal, DealStatus
from pycrm.domain.events import Event
from pycrm.domain.permissions import DEFAULT_POLICY
from pycrm.domain.tasks import TaskPriority
from pycrm.errors import InvalidTransition, NotFound, PermissionDenied, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import eur, outbox_names, refused, staff

Call = Callable[[Session], object]
_C = ContractStatus
_P = BillingPeriod

# -- helpers -------------------------------------------------------------------------


def setup(crm: pycrm.CRM) -> SimpleNamespace:
    """Sam and Kim sell, Max manages sales, Lea is legal, Fin finance, Sue service; Acme is
    the customer.

    Tax is 19 % and a euro buys 1.0837 dollars from 2 January 2026.
    """
    people = staff(
        crm, sam="sales", kim="sales", max=("sales", ["sales_manager"]),
        lea=("legal", ["legal"]), fin="finance", sue="service",
    )  # fmt: skip
    with crm.session(actor=crm.system_actor) as s:
        s.settings.set("tax_rates", {"standard": "19"})
        s.rates.set("EUR", "USD", "1.0837", on=date(2026, 1, 2))
        acme = s.customers.create("Acme GmbH")
    return SimpleNamespace(**vars(people), acme=acme)


def money(amount: str, currency: str) -> Money:
    return Money.of(amount, currency)


def won_deal(
    s: Session, p: SimpleNamespace, amount: Money | None = None, owner: Any = None
) -> Deal:
    deal = s.deals.create(
        "Cloud plan",
        customer_id=p.acme.id,
        amount=amount or eur("1200"),
        owner_id=(owner or p.sam).id,
    )
    return s.deals.win(deal.id)


def subscribe(
    s: Session,
    p: SimpleNamespace,
    *,
    recurring: Money | None = None,
    period: str = "monthly",
    start: date | None = date(2026, 1, 1),
    sign: bool = True,
    owner: Any = None,
    **more: Any,
) -> Contract:
    """A subscription on a new won deal of Sam's, signed unless ``sign=False``."""
    price = recurring or eur("100")
    deal = won_deal(s, p, price, owner)
    contract = s.contracts.draft(
        deal.id, billing_period=period, recurring=price, start=start, **more
    )
    if sign:
        contract = s.contracts.sign(s.contracts.submit(contract.id).id)
    return contract


def shift(day: date, months: int) -> date:
    """``day`` moved ``months`` on, clamped to the month's last day (the reference rule)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def dues(contract: Contract) -> list[tuple[int, date, Money]]:
    return [(i.number, i.due, i.amount) for i in contract.schedule]


def at(year: int, month: int, day: int, hour: int = 6, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


RENEWAL_SIGNALS = ("contract_renewed", "contract_renewal_due")


@pytest.fixture
def received() -> Iterator[list[Event]]:
    """Every renewal event delivered by a signal during the test, in order."""
    got: list[Event] = []

    def receiver(sender: Any, event: Event) -> None:
        got.append(event)

    for name in RENEWAL_SIGNALS:
        signals.signal_for(name).connect(receiver, weak=False)
    try:
        yield got
    finally:
        for name in RENEWAL_SIGNALS:
            signals.signal_for(name).disconnect(receiver)


# -- drafting ---------------------------------------------------------------------------


def test_a_monthly_subscription_runs_a_year_from_today_billing_at_each_months_start(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        deal = won_deal(s, p)
        drafted = s.contracts.draft(deal.id, billing_period="monthly", recurring=eur("99.90"))
    # the fake clock says 5 January 2026: twelve months to 4 January 2027
    assert fake_clock.now().date() == date(2026, 1, 5)
    assert (drafted.status, drafted.billing_period, drafted.recurring) == (
        _C.DRAFT,
        _P.MONTHLY,
        eur("99.90"),
    )
    assert (drafted.start, drafted.end) == (date(2026, 1, 5), date(2027, 1, 4))
    assert drafted.amount == eur("1198.80")  # 12 x 99.90
    assert [i.due for i in drafted.schedule] == [date(2026, m, 5) for m in range(1, 13)]
    assert [i.number for i in drafted.schedule] == list(range(1, 13))
    assert {i.amount for i in drafted.schedule} == {eur("99.90")}
    assert (drafted.auto_renew, drafted.notice_days, drafted.renewal_of, drafted.renewed_by) == (
        False,
        30,
        None,
        None,
    )
    assert (drafted.reminded_at, drafted.mrr) == (None, eur("99.90"))
    assert (drafted.customer_id, drafted.deal_id, drafted.owner_id) == (
        p.acme.id,
        deal.id,
        p.sam.id,
    )
    with crm.session(actor=p.sam.id) as s:
        assert s.contracts.get(drafted.id) == drafted


def test_a_term_from_a_months_last_day_bills_on_each_months_last_day_and_ends_before_the_next(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        year = subscribe(s, p, start=date(2026, 1, 31), sign=False)
        one = subscribe(s, p, start=date(2026, 1, 31), end=date(2026, 2, 27), sign=False)
        leap = subscribe(s, p, start=date(2028, 1, 31), end=date(2028, 2, 28), sign=False)
        quarters = subscribe(
            s, p, period="quarterly", recurring=eur("300"), start=date(2026, 11, 30), sign=False
        )
        years = subscribe(
            s,
            p,
            period="yearly",
            recurring=eur("1000"),
            start=date(2028, 2, 29),
            end=date(2030, 2, 27),
            sign=False,
        )
    assert [i.due for i in year.schedule] == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
        date(2026, 6, 30),
        date(2026, 7, 31),
        date(2026, 8, 31),
        date(2026, 9, 30),
        date(2026, 10, 31),
        date(2026, 11, 30),
        date(2026, 12, 31),
    ]
    # the thirteenth month would start on 31 January 2027
    assert (year.end, year.amount) == (date(2027, 1, 30), eur("1200"))
    # the second month starts on 28 February (29th in a leap year)
    assert (one.end, one.amount, dues(one)) == (
        date(2026, 2, 27),
        eur("100"),
        [(1, date(2026, 1, 31), eur("100"))],
    )
    assert (leap.end, leap.amount) == (date(2028, 2, 28), eur("100"))
    assert dues(quarters) == [
        (1, date(2026, 11, 30), eur("300")),
        (2, date(2027, 2, 28), eur("300")),
        (3, date(2027, 5, 30), eur("300")),
        (4, date(2027, 8, 30), eur("300")),
    ]
    assert (quarters.end, quarters.amount, quarters.mrr) == (
        date(2027, 11, 29),
        eur("1200"),
        eur("100"),
    )
    assert dues(years) == [
        (1, date(2028, 2, 29), eur("1000")),
        (2, date(2029, 2, 28), eur("1000")),
    ]
    # 1,000 / 12 = 83.333… per month
    assert (years.end, years.amount, years.mrr) == (date(2030, 2, 27), eur("2000"), eur("83.33"))


def test_quarterly_and_yearly_terms_are_whole_periods_and_default_to_a_year(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quarterly = subscribe(
            s, p, period="quarterly", recurring=eur("300"), start=date(2026, 4, 1), sign=False
        )
        yearly = subscribe(
            s,
            p,
            period=_P.YEARLY,
            recurring=eur("1200"),
            start=date(2026, 3, 15),
            end=date(2029, 3, 14),
            sign=False,
        )
        one_year = subscribe(
            s, p, period="yearly", recurring=eur("1200"), start=date(2026, 3, 15), sign=False
        )
    assert (quarterly.end, quarterly.amount) == (date(2027, 3, 31), eur("1200"))
    assert [i.due for i in quarterly.schedule] == [
        date(2026, 4, 1),
        date(2026, 7, 1),
        date(2026, 10, 1),
        date(2027, 1, 1),
    ]
    assert (yearly.billing_period, yearly.amount, yearly.mrr) == (
        _P.YEARLY,
        eur("3600"),
        eur("100"),
    )
    assert dues(yearly) == [
        (1, date(2026, 3, 15), eur("1200")),
        (2, date(2027, 3, 15), eur("1200")),
        (3, date(2028, 3, 15), eur("1200")),
    ]
    assert (one_year.end, one_year.amount, len(one_year.schedule)) == (
        date(2027, 3, 14),
        eur("1200"),
        1,
    )


def test_yen_and_dinar_subscriptions_keep_their_minor_units_through_the_store(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        yen = subscribe(s, p, period="quarterly", recurring=money("1000", "JPY"))
        dinar = subscribe(
            s, p, recurring=money("12.345", "KWD"), start=date(2026, 2, 1), end=date(2026, 4, 30)
        )
        tiny = subscribe(s, p, period="yearly", recurring=money("1", "KWD"), sign=False)
        odd = subscribe(s, p, period="yearly", recurring=money("18", "JPY"), sign=False)
    assert (yen.amount, yen.mrr) == (money("4000", "JPY"), money("333", "JPY"))  # 333.33…
    assert (dinar.end, dinar.amount, dinar.mrr) == (
        date(2026, 4, 30),
        money("37.035", "KWD"),  # 3 x 12.345
        money("12.345", "KWD"),
    )
    assert tiny.mrr == money("0.083", "KWD")  # 1 / 12 = 0.08333…
    assert odd.mrr == money("2", "JPY")  # 18 / 12 = 1.5, half to even
    assert dues(dinar) == [
        (1, date(2026, 2, 1), money("12.345", "KWD")),
        (2, date(2026, 3, 1), money("12.345", "KWD")),
        (3, date(2026, 4, 1), money("12.345", "KWD")),
    ]
    with crm.session(actor=p.sam.id) as s:
        assert s.contracts.get(yen.id) == yen
        assert s.contracts.get(dinar.id) == dinar
        receivables = s.receivables.list(contract_id=dinar.id)
        yen_receivables = s.receivables.list(contract_id=yen.id)
    assert [(r.instalment, r.due, r.amount) for r in receivables] == dues(dinar)
    assert [r.amount for r in yen_receivables] == [money("1000", "JPY")] * 4


# -- refusals ----------------------------------------------------------------------------


def test_a_subscription_refuses_every_one_off_price_parameter_naming_it(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        deal = won_deal(s, p)

    def draft(**more: Any) -> Call:
        return lambda s: s.contracts.draft(
            deal.id, billing_period="monthly", recurring=eur("100"), **more
        )

    errors = refused(
        crm,
        p.sam.id,
        (ValidationError, draft(amount=eur("1200"))),
        (ValidationError, draft(list_amount=eur("1500"))),
        (ValidationError, draft(discount_percent=5)),
        (ValidationError, draft(schedule=[(date(2026, 2, 1), eur("1200"))])),
        (ValidationError, draft(instalments=12)),
        (ValidationError, draft(first_due=date(2026, 2, 1))),
        (ValidationError, draft(every_months=3)),
    )
    assert [getattr(e, "field", None) for e in errors] == [
        "amount",
        "list_amount",
        "discount_percent",
        "schedule",
        "instalments",
        "first_due",
        "every_months",
    ]
    assert all("recurring" in getattr(e, "reason", "") for e in errors)


def test_a_subscription_needs_a_positive_recurring_amount_a_known_period_and_a_whole_term(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        deal = won_deal(s, p)

    def draft(**given: Any) -> Call:
        fields: dict[str, Any] = {
            "billing_period": "monthly",
            "recurring": eur("100"),
            "start": date(2026, 1, 1),
        }
        fields.update(given)
        return lambda s: s.contracts.draft(deal.id, **fields)

    cases: list[tuple[str, Call]] = [
        ("recurring", draft(recurring=None)),
        ("recurring", draft(recurring=eur("0"))),
        ("recurring", draft(recurring=eur("-5"))),
        ("recurring", draft(recurring="100 EUR")),
        ("recurring", draft(billing_period=None)),  # a recurring amount needs a period
        ("auto_renew", draft(billing_period=None, recurring=None, auto_renew=True)),
        ("auto_renew", draft(auto_renew="yes")),
        ("billing_period", draft(billing_period="weekly")),
        ("notice_days", draft(notice_days=-1)),
        ("notice_days", draft(notice_days=366)),
        ("notice_days", draft(notice_days=None)),
        ("notice_days", draft(notice_days=7.5)),
        ("end", draft(start=date(2026, 1, 31), end=date(2026, 2, 28))),  # not a whole month
        ("end", draft(end=date(2026, 5, 31), billing_period="quarterly")),  # 5 months
        ("end", draft(end=date(2025, 12, 31))),  # before the start
        ("end", draft(end=date(2076, 1, 31))),  # 601 months
        ("recurring", draft(recurring=eur("10000000000000"))),  # 12 x 10^13 ≥ 10^14
    ]
    errors = refused(crm, p.sam.id, *[(ValidationError, call) for _, call in cases])
    assert [getattr(e, "field", None) for e in errors] == [field for field, _ in cases]
    # the refusal of a ragged end names the nearest term end before it
    assert "2026-02-27" in getattr(errors[12], "reason", "")
    pair: Any = ("100", "EUR")  # an (amount, currency) pair is taken as Money
    with crm.session(actor=p.sam.id) as s:  # the bounds themselves are fine
        longest = s.contracts.draft(
            deal.id,
            billing_period="monthly",
            recurring=eur("100"),
            start=date(2026, 1, 1),
            end=date(2075, 12, 31),
            notice_days=365,
        )
        no_notice = s.contracts.draft(
            deal.id, billing_period="monthly", recurring=pair, notice_days=0
        )
    assert (len(longest.schedule), longest.amount, longest.notice_days) == (
        600,
        eur("60000"),
        365,
    )
    assert (no_notice.notice_days, no_notice.recurring) == (0, eur("100"))


# -- renewal -----------------------------------------------------------------------------


def test_renew_starts_the_day_after_the_end_for_the_same_length_signed_with_receivables(
    crm: pycrm.CRM, fake_clock: FakeClock, received: list[Event]
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        old = subscribe(s, p, terms="Support by e-mail", notice_days=45, auto_renew=True)
    assert (old.status, old.end) == (_C.SIGNED, date(2026, 12, 31))
    fake_clock.set(at(2026, 11, 20))
    with crm.session(actor=p.sam.id) as s:
        new = s.contracts.renew(old.id)
        before = s.contracts.get(old.id)
        new_receivables = s.receivables.list(contract_id=new.id)
        old_receivables = s.receivables.list(contract_id=old.id)
    assert (new.status, new.signed_at, new.start, new.end) == (
        _C.SIGNED,
        at(2026, 11, 20),
        date(2027, 1, 1),
        date(2027, 12, 31),
    )
    assert (new.amount, new.recurring, new.billing_period) == (eur("1200"), eur("100"), _P.MONTHLY)
    assert dues(new) == [(m, date(2027, m, 1), eur("100")) for m in range(1, 13)]
    assert (new.renewal_of, new.renewed_by, before.renewed_by) == (old.id, None, new.id)
    assert (new.customer_id, new.deal_id, new.owner_id, new.title, new.terms) == (
        old.customer_id,
        old.deal_id,
        p.sam.id,
        old.title,
        "Support by e-mail",
    )
    assert (new.auto_renew, new.notice_days, new.reminded_at) == (True, 45, None)
    assert [(r.instalment, r.due, r.amount, r.paid) for r in new_receivables] == [
        (m, date(2027, m, 1), eur("100"), eur("0")) for m in range(1, 13)
    ]
    assert {(r.customer_id, r.owner_id) for r in new_receivables} == {(p.acme.id, p.sam.id)}
    assert [r.due for r in old_receivables] == [date(2026, m, 1) for m in range(1, 13)]
    assert [(e.name, e.record_id, e.actor_id) for e in received] == [
        ("contract_renewed", new.id, p.sam.id)
    ]
    assert (received[0].after or {})["renewal_of"] == old.id
    with crm.session(actor=p.sam.id) as s:
        assert s.contracts.get(new.id) == new


def test_renew_at_a_new_price_or_to_a_given_end_and_a_renewal_renews_for_its_own_length(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        old = subscribe(s, p, period="quarterly", recurring=eur("300"), start=date(2026, 4, 1))
        dearer = s.contracts.renew(old.id, recurring=eur("330"), end=date(2027, 9, 30))
        again = s.contracts.renew(dearer.id)
        listed = s.receivables.list(contract_id=again.id)
    assert (dearer.start, dearer.end, dearer.recurring, dearer.amount) == (
        date(2027, 4, 1),
        date(2027, 9, 30),
        eur("330"),
        eur("660"),
    )
    assert dues(dearer) == [(1, date(2027, 4, 1), eur("330")), (2, date(2027, 7, 1), eur("330"))]
    # two quarters again, at the new price
    assert (again.start, again.end, again.amount, again.renewal_of) == (
        date(2027, 10, 1),
        date(2028, 3, 31),
        eur("660"),
        dearer.id,
    )
    assert [(r.due, r.amount) for r in listed] == [
        (date(2027, 10, 1), eur("330")),
        (date(2028, 1, 1), eur("330")),
    ]


def test_a_chain_of_renewals_from_a_months_last_day_leaves_no_gap_and_no_overlap(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        first = subscribe(s, p, start=date(2026, 1, 31), end=date(2026, 2, 27))
        chain = [first]
        for _ in range(3):
            chain.append(s.contracts.renew(chain[-1].id))
        stored = [s.contracts.get(c.id) for c in chain]
    # each term is a month from the day after the last one ended
    assert [(c.start, c.end) for c in chain] == [
        (date(2026, 1, 31), date(2026, 2, 27)),
        (date(2026, 2, 28), date(2026, 3, 27)),
        (date(2026, 3, 28), date(2026, 4, 27)),
        (date(2026, 4, 28), date(2026, 5, 27)),
    ]
    assert [(c.renewal_of, c.renewed_by) for c in stored] == [
        (None, chain[1].id),
        (chain[0].id, chain[2].id),
        (chain[1].id, chain[3].id),
        (chain[2].id, None),
    ]


def test_renew_is_refused_for_one_off_unsigned_renewed_or_terminated_contracts_and_bad_terms(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        one_off = s.contracts.draft(won_deal(s, p).id)
        one_off = s.contracts.sign(s.contracts.submit(one_off.id).id)
        draft = subscribe(s, p, sign=False)
        renewed = subscribe(s, p)
        s.contracts.renew(renewed.id)
        ended = subscribe(s, p)
        s.contracts.terminate(ended.id, "customer went bust")
        live = subscribe(s, p)
    errors = refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.contracts.renew(one_off.id)),
        (InvalidTransition, lambda s: s.contracts.renew(draft.id)),
        (InvalidTransition, lambda s: s.contracts.renew(renewed.id)),
        (InvalidTransition, lambda s: s.contracts.renew(ended.id)),
        (NotFound, lambda s: s.contracts.renew("no-such-contract")),
        (ValidationError, lambda s: s.contracts.renew(live.id, recurring=money("100", "USD"))),
        (ValidationError, lambda s: s.contracts.renew(live.id, recurring=eur("0"))),
        (ValidationError, lambda s: s.contracts.renew(live.id, end=date(2027, 2, 15))),
        (ValidationError, lambda s: s.contracts.renew(live.id, end=date(2026, 12, 31))),
    )
    fields = [getattr(e, "field", None) for e in errors]
    assert fields[:1] + fields[5:] == ["id", "recurring", "recurring", "end", "end"]
    with crm.session(actor=p.sam.id) as s:  # a completed term may still be renewed
        done = s.contracts.complete(s.contracts.activate(live.id).id)
        later = s.contracts.renew(done.id)
    assert (later.start, later.status) == (date(2027, 1, 1), _C.SIGNED)


# -- permissions -------------------------------------------------------------------------


def test_a_rep_renews_their_own_subscription_but_not_another_reps(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        sams = subscribe(s, p)
    refused(
        crm,
        p.kim.id,
        (PermissionDenied, lambda s: s.contracts.renew(sams.id)),
    )
    refused(crm, p.fin.id, (PermissionDenied, lambda s: s.contracts.renew(sams.id)))
    refused(crm, p.sue.id, (PermissionDenied, lambda s: s.contracts.renew(sams.id)))
    with crm.session(actor=p.lea.id) as s:  # legal may change any contract
        by_legal = s.contracts.renew(sams.id)
    assert (by_legal.owner_id, by_legal.renewal_of) == (p.sam.id, sams.id)
    with crm.session(actor=p.kim.id) as s:
        kims = subscribe(s, p, owner=p.kim)
        mine = s.contracts.renew(kims.id)
    assert (mine.owner_id, mine.start) == (p.kim.id, date(2027, 1, 1))


# -- scanning for renewals -----------------------------------------------------------------


def test_scan_renewals_reminds_the_owner_once_when_the_notice_begins(
    crm: pycrm.CRM, fake_clock: FakeClock, received: list[Event]
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        due = subscribe(s, p, notice_days=30)  # ends 31 December 2026: notice from 1 December
        last_day = subscribe(s, p, notice_days=0)
    fake_clock.set(at(2026, 11, 30, 23, 59))
    with crm.session(actor=p.kim.id) as s:
        assert s.contracts.scan_renewals() == []
    assert received == []
    fake_clock.set(at(2026, 12, 1, 6, 0))
    with crm.session(actor=p.kim.id) as s:  # any rep may run it; Sam gets the task
        found = s.contracts.scan_renewals()
    assert [(c.id, c.reminded_at, c.renewed_by, c.status) for c in found] == [
        (due.id, at(2026, 12, 1), None, _C.SIGNED)
    ]
    assert [(e.name, e.record_id, e.actor_id, e.record_type) for e in received] == [
        ("contract_renewal_due", due.id, p.kim.id, "contract")
    ]
    with crm.session(actor=p.sam.id) as s:
        tasks = s.tasks.list(related_id=due.id)
        assert s.tasks.list(related_id=last_day.id) == []
    assert [
        (t.title, t.assignee_id, t.due_at, t.priority, t.kind, t.related_type) for t in tasks
    ] == [
        (
            "Renew: Cloud plan (ends 2026-12-31)",
            p.sam.id,
            datetime(2026, 12, 31, tzinfo=UTC),
            TaskPriority.HIGH,
            "renewal",
            "contract",
        )
    ]
    fake_clock.set(at(2026, 12, 2))
    with crm.session(actor=p.kim.id) as s:
        assert s.contracts.scan_renewals() == []  # reminded once per term
    fake_clock.set(at(2026, 12, 31))
    with crm.session(actor=p.kim.id) as s:
        on_last_day = s.contracts.scan_renewals()
    assert [c.id for c in on_last_day] == [last_day.id]
    with crm.session(actor=p.sam.id) as s:
        assert len(s.tasks.list(related_id=due.id)) == 1
        assert s.contracts.get(due.id).renewed_by is None
    assert [e.name for e in received] == ["contract_renewal_due"] * 2
    assert outbox_names(crm).count("contract_renewal_due") == 2


def test_scan_renewals_renews_an_auto_renewing_subscription_once(
    crm: pycrm.CRM, fake_clock: FakeClock, received: list[Event]
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        old = subscribe(
            s, p, period="yearly", recurring=eur("1200"), auto_renew=True, notice_days=60
        )
    fake_clock.set(at(2026, 11, 1))  # 60 days before 31 December
    with crm.session(actor=p.lea.id) as s:
        found = s.contracts.scan_renewals()
    assert [(c.id, c.reminded_at) for c in found] == [(old.id, at(2026, 11, 1))]
    new_id = found[0].renewed_by
    assert new_id is not None
    with crm.session(actor=p.sam.id) as s:
        new = s.contracts.get(new_id)
        receivables = s.receivables.list(contract_id=new_id)
        assert s.tasks.list(related_id=old.id) == []  # renewed: nothing to remind
    assert (new.start, new.end, new.amount, new.status, new.renewal_of, new.auto_renew) == (
        date(2027, 1, 1),
        date(2027, 12, 31),
        eur("1200"),
        _C.SIGNED,
        old.id,
        True,
    )
    assert [(r.due, r.amount) for r in receivables] == [(date(2027, 1, 1), eur("1200"))]
    assert [(e.name, e.record_id, e.actor_id) for e in received] == [
        ("contract_renewed", new_id, p.lea.id)
    ]
    fake_clock.set(at(2026, 11, 15))
    with crm.session(actor=p.lea.id) as s:
        assert s.contracts.scan_renewals() == []
    with crm.session(actor=p.sam.id) as s:
        assert len(s.contracts.list(status="signed")) == 2
    assert len(received) == 1


def test_scan_renewals_leaves_drafts_terminated_completed_and_one_off_contracts_alone(
    crm: pycrm.CRM, fake_clock: FakeClock, received: list[Event]
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        draft = subscribe(s, p, sign=False)
        terminated = s.contracts.terminate(subscribe(s, p).id, "moved to a rival")
        completed = s.contracts.complete(s.contracts.activate(subscribe(s, p).id).id)
        automatic = s.contracts.complete(
            s.contracts.activate(subscribe(s, p, auto_renew=True).id).id
        )
        active = s.contracts.activate(subscribe(s, p).id)
        one_off = s.contracts.draft(won_deal(s, p).id, end=date(2026, 12, 31))
        one_off = s.contracts.sign(s.contracts.submit(one_off.id).id)
    fake_clock.set(at(2027, 1, 10))  # every one ended ten days ago
    with crm.session(actor=p.sam.id) as s:
        found = s.contracts.scan_renewals()
        after = {c.id: s.contracts.get(c.id) for c in (draft, terminated, completed, automatic)}
        signed_one_off = s.contracts.get(one_off.id)
    assert [c.id for c in found] == [active.id]
    assert [e.name for e in received] == ["contract_renewal_due"]
    assert all((c.reminded_at, c.renewed_by) == (None, None) for c in after.values())
    assert signed_one_off.reminded_at is None


def test_who_may_scan_for_renewals(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        due = subscribe(s, p)
    fake_clock.set(at(2026, 12, 15))
    refused(crm, p.fin.id, (PermissionDenied, lambda s: s.contracts.scan_renewals()))
    refused(crm, p.sue.id, (PermissionDenied, lambda s: s.contracts.scan_renewals()))
    with crm.session(actor=p.lea.id) as s:
        assert [c.id for c in s.contracts.scan_renewals()] == [due.id]


def test_a_scanner_who_may_not_read_a_subscription_reminds_its_owner_but_is_not_shown_it(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {"grants": [{"roles": ["renewals"], "resources": ["contract"], "actions": ["update"],
                         "scope": "own"}]}
        )
    )  # fmt: skip
    p = setup(crm)
    clerk = staff(crm, ray=("marketing", ["renewals"])).ray
    with crm.session(actor=p.sam.id) as s:
        due = subscribe(s, p)
    fake_clock.set(at(2026, 12, 15))
    with crm.session(actor=clerk.id) as s:
        assert s.contracts.scan_renewals() == []
    with crm.session(actor=p.sam.id) as s:
        assert s.contracts.get(due.id).reminded_at == at(2026, 12, 15)
        assert len(s.tasks.list(related_id=due.id)) == 1


# -- from a quote ------------------------------------------------------------------------


SEATS = [{"description": "Seat licence", "unit_price": eur("50"), "quantity": 3}]


def quote_of_seats(s: Session, p: SimpleNamespace, **more: Any) -> Any:
    """A sent quote for three seats at 50 EUR (150 net, 28.50 tax, 178.50 in all)."""
    deal = s.deals.create(
        "Seats for Acme", customer_id=p.acme.id, amount=eur("1000"), owner_id=p.sam.id
    )
    return s.quotes.draft(deal.id, lines=SEATS, **more)


def test_a_monthly_quote_billed_in_dollars_makes_a_subscription_at_the_converted_total(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.send(quote_of_seats(s, p, billing_period="monthly").id)
        accepted = s.quotes.accept(
            quote.id, bill_in="USD", start=date(2026, 2, 1), auto_renew=True, notice_days=45
        )
        contract = s.contracts.get(accepted.contract_id or "")
        deal = s.deals.get(quote.deal_id)
    assert (quote.billing_period, quote.subtotal, quote.total) == (
        _P.MONTHLY,
        eur("150"),
        eur("178.50"),
    )
    # 178.50 EUR x 1.0837 = 193.44045 USD a month, for twelve months
    assert (contract.billing_period, contract.recurring, contract.amount) == (
        _P.MONTHLY,
        money("193.44", "USD"),
        money("2321.28", "USD"),
    )
    assert (contract.start, contract.end, contract.auto_renew, contract.notice_days) == (
        date(2026, 2, 1),
        date(2027, 1, 31),
        True,
        45,
    )
    assert (contract.exchange_rate, contract.rate_date, contract.quote_id) == (
        Decimal("1.0837"),
        date(2026, 1, 2),
        quote.id,
    )
    assert contract.lines == quote.lines
    assert [(i.due, i.amount) for i in contract.schedule] == [
        (shift(date(2026, 2, 1), m), money("193.44", "USD")) for m in range(12)
    ]
    assert (deal.status, deal.amount) == (DealStatus.WON, eur("1800"))  # 150 EUR x 12
    with crm.session(actor=p.sam.id) as s:
        signed = s.contracts.sign(s.contracts.submit(contract.id).id)
        same = s.contracts.renew(signed.id)
        dearer = s.contracts.renew(same.id, recurring=money("199", "USD"))
    assert (same.quote_id, same.lines, same.exchange_rate, same.rate_date) == (
        quote.id,
        quote.lines,
        Decimal("1.0837"),
        date(2026, 1, 2),
    )
    assert (same.start, same.end, same.amount) == (
        date(2027, 2, 1),
        date(2028, 1, 31),
        money("2321.28", "USD"),
    )
    # the lines no longer add up to a new price: it keeps none
    assert (dearer.quote_id, dearer.lines, dearer.exchange_rate, dearer.rate_date) == (
        None,
        (),
        None,
        None,
    )
    assert (dearer.recurring, dearer.amount) == (money("199", "USD"), money("2388", "USD"))


def test_a_quotes_period_can_be_changed_and_its_acceptance_refuses_one_off_terms(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        drafted = quote_of_seats(s, p)
        quarterly = s.quotes.update(drafted.id, billing_period="quarterly")
        quote = s.quotes.send(quarterly.id)
        one_off = s.quotes.draft(quote.deal_id, billing_period="yearly", lines=SEATS)
        one_off = s.quotes.send(s.quotes.update(one_off.id, billing_period=None).id)
        spare = quote_of_seats(s, p)
    assert (drafted.billing_period, quarterly.billing_period, one_off.billing_period) == (
        None,
        _P.QUARTERLY,
        None,
    )
    errors = refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.quotes.update(spare.id, billing_period="weekly")),
        (ValidationError, lambda s: s.quotes.accept(quote.id, instalments=4)),
        (ValidationError, lambda s: s.quotes.accept(quote.id, first_due=date(2026, 3, 1))),
        (ValidationError, lambda s: s.quotes.accept(quote.id, every_months=3)),
        (ValidationError, lambda s: s.quotes.accept(quote.id, end=date(2026, 12, 31))),
        (ValidationError, lambda s: s.quotes.accept(quote.id, notice_days=400)),
        (ValidationError, lambda s: s.quotes.accept(one_off.id, auto_renew=True)),
    )
    assert [getattr(e, "field", None) for e in errors] == [
        "billing_period",
        "instalments",
        "first_due",
        "every_months",
        "end",
        "notice_days",
        "auto_renew",
    ]
    with crm.session(actor=p.sam.id) as s:
        accepted = s.quotes.accept(quote.id, start=date(2026, 3, 1))
        contract = s.contracts.get(accepted.contract_id or "")
        deal = s.deals.get(quote.deal_id)
        plain = s.contracts.get(s.quotes.accept(one_off.id).contract_id or "")
    assert (contract.recurring, contract.amount, contract.end) == (
        eur("178.50"),
        eur("714"),  # 4 quarters
        date(2027, 2, 28),
    )
    assert [i.due for i in contract.schedule] == [
        date(2026, 3, 1),
        date(2026, 6, 1),
        date(2026, 9, 1),
        date(2026, 12, 1),
    ]
    assert (deal.status, deal.amount) == (DealStatus.WON, eur("600"))  # 150 x 4
    assert (plain.billing_period, plain.recurring, plain.amount, len(plain.schedule)) == (
        None,
        None,
        eur("178.50"),
        1,
    )


# -- history and audit ---------------------------------------------------------------------


def test_a_renewal_is_audited_and_the_old_term_records_who_renewed_and_reminded(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        old = subscribe(s, p)
    fake_clock.set(at(2026, 12, 10))
    with crm.session(actor=p.kim.id) as s:
        s.contracts.scan_renewals()
    fake_clock.set(at(2026, 12, 11))
    with crm.session(actor=p.sam.id) as s:
        new = s.contracts.renew(old.id)
        renewed_by = [
            (c.old, c.new, c.at, c.actor_id) for c in s.contracts.history(old.id, "renewed_by")
        ]
        reminded = [(c.old, c.at, c.actor_id) for c in s.contracts.history(old.id, "reminded_at")]
        renewal_of = [(c.old, c.new) for c in s.contracts.history(new.id, "renewal_of")]
    assert renewed_by == [(None, new.id, at(2026, 12, 11), p.sam.id)]
    assert reminded == [(None, at(2026, 12, 10), p.kim.id)]
    assert renewal_of == [(None, old.id)]
    with crm.session(actor=crm.system_actor) as s:
        entries = s.audit.find(record_type="contract", record_id=new.id)
    assert [(e.action, e.actor_id, e.at) for e in entries] == [
        ("renew", p.sam.id, at(2026, 12, 11))
    ]


# -- MRR, ARR and churn ------------------------------------------------------------------


def test_mrr_arr_and_churn_per_currency_and_in_the_reporting_currency(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    """On 10 January 2026, the month back to 10 December 2025:

    * monthly 100 EUR from 1 January: running, new;
    * quarterly 300 EUR from 20 December: running (100 EUR a month), new;
    * yearly 1,200 USD through 31 December 2025, not renewed: running on
      10 December (100 USD a month), churned;
    * monthly 50 EUR since June 2025, terminated on 10 January: running on
      10 December, churned, not running any more;
    * monthly 70 EUR through 30 November: over before the month, not counted;
    * a one-off contract: not a subscription.
    """
    p = setup(crm)
    fake_clock.set(at(2025, 12, 1))
    with crm.session(actor=p.sam.id) as s:
        subscribe(s, p, recurring=eur("100"), start=date(2026, 1, 1))
        subscribe(s, p, recurring=eur("300"), period="quarterly", start=date(2025, 12, 20))
        subscribe(s, p, recurring=money("1200", "USD"), period="yearly", start=date(2025, 1, 1))
        gone = subscribe(s, p, recurring=eur("50"), start=date(2025, 6, 1))
        subscribe(s, p, recurring=eur("70"), start=date(2025, 10, 1), end=date(2025, 11, 30))
        one_off = won_deal(s, p, eur("999"))
        s.contracts.sign(s.contracts.submit(s.contracts.draft(one_off.id).id).id)
    fake_clock.set(at(2026, 1, 10))
    with crm.session(actor=p.sam.id) as s:
        s.contracts.terminate(gone.id, "moved to a competitor")
    with crm.session(actor=p.fin.id) as s:
        s.rates.set("USD", "EUR", "0.9", on=date(2026, 1, 2))
        rows = s.analytics.subscriptions()
        [converted] = s.analytics.subscriptions(in_reporting_currency=True)
        before = s.analytics.subscriptions(as_of=date(2025, 12, 10))
    got = {
        r.currency: (r.subscriptions, r.mrr, r.start_mrr, r.new_mrr, r.churned_mrr) for r in rows
    }
    assert got == {
        "EUR": (2, eur("200"), eur("50"), eur("200"), eur("50")),
        "USD": (0, money("0", "USD"), money("100", "USD"), money("0", "USD"), money("100", "USD")),
    }
    eur_row = next(r for r in rows if r.currency == "EUR")
    assert (eur_row.arr, eur_row.churn_rate) == (eur("2400"), 1.0)
    # USD 100 at 0.9 is 90 EUR: 140 EUR a month before, 140 churned
    assert (converted.currency, converted.subscriptions, converted.mrr) == ("EUR", 2, eur("200"))
    assert (converted.start_mrr, converted.churned_mrr) == (eur("140"), eur("140"))
    assert [(r.currency, r.rate) for r in converted.rates] == [
        ("EUR", Decimal(1)),
        ("USD", Decimal("0.9")),
    ]
    # on 10 December: the yearly, the terminated (not yet) and the November one's churn
    got = {r.currency: (r.subscriptions, r.mrr, r.churned_mrr) for r in before}
    assert got == {
        "EUR": (1, eur("50"), eur("70")),
        "USD": (1, money("100", "USD"), money("0", "USD")),
    }


_examples = itertools.count()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plans=st.lists(
        st.tuples(
            st.sampled_from(list(BillingPeriod)),
            st.integers(1, 10**7),
            st.sampled_from(["EUR", "JPY", "KWD"]),
            st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 6, 1)),
            st.booleans(),
        ),
        max_size=8,
    ),
    as_of=st.dates(min_value=date(2024, 6, 1), max_value=date(2027, 6, 1)),
)
def test_mrr_is_the_recurring_amounts_per_month_of_the_terms_running_on_the_day(
    crm: pycrm.CRM, plans: list[tuple[BillingPeriod, int, str, date, bool]], as_of: date
) -> None:
    made = []
    with crm.session(actor=crm.system_actor, tenant=f"mrr-{next(_examples)}") as s:
        customer = s.customers.create("Acme GmbH")
        for period, minor, currency, start, stop in plans:
            price = Money.from_minor(minor, currency)
            deal = s.deals.create("Plan", customer_id=customer.id, amount=price)
            s.deals.win(deal.id)
            contract = s.contracts.draft(
                deal.id, billing_period=period, recurring=price, start=start
            )
            contract = s.contracts.sign(s.contracts.submit(contract.id).id)
            if stop:
                contract = s.contracts.terminate(contract.id, "ended early")
            made.append(contract)
        rows = s.analytics.subscriptions(as_of=as_of)
    stopped_on = crm.clock.now().date()  # terminated on the day the test runs (by the clock)
    want: dict[str, list[Any]] = {}
    for c in made:
        assert c.recurring is not None
        assert c.start is not None
        assert c.end is not None
        if not c.start <= as_of <= c.end:
            continue
        if c.status is _C.TERMINATED and stopped_on <= as_of:
            continue
        row = want.setdefault(c.recurring.currency, [0, Decimal(0)])
        row[0] += 1
        row[1] += c.recurring.amount / MONTHS[_P(c.billing_period)]
    have = {r.currency: (r.subscriptions, r.mrr) for r in rows if r.subscriptions}
    assert have == {k: (n, Money.of(v, k)) for k, (n, v) in want.items()}


# -- edges -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory"])  # a service-layer rule: one backend shows it
def test_a_subscription_draft_refuses_a_discount_on_revision_as_on_drafting(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        draft = subscribe(s, p, sign=False)
    errors = refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.contracts.revise(draft.id, discount_percent=10)),
    )
    assert getattr(errors[0], "field", None) == "discount_percent"


def test_a_term_ending_on_the_last_representable_day_is_a_whole_term() -> None:
    assert term_periods(date(9999, 12, 1), date(9999, 12, 31), _P.MONTHLY) == 1
    assert term_end(date(9999, 1, 1), _P.YEARLY, 1) == date(9999, 12, 31)
    with pytest.raises(ValidationError) as caught:
        term_end(date(9999, 12, 1), _P.MONTHLY, 2)
    assert caught.value.field == "end"


def test_a_renewal_at_a_lower_price_waits_for_a_sales_manager_before_it_is_signed(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        sams = subscribe(s, p, recurring=eur("100"))
        cheaper = s.contracts.renew(sams.id, recurring=eur("99.99"))
        assert s.receivables.list(contract_id=cheaper.id) == []  # nothing billed yet
        assert s.contracts.get(sams.id).renewed_by == cheaper.id
    assert (cheaper.status, cheaper.signed_at, cheaper.amount) == (
        _C.PENDING_APPROVAL,
        None,
        eur("1199.88"),
    )
    assert [(a.role, a.decision.value) for a in cheaper.approvals] == [("sales_manager", "pending")]
    refused(crm, p.sam.id, (PermissionDenied, lambda s: s.contracts.approve(cheaper.id)))
    with crm.session(actor=p.max.id) as s:
        assert [c.id for c in s.contracts.awaiting("sales_manager")] == [cheaper.id]
        s.contracts.approve(cheaper.id, comment="loyal customer")
    with crm.session(actor=p.sam.id) as s:
        s.contracts.sign(cheaper.id)
        dues = [(r.due, r.amount) for r in s.receivables.list(contract_id=cheaper.id)]
    assert dues == [(shift(date(2027, 1, 1), i), eur("99.99")) for i in range(12)]
    # a refusal for the grant comes before one for the arguments
    with crm.session(actor=p.sam.id) as s:
        other = subscribe(s, p)
    refused(crm, p.kim.id, (PermissionDenied, lambda s: s.contracts.renew(other.id, recurring="x")))  # fmt: skip


@pytest.mark.parametrize("backend", ["memory"])  # a service-layer rule: one backend shows it
def test_an_auto_renewing_subscription_that_cannot_renew_is_reminded_instead(
    crm: pycrm.CRM, fake_clock: FakeClock, received: list[Event]
) -> None:
    p = setup(crm)
    fake_clock.set(at(9999, 12, 5))
    with crm.session(actor=p.sam.id) as s:
        last = subscribe(s, p, start=date(9999, 1, 1), period="yearly", auto_renew=True)
        # one month, renewed for December 9999: the last month there is
        fine = subscribe(s, p, start=date(9999, 11, 1), end=date(9999, 11, 30), auto_renew=True)
    assert last.end == date(9999, 12, 31)
    with crm.session(actor=p.lea.id) as s:
        found = {c.id: c for c in s.contracts.scan_renewals()}
    assert found[last.id].renewed_by is None  # the next term would pass 9999: reminded
    assert found[fine.id].renewed_by is not None  # the other one still renewed
    assert sorted(e.name for e in received) == ["contract_renewal_due", "contract_renewed"]


# -- properties of the term arithmetic -------------------------------------------------------

starts = st.dates(min_value=date(1900, 1, 1), max_value=date(2300, 12, 31))
periods = st.sampled_from(list(BillingPeriod))
currencies = st.sampled_from(["EUR", "JPY", "KWD"])
MONTHS = {_P.MONTHLY: 1, _P.QUARTERLY: 3, _P.YEARLY: 12}


@settings(max_examples=300, deadline=None)
@given(start=starts, period=periods, n=st.integers(1, 600))
def test_a_term_of_n_periods_ends_the_day_before_period_n_plus_1_and_counts_n_periods(
    start: date, period: BillingPeriod, n: int
) -> None:
    end = term_end(start, period, n)
    assert period.months == MONTHS[period]
    assert end == shift(start, n * MONTHS[period]) - timedelta(days=1)
    assert term_periods(start, end, period) == n
    for ragged in (end - timedelta(days=1), end + timedelta(days=1)):
        with pytest.raises(ValidationError) as info:
            term_periods(start, ragged, period)
        assert info.value.field == "end"


@settings(max_examples=200, deadline=None)
@given(
    start=starts,
    period=periods,
    n=st.integers(1, 120),
    minor=st.integers(1, 10**9),
    currency=currencies,
)
def test_a_subscription_schedule_sums_to_recurring_times_periods_in_increasing_due_order(
    start: date, period: BillingPeriod, n: int, minor: int, currency: str
) -> None:
    recurring = Money.from_minor(minor, currency)
    schedule = subscription_schedule(recurring, start, period, n)
    assert [i.number for i in schedule] == list(range(1, n + 1))
    assert [i.due for i in schedule] == [shift(start, k * MONTHS[period]) for k in range(n)]
    assert all(a.due < b.due for a, b in itertools.pairwise(schedule))
    assert schedule[-1].due <= term_end(start, period, n)
    assert {i.amount for i in schedule} == {recurring}
    total = Money.zero(currency)
    for instalment in schedule:
        total += instalment.amount
    assert total == Money.from_minor(minor * n, currency)


@settings(max_examples=150, deadline=None)
@given(start=starts, period=periods, n=st.integers(1, 24), k=st.integers(1, 8))
def test_terms_renewed_from_the_day_after_the_end_are_contiguous_and_keep_their_length(
    start: date, period: BillingPeriod, n: int, k: int
) -> None:
    terms = [(start, term_end(start, period, n))]
    for _ in range(k):
        begin = terms[-1][1] + timedelta(days=1)
        terms.append((begin, term_end(begin, period, term_periods(*terms[-1], period))))
    for (_, end), (begin, _) in itertools.pairwise(terms):
        assert begin == end + timedelta(days=1)
    assert all(term_periods(a, b, period) == n for a, b in terms)
    assert all(a < b for a, b in terms)


@settings(max_examples=15, deadline=None)
@given(
    start=st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 12, 31)),
    period=periods,
    n=st.integers(1, 3),
    k=st.integers(1, 3),
)
def test_a_chain_of_renewals_in_the_crm_has_contiguous_terms_linked_both_ways(
    start: date, period: BillingPeriod, n: int, k: int
) -> None:
    crm = pycrm.connect("memory://", clock=FakeClock())
    p = setup(crm)
    end = shift(start, n * MONTHS[period]) - timedelta(days=1)
    with crm.session(actor=p.sam.id) as s:
        chain = [subscribe(s, p, period=period.value, start=start, end=end)]
        for _ in range(k):
            chain.append(s.contracts.renew(chain[-1].id))
        stored = [s.contracts.get(c.id) for c in chain]
        counts = [len(s.receivables.list(contract_id=c.id)) for c in chain]
    for before, after in itertools.pairwise(stored):
        assert after.start is not None
        assert before.end is not None
        assert after.start == before.end + timedelta(days=1)
        assert (before.renewed_by, after.renewal_of) == (after.id, before.id)
        assert after.end == shift(after.start, n * MONTHS[period]) - timedelta(days=1)
    assert {c.amount for c in stored} == {eur(str(100 * n))}
    assert counts == [n] * (k + 1)
    assert stored[-1].renewed_by is None
