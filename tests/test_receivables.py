"""Contract tests for ``session.receivables`` (DESIGN §4 Receivables), on every backend.

Created when a contract is signed, one per instalment; payments are partial
and idempotent by reference; open / partially_paid / paid / overdue /
written_off; a payment tells the deal owner. Finance owns them. Every refused
call leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
from conftest import ConnectFn
from pycrm.domain.receivables import Receivable, ReceivableStatus
from pycrm.domain.tasks import TaskPriority
from pycrm.errors import (
    DuplicateError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import eur, outbox_names, refused, snapshot

Call = Callable[[Session], object]

# -- helpers -------------------------------------------------------------------


def signed(
    crm: pycrm.CRM, amount: str = "300", instalments: int = 3, first_due: date = date(2026, 2, 1)
) -> SimpleNamespace:
    """Staff, and a signed contract of Sam's whose receivables finance now holds."""
    with crm.session(actor=crm.system_actor) as s:
        p = SimpleNamespace(
            sam=s.org.create_user(name="Sam", email="sam@corp.example", department="sales"),
            kim=s.org.create_user(name="Kim", email="kim@corp.example", department="sales"),
            lea=s.org.create_user(
                name="Lea", email="lea@corp.example", department="legal", roles=["legal"]
            ),
            fin=s.org.create_user(name="Fin", email="fin@corp.example", department="finance"),
            ada=s.org.create_user(name="Ada", email="ada@corp.example", department="admin"),
            acme=s.customers.create("Acme GmbH"),
        )
        deal = s.deals.create("Line", customer_id=p.acme.id, amount=eur(amount), owner_id=p.sam.id)
        s.deals.win(deal.id)
        draft = s.contracts.draft(deal.id, instalments=instalments, first_due=first_due)
        p.contract = s.contracts.sign(s.contracts.submit(draft.id).id)
        p.receivables = s.receivables.list(contract_id=p.contract.id)
    return p


def pay(crm: pycrm.CRM, actor: str, receivable_id: str, amount: str, ref: str, **kw: Any) -> Any:
    with crm.session(actor=actor) as s:
        return s.receivables.record_payment(receivable_id, eur(amount), reference=ref, **kw)


# -- listing ---------------------------------------------------------------------


def test_finance_lists_receivables_by_due_date_and_sales_sees_only_its_own_without_payments(
    crm: pycrm.CRM,
) -> None:
    p = signed(crm)
    first, second, third = p.receivables
    assert [(r.instalment, r.due, r.amount, r.status) for r in p.receivables] == [
        (1, date(2026, 2, 1), eur("100"), ReceivableStatus.OPEN),
        (2, date(2026, 3, 1), eur("100"), ReceivableStatus.OPEN),
        (3, date(2026, 4, 1), eur("100"), ReceivableStatus.OPEN),
    ]
    pay(crm, p.fin.id, second.id, "150", "TX-2", allow_overpayment=True)
    with crm.session(actor=p.fin.id) as s:
        assert s.receivables.get(first.id) == first
        assert [r.id for r in s.receivables.list(customer_id=p.acme.id)] == [
            first.id,
            second.id,
            third.id,
        ]
        assert [r.id for r in s.receivables.list(status="open")] == [first.id, third.id]
        assert [r.id for r in s.receivables.list(status=ReceivableStatus.PAID)] == [second.id]
        assert [r.id for r in s.receivables.list(limit=1, offset=2)] == [third.id]
        assert s.receivables.list(contract_id="other") == []
        with pytest.raises(ValidationError):
            s.receivables.list(status="late")
        with pytest.raises(NotFound):
            s.receivables.get("no-such-receivable")
    with crm.session(actor=p.sam.id) as s:
        mine = s.receivables.list()
    with crm.session(actor=p.kim.id) as s:
        assert s.receivables.list() == []
    assert [r.id for r in mine] == [first.id, second.id, third.id]
    assert (mine[1].paid, mine[1].status) == (eur("100"), ReceivableStatus.PAID)
    assert (mine[1].payments, mine[1].overpaid) == ((), None)


# -- payments --------------------------------------------------------------------


