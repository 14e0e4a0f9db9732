"""Service tickets, their SLA clock, and knowledge-base articles."""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, ClassVar

import attrs

from pycrm.domain.calendars import WorkingHours
from pycrm.domain.contact_points import search_key
from pycrm.domain.records import Record
from pycrm.domain.states import StateMachine
from pycrm.errors import ValidationError

__all__ = [
    "TICKET_MOVES",
    "Article",
    "ArticleStatus",
    "Channel",
    "Message",
    "Priority",
    "SlaPolicy",
    "SlaTarget",
    "Ticket",
    "TicketStatus",
    "mail_key",
]


class TicketStatus(enum.StrEnum):
    """Where a ticket is."""

    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    WAITING_ON_CUSTOMER = "waiting_on_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"


_T = TicketStatus
#: new → assigned → in_progress ⇄ waiting_on_customer → resolved → closed; a resolved
#: or closed ticket is reopened to assigned.
TICKET_MOVES: StateMachine[TicketStatus] = StateMachine(
    "ticket",
    {
        _T.NEW: {_T.ASSIGNED},
        _T.ASSIGNED: {_T.IN_PROGRESS, _T.WAITING_ON_CUSTOMER, _T.RESOLVED},
        _T.IN_PROGRESS: {_T.WAITING_ON_CUSTOMER, _T.RESOLVED},
        _T.WAITING_ON_CUSTOMER: {_T.IN_PROGRESS, _T.RESOLVED},
        _T.RESOLVED: {_T.CLOSED, _T.ASSIGNED},
        _T.CLOSED: {_T.ASSIGNED},
    },
)

#: Statuses in which a ticket still needs work.
OPEN_TICKET_STATUSES = (_T.NEW, _T.ASSIGNED, _T.IN_PROGRESS, _T.WAITING_ON_CUSTOMER)


class Channel(enum.StrEnum):
    """How the customer reached service."""

    PHONE = "phone"
    EMAIL = "email"
    WEB_FORM = "web_form"
    CHAT = "chat"


class Priority(enum.StrEnum):
    """How urgent a ticket is."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


@attrs.frozen
class Message:
    """One entry of a ticket's conversation."""

    author_id: str
    """Who wrote it (a user, or ``customer`` for the customer's own words)."""
    body: str
    """The text."""
    public: bool
    """A reply the customer sees (True) or an internal note (False)."""
    at: datetime
    """When."""


@attrs.frozen
class SlaTarget:
    """Response and resolution targets for one priority (and customer grade, if given)."""

    priority: Priority
    """The ticket priority it applies to."""
    first_response: timedelta
    """Time allowed until the first public reply."""
    resolution: timedelta
    """Time allowed until resolution."""
    grade: str | None = None
    """Only for customers of this grade (None: any grade)."""


_LONGEST = timedelta(days=366)


def _duration(field: str, value: Any) -> timedelta:
    """Hours (a number) or a timedelta, more than nothing and at most a year."""
    if isinstance(value, timedelta):
        span = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 < value <= _LONGEST / timedelta(hours=1):
            raise ValidationError(field, value, "must be more than 0 and at most 8784 hours")
        span = timedelta(hours=value)
    else:
        raise ValidationError(field, value, "must be a number of hours or a timedelta")
    if not timedelta(0) < span <= _LONGEST:
        raise ValidationError(field, value, "must be more than 0 and at most a year")
    return span


def _hours(span: timedelta) -> int | float:
    hours = span / timedelta(hours=1)
    return int(hours) if hours.is_integer() else hours


