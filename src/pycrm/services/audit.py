"""The audit trail, read-only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pycrm.domain.audit import AuditEntry
from pycrm.domain.query import Eq, Filter, OrderBy, Range, all_of
from pycrm.services.records import Service, check_when
from pycrm.services.search import check_page

__all__ = ["AuditService"]


class AuditService(Service):
    """Who did what and when. Entries cannot be changed or deleted through the API."""

    def find(
        self,
        *,
        actor_id: str | None = None,
        record_id: str | None = None,
        record_type: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Audit entries, oldest first, filtered by actor, record, kind, action and period.

        Returns the first 100 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.

        ``since`` is inclusive and ``until`` exclusive.
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        for field, value in (
            ("actor_id", actor_id),
            ("record_id", record_id),
            ("record_type", record_type),
            ("action", action),
        ):
            if value is not None:
                parts.append(Eq(field, value))
        if since is not None or until is not None:
            low = None if since is None else check_when("since", since)
            high = None if until is None else check_when("until", until)
            parts.append(Range("at", low, high))
        where, order, offset = self._paged(all_of(parts), [OrderBy("at"), OrderBy("id")], offset)
        return self._s.read(AuditEntry).find(where, order_by=order, limit=limit, offset=offset)

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[AuditEntry]:
        """Every audit entry :meth:`find` finds with ``filters``, however many there are.

        Takes the filters of :meth:`find` (not ``limit`` or ``offset``) and reads
        ``page_size`` at a time, in the order the entries were written.
        """
        return self._pages(self.find, filters, page_size)
