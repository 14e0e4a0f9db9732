"""Property tests for the lead-to-cash rules (DESIGN §4, §8).

Instalments always sum exactly to the contract amount; payments never make
``paid`` exceed ``amount`` without recording the excess; the lead and
contract state machines accept exactly their documented moves, and random
walks through the services never make any other move.
"""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm.domain.contracts import (
    CONTRACT_MOVES,
    ContractStatus,
    build_schedule,
)
from pycrm.domain.leads import LEAD_MOVES, LeadStatus
from pycrm.domain.money import MAX_AMOUNT, Money, minor_units
from pycrm.domain.receivables import Payment, Receivable, ReceivableStatus, apply_payment
from pycrm.errors import InvalidTransition, PermissionDenied, ValidationError
from pycrm.testing import FakeClock

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WALKS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Currencies with 0, 2, 3 and 4 decimal places.
CURRENCIES = ["JPY", "KRW", "EUR", "USD", "CNY", "BHD", "KWD", "CLF"]


@st.composite
def money(draw: st.DrawFn, *, positive: bool = True) -> Money:
    currency = draw(st.sampled_from(CURRENCIES))
    largest = int(MAX_AMOUNT) * 10 ** minor_units(currency) - 1
    small = st.integers(1, 10_000)
    big = st.integers(1, largest)
    minor = draw(st.one_of(small, big))
    if not positive:
        minor = draw(st.sampled_from([minor, -minor, 0]))
    return Money.from_minor(minor, currency)


# -- schedules and allocation -----------------------------------------------------------


@FAST
@given(
    amount=money(),
    count=st.integers(1, 120),
    first_due=st.dates(date(2000, 1, 1), date(2090, 12, 31)),
    every=st.integers(1, 12),
)
def test_instalments_sum_exactly_to_the_contract_amount_and_differ_by_one_minor_unit_at_most(
    amount: Money, count: int, first_due: date, every: int
) -> None:
    schedule = build_schedule(amount, count, first_due, every_months=every)
    minors = [i.amount.minor for i in schedule]
    assert len(schedule) == count
    assert [i.number for i in schedule] == list(range(1, count + 1))
    assert {i.amount.currency for i in schedule} == {amount.currency}
    assert sum(minors) == amount.minor
    total = Money.zero(amount.currency)
    for instalment in schedule:
        total += instalment.amount
    assert total == amount
    assert max(minors) - min(minors) <= 1
    assert minors == sorted(minors, reverse=True), "the first instalments carry the remainder"
    assert schedule[0].due == first_due
    for i, instalment in enumerate(schedule):
        due = instalment.due
        assert due.year * 12 + due.month == first_due.year * 12 + first_due.month + i * every
        month_days = calendar.monthrange(due.year, due.month)[1]
        assert due.day == min(first_due.day, month_days)
    assert all(a.due < b.due for a, b in itertools.pairwise(schedule))


@FAST
@given(amount=money(positive=False), parts=st.integers(1, 120))
def test_allocation_splits_any_amount_exactly_into_parts_one_minor_unit_apart(
    amount: Money, parts: int
) -> None:
    shares = amount.allocate(parts)
    minors = [share.minor for share in shares]
    assert len(shares) == parts
    assert sum(minors) == amount.minor
    assert max(minors) - min(minors) <= 1
    assert all(share.currency == amount.currency for share in shares)
    exponent = minor_units(amount.currency)
    assert all(-share.amount.as_tuple().exponent <= exponent for share in shares)  # type: ignore[operator]


def test_allocation_gives_the_remainder_to_the_first_parts() -> None:
    assert Money.of("100", "EUR").allocate(3) == (
        Money.of("33.34", "EUR"),
        Money.of("33.33", "EUR"),
        Money.of("33.33", "EUR"),
    )
    assert Money.of("10", "JPY").allocate(4) == tuple(Money.of(n, "JPY") for n in (3, 3, 2, 2))
    assert Money.of("0.010", "BHD").allocate(3) == tuple(
        Money.of(n, "BHD") for n in ("0.004", "0.003", "0.003")
    )
    with pytest.raises(ValidationError):
        build_schedule(Money.of("1", "EUR"), 0, date(2026, 1, 1))
    with pytest.raises(ValidationError):
        Money.of("1", "EUR").allocate(0)