def _target(field: str, value: Any) -> SlaTarget:
    if isinstance(value, SlaTarget):
        return value
    if not isinstance(value, dict):
        raise ValidationError(
            field, value, "must be a mapping of priority, first_response, resolution"
        )
    unknown = sorted(set(value) - {"priority", "first_response", "resolution", "grade"}, key=str)
    if unknown:
        raise ValidationError(f"{field}.{unknown[0]}", value[unknown[0]], "is not a target field")
    priority = value.get("priority")
    try:
        if not isinstance(priority, str):
            raise TypeError(priority)
        level = Priority(priority)
    except (ValueError, TypeError):
        allowed = ", ".join(p.value for p in Priority)
        raise ValidationError(f"{field}.priority", priority, f"must be one of {allowed}") from None
    grade = value.get("grade")
    if grade is not None and (
        not isinstance(grade, str) or not grade.isprintable() or len(grade) > 100
    ):
        raise ValidationError(f"{field}.grade", grade, "must be a short text")
    first = _duration(f"{field}.first_response", value.get("first_response"))
    resolution = _duration(f"{field}.resolution", value.get("resolution"))
    if resolution < first:
        raise ValidationError(
            f"{field}.resolution", value.get("resolution"), "is shorter than first_response"
        )
    return SlaTarget(level, first, resolution, grade)


@attrs.frozen
class SlaPolicy:
    """Targets per priority, measured on a working calendar or in calendar hours."""

    targets: tuple[SlaTarget, ...] = (
        SlaTarget(Priority.URGENT, timedelta(hours=1), timedelta(hours=4)),
        SlaTarget(Priority.HIGH, timedelta(hours=4), timedelta(hours=16)),
        SlaTarget(Priority.NORMAL, timedelta(hours=8), timedelta(hours=40)),
        SlaTarget(Priority.LOW, timedelta(hours=16), timedelta(hours=80)),
    )
    """The targets; the first matching one applies (grade-specific ones should come first)."""
    calendar: WorkingHours | None = None
    """Business hours the targets count in; None counts every hour of the day."""

    @classmethod
    def parse(cls, value: Any, field: str = "sla_policy") -> SlaPolicy:
        """Build from an SlaPolicy or its JSON form; a refusal names the place (``sla_policy.targets[0]``).

        The JSON form: ``{"targets": [{"priority": "urgent", "first_response": 1,
        "resolution": 4, "grade": None}, …], "calendar": {"timezone": "Europe/Berlin",
        "mon": "09:00-17:00", …}}``, durations in hours (or as ``timedelta``). Every
        priority needs a target for any grade, so no ticket is left without one.
        """
        if isinstance(value, SlaPolicy):
            return value
        if not isinstance(value, dict):
            raise ValidationError(field, value, "must be a mapping with targets and a calendar")
        unknown = sorted(set(value) - {"targets", "calendar"}, key=str)
        if unknown:
            raise ValidationError(
                f"{field}.{unknown[0]}", value[unknown[0]], "is not targets or calendar"
            )
        given = value.get("targets")
        if not isinstance(given, list | tuple) or not given:
            raise ValidationError(f"{field}.targets", given, "must be a non-empty list of targets")
        targets = tuple(_target(f"{field}.targets[{i}]", t) for i, t in enumerate(given))
        uncovered = [
            p.value
            for p in Priority
            if not any(t.priority is p and t.grade is None for t in targets)
        ]
        if uncovered:
            raise ValidationError(
                f"{field}.targets", given, f"has no target for any grade for {', '.join(uncovered)}"
            )
        return cls(targets, WorkingHours.parse(value.get("calendar"), f"{field}.calendar"))

    def to_json(self) -> dict[str, Any]:
        """The JSON form :meth:`parse` reads back (durations in hours)."""
        return {
            "targets": [
                {
                    "priority": t.priority.value,
                    "first_response": _hours(t.first_response),
                    "resolution": _hours(t.resolution),
                    **({"grade": t.grade} if t.grade is not None else {}),
                }
                for t in self.targets
            ],
            "calendar": None if self.calendar is None else self.calendar.to_json(),
        }

    def target(self, priority: Priority, grade: str | None) -> SlaTarget:
        """The target for a ticket of this priority from a customer of this grade."""
        for target in self.targets:
            if target.priority is priority and target.grade in (None, grade):
                return target
        raise ValidationError("priority", priority.value, "has no SLA target")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """``start`` plus ``duration`` of SLA time."""
        return start + duration if self.calendar is None else self.calendar.add(start, duration)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """SLA time between ``start`` and ``end``."""
        if self.calendar is None:
            return max(end - start, timedelta(0))
        return self.calendar.between(start, end)


