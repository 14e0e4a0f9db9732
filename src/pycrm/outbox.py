"""Relaying the outbox: hand committed events to another process at least once.

Every event a session emits is also written to the outbox table in the same
transaction as the work. A relay (a cron job, a worker) reads what is pending,
hands each event on (to a queue, a webhook, an ERP) and marks it delivered.
If the process dies between handing on and marking, the event is handed on
again next time: consumers de-duplicate by :attr:`Event.id`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from pycrm.domain.events import Event
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.query import Eq, OrderBy
from pycrm.errors import ConcurrencyError, ValidationError
from pycrm.serialization import from_dict

if TYPE_CHECKING:
    from pycrm.crm import CRM

__all__ = ["Outbox"]

log = logging.getLogger("pycrm.outbox")


class Outbox:
    """The outbox of one CRM: ``crm.outbox``."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm

    def pending(self, *, tenant: str | None = None, limit: int = 100) -> list[Event]:
        """Events not yet marked delivered, oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValidationError("limit", limit, "must be a whole number from 1 to 10,000")
        uow = self._crm._begin(tenant)
        try:
            rows = uow.repo(OutboxMessage).find(
                Eq("delivered", False), order_by=[OrderBy("created_at")], limit=limit
            )
        finally:
            uow.rollback()
        return [from_dict(Event, row.payload) for row in rows]

    def mark_delivered(self, event_ids: list[str], *, tenant: str | None = None) -> int:
        """Mark events delivered; return how many were pending and are now marked."""
        uow = self._crm._begin(tenant)
        marked = 0
        try:
            repo = uow.repo(OutboxMessage)
            now = self._crm.clock.now()
            for row in repo.get_many(event_ids).values():
                if row.delivered:
                    continue
                repo.replace(
                    attrs.evolve(row, delivered=True, delivered_at=now, version=row.version + 1),
                    row.version,
                )
                marked += 1
            uow.commit()
        except BaseException:
            uow.rollback()
            raise
        return marked

    def _count_attempt(self, event_id: str, tenant: str | None) -> None:
        """Add one to the event's failed attempts (in a transaction of its own)."""
        uow = self._crm._begin(tenant)
        try:
            repo = uow.repo(OutboxMessage)
            row = repo.get(event_id)
            if row is not None:
                counted = attrs.evolve(row, attempts=row.attempts + 1, version=row.version + 1)
                repo.replace(counted, row.version)
            uow.commit()
        except ConcurrencyError:
            uow.rollback()
        except BaseException:
            uow.rollback()
            raise

    def relay(
        self, send: Callable[[Event], object], *, tenant: str | None = None, limit: int = 100
    ) -> int:
        """Hand pending events to ``send`` one by one, oldest first; return how many were delivered.

        Stops at the first event ``send`` raises on (so order is kept); that
        event stays pending and is tried again on the next call.
        """
        delivered: list[str] = []
        for event in self.pending(tenant=tenant, limit=limit):
            try:
                send(event)
            except Exception:
                log.exception(
                    "relaying event %s (%s) failed; it stays pending", event.id, event.name
                )
                self._count_attempt(event.id, tenant)
                break
            delivered.append(event.id)
        if delivered:
            try:
                self.mark_delivered(delivered, tenant=tenant)
            except ConcurrencyError:
                log.warning("another relay marked some of these events at the same time")
        return len(delivered)
