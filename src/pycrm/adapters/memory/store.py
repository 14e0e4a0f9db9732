"""Tables as dicts, units of work as overlays."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs

from pycrm.domain import RECORD_BY_RESOURCE
from pycrm.domain.aggregates import GroupKey, Measure
from pycrm.domain.measure import aggregate, value_of
from pycrm.domain.outbox import Claim, OutboxMessage
from pycrm.domain.query import (
    And,
    Filter,
    In,
    Not,
    Or,
    OrderBy,
    RefersTo,
    Related,
    evaluate,
    plain,
)
from pycrm.domain.query import evaluate as matches
from pycrm.domain.records import Record, Stored
from pycrm.errors import ConcurrencyError, DuplicateError, NotFound

__all__ = ["MemoryStore", "sort_records"]

S = TypeVar("S", bound=Stored)

#: table → tenant → id → record
_Tables = dict[type[Stored], dict[str, dict[str, Stored]]]


def sort_records(records: list[S], order_by: Sequence[OrderBy]) -> list[S]:
    """Sort like SQL does here: by each key in turn (NULLs last), then by id."""
    ordered = sorted(records, key=lambda r: r.id)
    for order in reversed(order_by):
        present = [r for r in ordered if getattr(r, order.field) is not None]
        missing = [r for r in ordered if getattr(r, order.field) is None]
        present.sort(key=lambda r: plain(getattr(r, order.field)), reverse=order.descending)
        ordered = present + missing
    return ordered


def _has_mutable(cls: type[Stored]) -> bool:
    return any("dict" in str(f.type) for f in attrs.fields(cls))


_MUTABLE: dict[type[Stored], bool] = {}


def _isolated(record: S) -> S:
    """A private copy of records holding mutable values (dicts), so no caller can change the store."""
    cls = type(record)
    if cls not in _MUTABLE:
        _MUTABLE[cls] = _has_mutable(cls)
    return copy.deepcopy(record) if _MUTABLE[cls] else record


class MemoryStore:
    """A store that keeps everything in this process's memory."""

    def __init__(self) -> None:
        self._tables: _Tables = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._lock = threading.RLock()

    def begin(self, tenant_id: str) -> MemoryUnitOfWork:
        """Start a unit of work scoped to ``tenant_id``."""
        return MemoryUnitOfWork(self, tenant_id)

    def tenants(self) -> list[str]:
        """The tenants that hold any committed record, sorted."""
        with self._lock:
            return sorted(
                {t for table in self._tables.values() for t, rows in table.items() if rows}
            )

    def close(self) -> None:
        """Nothing to release."""

    def _base(self, cls: type[Stored], tenant_id: str) -> dict[str, Stored]:
        return self._tables.setdefault(cls, {}).setdefault(tenant_id, {})