def mail_key(message_id: str) -> str:
    """The lookup key of an email's ``Message-ID``: itself, or a digest of a very long one."""
    if len(message_id) <= 250:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()


@attrs.frozen(kw_only=True)
class Ticket(Record):
    """A customer's request to service."""

    resource: ClassVar[str] = "ticket"
    owner_field: ClassVar[str] = "assignee_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("customer_id",),
        ("assignee_id", "status"),
        ("status", "resolution_due"),
        ("status", "first_response_due"),
    )

    subject: str
    """One line."""
    description: str | None = None
    """The request in full."""
    channel: Channel
    """How it came in."""
    customer_id: str | None = None
    """The customer."""
    contact_id: str | None = None
    """The person who asked."""
    deal_id: str | None = None
    """A related deal."""
    contract_id: str | None = None
    """A related contract."""
    category: str | None = None
    """What it is about (routing may use it)."""
    skills: tuple[str, ...] = ()
    """Skills needed to handle it (routing may use them)."""
    priority: Priority = Priority.NORMAL
    """How urgent."""
    status: TicketStatus = TicketStatus.NEW
    """See :data:`TICKET_MOVES`."""
    assignee_id: str | None = None
    """The agent handling it."""
    assigned_by: str | None = None
    """The rule, plugin or user that chose the agent."""
    assignment_reason: str | None = None
    """Why that agent."""
    messages: tuple[Message, ...] = ()
    """The conversation: public replies and internal notes."""
    opened_at: datetime
    """When it was opened (the SLA clock starts)."""
    first_response_at: datetime | None = None
    """The first public reply by an agent."""
    first_response_due: datetime | None = None
    """When the first reply is due under the SLA."""
    resolution_due: datetime | None = None
    """When resolution is due under the SLA."""
    paused_since: datetime | None = None
    """Waiting on the customer since (the SLA clock is stopped)."""
    resolved_at: datetime | None = None
    """When last resolved."""
    closed_at: datetime | None = None
    """When closed."""
    resolutions: int = 0
    """How many times it was resolved (a reopened ticket counts again)."""
    first_response_breached: bool = False
    """The first reply came (or is) late."""
    resolution_breached: bool = False
    """Resolution came (or is) late."""
    escalation_level: int = 0
    """How many times it was escalated."""
    csat_score: int | None = None
    """Satisfaction, 1-5, for the latest resolution."""
    csat_comment: str | None = None
    """The customer's comment."""
    csat_resolution: int | None = None
    """Which resolution the score is for (one score per resolution)."""
    article_ids: tuple[str, ...] = ()
    """Knowledge-base articles linked to it."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values by key, in their JSON form (see :mod:`pycrm.domain.custom_fields`)."""
    mail_ids: tuple[str, ...] = ()
    """The ``Message-ID`` of every email the ticket was opened or answered by, so a
    reply by email finds it (see ``s.tickets.receive_mail``)."""

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """``("mail", key)`` for each email id (see :func:`mail_key`)."""
        for mail_id in self.mail_ids:
            yield "mail", mail_key(mail_id)

    @property
    def is_open(self) -> bool:
        """Still needs work."""
        return self.status in OPEN_TICKET_STATUSES


class ArticleStatus(enum.StrEnum):
    """Whether customers can find an article."""

    DRAFT = "draft"
    PUBLISHED = "published"


@attrs.frozen(kw_only=True)
class Article(Record):
    """A knowledge-base article."""

    resource: ClassVar[str] = "article"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("status",),)
    computed: ClassVar[tuple[str, ...]] = ("search_text",)

    title: str
    """Headline."""
    body: str
    """The answer."""
    tags: tuple[str, ...] = ()
    """Tags."""
    category: str | None = None
    """Category."""
    status: ArticleStatus = ArticleStatus.DRAFT
    """Draft or published."""

    @property
    def search_text(self) -> str:
        """Title, tags and body folded for search."""
        return search_key(" ".join([self.title, *self.tags, self.category or "", self.body]))

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Tags."""
        for tag in self.tags:
            yield "tag", search_key(tag)