def test_a_partial_then_a_full_payment_pay_a_receivable_and_each_tells_the_deal_owner(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = signed(crm)
    first = p.receivables[0]
    part = pay(crm, p.fin.id, first.id, "30.50", "TX-1")
    assert (part.status, part.paid, part.outstanding) == (
        ReceivableStatus.PARTIALLY_PAID,
        eur("30.50"),
        eur("69.50"),
    )
    received = datetime(2026, 1, 4, 12, 0, tzinfo=UTC)
    full = pay(crm, p.fin.id, first.id, "69.50", "TX-2", received_at=received)
    assert (full.status, full.paid, full.outstanding, full.overpaid) == (
        ReceivableStatus.PAID,
        eur("100"),
        eur("0"),
        None,
    )
    assert [(x.reference, x.amount, x.received_at, x.recorded_by) for x in full.payments] == [
        ("TX-1", eur("30.50"), fake_clock.now(), p.fin.id),
        ("TX-2", eur("69.50"), received, p.fin.id),
    ]
    with crm.session(actor=p.fin.id) as s:
        assert s.receivables.find_payment("TX-2") == full
        assert s.receivables.find_payment("TX-9") is None
    names = outbox_names(crm)
    assert names[-4:] == ["payment_received", "task_created"] * 2
    with crm.session(actor=p.sam.id) as s:
        told = s.tasks.list(assignee_id=p.sam.id)
    assert [(t.title, t.kind, t.priority, t.related_id) for t in told] == [
        ("Payment received: 30.50 EUR (TX-1)", "payment_received", TaskPriority.LOW, first.id),
        ("Payment received: 69.50 EUR (TX-2)", "payment_received", TaskPriority.LOW, first.id),
    ]


def test_the_same_reference_twice_counts_once_and_may_not_change_its_amount(
    crm: pycrm.CRM,
) -> None:
    p = signed(crm)
    first = p.receivables[0]
    once = pay(crm, p.fin.id, first.id, "40", "TX-1")
    before = snapshot(crm)
    twice = pay(crm, p.fin.id, first.id, "40", "TX-1")
    assert twice == once
    assert snapshot(crm) == before
    assert (twice.paid, len(twice.payments), twice.version) == (eur("40"), 1, once.version)
    assert outbox_names(crm).count("payment_received") == 1
    refused(
        crm,
        p.fin.id,
        (
            DuplicateError,
            lambda s: s.receivables.record_payment(first.id, eur("41"), reference="TX-1"),
        ),
        (
            DuplicateError,
            lambda s: s.receivables.record_payment(
                p.receivables[1].id, eur("40"), reference="TX-1"
            ),
        ),
    )


def test_an_overpayment_is_refused_unless_allowed_and_then_the_excess_is_kept_apart(
    crm: pycrm.CRM,
) -> None:
    p = signed(crm)
    first = p.receivables[0]
    pay(crm, p.fin.id, first.id, "60", "TX-1")
    refused(
        crm,
        p.fin.id,
        (
            ValidationError,
            lambda s: s.receivables.record_payment(first.id, eur("40.01"), reference="TX-2"),
        ),
    )
    over = pay(crm, p.fin.id, first.id, "55", "TX-2", allow_overpayment=True)
    assert (over.status, over.paid, over.overpaid, over.outstanding) == (
        ReceivableStatus.PAID,
        eur("100"),
        eur("15"),
        eur("0"),
    )
    more = pay(crm, p.fin.id, first.id, "5", "TX-3", allow_overpayment=True)
    assert (more.paid, more.overpaid) == (eur("100"), eur("20"))
    refused(
        crm,
        p.fin.id,
        (
            ValidationError,
            lambda s: s.receivables.record_payment(first.id, eur("1"), reference="TX-4"),
        ),
    )


def test_bad_payments_are_refused_and_change_nothing(crm: pycrm.CRM) -> None:
    p = signed(crm)
    rid = p.receivables[0].id

    def record(amount: Any, reference: Any = "TX-1", **kw: Any) -> Call:
        return lambda s: s.receivables.record_payment(rid, amount, reference=reference, **kw)

    errors = refused(
        crm,
        p.fin.id,
        (ValidationError, record(pycrm.Money.of("10", "USD"))),
        (ValidationError, record(eur("0"))),
        (ValidationError, record(eur("-5"))),
        (ValidationError, record(10.0)),
        (ValidationError, record(None)),
        (ValidationError, record(eur("10"), reference="")),
        (ValidationError, record(eur("10"), received_at=datetime(2026, 1, 5))),
        (ValidationError, record(eur("10"), allow_overpayment="yes")),
        (NotFound, lambda s: s.receivables.record_payment("nope", eur("1"), reference="TX-1")),
    )
    assert [getattr(e, "field", None) for e in errors[:7]] == [
        "amount",
        "amount",
        "amount",
        "amount",
        "amount",
        "reference",
        "received_at",
    ]


def test_only_finance_and_admins_record_payments_write_off_and_scan(crm: pycrm.CRM) -> None:
    p = signed(crm)
    rid = p.receivables[0].id
    for outsider in (p.sam, p.lea):
        refused(
            crm,
            outsider.id,
            (
                PermissionDenied,
                lambda s: s.receivables.record_payment(rid, eur("10"), reference="TX-1"),
            ),
            (PermissionDenied, lambda s: s.receivables.write_off(rid, "lost cause")),
            (PermissionDenied, lambda s: s.receivables.scan_overdue()),
        )
    assert pay(crm, p.ada.id, rid, "10", "TX-1").paid == eur("10")


# -- write-off and overdue ---------------------------------------------------------


def test_write_off_needs_a_reason_and_ends_collection(crm: pycrm.CRM) -> None:
    p = signed(crm)
    first, _second, third = p.receivables
    pay(crm, p.fin.id, first.id, "30", "TX-1")
    pay(crm, p.fin.id, third.id, "100", "TX-3")
    refused(crm, p.fin.id, (ValidationError, lambda s: s.receivables.write_off(first.id, "")))
    with crm.session(actor=p.fin.id) as s:
        gone = s.receivables.write_off(first.id, "customer insolvent")
    assert (gone.status, gone.written_off_reason, gone.paid) == (
        ReceivableStatus.WRITTEN_OFF,
        "customer insolvent",
        eur("30"),
    )
    refused(
        crm,
        p.fin.id,
        (InvalidTransition, lambda s: s.receivables.write_off(first.id, "again")),
        (InvalidTransition, lambda s: s.receivables.write_off(third.id, "paid already")),
        (
            ValidationError,
            lambda s: s.receivables.record_payment(first.id, eur("10"), reference="TX-9"),
        ),
    )
    with crm.session(actor=p.sam.id) as s:
        assert s.customers.view(p.acme.id).outstanding == {"EUR": eur("100")}


def test_scan_overdue_marks_unpaid_receivables_past_due_and_gives_finance_a_task(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = signed(crm, "300", 3, first_due=date(2026, 1, 10))
    first, second, _third = p.receivables  # due Jan 10, Feb 10, Mar 10
    pay(crm, p.fin.id, first.id, "20", "TX-1")
    fake_clock.set(datetime(2026, 2, 10, 23, 59, tzinfo=UTC))  # the second is due today
    with crm.session(actor=p.fin.id) as s:
        late = s.receivables.scan_overdue()
        assert s.receivables.scan_overdue() == []
        tasks = s.tasks.list(department="finance")
    assert [(r.id, r.status) for r in late] == [(first.id, ReceivableStatus.OVERDUE)]
    assert [(t.kind, t.related_id, t.title, t.priority, t.due_at) for t in tasks] == [
        (
            "receivable_overdue",
            first.id,
            "Overdue: 80.00 EUR due 2026-01-10",
            TaskPriority.HIGH,
            fake_clock.now(),
        )
    ]
    assert outbox_names(crm)[-2:] == ["receivable_overdue", "task_created"]
    fake_clock.advance(minutes=1)
    with crm.session(actor=p.ada.id) as s:
        assert [r.id for r in s.receivables.scan_overdue()] == [second.id]
    still = pay(crm, p.fin.id, first.id, "50", "TX-2")
    assert (still.status, still.outstanding) == (ReceivableStatus.OVERDUE, eur("30"))
    done = pay(crm, p.fin.id, first.id, "30", "TX-3")
    assert done.status is ReceivableStatus.PAID
    with crm.session(actor=p.fin.id) as s:
        assert [r.id for r in s.receivables.list(status="overdue")] == [second.id]
        assert s.customers.view(p.acme.id).outstanding == {"EUR": eur("200")}


def test_a_receivable_first_seen_late_through_a_partial_payment_still_gets_a_finance_task(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = signed(crm, "100", 1, first_due=date(2026, 1, 10))
    (only,) = p.receivables
    fake_clock.set(datetime(2026, 1, 20, 9, 0, tzinfo=UTC))
    late: Receivable = pay(crm, p.fin.id, only.id, "10", "TX-1")
    # A payment never makes a receivable overdue on its own: only the scan does,
    # and the scan announces it, so finance gets its task.
    assert late.status is ReceivableStatus.PARTIALLY_PAID
    with crm.session(actor=p.fin.id) as s:
        assert [r.id for r in s.receivables.scan_overdue()] == [only.id]
        tasks = s.tasks.list(department="finance", kind="receivable_overdue")
    assert [t.related_id for t in tasks] == [only.id]
    assert "receivable_overdue" in outbox_names(crm)


def test_scan_overdue_shows_only_the_receivables_the_actor_may_read(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    # A policy may let someone update every receivable but read only their own
    # (found by the random read-policy property): the sweep marks them all and
    # returns only what the actor may read.
    policy = {
        "grants": [
            {"roles": ["*"], "resources": ["*"], "actions": ["create", "update", "approve"],
             "scope": "all"},
            {"roles": ["*"], "resources": ["*"], "actions": ["read"], "scope": "own"},
        ]
    }  # fmt: skip
    crm = connect_crm(policy=policy)
    p = signed(crm, "300", 3, first_due=date(2026, 1, 10))
    fake_clock.set(datetime(2026, 3, 20, tzinfo=UTC))
    with crm.session(actor=p.ada.id) as s:
        assert s.receivables.scan_overdue() == []
    with crm.session(actor=crm.system_actor) as s:
        statuses = {r.status for r in s.receivables.list(contract_id=p.contract.id)}
    assert statuses == {ReceivableStatus.OVERDUE}
