"""Contract tests for ``session.leads`` (DESIGN §4 Leads), on every backend.

new → assigned → contacted → qualified → converted, or disqualified (with a
reason) from any open status. Every refused call leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
import support
from pycrm.domain.contact_points import PointKind
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.query import HasKey
from pycrm.domain.tasks import TaskPriority, TaskStatus
from pycrm.errors import (
    ConcurrencyError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import outbox_names, refused, snapshot

ConnectFn = Callable[..., pycrm.CRM]
Call = Callable[[Session], object]

# -- helpers -------------------------------------------------------------------


def staff(crm: pycrm.CRM) -> SimpleNamespace:
    return support.staff(
        crm, mia="marketing", sam="sales", kim="sales", max=("sales", ["sales_manager"])
    )


_n = iter(range(10**6))


def lead_at(s: Session, status: LeadStatus, owner_id: str, **fields: Any) -> Lead:
    """A lead walked to ``status`` by the documented calls."""
    n = next(_n)
    values: dict[str, Any] = {"email": f"lead{n}@prospect{n}.example", "company": f"Prospect {n}"}
    values.update(fields)
    lead = s.leads.capture(f"Lead {n}", source="webform", **values)
    if status is LeadStatus.NEW:
        return lead
    if status is LeadStatus.DISQUALIFIED:
        return s.leads.disqualify(lead.id, "no budget")
    if status is LeadStatus.MERGED:
        twin = s.leads.capture(f"Lead {n}", source="webform", on_duplicate="allow", **values)
        s.dedupe.merge(twin.id, [lead.id], record_type="lead")
        return s.leads.get(lead.id)
    lead = s.leads.assign(lead.id, owner_id)
    if status is LeadStatus.ASSIGNED:
        return lead
    lead = s.leads.mark_contacted(lead.id)
    if status is LeadStatus.CONTACTED:
        return lead
    lead = s.leads.qualify(lead.id)
    if status is LeadStatus.QUALIFIED:
        return lead
    s.leads.convert(lead.id)
    return s.leads.get(lead.id)


# -- capture --------------------------------------------------------------------


def test_capture_stores_and_announces_a_new_lead_with_normalised_details_marketing_may_fix(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        lead = s.leads.capture(
            "  Anna   Schmidt ",
            source="Trade Show",
            email="Anna@ACME.example",
            phone="030 1234567",
            company="Acme GmbH",
            campaign="spring",
            region="DACH",
            industry="machinery",
            needs="packaging line",
        )
    with crm.session(actor=people.mia.id) as s:
        stored = s.leads.get(lead.id)
    assert stored == lead
    assert (lead.status, lead.owner_id, lead.source) == (LeadStatus.NEW, None, "trade_show")
    assert lead.name == "Anna Schmidt"
    assert {(p.kind, p.value) for p in lead.contact_points} == {
        (PointKind.EMAIL, "Anna@acme.example"),
        (PointKind.PHONE, "+49301234567"),
    }
    assert (lead.created_by, lead.created_at) == (people.mia.id, fake_clock.now())
    assert outbox_names(crm)[-1] == "lead_captured"
    with crm.session(actor=people.mia.id) as s:
        fixed = s.leads.update(lead.id, title="CTO", emails=["cto@acme.example"])
    assert fixed.title == "CTO"
    assert {p.value for p in fixed.contact_points} == {"cto@acme.example", "+49301234567"}


def test_capture_of_bad_input_and_get_of_an_unknown_id_are_refused_and_store_nothing(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    errors = refused(
        crm,
        people.mia.id,
        (ValidationError, lambda s: s.leads.capture("", source="webform")),
        (ValidationError, lambda s: s.leads.capture("Anna", source="")),
        (ValidationError, lambda s: s.leads.capture("Anna", source="webform", email="nope")),
        (ValidationError, lambda s: s.leads.capture("Anna", source="webform", budget=5)),
        (ValidationError, lambda s: s.leads.capture("Anna", source="web", external_id=" ")),
        (ValidationError, lambda s: s.leads.capture("Anna", source="web", external_id=7)),
        (ValidationError, lambda s: s.leads.capture("Anna", source="web", external_id="a\0b")),
        (NotFound, lambda s: s.leads.get("no-such-lead")),
    )
    fields = [e.field for e in errors[:7]]  # type: ignore[attr-defined]
    assert fields == ["name", "source", "email", "budget", *["external_id"] * 3]


def test_a_lead_captured_with_its_id_elsewhere_is_found_by_it(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        lead = s.leads.capture("Anna", source="shop", external_id="order-4711")
        s.leads.capture("Ben", source="shop", external_id="order-4712")
    assert lead.external_id == "order-4711"
    with crm.session(actor=people.mia.id) as s:
        found = s.read(Lead).find(HasKey("external_id", "order-4711"))
    assert [f.id for f in found] == [lead.id]


# -- assignment -----------------------------------------------------------------


def test_assign_gives_the_owner_a_first_contact_task_due_within_the_configured_time(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    crm = connect_crm(first_contact_within=timedelta(hours=2))
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        lead = s.leads.capture("Anna", source="webform", company="Acme")
    fake_clock.advance(minutes=10)
    with crm.session(actor=people.max.id) as s:
        assigned = s.leads.assign(lead.id, people.sam.id, reason="knows packaging")
        why = s.leads.explain_assignment(lead.id)
    assert (assigned.status, assigned.owner_id, assigned.assigned_at) == (
        LeadStatus.ASSIGNED,
        people.sam.id,
        fake_clock.now(),
    )
    assert (why.owner_id, why.decided_by, why.reason) == (
        people.sam.id,
        f"user:{people.max.id}",
        "knows packaging",
    )
    with crm.session(actor=people.sam.id) as s:
        (task,) = s.tasks.list(assignee_id=people.sam.id)
    assert (task.kind, task.title, task.related_type, task.related_id) == (
        "first_contact",
        "First contact: Anna (Acme)",
        "lead",
        lead.id,
    )
    assert (task.due_at, task.priority) == (
        fake_clock.now() + timedelta(hours=2),
        TaskPriority.HIGH,
    )
    assert outbox_names(crm)[-2:] == ["lead_assigned", "task_created"]


def test_a_sales_manager_reassigns_open_leads_and_the_first_contact_task_follows_the_owner(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        lead = lead_at(s, LeadStatus.ASSIGNED, people.sam.id)
        (old_task,) = s.tasks.list(related_id=lead.id)
        contacted = lead_at(s, LeadStatus.CONTACTED, people.sam.id)
    refused(
        crm, people.sam.id, (PermissionDenied, lambda s: s.leads.assign(lead.id, people.kim.id))
    )
    refused(
        crm,
        people.max.id,
        (ValidationError, lambda s: s.leads.assign(lead.id, "nobody")),
        (NotFound, lambda s: s.leads.assign("no-such-lead", people.kim.id)),
    )
    with crm.session(actor=people.max.id) as s:
        again = s.leads.assign(lead.id, people.kim.id, reason="Sam is on leave")
        tasks = s.tasks.list(related_id=lead.id, status=None)
        moved = s.leads.assign(contacted.id, people.kim.id)
    assert (again.status, again.owner_id) == (LeadStatus.ASSIGNED, people.kim.id)
    by_id = {t.id: t for t in tasks}
    assert by_id.pop(old_task.id).status is TaskStatus.CANCELLED
    (new_task,) = by_id.values()
    assert (new_task.assignee_id, new_task.status, new_task.kind) == (
        people.kim.id,
        TaskStatus.OPEN,
        "first_contact",
    )
    assert (moved.status, moved.owner_id) == (LeadStatus.CONTACTED, people.kim.id)


def test_a_lead_router_assigns_captured_leads_at_once_and_preview_writes_nothing(
    connect_crm: ConnectFn,
) -> None:
    plain = connect_crm()
    people = staff(plain)
    with plain.session(actor=plain.system_actor) as s:
        s.org.create_user(name="Lou", email="lou@corp.example", department="sales", on_leave=True)
        assert {u.id for u in s.leads.candidates()} == {people.sam.id, people.kim.id, people.max.id}
    asked: list[str] = []

    def router(session: Session, lead: Lead) -> tuple[str, str] | None:
        asked.append(lead.name)
        if lead.region == "DACH":
            return people.kim.id, "Kim covers DACH"
        return None

    crm = connect_crm(lead_router=router)
    with crm.session(actor=people.mia.id) as s:
        routed = s.leads.capture("Anna", source="webform", region="DACH")
        left = s.leads.capture("Bo", source="webform", region="Nordics")
    assert (routed.status, routed.owner_id, routed.assigned_by, routed.assignment_reason) == (
        LeadStatus.ASSIGNED,
        people.kim.id,
        "pycrm.lead_router",
        "Kim covers DACH",
    )
    assert (left.status, left.owner_id) == (LeadStatus.NEW, None)
    before = snapshot(crm)
    with crm.session(actor=people.max.id) as s:
        preview = s.leads.preview_assignment(name="Cy", region="DACH")
    assert snapshot(crm) == before
    assert preview is not None
    assert (preview.owner_id, preview.rule) == (
        people.kim.id,
        "pycrm.lead_router",
    )
    assert asked == ["Anna", "Bo", "Cy"]


# -- working the lead -----------------------------------------------------------


def test_the_owner_marks_contacted_closing_the_first_contact_task_then_qualifies(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        lead = lead_at(s, LeadStatus.ASSIGNED, people.sam.id)
    refused(crm, people.kim.id, (PermissionDenied, lambda s: s.leads.mark_contacted(lead.id)))
    refused(
        crm,
        people.sam.id,
        (ConcurrencyError, lambda s: s.leads.mark_contacted(lead.id, version=lead.version - 1)),
    )
    fake_clock.advance(hours=1)
    with crm.session(actor=people.sam.id) as s:
        contacted = s.leads.mark_contacted(lead.id, version=lead.version)
        (task,) = s.tasks.list(related_id=lead.id, status=None)
        qualified = s.leads.qualify(lead.id)
    assert contacted.status is LeadStatus.CONTACTED
    assert (task.status, task.completed_at) == (TaskStatus.DONE, fake_clock.now())
    assert qualified.status is LeadStatus.QUALIFIED
    assert qualified.version == contacted.version + 1
    with crm.session(actor=people.sam.id) as s:
        moves = [(c.old, c.new, c.actor_id) for c in s.leads.history(lead.id, "status")]
        before_contact = s.leads.as_of(lead.id, fake_clock.now() - timedelta(minutes=1))
    assert moves == [
        (None, "new", "system"),
        ("new", "assigned", "system"),
        ("assigned", "contacted", people.sam.id),
        ("contacted", "qualified", people.sam.id),
    ]
    assert before_contact.status is LeadStatus.ASSIGNED


def test_every_undocumented_status_move_is_an_invalid_transition_that_changes_nothing(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    calls: dict[LeadStatus, Callable[[Session, str], object]] = {
        LeadStatus.ASSIGNED: lambda s, i: s.leads.assign(i, people.sam.id),
        LeadStatus.CONTACTED: lambda s, i: s.leads.mark_contacted(i),
        LeadStatus.QUALIFIED: lambda s, i: s.leads.qualify(i),
        LeadStatus.CONVERTED: lambda s, i: s.leads.convert(i),
        LeadStatus.DISQUALIFIED: lambda s, i: s.leads.disqualify(i, "gone quiet"),
    }
    allowed = {
        LeadStatus.NEW: {LeadStatus.ASSIGNED, LeadStatus.DISQUALIFIED},
        # an open lead may also be reassigned
        LeadStatus.ASSIGNED: {LeadStatus.ASSIGNED, LeadStatus.CONTACTED, LeadStatus.DISQUALIFIED},
        LeadStatus.CONTACTED: {LeadStatus.ASSIGNED, LeadStatus.QUALIFIED, LeadStatus.DISQUALIFIED},
        LeadStatus.QUALIFIED: {LeadStatus.ASSIGNED, LeadStatus.CONVERTED, LeadStatus.DISQUALIFIED},
        LeadStatus.CONVERTED: set(),
        LeadStatus.DISQUALIFIED: set(),
        LeadStatus.MERGED: set(),
    }
    with crm.session(actor=crm.system_actor) as s:
        leads = {status: lead_at(s, status, people.sam.id) for status in LeadStatus}
    assert {status: lead.status for status, lead in leads.items()} == {s: s for s in LeadStatus}
    cases: list[tuple[type[Exception], Call]] = []
    for status, lead in leads.items():
        for target, call in calls.items():
            if target not in allowed[status]:
                cases.append((InvalidTransition, lambda s, c=call, i=lead.id: c(s, i)))
        if status is not LeadStatus.NEW:
            cases.append((InvalidTransition, lambda s, i=lead.id: s.leads.route(i)))
    assert len(cases) == 30
    errors = refused(crm, crm.system_actor, *cases)
    assert all(isinstance(e, InvalidTransition) for e in errors)


def test_disqualify_needs_a_reason_keeps_it_cancels_open_tasks_and_closes_the_lead_to_edits(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        lead = lead_at(s, LeadStatus.ASSIGNED, people.sam.id)
    refused(
        crm,
        people.sam.id,
        (ValidationError, lambda s: s.leads.disqualify(lead.id, "")),
        (ValidationError, lambda s: s.leads.disqualify(lead.id, None)),  # type: ignore[arg-type]
    )
    with crm.session(actor=people.sam.id) as s:
        gone = s.leads.disqualify(lead.id, "bought from a competitor")
        tasks = s.tasks.list(related_id=lead.id, status=None)
    assert (gone.status, gone.disqualify_reason) == (
        LeadStatus.DISQUALIFIED,
        "bought from a competitor",
    )
    assert [t.status for t in tasks] == [TaskStatus.CANCELLED]
    assert outbox_names(crm)[-1] == "lead_disqualified"
    refused(
        crm,
        people.mia.id,
        (ValidationError, lambda s: s.leads.update(lead.id, title="CEO")),
        (ValidationError, lambda s: s.leads.update(lead.id, status="qualified")),
    )


# -- conversion -----------------------------------------------------------------


def test_convert_creates_a_customer_contact_and_deal_owned_by_the_leads_owner(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        lead = lead_at(
            s,
            LeadStatus.QUALIFIED,
            people.sam.id,
            company="Nordwerk AG",
            email="ida@nordwerk.example",
            phone="040 555 0101",
            needs="conveyor",
            industry="logistics",
        )
    with crm.session(actor=people.sam.id) as s:
        customer, contact, deal = s.leads.convert(lead.id, amount=pycrm.Money.of("5000", "EUR"))
        converted = s.leads.get(lead.id)
    assert (customer.name, customer.industry, customer.owner_id) == (
        "Nordwerk AG",
        "logistics",
        people.sam.id,
    )
    assert (contact.name, contact.customer_id, contact.owner_id) == (
        lead.name,
        customer.id,
        people.sam.id,
    )
    assert {p.value for p in contact.contact_points} == {"ida@nordwerk.example", "+49405550101"}
    assert (deal.name, deal.customer_id, deal.contact_id, deal.lead_id, deal.owner_id) == (
        "Nordwerk AG: conveyor",
        customer.id,
        contact.id,
        lead.id,
        people.sam.id,
    )
    assert (deal.stage, deal.probability, deal.amount) == (
        "qualification",
        10,
        pycrm.Money.of("5000", "EUR"),
    )
    assert (converted.customer_id, converted.contact_id, converted.deal_id) == (
        customer.id,
        contact.id,
        deal.id,
    )
    assert (converted.status, converted.converted_at) == (LeadStatus.CONVERTED, fake_clock.now())
    assert outbox_names(crm)[-4:] == [
        "customer_created",
        "contact_created",
        "deal_stage_changed",
        "lead_converted",
    ]


def test_convert_links_to_the_active_customer_of_the_same_name_and_the_contact_with_the_same_email(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        archived = s.customers.create("Acme GmbH")
        s.customers.archive(archived.id)
        acme = s.customers.create("  ACME   gmbh ")
        anna = s.contacts.create("Anna S.", customer_id=acme.id, emails=["ANNA@acme.example"])
        lead = lead_at(
            s, LeadStatus.QUALIFIED, people.sam.id, company="acme GmbH", email="anna@Acme.Example"
        )
        other = lead_at(
            s, LeadStatus.QUALIFIED, people.sam.id, company="Acme Gmbh", email="new@acme.example"
        )
    before = snapshot(crm)
    with crm.session(actor=people.sam.id) as s:
        customer, contact, _ = s.leads.convert(lead.id)
        customer2, contact2, _ = s.leads.convert(other.id)
    after = snapshot(crm)
    assert (customer.id, contact.id) == (acme.id, anna.id)
    assert customer2.id == acme.id
    assert contact2.id != anna.id
    assert contact2.customer_id == acme.id
    assert len(after["Customer"]) == len(before["Customer"])
    assert len(after["Contact"]) == len(before["Contact"]) + 1


def test_convert_into_a_given_customer_with_a_zero_deal_in_the_crm_currency_by_default(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(currency="CHF")
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        chosen = s.customers.create("Holding SE")
        lead = lead_at(s, LeadStatus.QUALIFIED, people.sam.id, company="Subsidiary GmbH")
    refused(
        crm,
        people.sam.id,
        (NotFound, lambda s: s.leads.convert(lead.id, customer_id="no-such-customer")),
        (NotFound, lambda s: s.leads.convert(lead.id, pipeline="no-such-pipeline")),
    )
    with crm.session(actor=people.sam.id) as s:
        customer, contact, deal = s.leads.convert(lead.id, customer_id=chosen.id, deal_name="Pilot")
    assert customer.id == chosen.id
    assert contact.customer_id == deal.customer_id == chosen.id
    assert (deal.name, deal.amount) == ("Pilot", pycrm.Money.zero("CHF"))


# -- editing and searching -------------------------------------------------------


def test_search_filters_by_text_status_owner_source_campaign_and_region_newest_first(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        a = lead_at(s, LeadStatus.NEW, "", campaign="spring", region="DACH")
        fake_clock.advance(minutes=1)
        b = lead_at(s, LeadStatus.ASSIGNED, people.sam.id, campaign="spring")
        fake_clock.advance(minutes=1)
        c = lead_at(s, LeadStatus.ASSIGNED, people.kim.id, region="DACH")
        fake_clock.advance(minutes=1)
        d = s.leads.capture("Zoe Quartz", source="Trade Show")
    with crm.session(actor=people.mia.id) as s:

        def ids(**kw: Any) -> list[str]:
            return [lead.id for lead in s.leads.search(**kw)]

        assert ids() == [d.id, c.id, b.id, a.id]
        assert ids(status="assigned") == [c.id, b.id]
        assert ids(status=LeadStatus.NEW) == [d.id, a.id]
        assert ids(owner_id=people.sam.id) == [b.id]
        assert ids(campaign="spring") == [b.id, a.id]
        assert ids(region="DACH") == [c.id, a.id]
        assert ids(source="trade show") == [d.id]
        assert ids(text="QUARTZ") == [d.id]
        assert ids(limit=2, offset=1) == [c.id, b.id]
        with pytest.raises(ValidationError):
            s.leads.search(status="won")


# -- archive, delete and merge -------------------------------------------------------------


def test_an_archived_lead_leaves_lists_and_keeps_its_history(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        kept = lead_at(s, LeadStatus.NEW, people.sam.id)
        gone = lead_at(s, LeadStatus.NEW, people.sam.id, company="Acme GmbH")
        archived = s.leads.archive(gone.id)
        assert s.leads.archive(gone.id) == archived  # archiving twice changes nothing
        listed = [lead.id for lead in s.leads.search(limit=100)]
        everything = [lead.id for lead in s.leads.search(include_archived=True, limit=100)]
        assert s.leads.get(gone.id).archived_at is not None
        assert [c.field for c in s.leads.history(gone.id)][-1] == "archived_at"
    assert listed == [kept.id]
    assert set(everything) == {kept.id, gone.id}
    assert outbox_names(crm)[-1] == "lead_archived"
    with crm.session(actor=people.mia.id) as s:
        back = s.leads.restore(gone.id)
        assert {lead.id for lead in s.leads.search(limit=100)} == {kept.id, gone.id}
    assert back.archived_at is None
    assert outbox_names(crm)[-1] == "lead_archived"  # restoring announces nothing


def test_a_deleted_lead_is_gone_and_the_audit_keeps_that_it_happened(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        lead = s.leads.capture("Spam Bot", source="webform", email="bot@spam.example")
        document = s.documents.attach("lead", lead.id, "card.txt", b"spam")
        s.activities.track(None, "requested_demo", lead_id=lead.id)
    with crm.session(actor=crm.system_actor) as s:
        (task,) = s.tasks.list(related_id=lead.id)  # sales' queue: marketing does not read it
        admin = s.org.create_user("Ada", "ada@corp.example", "admin", roles=["admin"])
    fake_clock.advance(minutes=5)
    refused(
        crm,
        people.mia.id,
        (ConcurrencyError, lambda s: s.leads.delete(lead.id, version=lead.version + 5)),
        (ValidationError, lambda s: s.leads.delete(lead.id, version="1")),  # type: ignore[arg-type]
    )
    with crm.session(actor=people.mia.id) as s:
        assert s.leads.delete(lead.id) is None
        with pytest.raises(NotFound):
            s.leads.get(lead.id)
        assert s.leads.search(limit=100) == []
    assert outbox_names(crm)[-1] == "lead_deleted"
    with crm.session(actor=admin.id) as s:
        assert s.tasks.get(task.id).status is TaskStatus.CANCELLED
        entries = s.audit.find(record_id=lead.id, limit=100)
        with pytest.raises(NotFound):
            s.documents.get(document.id)
        assert s.documents.orphans() == []  # its documents went with it
        assert [e.action for e in s.audit.find(record_id=document.id)] == ["attach", "delete"]
    deleted = [e for e in entries if e.action == "delete"]
    assert [(e.actor_id, e.at, e.department) for e in deleted] == [
        (people.mia.id, fake_clock.now(), "marketing")
    ]
    assert deleted[0].snapshot is not None
    assert deleted[0].snapshot["name"] == "Spam Bot"
    with crm.session(actor=people.mia.id) as s:  # the email is free again
        again = s.leads.capture("Spam Bot", source="webform", email="bot@spam.example")
        assert s.dedupe.warnings == []
    assert again.id != lead.id


def test_marketing_owns_lead_deletion_and_sales_never_deletes_the_original_lead(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        fresh = lead_at(s, LeadStatus.NEW, people.sam.id)
        worked = lead_at(s, LeadStatus.NEW, people.sam.id)
    with crm.session(actor=crm.system_actor) as s:
        worked = s.leads.assign(worked.id, people.sam.id)
        converted = lead_at(s, LeadStatus.CONVERTED, people.sam.id)
    refused(
        crm,
        people.sam.id,  # sales works its own lead but never deletes or archives it
        (PermissionDenied, lambda s: s.leads.delete(worked.id)),
        (PermissionDenied, lambda s: s.leads.archive(worked.id)),
        (PermissionDenied, lambda s: s.leads.delete(fresh.id)),
    )
    refused(
        crm,
        people.max.id,  # nor does a sales manager
        (PermissionDenied, lambda s: s.leads.delete(worked.id)),
    )
    refused(
        crm,
        people.mia.id,  # marketing no longer deletes what sales works
        (PermissionDenied, lambda s: s.leads.delete(worked.id)),
        (PermissionDenied, lambda s: s.leads.archive(worked.id)),
    )
    refused(
        crm,
        crm.system_actor,
        (InvalidTransition, lambda s: s.leads.delete(converted.id)),  # it is history
    )
    with crm.session(actor=people.mia.id) as s:
        s.leads.delete(fresh.id)
    with crm.session(actor=crm.system_actor) as s:
        denied = s.audit.find(action="denied:delete", limit=100)
        s.leads.archive(converted.id)  # history is archived instead
    assert {(e.actor_id, e.record_id) for e in denied} == {
        (people.sam.id, worked.id),
        (people.sam.id, fresh.id),
        (people.max.id, worked.id),
        (people.mia.id, worked.id),
    }


def test_once_sales_works_a_lead_marketing_reads_its_status_but_does_not_change_it(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        lead = s.leads.capture("Lia Lead", source="webform", needs="a press")
        s.leads.update(lead.id, needs="two presses")  # still new: marketing's to edit
    with crm.session(actor=crm.system_actor) as s:
        s.leads.assign(lead.id, people.sam.id)
    refused(
        crm,
        people.mia.id,
        (PermissionDenied, lambda s: s.leads.disqualify(lead.id, "no budget")),
        (PermissionDenied, lambda s: s.leads.update(lead.id, needs="three presses")),
    )
    with crm.session(actor=people.mia.id) as s:
        seen = s.leads.get(lead.id)
        found = s.leads.search(status="assigned")
    assert (seen.status, seen.needs) == (LeadStatus.ASSIGNED, "two presses")
    assert [f.id for f in found] == [lead.id]
    with crm.session(actor=people.sam.id) as s:
        assert s.leads.mark_contacted(lead.id).status is LeadStatus.CONTACTED


def test_two_leads_merge_into_one_and_the_merge_can_be_undone(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        survivor = s.leads.capture(
            "Lia Lead", source="webform", email="lia@lia.example", company="Lia AG"
        )
        s.leads.assign(survivor.id, people.sam.id)
        twin = s.leads.capture(
            "Lia Lead",
            source="trade_show",
            email="lia@lia.example",
            phone="+49 30 1234567",
            needs="a press",
            on_duplicate="allow",
        )
        s.leads.assign(twin.id, people.kim.id)
        s.activities.track(None, "viewed_pricing_page", lead_id=twin.id)
        s.documents.attach("lead", twin.id, "card.txt", b"card")
        converted = lead_at(s, LeadStatus.CONVERTED, people.sam.id)
    refused(
        crm,
        people.sam.id,  # sales may not delete (merge away) a lead
        (PermissionDenied, lambda s: s.dedupe.merge(survivor.id, [twin.id], record_type="lead")),
    )
    refused(
        crm,
        crm.system_actor,
        (
            InvalidTransition,
            lambda s: s.dedupe.merge(survivor.id, [converted.id], record_type="lead"),
        ),
    )
    with crm.session(actor=crm.system_actor) as s:
        result = s.dedupe.merge(survivor.id, [twin.id], record_type="lead")
        merged = s.leads.get(twin.id)
        tasks = s.tasks.list(related_id=survivor.id, status=None)
        documents = s.documents.list("lead", survivor.id)
        listed = [lead.id for lead in s.leads.search(limit=100)]
    kept = result.survivor
    assert kept.id == survivor.id
    assert (kept.status, kept.owner_id, kept.source) == (
        LeadStatus.ASSIGNED,
        people.sam.id,  # the survivor keeps its place in the workflow
        "webform",
    )
    assert kept.needs == "a press"  # an empty field takes the duplicate's value
    assert {p.kind for p in kept.contact_points} == {PointKind.EMAIL, PointKind.PHONE}
    assert (merged.status, merged.merged_into) == (LeadStatus.MERGED, survivor.id)
    assert not merged.is_open
    assert {t.kind for t in tasks} >= {"follow_up"}
    assert [d.name for d in documents] == ["card.txt"]
    assert twin.id in listed  # a merged lead is a tombstone, still found when listed
    assert "leads_merged" in outbox_names(crm)
    with crm.session(actor=crm.system_actor) as s:
        assert result.merge_id is not None
        undone = s.dedupe.unmerge(result.merge_id)
        restored = s.leads.get(twin.id)
    assert undone.survivor.needs is None
    assert (restored.status, restored.owner_id, restored.merged_into) == (
        LeadStatus.ASSIGNED,
        people.kim.id,
        None,
    )
