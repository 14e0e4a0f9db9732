"""Tasks and reminders."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import attrs

from pycrm.domain.fields import Checks, check_choice, check_text
from pycrm.domain.org import User
from pycrm.domain.query import Eq, Filter, IsNull, OrderBy, Range, all_of
from pycrm.domain.tasks import Task, TaskPriority, TaskStatus
from pycrm.errors import InvalidTransition, NotFound, ValidationError
from pycrm.services.records import RecordService, check_when, write
from pycrm.services.search import check_page, referenced

__all__ = ["Agenda", "TaskService"]


@attrs.frozen
class Agenda:
    """One user's open tasks for one day (see :meth:`TaskService.agenda`)."""

    user_id: str
    """Whose agenda it is."""
    day: date
    """The day, in the user's time zone."""
    timezone: str
    """That time zone: the one of the user's working hours, else ``UTC``."""
    overdue: tuple[Task, ...]
    """Open tasks due before the day began, earliest first."""
    due: tuple[Task, ...]
    """Open tasks due during the day, earliest first."""

    @property
    def tasks(self) -> tuple[Task, ...]:
        """Everything on it: the overdue tasks, then the day's."""
        return self.overdue + self.due


class TaskService(RecordService[Task]):
    """Tasks with an assignee (or a department), a due time, a priority and a related record."""

    record_type = Task
    events: ClassVar[Mapping[str, str]] = {"create": "task_created", "overdue": "task_overdue"}

    @write
    def create(
        self,
        title: str,
        *,
        assignee_id: str | None = None,
        department: str | None = None,
        due_at: datetime | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        related_type: str | None = None,
        related_id: str | None = None,
        notes: str | None = None,
        kind: str = "todo",
    ) -> Task:
        """Create a task for a user, or for anyone in a department when no user is given."""
        with Checks() as checks:
            fields: dict[str, Any] = {
                "title": checks(check_text, "title", title, required=True, limit=300),
                "assignee_id": checks(self._check_user, "assignee_id", assignee_id),
                "department": checks(check_text, "department", department, limit=40),
                "due_at": None if due_at is None else checks(check_when, "due_at", due_at),
                "priority": checks(check_choice, "priority", priority, TaskPriority),
                "related_type": checks(check_text, "related_type", related_type, limit=40),
                "related_id": checks(check_text, "related_id", related_id, limit=40),
                "notes": checks(check_text, "notes", notes, limit=5000, multiline=True),
                "kind": checks(check_text, "kind", kind, required=True, limit=40),
            }
        if fields["assignee_id"] is None and fields["department"] is None:
            raise ValidationError("assignee_id", None, "a task needs an assignee or a department")
        return self._add("create", **fields)

    def _finish(self, id: str, status: TaskStatus, version: int | None) -> Task:
        current = self._load(id)
        if current.status is not TaskStatus.OPEN:
            raise InvalidTransition("task", current.status.value, status.value, "it is not open")
        return self._change(
            current, version, status.value, status=status, completed_at=self._s._now()
        )

    @write
    def complete(self, id: str, *, version: int | None = None) -> Task:
        """Mark an open task done."""
        return self._finish(id, TaskStatus.DONE, version)

    @write
    def cancel(self, id: str, *, version: int | None = None) -> Task:
        """Cancel an open task."""
        return self._finish(id, TaskStatus.CANCELLED, version)

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Task]:
        """Every task :meth:`list` finds with ``filters``, however many there are.

        Takes the filters of :meth:`list` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.tasks.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.list, filters, page_size)

    def list(
        self,
        *,
        assignee_id: str | None = None,
        department: str | None = None,
        status: TaskStatus | str | None = TaskStatus.OPEN,
        related_id: str | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        """Tasks by due time (open ones by default).

        Returns the first 100 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.
        """
        limit, _ = check_page(limit, 0)
        parts: list[Filter | None] = []
        for field, value in (
            ("assignee_id", assignee_id),
            ("department", department),
            ("related_id", related_id),
            ("kind", kind),
        ):
            if value is not None:
                parts.append(Eq(field, value))
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, TaskStatus)))
        return self._find(
            all_of(parts), order_by=[OrderBy("due_at"), OrderBy("created_at")], limit=limit
        )

    @write
    def scan_overdue(self, *, at: datetime | None = None) -> builtins.list[Task]:
        """Mark every open task past its due time (at ``at``, default now) as overdue.

        Like the receivables' overdue scan, run it from a scheduler. Each task
        is marked once (its ``overdue_at`` is set to the time of the sweep)
        and sends ``task_overdue``; returns the tasks marked by this run,
        earliest due first. The sweep covers the tasks the actor may read and
        update: as the system actor, every task of the tenant.

        :raises PermissionDenied: when the actor may update no task at all.
        """
        when = self._s._now() if at is None else check_when("at", at)
        guard = self._s._guard
        where = all_of(
            [
                Eq("status", TaskStatus.OPEN),
                Range("due_at", None, when),
                IsNull("overdue_at"),
                guard.filter(Task),
                guard.filter(Task, "update"),
            ]
        )
        due = self._repo.find(where, order_by=[OrderBy("due_at"), OrderBy("id")])
        return [self._change(task, None, "overdue", overdue_at=when) for task in due]

    def agenda(self, user_id: str, day: date | None = None) -> Agenda:
        """A user's open tasks for ``day`` (default: today), and the ones still open from before.

        The day runs from midnight to midnight in the time zone of the user's
        working hours (UTC if they have none). Only tasks assigned to the user
        by name count (not their department's unassigned queue), and only the
        ones the actor may read: a user reads their own agenda; a manager
        their team's, where the policy lets them read the team's tasks.
        """
        referenced(self._s, User, "user_id", user_id)
        if day is not None and (not isinstance(day, date) or isinstance(day, datetime)):
            raise ValidationError("day", day, "must be a date (datetime.date)")
        user = self._s.read(User, quiet=True).get(user_id)
        if user is None:
            raise NotFound("user", user_id)
        zone = user.working_hours.timezone if user.working_hours is not None else "UTC"
        local = ZoneInfo(zone)
        today = day if day is not None else self._s._now().astimezone(local).date()
        start = datetime.combine(today, time(), local).astimezone(UTC)
        end = datetime.combine(today + timedelta(days=1), time(), local).astimezone(UTC)
        found = self._find(
            all_of(
                [
                    Eq("assignee_id", user.id),
                    Eq("status", TaskStatus.OPEN),
                    Range("due_at", None, end),
                ]
            ),
            order_by=[OrderBy("due_at"), OrderBy("created_at")],
        )
        return Agenda(
            user_id=user.id,
            day=today,
            timezone=zone,
            overdue=tuple(t for t in found if t.due_at is not None and t.due_at < start),
            due=tuple(t for t in found if t.due_at is not None and t.due_at >= start),
        )