# -- payments -------------------------------------------------------------------------


def receivable(amount: Money, due: date) -> Receivable:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Receivable(
        id="r1",
        tenant_id="default",
        created_at=at,
        created_by="system",
        updated_at=at,
        updated_by="system",
        contract_id="c1",
        customer_id="k1",
        instalment=1,
        amount=amount,
        due=due,
        paid=Money.zero(amount.currency),
    )


payments = st.lists(
    st.tuples(
        st.sampled_from(["TX-1", "TX-2", "TX-3", "TX-4", "TX-5"]),  # references repeat
        st.integers(-3, 3000),  # minor units, sometimes not positive
        st.booleans(),  # allow_overpayment
        st.booleans(),  # in a foreign currency
    ),
    max_size=20,
)


@FAST
@given(
    currency=st.sampled_from(CURRENCIES),
    owed=st.integers(1, 5000),
    steps=payments,
    today=st.dates(date(2026, 1, 1), date(2026, 3, 1)),
)
def test_payments_never_push_paid_past_the_amount_and_the_excess_is_always_recorded(
    currency: str, owed: int, steps: list[tuple[str, int, bool, bool]], today: date
) -> None:
    due = date(2026, 2, 1)
    current = receivable(Money.from_minor(owed, currency), due)
    seen: dict[str, int] = {}
    paid = over = 0
    for reference, minor, allow, foreign in steps:
        other = "USD" if currency != "USD" else "EUR"
        amount = Money.from_minor(minor, other if foreign else currency)
        payment = Payment(reference, amount, datetime(2026, 1, 2, tzinfo=UTC), "fin")
        if reference in seen:
            assert apply_payment(current, payment, today, allow_overpayment=allow) is current
            continue
        outstanding = owed - paid
        refuse = foreign or minor <= 0 or (minor > outstanding and not allow)
        if refuse:
            with pytest.raises(ValidationError):
                apply_payment(current, payment, today, allow_overpayment=allow)
            continue
        current = apply_payment(current, payment, today, allow_overpayment=allow)
        seen[reference] = minor
        paid += min(minor, outstanding)
        over += max(0, minor - outstanding)
        assert current.paid.minor == paid
        assert current.paid <= current.amount
        assert (current.overpaid.minor if current.overpaid else 0) == over
        assert paid + over == sum(seen.values())
        assert [p.reference for p in current.payments] == list(seen)
        # Only the overdue scan marks a receivable overdue (and announces it);
        # a payment leaves an unpaid one partially paid.
        expected = ReceivableStatus.PAID if paid == owed else ReceivableStatus.PARTIALLY_PAID
        assert current.status is expected


# -- state machines -------------------------------------------------------------------

_L = LeadStatus
#: DESIGN §4: new → assigned → contacted → qualified → converted | disqualified (from any open status).
DOCUMENTED_LEAD_MOVES = {
    (_L.NEW, _L.ASSIGNED),
    (_L.ASSIGNED, _L.CONTACTED),
    (_L.CONTACTED, _L.QUALIFIED),
    (_L.QUALIFIED, _L.CONVERTED),
    *((status, _L.DISQUALIFIED) for status in (_L.NEW, _L.ASSIGNED, _L.CONTACTED, _L.QUALIFIED)),
}
_C = ContractStatus
#: DESIGN §4: draft → pending_approval → approved | rejected → signed → active → completed |
#: terminated; a draft needing no approval is approved on submission; a rejected one is revised
#: back to draft; a signed contract may be terminated before it is active.
DOCUMENTED_CONTRACT_MOVES = {
    (_C.DRAFT, _C.PENDING_APPROVAL),
    (_C.DRAFT, _C.APPROVED),
    (_C.PENDING_APPROVAL, _C.APPROVED),
    (_C.PENDING_APPROVAL, _C.REJECTED),
    (_C.PENDING_APPROVAL, _C.DRAFT),  # recalled by its owner
    (_C.REJECTED, _C.DRAFT),
    (_C.APPROVED, _C.DRAFT),  # recalled before signing
    (_C.APPROVED, _C.SIGNED),
    (_C.SIGNED, _C.ACTIVE),
    (_C.SIGNED, _C.TERMINATED),
    (_C.ACTIVE, _C.COMPLETED),
    (_C.ACTIVE, _C.TERMINATED),
}


