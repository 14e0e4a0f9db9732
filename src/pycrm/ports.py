"""The ports services depend on: a clock, repositories, a unit of work and a store.

Adapters (:mod:`pycrm.adapters.memory`, :mod:`pycrm.adapters.sqlalchemy`)
implement them; services never import an adapter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pycrm.domain.aggregates import GroupKey, Measure
from pycrm.domain.outbox import Claim
from pycrm.domain.query import Filter, OrderBy
from pycrm.domain.records import Stored

__all__ = [
    "BlobStore",
    "Clock",
    "OutboxQueue",
    "Repository",
    "Store",
    "SystemClock",
    "UnitOfWork",
]

S = TypeVar("S", bound=Stored)


class Clock(Protocol):
    """Tells the time. Inject a fake one to test SLA and overdue logic."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        return datetime.now(UTC)


class Repository(Protocol[S]):
    """Stores one record type, inside one unit of work and one tenant."""

    def add(self, record: S) -> None:
        """Store a new record. Raises DuplicateError on a unique-key clash."""
        ...

    def add_many(self, records: Sequence[S]) -> None:
        """Store many new records at once (bulk import)."""
        ...

    def get(self, id: str, *, lock: bool = False) -> S | None:
        """Return the record with ``id`` in this tenant, or None.

        With ``lock``, hold a shared lock on it until the unit of work ends, so
        a concurrent change waits (or this read waits for one in progress).
        """
        ...

    def get_many(self, ids: Sequence[str]) -> dict[str, S]:
        """Return the records among ``ids`` that exist, by id, in one query."""
        ...

    def replace(self, record: S, expected_version: int) -> None:
        """Overwrite the stored record if it is still at ``expected_version``.

        Raises ConcurrencyError when it is not, NotFound when it is gone. A
        record kind without a version (an audit entry, rewritten only by an
        erasure) is overwritten whatever version is given.
        """
        ...

    def delete(self, id: str, expected_version: int) -> None:
        """Remove the record (and its match keys) if it is still at ``expected_version``.

        Raises ConcurrencyError when it is not, NotFound when it is gone. Only
        services whose records may really go (a lead deleted by policy) call it;
        the audit trail keeps what was removed.
        """
        ...

    def find(
        self,
        where: Filter | None = None,
        *,
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[S]:
        """Return the records matching ``where``, in order, in one query."""
        ...

    def find_holders(
        self, kind: str, keys: Sequence[str], where: Filter | None = None, *, per_key: int
    ) -> dict[str, list[S]]:
        """For each key: the first ``per_key`` records (by id) matching ``where`` that hold it.

        The records hold match key ``(kind, key)``; one query brings back what
        many index probes ``find(HasKey(kind, key), limit=per_key)``
        would bring back, key by key; keys no record holds are left out.
        """
        ...

    def count(self, where: Filter | None = None) -> int:
        """Count the records matching ``where`` without loading them."""
        ...

    def count_by(self, field: str, where: Filter | None = None) -> dict[Any, int]:
        """Count the records matching ``where`` per value of ``field`` (a GROUP BY)."""
        ...

    def aggregate(
        self, where: Filter | None, group_by: Sequence[GroupKey], measures: Mapping[str, Measure]
    ) -> list[dict[str, Any]]:
        """Group the matching records and measure each group (see :mod:`pycrm.domain.aggregates`).

        SQL adapters run it as one GROUP BY query.
        """
        ...


class OutboxQueue(Protocol):
    """The outbox as a work queue for relay workers, inside one unit of work and one tenant.

    SQL adapters claim with one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
    LOCKED)`` on PostgreSQL (SQLite's single writer serialises the same
    statement), so concurrent workers never claim the same message.
    """

    def claim(self, worker: str, *, now: datetime, until: datetime, limit: int) -> list[Claim]:
        """Lease up to ``limit`` due messages to ``worker`` until ``until``, oldest first.

        A message is due when it is pending, not leased (or its lease ended
        before ``now``), not waiting for a retry after ``now``, and no older
        pending message is about the same record: so one record's events go
        out one at a time, in order, however many workers run.
        """
        ...

    def settle(self, ids: Sequence[str], *, now: datetime) -> int:
        """Mark pending messages delivered and free their leases, in one statement.

        Return how many were pending.
        """
        ...

    def release(self, ids: Sequence[str]) -> None:
        """Give leases back without counting an attempt (a worker that stops early)."""
        ...

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
        """Free a claimed message for a later attempt, or dead-letter it (``dead_at``).

        Only while it is still at the claim's version: False when another
        worker claimed it since (the lease ran out), and nothing is written.
        """
        ...

    def purge(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` messages delivered before ``before``; return how many."""
        ...


class UnitOfWork(Protocol):
    """One transaction in one tenant."""

    tenant_id: str

    def repo(self, cls: type[S]) -> Repository[S]:
        """The repository for ``cls`` in this unit of work."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Undo every write made inside the block if the block raises."""
        ...

    def outbox(self) -> OutboxQueue:
        """The outbox's queue operations in this unit of work."""
        ...

    def next_number(self, key: str) -> int:
        """Atomically increment the tenant's counter ``key`` and return its new value (1 first).

        Concurrent units of work get distinct, gap-free numbers; the counter
        is held until this unit of work ends, and a rollback gives its
        numbers back.
        """
        ...

    def commit(self) -> None:
        """Make every write durable and visible to other units of work."""
        ...

    def rollback(self) -> None:
        """Discard every write."""
        ...


class BlobStore(Protocol):
    """Where document bytes live: a directory, a bucket, memory."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; NotFound when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds bytes."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        ...


class Store(Protocol):
    """A storage backend: opens units of work."""

    def begin(self, tenant_id: str) -> UnitOfWork:
        """Start a unit of work scoped to ``tenant_id``."""
        ...

    def tenants(self) -> list[str]:
        """The tenants that hold any committed record, sorted."""
        ...

    def close(self) -> None:
        """Release connections (a passed-in engine is left open)."""
        ...


def chunks(ids: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """Yield ``ids`` in slices of at most ``size`` (bound-parameter limits)."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
