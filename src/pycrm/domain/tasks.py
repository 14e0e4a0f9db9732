"""Tasks and reminders, and behaviour events that can turn into them."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["DEFAULT_FOLLOWUPS", "BehaviourEvent", "Followup", "Task", "TaskPriority", "TaskStatus"]


class TaskStatus(enum.StrEnum):
    """Whether a task is done."""

    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class TaskPriority(enum.StrEnum):
    """How urgent a task is."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


@attrs.frozen(kw_only=True)
class Task(Record):
    """Something someone must do, by a time, about a record."""

    resource: ClassVar[str] = "task"
    owner_field: ClassVar[str] = "assignee_id"
    department_field: ClassVar[str | None] = "department"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("assignee_id", "status", "due_at"),
        ("department", "status"),
        ("related_id",),
        ("status", "due_at"),
    )

    title: str
    """What to do."""
    kind: str = "todo"
    """``todo``, or the reminder that created it: ``first_contact``, ``receivable_overdue``,
    ``payment_received``, ``follow_up``."""
    assignee_id: str | None = None
    """Who must do it (None: anyone in :attr:`department`)."""
    department: str | None = None
    """The department it falls to when nobody in particular."""
    due_at: datetime | None = None
    """When it must be done."""
    priority: TaskPriority = TaskPriority.NORMAL
    """How urgent."""
    status: TaskStatus = TaskStatus.OPEN
    """Open, done or cancelled."""
    related_type: str | None = None
    """The kind of record it is about (``lead``, ``deal``, ``receivable`` …)."""
    related_id: str | None = None
    """The record it is about."""
    notes: str | None = None
    """Details."""
    completed_at: datetime | None = None
    """When it was done or cancelled."""
    overdue_at: datetime | None = None
    """When the overdue sweep (``s.tasks.scan_overdue``) found it open past its due time."""


@attrs.frozen(kw_only=True)
class BehaviourEvent(Record):
    """Something a contact did that sales may want to follow up (e.g. viewed the pricing page)."""

    resource: ClassVar[str] = "behaviour_event"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("contact_id", "occurred_at"),
        ("lead_id", "occurred_at"),
    )

    contact_id: str | None = None
    """The contact."""
    lead_id: str | None = None
    """Or the lead."""
    event: str
    """What happened, e.g. ``"viewed_pricing_page"``."""
    properties: dict[str, Any] = attrs.field(factory=dict)
    """Details, JSON-able."""
    occurred_at: datetime
    """When."""


@attrs.frozen
class Followup:
    """The task a behaviour event creates for the contact's owner."""

    title: str
    """Task title; ``{event}`` and ``{name}`` are filled in."""
    within: timedelta = timedelta(hours=4)
    """How soon it is due."""
    priority: TaskPriority = TaskPriority.HIGH
    """How urgent."""


#: Behaviour events that create follow-up tasks unless the CRM is configured otherwise.
DEFAULT_FOLLOWUPS: dict[str, Followup] = {
    "viewed_pricing_page": Followup("Follow up with {name}: viewed the pricing page"),
    "requested_demo": Followup(
        "Book the demo {name} asked for", timedelta(hours=2), TaskPriority.URGENT
    ),
}