@pytest.mark.parametrize(
    ("machine", "statuses", "documented"),
    [
        (LEAD_MOVES, LeadStatus, DOCUMENTED_LEAD_MOVES),
        (CONTRACT_MOVES, ContractStatus, DOCUMENTED_CONTRACT_MOVES),
    ],
    ids=["lead", "contract"],
)
def test_each_state_machine_accepts_exactly_its_documented_moves(
    machine: Any, statuses: Any, documented: set[tuple[Any, Any]]
) -> None:
    pairs = list(itertools.product(statuses, repeat=2))
    for from_, to in pairs:
        assert machine.allows(from_, to) is ((from_, to) in documented), (from_, to)
        if (from_, to) in documented:
            assert machine.check(from_, to) is to
        else:
            with pytest.raises(InvalidTransition) as info:
                machine.check(from_, to)
            assert (info.value.from_, info.value.to) == (from_.value, to.value)
    assert len([p for p in pairs if machine.allows(*p)]) == len(documented)


# -- random walks through the services (memory adapter) ---------------------------------


def world() -> tuple[pycrm.CRM, dict[str, str]]:
    crm = pycrm.connect("memory://", clock=FakeClock(), load_plugins=False)
    with crm.session(actor=crm.system_actor) as s:
        users = {
            "sam": s.org.create_user("Sam", "sam@corp.example", "sales").id,
            "kim": s.org.create_user("Kim", "kim@corp.example", "sales").id,
            "max": s.org.create_user(
                "Max", "max@corp.example", "sales", roles=["sales_manager"]
            ).id,
            "lea": s.org.create_user("Lea", "lea@corp.example", "legal", roles=["legal"]).id,
        }
    return crm, users


LEAD_ACTIONS = ["assign_sam", "assign_kim", "contact", "qualify", "convert", "disqualify", "route"]
#: The call that moves a lead on from each status, so walks get deep as well as wide.
LEAD_PROGRESS = {
    _L.NEW: "assign_sam",
    _L.ASSIGNED: "contact",
    _L.CONTACTED: "qualify",
    _L.QUALIFIED: "convert",
}


def next_action(data: st.DataObject, progress: list[str], every: list[str]) -> str:
    """Half the time a call that moves on from here, else any call at all."""
    if progress and data.draw(st.booleans(), label="move on"):
        return data.draw(st.sampled_from(progress), label="action")
    return data.draw(st.sampled_from(every), label="action")


def expected_lead_status(status: LeadStatus, action: str) -> LeadStatus | None:
    """What the documented rules say ``action`` does from ``status`` (None: refused)."""
    is_open = status not in (_L.CONVERTED, _L.DISQUALIFIED)
    if action.startswith("assign"):
        return (_L.ASSIGNED if status is _L.NEW else status) if is_open else None
    if action == "route":
        return status if status is _L.NEW else None  # no routing rules: stays new
    target = {
        "contact": _L.CONTACTED,
        "qualify": _L.QUALIFIED,
        "convert": _L.CONVERTED,
        "disqualify": _L.DISQUALIFIED,
    }[action]
    return target if (status, target) in DOCUMENTED_LEAD_MOVES else None


