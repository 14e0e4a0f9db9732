"""The whole lead-to-cash flow (DESIGN §4-5), end to end, on every backend.

Marketing captures a lead, a sales manager assigns it, the rep works and
converts it, the deal is won, legal and the sales manager approve the
contract, finance collects the receivables. Each department checks its own
view, and every handoff signal must arrive once, in order, after its commit.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import pycrm
from pycrm import signals
from pycrm.domain.contracts import ContractStatus, Decision
from pycrm.domain.deals import DealStatus
from pycrm.domain.events import Event
from pycrm.domain.leads import LeadStatus
from pycrm.domain.receivables import ReceivableStatus
from pycrm.domain.tasks import TaskPriority, TaskStatus
from pycrm.errors import PermissionDenied
from pycrm.testing import FakeClock

#: Every signal in the catalogue, so an unexpected one would show up in the order.
CATALOGUE = [name for name in signals.__all__ if name not in ("dispatch", "signal_for")]


@pytest.fixture
def received(crm: pycrm.CRM) -> Iterator[list[tuple[str, Event]]]:
    """Every signal the CRM sends during the test, as ``(signal name, event)``, in order."""
    got: list[tuple[str, Event]] = []
    connected = []
    for name in CATALOGUE:

        def receiver(sender: Any, event: Event, _name: str = name) -> None:
            assert sender is crm
            got.append((_name, event))

        signals.signal_for(name).connect(receiver, weak=False)
        connected.append((name, receiver))
    try:
        yield got
    finally:
        for name, receiver in connected:
            signals.signal_for(name).disconnect(receiver)


def eur(amount: str) -> pycrm.Money:
    return pycrm.Money.of(amount, "EUR")


def test_a_lead_becomes_cash_with_each_department_seeing_and_announcing_its_part(
    crm: pycrm.CRM, fake_clock: FakeClock, received: list[tuple[str, Event]]
) -> None:
    # -- the company: one user per department, and a customer we already know --
    with crm.session(actor=crm.system_actor) as s:
        mia = s.org.create_user(name="Mia", email="mia@corp.example", department="marketing")
        sam = s.org.create_user(name="Sam", email="sam@corp.example", department="sales")
        max_ = s.org.create_user(
            name="Max", email="max@corp.example", department="sales", roles=["sales_manager"]
        )
        lea = s.org.create_user(
            name="Lea", email="lea@corp.example", department="legal", roles=["legal"]
        )
        fin = s.org.create_user(name="Fin", email="fin@corp.example", department="finance")
        acme = s.customers.create("ACME   gmbh", industry="machinery")
        known_anna = s.contacts.create(
            "Anna Schmidt", customer_id=acme.id, emails=["Anna@ACME.example"]
        )
    received.clear()

    # -- marketing captures leads ----------------------------------------------
    fake_clock.advance(minutes=5)
    with crm.session(actor=mia.id) as s:
        lead = s.leads.capture(
            "Anna Schmidt",
            source="webform",
            email="anna@acme.example",
            phone="030 1234567",
            company="Acme GmbH",
            needs="packaging line",
            campaign="spring-fair",
            region="DACH",
        )
        fake_clock.advance(minutes=1)
        other = s.leads.capture("Bo Berg", source="Trade Show", email="bo@berg.example")
    with crm.session(actor=mia.id) as s:
        assert [x.id for x in s.leads.search(status="new")] == [other.id, lead.id]
        assert [x.id for x in s.leads.search(campaign="spring-fair")] == [lead.id]
        assert [x.id for x in s.leads.search(source="trade_show")] == [other.id]
        assert [x.id for x in s.leads.search("schmidt")] == [lead.id]

    # -- a sales manager assigns it; the owner must make first contact in 24 h ---
    fake_clock.advance(minutes=30)
    assigned_at = fake_clock.now()
    with crm.session(actor=max_.id) as s:
        assigned = s.leads.assign(lead.id, sam.id, reason="DACH packaging")
    assert (assigned.status, assigned.owner_id, assigned.assigned_at) == (
        LeadStatus.ASSIGNED,
        sam.id,
        assigned_at,
    )
    with crm.session(actor=sam.id) as s:
        (first_contact,) = s.tasks.list(assignee_id=sam.id)
    assert first_contact.kind == "first_contact"
    assert first_contact.related_id == lead.id
    assert first_contact.due_at == assigned_at + timedelta(hours=24)
    assert first_contact.priority is TaskPriority.HIGH

    # -- the rep contacts, qualifies and converts ----------------------------------
    fake_clock.advance(hours=3)
    with crm.session(actor=sam.id) as s:
        assert s.leads.mark_contacted(lead.id).status is LeadStatus.CONTACTED
        assert s.tasks.list(assignee_id=sam.id) == []
        assert s.tasks.get(first_contact.id).status is TaskStatus.DONE
        assert s.leads.qualify(lead.id).status is LeadStatus.QUALIFIED
        fake_clock.advance(days=1)
        converted_at = fake_clock.now()
        customer, contact, deal = s.leads.convert(
            lead.id, amount=eur("120000"), expected_close=date(2026, 3, 31)
        )
        converted = s.leads.get(lead.id)
    assert customer.id == acme.id, "the company name matches ignoring case and spacing"
    assert contact.id == known_anna.id, "the contact with the same email is reused"
    assert (converted.status, converted.customer_id, converted.contact_id, converted.deal_id) == (
        LeadStatus.CONVERTED,
        acme.id,
        known_anna.id,
        deal.id,
    )
    assert (deal.stage, deal.probability, deal.owner_id) == ("qualification", 10, sam.id)
    assert deal.weighted_amount == eur("12000")

    # -- the deal moves through its stages and is won ------------------------------
    fake_clock.advance(days=2)
    moved_at = fake_clock.now()
    with crm.session(actor=sam.id) as s:
        s.deals.move(deal.id, "needs_analysis")
    fake_clock.advance(days=5)
    proposed_at = fake_clock.now()
    with crm.session(actor=sam.id) as s:
        proposal = s.deals.move(deal.id, "proposal")
        assert (proposal.probability, proposal.weighted_amount) == (50, eur("60000"))
        fake_clock.advance(days=3)
        won_at = fake_clock.now()
        won = s.deals.win(deal.id)
    assert [(h.stage, h.at, h.by) for h in won.stage_history] == [
        ("qualification", converted_at, sam.id),
        ("needs_analysis", moved_at, sam.id),
        ("proposal", proposed_at, sam.id),
        ("won", won_at, sam.id),
    ]
    assert (won.status, won.probability, won.closed_at) == (DealStatus.WON, 100, won_at)
    with crm.session(actor=sam.id) as s:
        assert [d.id for d in s.deals.list(owner_id=sam.id, status="won")] == [deal.id]
        assert s.deals.list(owner_id=sam.id, status="open") == []

    # -- the contract: a 15 % discount and special terms need two approvals ---------
    # 15 % off the deal's 120,000 EUR is 18,000: 102,000 EUR in three instalments
    with crm.session(actor=sam.id) as s:
        draft = s.contracts.draft(
            deal.id,
            discount_percent=15,
            standard_terms=False,
            terms="payment within 45 days",
            instalments=3,
            first_due=date(2026, 2, 1),
        )
        assert (draft.list_amount, draft.amount) == (eur("120000"), eur("102000"))
        assert [(i.number, i.due, i.amount) for i in draft.schedule] == [
            (1, date(2026, 2, 1), eur("34000")),
            (2, date(2026, 3, 1), eur("34000")),
            (3, date(2026, 4, 1), eur("34000")),
        ]
        submitted = s.contracts.submit(draft.id)
    assert submitted.status is ContractStatus.PENDING_APPROVAL
    assert [(a.role, a.decision) for a in submitted.approvals] == [
        ("sales_manager", Decision.PENDING),
        ("legal", Decision.PENDING),
    ]
    for outsider in (sam, fin):
        with crm.session(actor=outsider.id) as s, pytest.raises(PermissionDenied):
            s.contracts.approve(draft.id)
    with crm.session(actor=lea.id) as s:
        assert [c.id for c in s.contracts.awaiting("legal")] == [draft.id]
    with crm.session(actor=max_.id) as s:
        assert [c.id for c in s.contracts.awaiting("sales_manager")] == [draft.id]
        half = s.contracts.approve(draft.id, comment="margin ok")
        assert s.contracts.awaiting("sales_manager") == []
    assert half.status is ContractStatus.PENDING_APPROVAL
    assert (half.approvals[0].decision, half.approvals[0].decided_by) == (
        Decision.APPROVED,
        max_.id,
    )
    with crm.session(actor=lea.id) as s:
        assert [c.id for c in s.contracts.awaiting("legal")] == [draft.id]
        approved = s.contracts.approve(draft.id)
        assert s.contracts.awaiting("legal") == []
    assert approved.status is ContractStatus.APPROVED
    assert [a.decision for a in approved.approvals] == [Decision.APPROVED, Decision.APPROVED]

    # -- signed: finance holds one receivable per instalment ------------------------
    fake_clock.advance(days=1)
    with crm.session(actor=sam.id) as s:
        signed = s.contracts.sign(draft.id)
    assert (signed.status, signed.signed_at) == (ContractStatus.SIGNED, fake_clock.now())
    with crm.session(actor=fin.id) as s:
        receivables = s.receivables.list(status="open")
    assert [(r.instalment, r.due, r.amount, r.owner_id) for r in receivables] == [
        (1, date(2026, 2, 1), eur("34000"), sam.id),
        (2, date(2026, 3, 1), eur("34000"), sam.id),
        (3, date(2026, 4, 1), eur("34000"), sam.id),
    ]
    assert functools.reduce(operator.add, (r.amount for r in receivables)) == signed.amount
    first, second, third = receivables

    # -- finance records a partial and a full payment; a repeat counts once ---------
    fake_clock.advance(hours=1)
    with crm.session(actor=fin.id) as s:
        partial = s.receivables.record_payment(first.id, eur("15000"), reference="BANK-001")
        assert (partial.status, partial.outstanding) == (
            ReceivableStatus.PARTIALLY_PAID,
            eur("19000"),
        )
    fake_clock.advance(hours=1)
    with crm.session(actor=fin.id) as s:
        paid = s.receivables.record_payment(first.id, eur("19000"), reference="BANK-002")
        again = s.receivables.record_payment(first.id, eur("19000"), reference="BANK-002")
        assert again == paid
        assert (paid.status, paid.paid, len(paid.payments)) == (
            ReceivableStatus.PAID,
            eur("34000"),
            2,
        )
        assert [r.id for r in s.receivables.list(status="paid")] == [first.id]
        assert [r.id for r in s.receivables.list(status="open")] == [second.id, third.id]
    with crm.session(actor=sam.id) as s:
        told = s.tasks.list(assignee_id=sam.id, kind="payment_received")
    assert [(t.title, t.related_id) for t in told] == [
        ("Payment received: 15,000.00 EUR (BANK-001)", first.id),
        ("Payment received: 19,000.00 EUR (BANK-002)", first.id),
    ]

    # -- time passes: the second instalment goes overdue, finance gets a task --------
    fake_clock.set(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    with crm.session(actor=fin.id) as s:
        assert s.receivables.list(status="overdue") == []
        overdue = s.receivables.scan_overdue()
        assert [r.id for r in overdue] == [second.id]
        assert [r.id for r in s.receivables.list(status="overdue")] == [second.id]
        (chase,) = s.tasks.list(department="finance")
    assert (chase.kind, chase.related_id, chase.due_at) == (
        "receivable_overdue",
        second.id,
        fake_clock.now(),
    )
    assert chase.title == "Overdue: 34,000.00 EUR due 2026-03-01"

    # -- marketing sees its lead converted; sales sees the whole customer ------------
    with crm.session(actor=mia.id) as s:
        assert [x.id for x in s.leads.search(status="converted")] == [lead.id]
    with crm.session(actor=sam.id) as s:
        view = s.customers.view(acme.id)
    assert [x.id for x in view.leads] == [lead.id]
    assert [x.id for x in view.deals] == [deal.id]
    assert [x.id for x in view.contracts] == [draft.id]
    assert [(r.id, r.status) for r in view.receivables] == [
        (first.id, ReceivableStatus.PAID),
        (second.id, ReceivableStatus.OVERDUE),
        (third.id, ReceivableStatus.OPEN),
    ]
    assert view.outstanding == {"EUR": eur("68000")}

    # -- every handoff was announced once, in order, by the right actor ---------------
    task_id = {t.related_id: t.id for t in (first_contact, chase)}
    told_ids = [t.id for t in told]
    assert [(name, e.record_id) for name, e in received] == [
        ("lead_captured", lead.id),
        ("lead_captured", other.id),
        ("lead_assigned", lead.id),
        ("task_created", task_id[lead.id]),
        ("deal_stage_changed", deal.id),
        ("lead_converted", lead.id),
        ("deal_stage_changed", deal.id),
        ("deal_stage_changed", deal.id),
        ("deal_won", deal.id),
        ("contract_submitted", draft.id),
        ("contract_approved", draft.id),
        ("contract_signed", draft.id),
        ("receivable_created", first.id),
        ("receivable_created", second.id),
        ("receivable_created", third.id),
        ("payment_received", first.id),
        ("task_created", told_ids[0]),
        ("payment_received", first.id),
        ("task_created", told_ids[1]),
        ("receivable_overdue", second.id),
        ("task_created", task_id[second.id]),
    ]
    actors = {name: e.actor_id for name, e in received}
    assert actors["lead_captured"] == mia.id
    assert actors["lead_assigned"] == max_.id
    assert actors["lead_converted"] == actors["deal_won"] == sam.id
    assert actors["contract_approved"] == lea.id
    assert actors["payment_received"] == actors["receivable_overdue"] == fin.id
    assert all(e.name == name for name, e in received)
    pending = crm.outbox.pending(limit=1000)
    setup = ["user_created"] * 5 + ["customer_created", "contact_created"]
    assert [e.name for e in pending[: len(setup)]] == setup
    assert [e.id for e in pending[len(setup) :]] == [e.id for _, e in received]
