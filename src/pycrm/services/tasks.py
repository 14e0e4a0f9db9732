"""Tasks and reminders."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from pycrm.domain.fields import Checks, check_choice, check_text
from pycrm.domain.query import Eq, Filter, OrderBy, all_of
from pycrm.domain.tasks import Task, TaskPriority, TaskStatus
from pycrm.errors import InvalidTransition, ValidationError
from pycrm.services.records import RecordService, check_when, write
from pycrm.services.search import check_page

__all__ = ["TaskService"]


class TaskService(RecordService[Task]):
    """Tasks with an assignee (or a department), a due time, a priority and a related record."""

    record_type = Task
    events: ClassVar[Mapping[str, str]] = {"create": "task_created"}

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
