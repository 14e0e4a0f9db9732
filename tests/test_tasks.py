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