class MemoryUnitOfWork:
    """One transaction: writes go to an overlay until commit."""

    def __init__(self, store: MemoryStore, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._store = store
        #: table → id → (record, or None once deleted; version it replaced, None for a new record)
        self._writes: dict[type[Stored], dict[str, tuple[Stored | None, int | None]]] = {}
        self._repos: dict[type[Stored], MemoryRepository[Any]] = {}
        #: counter → (its value before this unit of work, the last number it took)
        self._counters: dict[str, tuple[int, int]] = {}

    def repo(self, cls: type[S]) -> MemoryRepository[S]:
        """The repository for ``cls`` in this unit of work."""
        if cls not in self._repos:
            self._repos[cls] = MemoryRepository(self, cls)
        return self._repos[cls]

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the block's writes if it raises."""
        saved = {cls: dict(writes) for cls, writes in self._writes.items()}
        counters = dict(self._counters)
        try:
            yield
        except BaseException:
            self._writes = saved
            # Numbers taken inside the block go back, as a savepoint rollback does in SQL.
            self._give_back(
                {
                    k: (counters[k][1] if k in counters else v[0], v[1])
                    for k, v in self._counters.items()
                }
            )
            self._counters = counters
            raise

    def commit(self) -> None:
        """Check versions and unique keys against committed data, then apply."""
        with self._store._lock:
            for cls, writes in self._writes.items():
                base = self._store._base(cls, self.tenant_id)
                for id, (_, replaced) in writes.items():
                    current = base.get(id)
                    if replaced is None and current is not None:
                        raise DuplicateError(f"{cls.resource} {id!r} exists", [id])
                    if replaced is not None and issubclass(cls, Record):
                        actual = current.version if isinstance(current, Record) else None
                        if actual != replaced:
                            raise ConcurrencyError(cls.resource, id, replaced, actual)
                for record, _ in writes.values():
                    if record is not None:
                        self._check_unique(cls, record, base)
            for cls, writes in self._writes.items():
                base = self._store._base(cls, self.tenant_id)
                for id, (record, _) in writes.items():
                    if record is None:
                        base.pop(id, None)
                    else:
                        base[id] = record
            self._writes = {}
            self._counters = {}

    def rollback(self) -> None:
        """Forget every write."""
        self._writes = {}
        self._give_back(self._counters)
        self._counters = {}

    def _give_back(self, taken: dict[str, tuple[int, int]]) -> None:
        """Return counter numbers if nobody took a later one (else they stay as a gap)."""
        with self._store._lock:
            for key, (before, last) in taken.items():
                if self._store._counters.get((self.tenant_id, key)) == last:
                    self._store._counters[(self.tenant_id, key)] = before

    def outbox(self) -> MemoryOutboxQueue:
        """The outbox's queue operations in this unit of work."""
        return MemoryOutboxQueue(self)

    def next_number(self, key: str) -> int:
        """Increment counter ``key`` at once, so concurrent units of work never share a number."""
        with self._store._lock:
            value = self._store._counters.get((self.tenant_id, key), 0) + 1
            self._store._counters[(self.tenant_id, key)] = value
        before = self._counters[key][0] if key in self._counters else value - 1
        self._counters[key] = (before, value)
        return value

    def _visible(self, cls: type[S]) -> dict[str, S]:
        base = self._store._base(cls, self.tenant_id)
        with self._store._lock:
            rows: dict[str, Any] = dict(base)
        for id, (record, _) in self._writes.get(cls, {}).items():
            if record is None:
                rows.pop(id, None)
            else:
                rows[id] = record
        return rows

    def _check_unique(self, cls: type[Stored], record: Stored, rows: dict[str, Stored]) -> None:
        for columns in cls.unique:
            key = tuple(plain(getattr(record, c)) for c in columns)
            for other in rows.values():
                if (
                    other.id != record.id
                    and tuple(plain(getattr(other, c)) for c in columns) == key
                ):
                    raise DuplicateError(
                        f"a {cls.resource} with {', '.join(columns)} = {key!r} exists", [other.id]
                    )


class MemoryRepository(Generic[S]):
    """One record type in one memory unit of work."""

    def __init__(self, uow: MemoryUnitOfWork, cls: type[S]) -> None:
        self._uow = uow
        self._cls = cls

    def _write(self, record: S, replaced: int | None) -> None:
        if record.tenant_id != self._uow.tenant_id:
            raise NotFound(self._cls.resource, record.id)
        record = _isolated(record)
        self._uow._writes.setdefault(self._cls, {})
        earlier = self._uow._writes[self._cls].get(record.id)
        # Within one unit of work the version committed against is the first one seen.
        if earlier is not None:
            replaced = earlier[1]
        self._uow._writes[self._cls][record.id] = (record, replaced)

    def add(self, record: S) -> None:
        """Store a new record."""
        if self.get(record.id) is not None:
            raise DuplicateError(f"{self._cls.resource} {record.id!r} exists", [record.id])
        if self._cls.unique:
            self._uow._check_unique(self._cls, record, self._uow._visible(self._cls))
        self._write(record, None)

    def add_many(self, records: Sequence[S]) -> None:
        """Store many new records."""
        for record in records:
            self.add(record)

    def get(self, id: str, *, lock: bool = False) -> S | None:
        """Return the record with ``id``, or None (``lock``: commits are serialised anyway)."""
        written = self._uow._writes.get(self._cls, {}).get(id)
        if written is not None:
            return None if written[0] is None else _isolated(written[0])  # type: ignore[return-value]
        found = self._uow._store._base(self._cls, self._uow.tenant_id).get(id)
        return None if found is None else _isolated(found)  # type: ignore[return-value]

    def get_many(self, ids: Sequence[str]) -> dict[str, S]:
        """Return the records among ``ids`` that exist."""
        found = {id: self.get(id) for id in ids}
        return {id: record for id, record in found.items() if record is not None}

    def replace(self, record: S, expected_version: int) -> None:
        """Overwrite the record if it is still at ``expected_version``."""
        rows = self._uow._visible(self._cls)
        current = rows.get(record.id)
        if current is None:
            raise NotFound(self._cls.resource, record.id)
        # A record without a version (an audit entry) is replaced whatever version is given.
        actual = current.version if isinstance(current, Record) else expected_version
        if actual != expected_version:
            raise ConcurrencyError(self._cls.resource, record.id, expected_version, actual)
        self._uow._check_unique(self._cls, record, rows)  # type: ignore[arg-type]
        self._write(record, expected_version)

    def delete(self, id: str, expected_version: int) -> None:
        """Remove the record if it is still at ``expected_version``."""
        current = self._uow._visible(self._cls).get(id)
        if current is None:
            raise NotFound(self._cls.resource, id)
        actual = current.version if isinstance(current, Record) else expected_version
        if actual != expected_version:
            raise ConcurrencyError(self._cls.resource, id, expected_version, actual)
        writes = self._uow._writes.setdefault(self._cls, {})
        earlier = writes.get(id)
        # Committed against the version first seen (None: it was added in this unit of work).
        writes[id] = (None, earlier[1] if earlier is not None else expected_version)

    def _resolve(self, where: Filter | None) -> Filter | None:
        """Replace Related filters by the ids whose related aggregate is in range."""
        match where:
            case RefersTo(field, resource, related_where):
                cls = RECORD_BY_RESOURCE[resource]
                inner = self._uow.repo(cls)._resolve(related_where)
                ids = [r.id for r in self._uow._visible(cls).values() if evaluate(r, inner)]
                return In(field, ids)
            case Related(resource, key, measure, field, low, high, related_where):
                cls = RECORD_BY_RESOURCE[resource]
                inner = self._uow.repo(cls)._resolve(related_where)
                related = [r for r in self._uow._visible(cls).values() if evaluate(r, inner)]
                groups: dict[Any, list[Any]] = {}
                for record in related:
                    groups.setdefault(getattr(record, key), []).append(record)
                keep = []
                for record in self._uow._visible(self._cls).values():
                    members = groups.get(record.id, [])
                    if measure == "count":
                        value: Any = len(members)
                    elif measure == "sum":
                        value = sum(value_of(m, field or "") or 0 for m in members)
                    else:
                        values = [value_of(m, field or "") for m in members]
                        values = [v for v in values if v is not None]
                        value = max(values) if values else None
                    if (
                        value is not None
                        and (low is None or value >= low)
                        and (high is None or value < high)
                    ):
                        keep.append(record.id)
                return In("id", keep)
            case And(parts):
                return And(tuple(self._resolve(p) for p in parts))  # type: ignore[misc]
            case Or(parts):
                return Or(tuple(self._resolve(p) for p in parts))  # type: ignore[misc]
            case Not(part):
                resolved = self._resolve(part)
                return None if resolved is None else Not(resolved)
        return where

    def aggregate(
        self,
        where: Filter | None,
        group_by: Sequence[GroupKey],
        measures: Mapping[str, Measure],
    ) -> list[dict[str, Any]]:
        """Group the matching records and measure each group (in Python)."""
        where = self._resolve(where)
        rows = [r for r in self._uow._visible(self._cls).values() if matches(r, where)]
        resolved = {
            name: attrs.evolve(m, where=self._resolve(m.where)) if m.where is not None else m
            for name, m in measures.items()
        }
        return aggregate(rows, group_by, resolved)

    def find(
        self,
        where: Filter | None = None,
        *,
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[S]:
        """Return the matching records, in order."""
        where = self._resolve(where)
        found = [r for r in self._uow._visible(self._cls).values() if matches(r, where)]
        found = sort_records(found, order_by)
        end = None if limit is None else offset + limit
        return [_isolated(r) for r in found[offset:end]]

    def find_holders(
        self, kind: str, keys: Sequence[str], where: Filter | None = None, *, per_key: int
    ) -> dict[str, list[S]]:
        """For each key: the first ``per_key`` matching records (by id) that hold it."""
        where = self._resolve(where)
        wanted = set(keys)
        found: dict[str, list[S]] = {}
        for record in self._uow._visible(self._cls).values():
            held = {k for t, k in record.match_keys() if t == kind and k in wanted}
            if held and matches(record, where):
                for key in held:
                    found.setdefault(key, []).append(record)
        return {
            key: [_isolated(r) for r in sorted(records, key=lambda r: r.id)[:per_key]]
            for key, records in found.items()
        }

    def count(self, where: Filter | None = None) -> int:
        """Count the matching records."""
        where = self._resolve(where)
        return sum(1 for r in self._uow._visible(self._cls).values() if matches(r, where))

    def count_by(self, field: str, where: Filter | None = None) -> dict[Any, int]:
        """Count the matching records per value of ``field``."""
        where = self._resolve(where)
        counts: dict[Any, int] = {}
        for record in self._uow._visible(self._cls).values():
            if matches(record, where):
                value = plain(getattr(record, field))
                counts[value] = counts.get(value, 0) + 1
        return counts


class MemoryOutboxQueue:
    """:class:`~pycrm.ports.OutboxQueue` in memory: the same rules, applied record by record.

    Two units of work claiming the same message both write it; the second
    to commit gets a ConcurrencyError, as with any other record.
    """

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow
        self._repo = uow.repo(OutboxMessage)

    def _pending(self) -> list[OutboxMessage]:
        return sorted(
            (m for m in self._uow._visible(OutboxMessage).values() if m.pending),
            key=lambda m: m.id,
        )

    def claim(self, worker: str, *, now: datetime, until: datetime, limit: int) -> list[Claim]:
        """Lease due messages to ``worker`` (see :class:`~pycrm.ports.OutboxQueue`)."""
        claimed: list[Claim] = []
        heads: set[str] = set()
        for message in self._pending():
            first = message.record_id not in heads
            heads.add(message.record_id)
            if len(claimed) == limit or not first:
                continue
            if message.claimed_until is not None and message.claimed_until >= now:
                continue
            if message.next_attempt_at is not None and message.next_attempt_at > now:
                continue
            leased = attrs.evolve(
                message, claimed_by=worker, claimed_until=until, version=message.version + 1
            )
            self._repo.replace(leased, message.version)
            claimed.append(
                Claim(
                    id=leased.id,
                    tenant_id=leased.tenant_id,
                    name=leased.name,
                    record_id=leased.record_id,
                    payload=leased.payload,
                    attempts=leased.attempts,
                    sent_to=leased.sent_to,
                    version=leased.version,
                )
            )
        return claimed

    def settle(self, ids: Sequence[str], *, now: datetime) -> int:
        """Mark pending messages delivered."""
        marked = 0
        for message in self._repo.get_many(list(ids)).values():
            if message.pending:
                done = attrs.evolve(
                    message,
                    delivered=True,
                    delivered_at=now,
                    updated_at=now,
                    claimed_by=None,
                    claimed_until=None,
                    next_attempt_at=None,
                    version=message.version + 1,
                )
                self._repo.replace(done, message.version)
                marked += 1
        return marked

    def release(self, ids: Sequence[str]) -> None:
        """Give leases back."""
        for message in self._repo.get_many(list(ids)).values():
            if message.claimed_by is not None:
                freed = attrs.evolve(
                    message, claimed_by=None, claimed_until=None, version=message.version + 1
                )
                self._repo.replace(freed, message.version)

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
        message = self._repo.get(claim.id)
        if message is None or message.version != claim.version:
            return False
        later = attrs.evolve(
            message,
            sent_to=sent_to,
            attempts=attempts,
            last_error=last_error,
            next_attempt_at=next_attempt_at,
            dead_at=dead_at,
            claimed_by=None,
            claimed_until=None,
            updated_at=now,
            version=message.version + 1,
        )
        self._repo.replace(later, message.version)
        return True

    def purge(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` messages delivered before ``before``."""
        old = sorted(
            (
                m
                for m in self._uow._visible(OutboxMessage).values()
                if m.delivered and m.delivered_at is not None and m.delivered_at < before
            ),
            key=lambda m: m.id,
        )[:limit]
        for message in old:
            self._repo.delete(message.id, message.version)
        return len(old)