@WALKS
@given(steps=st.integers(0, 10), data=st.data())
def test_a_random_walk_through_the_lead_service_makes_only_documented_moves(
    steps: int, data: st.DataObject
) -> None:
    crm, users = world()
    with crm.session(actor=crm.system_actor) as s:
        lead_id = s.leads.capture("Walker", source="api", email="walk@example.com").id
    status = LeadStatus.NEW
    for _ in range(steps):
        progress = [LEAD_PROGRESS[status]] if status in LEAD_PROGRESS else []
        action = next_action(data, progress, LEAD_ACTIONS)
        expected = expected_lead_status(status, action)
        with crm.session(actor=crm.system_actor) as s:
            calls = {
                "assign_sam": lambda: s.leads.assign(lead_id, users["sam"]),
                "assign_kim": lambda: s.leads.assign(lead_id, users["kim"]),
                "contact": lambda: s.leads.mark_contacted(lead_id),
                "qualify": lambda: s.leads.qualify(lead_id),
                "convert": lambda: s.leads.convert(lead_id),
                "disqualify": lambda: s.leads.disqualify(lead_id, "walked away"),
                "route": lambda: s.leads.route(lead_id),
            }
            if expected is None:
                with pytest.raises(InvalidTransition):
                    calls[action]()
            else:
                calls[action]()
            after = s.leads.get(lead_id).status
        if expected is None:
            assert after is status, (action, status)
        else:
            assert after is expected, (action, status)
            assert after is status or (status, after) in DOCUMENTED_LEAD_MOVES
        status = after


CONTRACT_ACTIONS = [
    "submit",
    "approve_max",
    "approve_lea",
    "approve_system",
    "reject",
    "revise",
    "sign",
    "activate",
    "complete",
    "terminate",
]
#: The calls that move a contract on from each status.
CONTRACT_PROGRESS = {
    _C.DRAFT: ["submit"],
    _C.PENDING_APPROVAL: ["approve_max", "approve_lea", "approve_system", "reject"],
    _C.REJECTED: ["revise"],
    _C.APPROVED: ["sign"],
    _C.SIGNED: ["activate", "terminate"],
    _C.ACTIVE: ["complete", "terminate"],
}


@WALKS
@given(
    discount=st.sampled_from([0, 10, 15]),
    standard_terms=st.booleans(),
    steps=st.integers(0, 12),
    data=st.data(),
)
def test_a_random_walk_through_the_contract_service_makes_only_documented_moves(
    discount: int, standard_terms: bool, steps: int, data: st.DataObject
) -> None:
    crm, users = world()
    with crm.session(actor=crm.system_actor) as s:
        customer = s.customers.create("Walker GmbH")
        deal = s.deals.create(
            "Walk", customer_id=customer.id, amount=Money.of("1000", "EUR"), owner_id=users["sam"]
        )
        s.deals.win(deal.id)
        contract_id = s.contracts.draft(
            deal.id, discount_percent=discount, standard_terms=standard_terms, instalments=2
        ).id
    status = ContractStatus.DRAFT
    for _ in range(steps):
        action = next_action(data, CONTRACT_PROGRESS.get(status, []), CONTRACT_ACTIONS)
        actor: Any = {"approve_max": users["max"], "approve_lea": users["lea"]}.get(
            action, crm.system_actor
        )
        with crm.session(actor=actor) as s:
            calls = {
                "submit": lambda: s.contracts.submit(contract_id),
                "approve_max": lambda: s.contracts.approve(contract_id),
                "approve_lea": lambda: s.contracts.approve(contract_id),
                "approve_system": lambda: s.contracts.approve(contract_id),
                "reject": lambda: s.contracts.reject(contract_id, comment="no"),
                "revise": lambda: s.contracts.revise(contract_id),
                "sign": lambda: s.contracts.sign(contract_id),
                "activate": lambda: s.contracts.activate(contract_id),
                "complete": lambda: s.contracts.complete(contract_id),
                "terminate": lambda: s.contracts.terminate(contract_id, "ended"),
            }
            try:
                calls[action]()
            except (InvalidTransition, PermissionDenied):
                ok = False
            else:
                ok = True
        with crm.session(actor=crm.system_actor) as s:
            contract = s.contracts.get(contract_id)
            receivables = len(s.receivables.list(contract_id=contract_id))
        after = contract.status
        if not ok:
            assert after is status, (action, status)
        else:
            assert after is status or (status, after) in DOCUMENTED_CONTRACT_MOVES, (
                action,
                status,
                after,
            )
        if after is ContractStatus.PENDING_APPROVAL:
            assert contract.approvals
        if after is ContractStatus.APPROVED:
            assert all(a.decision.value == "approved" for a in contract.approvals)
        signed = after in (_C.SIGNED, _C.ACTIVE, _C.COMPLETED, _C.TERMINATED)
        assert receivables == (2 if signed else 0)
        status = after
