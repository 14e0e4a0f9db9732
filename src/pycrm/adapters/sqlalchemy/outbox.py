"""The outbox as a work queue on SQL: claims, settling and purging in single statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pycrm.domain.outbox import Claim, OutboxMessage
from pycrm.ports import chunks

if TYPE_CHECKING:
    from pycrm.adapters.sqlalchemy.store import SqlUnitOfWork

__all__ = ["SqlOutboxQueue"]

#: The columns a claim returns, in :class:`Claim`'s order (only what sending needs).
_CLAIMED = ("id", "tenant_id", "name", "record_id", "payload", "attempts", "sent_to", "version")


class SqlOutboxQueue:
    """:class:`~pycrm.ports.OutboxQueue` on one SQL unit of work."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow
        self._codec = uow._store.schema.codec(OutboxMessage)
        self._table = self._codec.table
        self._stamp = self._table.c.delivered_at.type

    def _pending(self, t: sa.FromClause) -> sa.ColumnElement[bool]:
        pending: sa.ColumnElement[bool] = sa.and_(
            t.c.tenant_id == sa.bindparam("tenant"),
            t.c.delivered.is_(False),
            t.c.dead_at.is_(None),
        )
        return pending

    def _among(self, picked: sa.Select[Any]) -> sa.ColumnElement[bool]:
        """``id IN (picked)``, the pick run once.

        On PostgreSQL it is a materialised CTE: a plain IN subquery may be run
        again while the statement changes rows, and so take more than its LIMIT.
        """
        if self._uow.connection.dialect.name == "postgresql":
            cte = picked.cte("picked").prefix_with("MATERIALIZED")
            return self._table.c.id.in_(sa.select(cte.c.id))
        return self._table.c.id.in_(picked.scalar_subquery())

    def _claim_statement(self) -> sa.Executable:
        t = self._table
        older = t.alias("older")
        now = sa.bindparam("now", type_=self._stamp)
        due = (
            sa.select(t.c.id)
            .where(
                self._pending(t),
                sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until < now),
                sa.or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
                ~sa.exists().where(
                    self._pending(older),
                    older.c.record_id == t.c.record_id,
                    older.c.id < t.c.id,
                ),
            )
            .order_by(t.c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
        if self._uow.connection.dialect.name == "postgresql":
            # Rows another worker is claiming right now are skipped, not waited for.
            due = due.with_for_update(skip_locked=True)
        return (
            sa.update(t)
            .where(t.c.tenant_id == sa.bindparam("tenant"), self._among(due))
            .values(
                claimed_by=sa.bindparam("worker"),
                claimed_until=sa.bindparam("until", type_=self._stamp),
                version=t.c.version + 1,
            )
            .returning(*(t.c[name] for name in _CLAIMED))
        )

    def claim(self, worker: str, *, now: datetime, until: datetime, limit: int) -> list[Claim]:
        """Lease due messages to ``worker`` (see :class:`~pycrm.ports.OutboxQueue`)."""
        self._uow.write_lock()
        statement = self._uow._store.statement(("outbox", "claim"), self._claim_statement)
        params = {
            "tenant": self._uow.tenant_id,
            "now": now,
            "until": until,
            "worker": worker,
            "limit": limit,
        }
        rows = self._uow.execute(statement, params).all()
        claimed = [
            Claim(
                id=id,
                tenant_id=tenant_id,
                name=name,
                record_id=record_id,
                payload=payload,
                attempts=attempts,
                sent_to=tuple(sent_to or ()),
                version=version,
            )
            for id, tenant_id, name, record_id, payload, attempts, sent_to, version in map(
                tuple, rows
            )
        ]
        claimed.sort(key=lambda m: m.id)  # RETURNING gives no order
        return claimed

    def _settle_statement(self) -> sa.Executable:
        t = self._table
        now = sa.bindparam("now", type_=self._stamp)
        return (
            sa.update(t)
            .where(self._pending(t), t.c.id.in_(sa.bindparam("ids", expanding=True)))
            .values(
                delivered=True,
                delivered_at=now,
                updated_at=now,
                claimed_by=None,
                claimed_until=None,
                next_attempt_at=None,
                version=t.c.version + 1,
            )
        )

    def settle(self, ids: Sequence[str], *, now: datetime) -> int:
        """Mark pending messages delivered in one statement per 500 ids."""
        if not ids:
            return 0
        self._uow.write_lock()
        statement = self._uow._store.statement(("outbox", "settle"), self._settle_statement)
        marked = 0
        for part in chunks(list(dict.fromkeys(ids))):
            params: dict[str, Any] = {"tenant": self._uow.tenant_id, "now": now, "ids": part}
            marked += self._uow.execute(statement, params).rowcount
        return marked

    def _release_statement(self) -> sa.Executable:
        t = self._table
        return (
            sa.update(t)
            .where(
                t.c.tenant_id == sa.bindparam("tenant"),
                t.c.id.in_(sa.bindparam("ids", expanding=True)),
                t.c.claimed_by.is_not(None),
            )
            .values(claimed_by=None, claimed_until=None, version=t.c.version + 1)
        )

    def release(self, ids: Sequence[str]) -> None:
        """Give leases back."""
        if not ids:
            return
        self._uow.write_lock()
        statement = self._uow._store.statement(("outbox", "release"), self._release_statement)
        for part in chunks(list(ids)):
            self._uow.execute(statement, {"tenant": self._uow.tenant_id, "ids": part})

    def _reschedule_statement(self) -> sa.Executable:
        t = self._table
        return (
            sa.update(t)
            .where(
                t.c.tenant_id == sa.bindparam("tenant"),
                t.c.id == sa.bindparam("b_id"),
                t.c.version == sa.bindparam("b_version"),
            )
            .values(
                sent_to=sa.bindparam("b_sent_to", type_=t.c.sent_to.type),
                attempts=sa.bindparam("b_attempts"),
                last_error=sa.bindparam("b_last_error"),
                next_attempt_at=sa.bindparam("b_next_attempt_at", type_=self._stamp),
                dead_at=sa.bindparam("b_dead_at", type_=self._stamp),
                claimed_by=None,
                claimed_until=None,
                updated_at=sa.bindparam("now", type_=self._stamp),
                version=t.c.version + 1,
            )
        )

    def reschedule(
        self,
        claim: Claim,
        *,
        now: datetime,
        sent_to: tuple[str, ...],
        attempts: int,
        last_error: str | None,
        next_attempt_at: datetime | None,
        dead_at: datetime | None,
    ) -> bool:
        """Free a claimed message for later (or dead-letter it) if still at the claim's version."""
        self._uow.write_lock()
        statement = self._uow._store.statement(("outbox", "reschedule"), self._reschedule_statement)
        params = {
            "tenant": self._uow.tenant_id,
            "b_id": claim.id,
            "b_version": claim.version,
            "b_sent_to": list(sent_to),
            "b_attempts": attempts,
            "b_last_error": last_error,
            "b_next_attempt_at": next_attempt_at,
            "b_dead_at": dead_at,
            "now": now,
        }
        return bool(self._uow.execute(statement, params).rowcount == 1)

    def _purge_statement(self) -> sa.Executable:
        t = self._table
        old = (
            sa.select(t.c.id)
            .where(
                t.c.tenant_id == sa.bindparam("tenant"),
                t.c.delivered.is_(True),
                t.c.delivered_at < sa.bindparam("before", type_=self._stamp),
            )
            .order_by(t.c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
        return sa.delete(t).where(t.c.tenant_id == sa.bindparam("tenant"), self._among(old))

    def purge(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` messages delivered before ``before``."""
        self._uow.write_lock()
        statement = self._uow._store.statement(("outbox", "purge"), self._purge_statement)
        params = {"tenant": self._uow.tenant_id, "before": before, "limit": limit}
        return int(self._uow.execute(statement, params).rowcount)
