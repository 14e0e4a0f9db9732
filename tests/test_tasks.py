"""Contract tests for ``session.tasks`` and behaviour follow-ups (DESIGN §4 Tasks), on every backend.

Tasks have an assignee (or a department queue), a due time and a priority;
they are completed or cancelled once. Tracked behaviour such as "viewed the
pricing page" becomes a follow-up task for the contact's owner, as the CRM's
``followups`` setting says. Every refused call leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
import support
from pycrm.domain.tasks import Followup, TaskPriority, TaskStatus
from pycrm.errors import (
    ConcurrencyError,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import outbox_names, refused

ConnectFn = Callable[..., pycrm.CRM]
Call = Callable[[Session], object]

# -- helpers -------------------------------------------------------------------


def staff(crm: pycrm.CRM) -> SimpleNamespace:
    return support.staff(crm, sam="sales", kim="sales", fin="finance", fay="finance")


# -- tasks -----------------------------------------------------------------------


def test_a_task_is_created_for_a_user_or_for_a_department_queue_and_announced(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = staff(crm)
    due = fake_clock.now() + timedelta(days=1)
    with crm.session(actor=p.sam.id) as s:
        call = s.tasks.create(
            "Call Acme back",
            assignee_id=p.sam.id,
            due_at=due,
            priority="urgent",
            related_type="customer",
            related_id="c-1",
            notes="about the quote",
        )
        queue = s.tasks.create("Check the credit limit", department="finance")
        assert s.tasks.get(call.id) == call
    assert (call.title, call.assignee_id, call.due_at, call.priority, call.status, call.kind) == (
        "Call Acme back",
        p.sam.id,
        due,
        TaskPriority.URGENT,
        TaskStatus.OPEN,
        "todo",
    )
    assert (call.related_type, call.related_id, call.notes) == (
        "customer",
        "c-1",
        "about the quote",
    )
    assert (queue.assignee_id, queue.department, queue.priority) == (
        None,
        "finance",
        TaskPriority.NORMAL,
    )
    assert outbox_names(crm)[-2:] == ["task_created", "task_created"]


def test_a_task_with_bad_input_is_refused_and_nothing_is_stored(crm: pycrm.CRM) -> None:
    p = staff(crm)
    errors = refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.tasks.create("Nobody's job")),
        (ValidationError, lambda s: s.tasks.create("", assignee_id=p.sam.id)),
        (ValidationError, lambda s: s.tasks.create("X", assignee_id="ghost")),
        (ValidationError, lambda s: s.tasks.create("X", assignee_id=p.sam.id, priority="asap")),
        (
            ValidationError,
            lambda s: s.tasks.create("X", assignee_id=p.sam.id, due_at=datetime(2026, 1, 6)),
        ),
        (NotFound, lambda s: s.tasks.get("no-such-task")),
        (NotFound, lambda s: s.tasks.complete("no-such-task")),
    )
    assert [getattr(e, "field", None) for e in errors[:5]] == [
        "assignee_id",
        "title",
        "assignee_id",
        "priority",
        "due_at",
    ]


def test_an_open_task_is_completed_or_cancelled_once(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    p = staff(crm)
    with crm.session(actor=p.sam.id) as s:
        one = s.tasks.create("One", assignee_id=p.sam.id)
        two = s.tasks.create("Two", assignee_id=p.sam.id)
        three = s.tasks.create("Three", assignee_id=p.sam.id)
    fake_clock.advance(hours=1)
    refused(
        crm,
        p.sam.id,
        (ConcurrencyError, lambda s: s.tasks.complete(one.id, version=one.version + 1)),
    )
    with crm.session(actor=p.sam.id) as s:
        done = s.tasks.complete(one.id, version=one.version)
        dropped = s.tasks.cancel(two.id)
    assert (done.status, done.completed_at) == (TaskStatus.DONE, fake_clock.now())
    assert (dropped.status, dropped.completed_at) == (TaskStatus.CANCELLED, fake_clock.now())
    refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.tasks.complete(one.id)),
        (InvalidTransition, lambda s: s.tasks.cancel(one.id)),
        (InvalidTransition, lambda s: s.tasks.complete(two.id)),
        (InvalidTransition, lambda s: s.tasks.cancel(two.id)),
    )
    refused(crm, p.fin.id, (NotFound, lambda s: s.tasks.complete(three.id)))


def test_list_shows_open_tasks_by_due_time_and_filters_them(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = staff(crm)
    now = fake_clock.now()
    with crm.session(actor=crm.system_actor) as s:
        later = s.tasks.create("Later", assignee_id=p.sam.id, due_at=now + timedelta(days=2))
        sooner = s.tasks.create(
            "Sooner", assignee_id=p.sam.id, due_at=now + timedelta(hours=1), kind="follow_up"
        )
        whenever = s.tasks.create("Whenever", assignee_id=p.sam.id, related_id="deal-1")
        done = s.tasks.create("Done", assignee_id=p.sam.id, due_at=now)
        s.tasks.complete(done.id)
        kims = s.tasks.create("Kim's", assignee_id=p.kim.id, due_at=now)
        queue = s.tasks.create("Queue", department="finance", due_at=now)
    with crm.session(actor=crm.system_actor) as s:

        def ids(**kw: Any) -> list[str]:
            return [t.id for t in s.tasks.list(**kw)]

        assert ids(assignee_id=p.sam.id) == [sooner.id, later.id, whenever.id]
        assert ids(assignee_id=p.sam.id, status=None) == [done.id, sooner.id, later.id, whenever.id]
        assert ids(status="done") == [done.id]
        assert ids(status=TaskStatus.CANCELLED) == []
        assert ids(department="finance") == [queue.id]
        assert ids(related_id="deal-1") == [whenever.id]
        assert ids(kind="follow_up") == [sooner.id]
        assert ids(limit=2) == [kims.id, queue.id]
        with pytest.raises(ValidationError):
            s.tasks.list(status="late")


def test_users_see_and_work_only_the_tasks_of_their_own_department(
    crm: pycrm.CRM,
) -> None:
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        sams = s.tasks.create("Sam's", assignee_id=p.sam.id)
        fins = s.tasks.create("Fin's", assignee_id=p.fin.id)
        queue = s.tasks.create("Finance queue", department="finance")
    with crm.session(actor=p.fay.id) as s:
        assert {t.id for t in s.tasks.list()} == {fins.id, queue.id}
        done = s.tasks.complete(queue.id)
    assert done.status is TaskStatus.DONE
    with crm.session(actor=p.kim.id) as s:
        assert [t.id for t in s.tasks.list()] == [sams.id]
    refused(
        crm,
        p.fin.id,
        (NotFound, lambda s: s.tasks.get(sams.id)),
        (NotFound, lambda s: s.tasks.cancel(sams.id)),
    )
    refused(crm, p.sam.id, (NotFound, lambda s: s.tasks.cancel(fins.id)))


# -- behaviour follow-ups ---------------------------------------------------------


def test_tracking_a_pricing_page_view_gives_the_contacts_owner_a_follow_up_task(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH", owner_id=p.kim.id)
        owned = s.contacts.create("Anna Owned", customer_id=acme.id, owner_id=p.sam.id)
        via_customer = s.contacts.create("Bo Company", customer_id=acme.id)
        orphan = s.contacts.create("Cy Nobody", customer_id=s.customers.create("Solo").id)
    with crm.session(actor=p.sam.id) as s:
        seen = s.activities.track(owned.id, "viewed_pricing_page", {"plan": "pro"})
        s.activities.track(via_customer.id, "viewed_pricing_page")
        s.activities.track(orphan.id, "requested_demo")
        s.activities.track(owned.id, "opened_newsletter")
        tasks = s.tasks.list(kind="follow_up")
    assert (seen.event, seen.contact_id, seen.properties, seen.occurred_at) == (
        "viewed_pricing_page",
        owned.id,
        {"plan": "pro"},
        fake_clock.now(),
    )
    now = fake_clock.now()
    assert sorted(
        (t.title, t.assignee_id, t.department, t.due_at, t.priority, t.related_id) for t in tasks
    ) == sorted(
        [
            (
                "Follow up with Anna Owned: viewed the pricing page",
                p.sam.id,
                None,
                now + timedelta(hours=4),
                TaskPriority.HIGH,
                owned.id,
            ),
            (
                "Follow up with Bo Company: viewed the pricing page",
                p.kim.id,
                None,
                now + timedelta(hours=4),
                TaskPriority.HIGH,
                via_customer.id,
            ),
            (
                "Book the demo Cy Nobody asked for",
                None,
                "sales",
                now + timedelta(hours=2),
                TaskPriority.URGENT,
                orphan.id,
            ),
        ]
    )
    refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.activities.track("ghost", "viewed_pricing_page")),
        (ValidationError, lambda s: s.activities.track(None, "viewed_pricing_page")),
        (ValidationError, lambda s: s.activities.track(owned.id, "")),
        (ValidationError, lambda s: s.activities.track(owned.id, "x", {"at": datetime.now(UTC)})),
    )


def test_custom_followups_replace_the_default_ones(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    followups = {
        "downloaded_whitepaper": Followup(
            "Send {name} the {event} case study", timedelta(days=1), TaskPriority.LOW
        )
    }
    crm = connect_crm(followups=followups)
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
        anna = s.contacts.create("Anna", customer_id=acme.id, owner_id=p.sam.id)
    with crm.session(actor=p.sam.id) as s:
        s.activities.track(anna.id, "viewed_pricing_page")
        assert s.tasks.list(assignee_id=p.sam.id) == []
        s.activities.track(anna.id, "downloaded_whitepaper")
        (task,) = s.tasks.list(assignee_id=p.sam.id)
    assert (task.title, task.due_at, task.priority, task.kind) == (
        "Send Anna the downloaded_whitepaper case study",
        fake_clock.now() + timedelta(days=1),
        TaskPriority.LOW,
        "follow_up",
    )


# -- behaviour follow-ups for leads ---------------------------------------------------


def test_a_leads_follow_up_takes_the_rules_title_and_priority_and_a_closed_leads_goes_to_the_contact(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    followups = {
        "downloaded_whitepaper": Followup(
            "Send {name} the {event} case study", timedelta(days=1), TaskPriority.LOW
        )
    }
    crm = connect_crm(followups=followups)
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        worked = s.leads.capture("Lia Lead", source="webform")
        s.leads.assign(worked.id, p.kim.id)
        done = s.leads.capture("Dora Done", source="webform")
        s.leads.disqualify(done.id, "no budget")
        anna = s.contacts.create("Anna", owner_id=p.sam.id)
    with crm.session(actor=p.sam.id) as s:
        s.activities.track(None, "downloaded_whitepaper", lead_id=worked.id)
        # a closed lead that never became a contact: the contact given follows up
        s.activities.track(anna.id, "downloaded_whitepaper", lead_id=done.id)
    with crm.session(actor=crm.system_actor) as s:
        tasks = s.tasks.list(kind="follow_up")
    due = fake_clock.now() + timedelta(days=1)
    assert sorted(
        (t.title, t.assignee_id, t.priority.value, t.due_at, t.related_type, t.related_id)
        for t in tasks
    ) == [
        ("Send Anna the downloaded_whitepaper case study", p.sam.id, "low", due, "contact", anna.id),
        ("Send Lia Lead the downloaded_whitepaper case study", p.kim.id, "low", due, "lead",
         worked.id),
    ]  # fmt: skip


def test_tracking_a_leads_pricing_page_view_gives_the_leads_owner_a_follow_up_task(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        worked = s.leads.capture("Lia Lead", source="webform", company="Lia AG")
        s.leads.assign(worked.id, p.kim.id)
        fresh = s.leads.capture("Nils New", source="webform")
        done = s.leads.capture("Dora Done", source="webform")
        s.leads.disqualify(done.id, "no budget")
        acme = s.customers.create("Acme GmbH")
        anna = s.contacts.create("Anna", customer_id=acme.id, owner_id=p.sam.id)
    with crm.session(actor=p.sam.id) as s:
        s.activities.track(None, "viewed_pricing_page", lead_id=worked.id)
        s.activities.track(None, "requested_demo", lead_id=fresh.id)
        s.activities.track(None, "viewed_pricing_page", lead_id=done.id)  # closed: nobody
        # a lead and a contact: the open lead's owner follows up
        s.activities.track(anna.id, "viewed_pricing_page", lead_id=worked.id)
    with crm.session(actor=crm.system_actor) as s:
        tasks = s.tasks.list(kind="follow_up")
    now = fake_clock.now()
    assert sorted(
        (t.title, t.assignee_id, t.department, t.due_at, t.related_type, t.related_id)
        for t in tasks
    ) == sorted(
        [
            ("Follow up with Lia Lead (Lia AG): viewed the pricing page", p.kim.id, None,
             now + timedelta(hours=4), "lead", worked.id),
            ("Follow up with Lia Lead (Lia AG): viewed the pricing page", p.kim.id, None,
             now + timedelta(hours=4), "lead", worked.id),
            ("Book the demo Nils New asked for", None, "sales", now + timedelta(hours=2),
             "lead", fresh.id),
        ]
    )  # fmt: skip


def test_a_converted_leads_behaviour_follows_the_contact_it_became(crm: pycrm.CRM) -> None:
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        lead = s.leads.capture("Otto Buyer", source="webform", email="otto@buyer.example")
        s.leads.assign(lead.id, p.kim.id)
        s.leads.mark_contacted(lead.id)
        s.leads.qualify(lead.id)
        _customer, contact, _deal = s.leads.convert(lead.id)
    with crm.session(actor=p.sam.id) as s:
        s.activities.track(None, "viewed_pricing_page", lead_id=lead.id)
    with crm.session(actor=crm.system_actor) as s:
        (task,) = s.tasks.list(kind="follow_up")
    assert (task.assignee_id, task.related_type, task.related_id) == (
        p.kim.id,
        "contact",
        contact.id,
    )
    assert task.title == "Follow up with Otto Buyer: viewed the pricing page"


def test_converting_or_disqualifying_a_lead_closes_its_follow_up(crm: pycrm.CRM) -> None:
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        lead = s.leads.capture("Lia Lead", source="webform")
        s.leads.assign(lead.id, p.kim.id)
        s.activities.track(None, "viewed_pricing_page", lead_id=lead.id)
        s.leads.disqualify(lead.id, "went elsewhere")
        tasks = s.tasks.list(related_id=lead.id, status=None)
    assert {(t.kind, t.status) for t in tasks} == {
        ("first_contact", TaskStatus.CANCELLED),
        ("follow_up", TaskStatus.CANCELLED),
    }


# -- the overdue sweep and the agenda ------------------------------------------------------


def test_scan_overdue_marks_each_open_task_past_due_once_and_announces_it(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = staff(crm)
    now = fake_clock.now()
    with crm.session(actor=crm.system_actor) as s:
        late = s.tasks.create("Call back", assignee_id=p.sam.id, due_at=now + timedelta(hours=1))
        later = s.tasks.create("Send offer", assignee_id=p.kim.id, due_at=now + timedelta(days=2))
        undated = s.tasks.create("Someday", assignee_id=p.sam.id)
        queue = s.tasks.create("Chase", department="finance", due_at=now + timedelta(minutes=5))
        done = s.tasks.create("Done", assignee_id=p.sam.id, due_at=now + timedelta(minutes=5))
        s.tasks.complete(done.id)
    with crm.session(actor=crm.system_actor) as s:
        assert s.tasks.scan_overdue() == []  # nothing is due yet
    fake_clock.advance(hours=2)
    with crm.session(actor=crm.system_actor) as s:
        marked = s.tasks.scan_overdue()
        again = s.tasks.scan_overdue()
    assert [t.id for t in marked] == [queue.id, late.id]  # earliest due first
    assert all(t.overdue_at == fake_clock.now() and t.status is TaskStatus.OPEN for t in marked)
    assert again == []
    assert outbox_names(crm)[-2:] == ["task_overdue", "task_overdue"]
    with crm.session(actor=p.sam.id) as s:
        assert s.tasks.get(late.id).overdue_at == fake_clock.now()
        assert s.tasks.get(undated.id).overdue_at is None
        assert s.tasks.complete(late.id).status is TaskStatus.DONE  # an overdue task is open
    fake_clock.advance(days=2)
    with crm.session(actor=p.kim.id) as s:  # a user sweeps the tasks they may update
        mine = s.tasks.scan_overdue()
    assert [t.id for t in mine] == [later.id]
    refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.tasks.scan_overdue(at=datetime(2026, 3, 1))),
        (ValidationError, lambda s: s.tasks.scan_overdue(at="tomorrow")),  # type: ignore[arg-type]
    )


def test_task_overdue_is_a_signal_sent_after_commit(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    heard: list[Any] = []

    def listen(sender: object, event: Any) -> None:
        heard.append(event)

    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        task = s.tasks.create("Call", assignee_id=p.sam.id, due_at=fake_clock.now())
    fake_clock.advance(minutes=1)
    pycrm.signals.task_overdue.connect(listen)
    try:
        rolled_back = crm.session(actor=crm.system_actor)
        assert len(rolled_back.tasks.scan_overdue()) == 1
        rolled_back.rollback()
        assert heard == []
        with crm.session(actor=crm.system_actor) as s:
            s.tasks.scan_overdue()
            assert heard == []
    finally:
        pycrm.signals.task_overdue.disconnect(listen)
    assert [(e.name, e.record_id, e.after["overdue_at"]) for e in heard] == [
        ("task_overdue", task.id, fake_clock.now().isoformat())
    ]


def test_the_agenda_lists_a_users_open_tasks_for_a_day_in_their_time_zone(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        tokyo = s.org.create_user(
            "Toko", "toko@corp.example", "sales", working_hours={"timezone": "Asia/Tokyo"}
        )

        def task(title: str, who: str, when: datetime | None) -> str:
            return s.tasks.create(title, assignee_id=who, due_at=when).id

        old = task("Overdue", p.sam.id, datetime(2026, 1, 4, 8, tzinfo=UTC))
        morning = task("Morning", p.sam.id, datetime(2026, 1, 5, 0, tzinfo=UTC))
        evening = task("Evening", p.sam.id, datetime(2026, 1, 5, 23, 59, tzinfo=UTC))
        task("Tomorrow", p.sam.id, datetime(2026, 1, 6, 0, tzinfo=UTC))
        task("Undated", p.sam.id, None)
        task("Kim's", p.kim.id, datetime(2026, 1, 5, 12, tzinfo=UTC))
        done = task("Done", p.sam.id, datetime(2026, 1, 5, 12, tzinfo=UTC))
        s.tasks.complete(done)
        # Tokyo's Monday 2026-01-05 runs from Sunday 15:00 to Monday 15:00 UTC
        early = task("Early", tokyo.id, datetime(2026, 1, 4, 16, tzinfo=UTC))
        task("After", tokyo.id, datetime(2026, 1, 5, 16, tzinfo=UTC))
    with crm.session(actor=p.sam.id) as s:
        today = s.tasks.agenda(p.sam.id)
        other = s.tasks.agenda(p.sam.id, datetime(2026, 1, 3).date())
        tokyo_day = s.tasks.agenda(tokyo.id, datetime(2026, 1, 5).date())
    assert (today.user_id, today.day, today.timezone) == (p.sam.id, fake_clock.now().date(), "UTC")
    assert [t.id for t in today.overdue] == [old]
    assert [t.id for t in today.due] == [morning, evening]
    assert [t.id for t in today.tasks] == [old, morning, evening]
    assert other.overdue == other.due == ()
    # Sam reads Toko's tasks: both are in sales, and tasks are read department-wide
    assert tokyo_day.timezone == "Asia/Tokyo"
    assert [t.id for t in tokyo_day.due] == [early]
    with crm.session(actor=p.fin.id) as s:  # finance reads no sales tasks: an empty agenda
        assert s.tasks.agenda(p.sam.id).tasks == ()
    refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.tasks.agenda("nobody")),
        (ValidationError, lambda s: s.tasks.agenda(p.sam.id, datetime(2026, 1, 5, tzinfo=UTC))),
        (ValidationError, lambda s: s.tasks.agenda(p.sam.id, "2026-01-05")),  # type: ignore[arg-type]
    )
