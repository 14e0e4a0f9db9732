"""Units of work and repositories on a SQLAlchemy engine (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import visitors
from sqlalchemy.sql.util import ClauseAdapter

from pycrm.adapters.sqlalchemy.outbox import SqlOutboxQueue
from pycrm.adapters.sqlalchemy.tables import Codec, Schema, UTCDateTime
from pycrm.domain import RECORD_BY_RESOURCE
from pycrm.domain.aggregates import (
    AgeBucket,
    Avg,
    AvgDuration,
    Count,
    Field,
    GroupKey,
    Max,
    Measure,
    MedianDuration,
    Min,
    Period,
    Sum,
    SumProduct,
)
from pycrm.domain.query import (
    And,
    AnyKey,
    Contains,
    Eq,
    Filter,
    HasKey,
    In,
    IsNull,
    Not,
    Or,
    OrderBy,
    Range,
    RefersTo,
    Related,
    json_value,
)
from pycrm.domain.records import Stored
from pycrm.errors import ConcurrencyError, CRMError, DuplicateError, NotFound, StorageError
from pycrm.ports import chunks

__all__ = ["LAZY_BEGIN", "SqlStore", "translate_errors"]

#: Set on pycrm's own SQLite connections: their transaction begins at the first write.
LAZY_BEGIN = "pycrm_lazy_begin"

S = TypeVar("S", bound=Stored)


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn driver errors into pycrm errors; the driver's error stays chained."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise _translated(what, exc) from exc


def _translated(what: str, exc: sa_exc.SQLAlchemyError) -> CRMError:
    """The pycrm error for a driver error raised while doing ``what``."""
    if isinstance(exc, sa_exc.IntegrityError):
        return DuplicateError(f"{what}: a unique key is taken ({exc.orig})")
    if isinstance(exc, sa_exc.OperationalError):
        text = str(exc.orig).lower()
        if "locked" in text:
            return ConcurrencyError(
                what,
                "?",
                0,
                None,
                reason=f"{what}: another writer held the database lock past the busy timeout; "
                "try again",
            )
        if "could not serialize" in text or "deadlock" in text:
            return ConcurrencyError(
                what,
                "?",
                0,
                None,
                reason=f"{what}: lost a race with a concurrent transaction ({exc.orig}); try again",
            )
        return StorageError(f"{what}: {exc.orig}")
    return StorageError(f"{what}: {exc}")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _tenant_walk(table: sa.Table) -> sa.Select[Any]:
    """The distinct tenant ids of ``table``: the least, then the least above it, and so on."""
    column = table.c.tenant_id
    walk = sa.select(sa.func.min(column).label("tenant")).cte(
        f"tenants_{table.name}", recursive=True
    )
    following = sa.select(sa.func.min(column)).where(column > walk.c.tenant).scalar_subquery()
    walk = walk.union_all(sa.select(following).where(walk.c.tenant.is_not(None)))
    return sa.select(walk.c.tenant).where(walk.c.tenant.is_not(None))


#: Statements kept per store, by shape; past this many the cache starts over.
STATEMENTS_KEPT = 1024


class _Binds:
    """A statement's bound parameters, named in the order ``compile`` meets them.

    A statement built with these holds no value of its own filter, so it can
    be kept and run again for any filter of the same shape (see ``_shape``).
    """

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any, *, expanding: bool = False) -> Any:
        self.values.append(value)
        # NullType: the comparison gives the parameter its column's type.
        return sa.bindparam(
            f"p{len(self.values) - 1}", value, type_=sa.types.NullType(), expanding=expanding
        )

    def params(self) -> dict[str, Any]:
        """The values by parameter name."""
        return {f"p{i}": v for i, v in enumerate(self.values)}


def _inline(value: Any, *, expanding: bool = False) -> Any:
    """No binder: values go into the statement as they are."""
    return value


def _sample_kind(value: Any) -> str:
    """What of a filter value decides its SQL (a JSON path casts by the value's type)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    return "other"


def _shape(where: Filter, values: list[Any], tenant: str) -> Any:
    """``where`` without its values, which go to ``values`` in ``compile``'s order.

    Two filters of the same shape compile to the same SQL; only their bound
    values differ.
    """
    match where:
        case Eq(field, value):
            if value is not None:
                values.append(json_value(field, value))
            return ("eq", field, _sample_kind(value))
        case In(field, items):
            if items:
                values.append([json_value(field, v) for v in items])
                return ("in", field, _sample_kind(items[0]))
            return ("in", field, "empty")
        case Range(field, low, high):
            kind = _sample_kind(low if low is not None else high)
            for bound in (low, high):
                if bound is not None:
                    values.append(json_value(field, bound))
            return ("range", field, kind, low is None, high is None)
        case Contains(field, text):
            values.append(f"%{_escape_like(text)}%")
            return ("contains", field)
        case IsNull(field):
            return ("null", field)
        case HasKey(kind, key):
            values.extend((tenant, kind, key))
            return ("key",)
        case AnyKey(kind, keys):
            if keys:
                values.extend((tenant, kind, list(keys)))
            return ("keys", bool(keys))
        case RefersTo(field, resource, related_where):
            values.append(tenant)
            inner = None if related_where is None else _shape(related_where, values, tenant)
            return ("refers", field, resource, inner)
        case Related(resource, key, measure, field, low, high, related_where):
            values.append(tenant)
            inner = None if related_where is None else _shape(related_where, values, tenant)
            exists = measure == "count" and low == 1 and high is None
            if not exists:
                values.extend(b for b in (low, high) if b is not None)
            return (
                "related",
                resource,
                key,
                measure,
                field,
                exists,
                low is None,
                high is None,
                inner,
            )
        case And(parts):
            return ("and", *(_shape(p, values, tenant) for p in parts))
        case Or(parts):
            return ("or", *(_shape(p, values, tenant) for p in parts))
        case Not(part):
            return ("not", _shape(part, values, tenant))
    raise TypeError(f"unknown filter {where!r}")


# The parameters a kept statement takes besides its filter's values.
_ID: sa.BindParameter[str] = sa.bindparam("id", type_=sa.String)
_IDS: sa.BindParameter[Any] = sa.bindparam("ids", type_=sa.String, expanding=True)
_LIMIT: sa.BindParameter[int] = sa.bindparam("limit", type_=sa.Integer)
_KEYS: sa.BindParameter[Any] = sa.bindparam("keys", type_=sa.String, expanding=True)
_TENANT: sa.BindParameter[str] = sa.bindparam("tenant", type_=sa.String)
_KIND: sa.BindParameter[str] = sa.bindparam("kind", type_=sa.String)
_OFFSET: sa.BindParameter[int] = sa.bindparam("offset", type_=sa.Integer)


class SqlStore:
    """A store on a SQLAlchemy engine."""

    def __init__(self, engine: Engine, schema: Schema, *, owns_engine: bool) -> None:
        self.engine = engine
        """The engine; share it with your application's own tables."""
        self.schema = schema
        """pycrm's tables."""
        self._owns_engine = owns_engine
        # Built statements by shape, shared by every session: building one
        # costs more than running it. (A dict's get and set are atomic.)
        self._statements: dict[Any, sa.Executable] = {}

    def statement(self, key: Any, build: Callable[[], sa.Executable]) -> sa.Executable:
        """The statement kept under ``key``, built by ``build`` the first time."""
        found = self._statements.get(key)
        if found is None:
            if len(self._statements) >= STATEMENTS_KEPT:
                self._statements.clear()
            found = self._statements[key] = build()
        return found

    def begin(self, tenant_id: str) -> SqlUnitOfWork:
        """Start a transaction on a new connection.

        On SQLite the transaction really begins at the first write, with
        ``BEGIN IMMEDIATE``: a writer waits for the database's one write lock
        (up to the busy timeout) instead of failing because its read snapshot
        went stale, and a session that only reads never blocks a writer. Reads
        before the first write see the latest committed data, as on PostgreSQL
        (read committed); the session's version checks guard what it read.
        """
        with translate_errors("begin"):
            connection = self.engine.connect()
            try:
                if self.engine.dialect.name == "sqlite":
                    connection.execution_options(**{LAZY_BEGIN: True})
                transaction = connection.begin()
            except BaseException:
                connection.close()
                raise
        return SqlUnitOfWork(self, connection, transaction, tenant_id, owns_connection=True)

    def join(self, connection: Connection, tenant_id: str) -> SqlUnitOfWork:
        """A unit of work inside the caller's own connection and transaction.

        pycrm writes with a savepoint on it and never commits it: the caller's
        commit makes pycrm's writes and its own durable together.
        """
        with translate_errors("begin"):
            transaction = connection.begin_nested()
        return SqlUnitOfWork(self, connection, transaction, tenant_id, owns_connection=False)

    def tenants(self) -> list[str]:
        """The tenants that hold any committed record, sorted.

        Each table is walked tenant by tenant, one index probe for the next
        tenant id after the last (a "loose index scan"), so the cost grows with
        the number of tenants, not of rows.
        """
        found: set[str] = set()
        with translate_errors("list tenants"), self.engine.connect() as connection:
            for codec in self.schema.codecs.values():
                found.update(connection.execute(_tenant_walk(codec.table)).scalars())
        return sorted(found)

    def close(self) -> None:
        """Dispose of the engine if pycrm created it."""
        if self._owns_engine:
            self.engine.dispose()


class SqlUnitOfWork:
    """One transaction on one connection, scoped to one tenant."""

    def __init__(
        self,
        store: SqlStore,
        connection: Connection,
        transaction: sa.engine.Transaction,
        tenant_id: str,
        *,
        owns_connection: bool,
    ) -> None:
        self.tenant_id = tenant_id
        self.connection = connection
        """The connection this unit of work runs on."""
        self._store = store
        self._transaction = transaction
        self._owns = owns_connection
        self._repos: dict[type[Stored], SqlRepository[Any]] = {}
        self._writing = not connection.get_execution_options().get(LAZY_BEGIN)

    def repo(self, cls: type[S]) -> SqlRepository[S]:
        """The repository for ``cls`` in this unit of work."""
        if cls not in self._repos:
            self._repos[cls] = SqlRepository(self, self._store.schema.codec(cls))
        return self._repos[cls]

    def write_lock(self) -> None:
        """Take the database's write lock before the first write (SQLite; a no-op elsewhere)."""
        if not self._writing:
            with translate_errors("begin"):
                self.connection.exec_driver_sql("BEGIN IMMEDIATE")
            self._writing = True

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the block's writes if it raises."""
        self.write_lock()
        with translate_errors("savepoint"):
            nested = self.connection.begin_nested()
        try:
            yield
        except BaseException:
            with translate_errors("rollback"):
                if nested.is_active:
                    nested.rollback()
            raise
        with translate_errors("savepoint"):
            if nested.is_active:
                nested.commit()

    def index_json_key(self, cls: type[Stored], column: str, key: str) -> None:
        """Create (if missing) an expression index on ``column``'s ``key`` for ``cls``'s table."""
        codec = self._store.schema.codec(cls)
        table = codec.table
        name = f"ix_{table.name}_{column}_{key}"[:63]
        index = sa.Index(name, table.c.tenant_id, codec.json_path(f"{column}.{key}", ""))
        # The index belongs to the database, not to the shared table definitions:
        # keep it out of them. And SQLAlchemy cannot reflect expression indexes on
        # SQLite (checkfirst would miss one another tenant made), so let the
        # database skip an index it has.
        table.indexes.discard(index)
        self.write_lock()
        with translate_errors("create index"):
            self.connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))

    def outbox(self) -> SqlOutboxQueue:
        """The outbox's queue operations in this unit of work."""
        return SqlOutboxQueue(self)

    def next_number(self, key: str) -> int:
        """Increment counter ``key`` with one upsert; its row stays locked until commit."""
        table = self._store.schema.counters
        dialect = self.connection.dialect.name
        self.write_lock()
        conflict: dict[str, Any] = {
            "index_elements": [table.c.tenant_id, table.c.key],
            "set_": {"value": table.c.value + 1},
        }
        row = {"tenant_id": self.tenant_id, "key": key, "value": 1}
        statement: sa.Executable
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement = (
                postgresql.insert(table)
                .values(row)
                .on_conflict_do_update(**conflict)
                .returning(table.c.value)
            )
        elif dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            statement = (
                sqlite.insert(table)
                .values(row)
                .on_conflict_do_update(**conflict)
                .returning(table.c.value)
            )
        else:  # pragma: no cover - other dialects are not supported
            raise StorageError(f"counters are not supported on {dialect}")
        return int(self.execute(statement).scalar_one())

    @property
    def joined(self) -> bool:
        """True when working inside the caller's own transaction."""
        return not self._owns

    @property
    def writes_apart(self) -> bool:
        """Whether another transaction may write while this one is open.

        False inside a caller's SQLite transaction: it may hold the database's
        one write lock, so a second writer would wait for it.
        """
        return self._owns or self.connection.dialect.name != "sqlite"

    def after_outer_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the caller's transaction commits; never if it rolls back."""
        connection = self.connection

        def committed(_: Any) -> None:
            sa.event.remove(connection, "rollback", rolled_back)
            callback()

        def rolled_back(_: Any) -> None:
            sa.event.remove(connection, "commit", committed)

        sa.event.listen(connection, "commit", committed, once=True)
        sa.event.listen(connection, "rollback", rolled_back, once=True)

    def commit(self) -> None:
        """Commit (or, when joined to the caller's transaction, release the savepoint)."""
        with translate_errors("commit"):
            try:
                self._transaction.commit()
            finally:
                self._close()

    def rollback(self) -> None:
        """Roll back."""
        with translate_errors("rollback"):
            try:
                if self._transaction.is_active:
                    self._transaction.rollback()
            finally:
                self._close()

    def _close(self) -> None:
        if self._owns:
            self.connection.close()

    def execute(self, statement: sa.Executable, params: Any = None) -> sa.CursorResult[Any]:
        """Run ``statement``, translating driver errors."""
        try:  # not translate_errors: its generator would cost every query a few microseconds
            return self.connection.execute(statement, params)
        except sa_exc.SQLAlchemyError as exc:
            raise _translated("query", exc) from exc


class SqlRepository(Generic[S]):
    """One record type in one SQL unit of work."""

    def __init__(self, uow: SqlUnitOfWork, codec: Codec) -> None:
        self._dialect = uow.connection.dialect.name
        self._uow = uow
        self._codec = codec
        self._table = codec.table
        self._keys = uow._store.schema.match_keys
        self._resource = codec.cls.resource

    # -- writing -----------------------------------------------------------

    def _check_tenant(self, record: Stored) -> None:
        if record.tenant_id != self._uow.tenant_id:
            raise NotFound(self._resource, record.id)

    def add_many(self, records: Sequence[S]) -> None:
        """Insert many new records and their match keys with two executemany calls."""
        if not records:
            return
        for record in records:
            self._check_tenant(record)
        self._uow.write_lock()
        with translate_errors(f"add {self._resource}s"):
            self._uow.connection.execute(
                sa.insert(self._table), [self._codec.to_row(r) for r in records]
            )
            keys = [
                {
                    "tenant_id": r.tenant_id,
                    "record_type": self._resource,
                    "record_id": r.id,
                    "kind": kind,
                    "key": key[:500],
                }
                for r in records
                for kind, key in sorted({(k, v) for k, v in r.match_keys() if v})
            ]
            if keys:
                self._uow.connection.execute(sa.insert(self._keys), keys)

    def _write_keys(self, record: Stored, *, replace: bool) -> None:
        keys = {(kind, key) for kind, key in record.match_keys() if key}
        if replace:
            self._uow.execute(
                sa.delete(self._keys).where(
                    self._keys.c.tenant_id == record.tenant_id,
                    self._keys.c.record_type == self._resource,
                    self._keys.c.record_id == record.id,
                )
            )
        if keys:
            self._uow.execute(
                sa.insert(self._keys),
                [
                    {
                        "tenant_id": record.tenant_id,
                        "record_type": self._resource,
                        "record_id": record.id,
                        "kind": kind,
                        "key": key[:500],
                    }
                    for kind, key in sorted(keys)
                ],
            )

    def add(self, record: S) -> None:
        """Insert a new record and its match keys."""
        self._check_tenant(record)
        self._uow.write_lock()
        # No savepoint of its own: service calls run inside Session.atomic(), whose
        # savepoint undoes the row and its keys together (and keeps PostgreSQL's
        # transaction usable after a constraint error).
        with translate_errors(f"add {self._resource}"):
            self._uow.connection.execute(sa.insert(self._table), [self._codec.to_row(record)])
            self._write_keys(record, replace=False)

    def _version_is(self, expected_version: int) -> sa.ColumnElement[bool]:
        """The row is at ``expected_version`` (always true for records without a version)."""
        t = self._table
        return t.c.version == expected_version if "version" in t.c else sa.true()

    def replace(self, record: S, expected_version: int) -> None:
        """Update the row only if it is still at ``expected_version``.

        A record without a version (an audit entry) is updated whatever version is given.
        """
        self._check_tenant(record)
        self._uow.write_lock()
        t = self._table
        try:
            result = self._uow.execute(
                sa.update(t)
                .where(
                    t.c.id == record.id,
                    t.c.tenant_id == record.tenant_id,
                    self._version_is(expected_version),
                )
                .values(self._codec.to_row(record))
            )
        except ConcurrencyError as exc:
            # SQLite refuses a writer whose snapshot is stale: the record changed under us.
            raise ConcurrencyError(self._resource, record.id, expected_version, None) from exc
        if result.rowcount != 1:
            actual = self._uow.execute(
                sa.select(t.c.version if "version" in t.c else sa.literal(0)).where(
                    t.c.id == record.id, t.c.tenant_id == record.tenant_id
                )
            ).scalar()
            if actual is None:
                raise NotFound(self._resource, record.id)
            raise ConcurrencyError(self._resource, record.id, expected_version, actual)
        self._write_keys(record, replace=True)

    def delete(self, id: str, expected_version: int) -> None:
        """Delete the row (and its match keys) only if it is still at ``expected_version``.

        A record without a version (an audit entry) is deleted whatever version is given.
        """
        self._uow.write_lock()
        t, tenant = self._table, self._uow.tenant_id
        try:
            result = self._uow.execute(
                sa.delete(t).where(
                    t.c.id == id, t.c.tenant_id == tenant, self._version_is(expected_version)
                )
            )
        except ConcurrencyError as exc:
            raise ConcurrencyError(self._resource, id, expected_version, None) from exc
        if result.rowcount != 1:
            actual = self._uow.execute(
                sa.select(t.c.version if "version" in t.c else sa.literal(0)).where(
                    t.c.id == id, t.c.tenant_id == tenant
                )
            ).scalar()
            if actual is None:
                raise NotFound(self._resource, id)
            raise ConcurrencyError(self._resource, id, expected_version, actual)
        self._uow.execute(
            sa.delete(self._keys).where(
                self._keys.c.tenant_id == tenant,
                self._keys.c.record_type == self._resource,
                self._keys.c.record_id == id,
            )
        )

    # -- reading -----------------------------------------------------------

    def _scoped(self, bind: Callable[..., Any] = _inline) -> sa.ColumnElement[bool]:
        scoped: sa.ColumnElement[bool] = self._table.c.tenant_id == bind(self._uow.tenant_id)
        return scoped

    def _kept(
        self, key: Any, where: Filter | None, build: Callable[[_Binds], sa.Select[Any]]
    ) -> tuple[sa.Executable, dict[str, Any]]:
        """The statement of ``where``'s shape under ``key`` (built once) and its parameters.

        ``build`` makes the statement for ``where`` with the tenant bound first.
        """
        tenant = self._uow.tenant_id
        values: list[Any] = [tenant]
        shape = None if where is None else _shape(where, values, tenant)

        def built() -> sa.Executable:
            binds = _Binds()
            statement = build(binds)
            if binds.values != values:  # _shape and compile disagree: a bug in this module
                raise AssertionError(f"filter values out of order: {where!r}")
            return statement

        if key is None:
            statement = built()
        else:
            statement = self._uow._store.statement((self._codec.cls, key, shape), built)
        return statement, {f"p{i}": v for i, v in enumerate(values)}

    def get(self, id: str, *, lock: bool = False) -> S | None:
        """The record with ``id`` in this tenant, or None.

        With ``lock``, the row stays share-locked until the unit of work ends
        (PostgreSQL's ``FOR SHARE``; SQLite's one writer needs no row locks).
        """
        lock = lock and self._dialect == "postgresql"

        def build(bind: _Binds) -> sa.Select[Any]:
            query = sa.select(self._table).where(self._scoped(bind), self._table.c.id == _ID)
            return query.with_for_update(read=True) if lock else query

        query, params = self._kept(("get", lock), None, build)
        row = self._uow.execute(query, params | {"id": id}).first()
        return None if row is None else self._codec.from_values(row)

    def get_many(self, ids: Sequence[str]) -> dict[str, S]:
        """The records among ``ids`` that exist."""

        def build(bind: _Binds) -> sa.Select[Any]:
            return sa.select(self._table).where(self._scoped(bind), self._table.c.id.in_(_IDS))

        query, params = self._kept("get_many", None, build)
        found: dict[str, S] = {}
        unique = list(dict.fromkeys(ids))
        for part in chunks(unique):
            for row in self._uow.execute(query, params | {"ids": part}):
                record = self._codec.from_values(row)
                found[record.id] = record
        return found

    def compile(self, where: Filter, bind: Callable[..., Any] = _inline) -> sa.ColumnElement[bool]:
        """Compile a filter into a WHERE clause on this table.

        ``bind`` turns each value into a bound parameter (a ``_Binds``), so
        the statement can be kept; without it the values go in as they are
        (still sent bound, never inlined into the SQL text).
        """
        c = self._codec

        def column(field: str, sample: Any) -> sa.ColumnElement[Any]:
            return c.json_path(field, sample) if "." in field else c.column(field)

        match where:
            case Eq(field, value):
                col = column(field, value)
                return col.is_(None) if value is None else col == bind(json_value(field, value))
            case In(field, values):
                if not values:  # no row; not sa.false(), which swallows the AND'ed tenant_id
                    return self._table.c.id.is_(None)
                items = [json_value(field, v) for v in values]
                return column(field, values[0]).in_(bind(items, expanding=True))
            case Range(field, low, high):
                col = column(field, low if low is not None else high)
                parts = [col.is_not(None)]
                if low is not None:
                    parts.append(col >= bind(json_value(field, low)))
                if high is not None:
                    parts.append(col < bind(json_value(field, high)))
                return sa.and_(*parts)
            case Contains(field, text):
                return column(field, text).like(bind(f"%{_escape_like(text)}%"), escape="\\")
            case IsNull(field):
                return column(field, None).is_(None)
            case HasKey(kind, key):
                k = self._keys
                return self._table.c.id.in_(
                    sa.select(k.c.record_id).where(
                        k.c.tenant_id == bind(self._uow.tenant_id),
                        k.c.record_type == self._resource,
                        k.c.kind == bind(kind),
                        k.c.key == bind(key),
                    )
                )
            case AnyKey(kind, keys):
                if not keys:  # no row; not sa.false(), which swallows the AND'ed tenant_id
                    return self._table.c.id.is_(None)
                k = self._keys
                return self._table.c.id.in_(
                    sa.select(k.c.record_id).where(
                        k.c.tenant_id == bind(self._uow.tenant_id),
                        k.c.record_type == self._resource,
                        k.c.kind == bind(kind),
                        k.c.key.in_(bind(list(keys), expanding=True)),
                    )
                )
            case RefersTo(field, resource, related_where):
                related = self._uow.repo(RECORD_BY_RESOURCE[resource])
                ids = sa.select(related._table.c.id).where(related._scoped(bind))
                if related_where is not None:
                    ids = ids.where(related.compile(related_where, bind))
                return column(field, "").in_(ids)
            case Related(resource, key, measure, field, low, high, related_where):
                if measure == "count" and low == 1 and high is None:
                    # "At least one": EXISTS stops at the first related row.
                    return self._related(
                        resource, key, "exists", None, related_where, bind
                    ).exists()
                value = self._related(
                    resource, key, measure, field, related_where, bind
                ).scalar_subquery()
                # Only max can be NULL (no related rows): count is 0, sum coalesced to 0.
                parts = [value.is_not(None)] if measure == "max" else []
                if low is not None:
                    parts.append(value >= bind(low))
                if high is not None:
                    parts.append(value < bind(high))
                return sa.and_(*parts) if parts else sa.true()
            case And(parts):
                return sa.and_(*(self.compile(p, bind) for p in parts))
            case Or(parts):
                return sa.or_(*(self.compile(p, bind) for p in parts))
            case Not(part):
                # SQL's NOT of an unknown (a NULL column) is unknown, which filters the row
                # out; the memory adapter's "not equal to None" keeps it. Make SQL agree.
                return sa.not_(sa.func.coalesce(self.compile(part, bind), sa.false()))
        raise TypeError(f"unknown filter {where!r}")

    def _related(
        self,
        resource: str,
        key: str,
        measure: str,
        field: str | None,
        where: Filter | None,
        bind: Callable[..., Any] = _inline,
    ) -> sa.Select[Any]:
        """A correlated subquery on each row's related records: their ``measure``.

        ``exists`` selects the related rows themselves, for an EXISTS test.
        """
        related = self._uow.repo(RECORD_BY_RESOURCE[resource])
        table = related._table
        if measure == "exists":  # the related rows themselves, for EXISTS
            value: sa.ColumnElement[Any] = sa.literal(1)
        elif measure == "count":
            value = sa.func.count()
        elif measure == "sum":
            value = sa.func.coalesce(sa.func.sum(related._codec.measure_column(field or "")), 0)
        elif measure == "max":
            value = sa.func.max(related._codec.measure_column(field or ""))
        else:
            raise ValueError(f"unknown related measure {measure!r}")
        query = sa.select(value).where(
            table.c.tenant_id == bind(self._uow.tenant_id),
            related._codec.column(key) == self._table.c.id,
        )
        if where is not None:
            query = query.where(related.compile(where, bind))
        return query

    # -- aggregates ------------------------------------------------------------

    def _days_before(self, as_of: Any, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if self._dialect == "sqlite":
            as_of_day = sa.func.julianday(sa.literal(as_of.isoformat()))
            if isinstance(column.type, sa.Date):  # DateTime is no Date subclass
                return as_of_day - sa.func.julianday(column)  # two dates: whole days already
            return sa.cast(as_of_day - sa.func.julianday(sa.func.date(column)), sa.Integer)
        day = sa.func.timezone("UTC", column) if isinstance(column.type, UTCDateTime) else column
        return sa.cast(sa.literal(as_of, sa.Date), sa.Date) - sa.cast(day, sa.Date)

    def _period(self, column: sa.ColumnElement[Any], unit: str) -> sa.ColumnElement[Any]:
        if self._dialect == "sqlite":
            formats = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}
            if unit == "quarter":
                month = sa.cast(sa.func.strftime("%m", column), sa.Integer)
                quarter = (month + 2) // 3  # floor division: SQLAlchemy 2 makes / true division
                return sa.func.strftime("%Y", column) + "-Q" + sa.cast(quarter, sa.String)
            return sa.func.strftime(formats[unit], column)
        local = sa.func.timezone("UTC", column) if isinstance(column.type, UTCDateTime) else column
        formats = {"day": "YYYY-MM-DD", "month": "YYYY-MM", "year": "YYYY", "quarter": 'YYYY-"Q"Q'}
        return sa.func.to_char(local, formats[unit])

    def _group_expression(self, key: GroupKey) -> sa.ColumnElement[Any]:
        match key:
            case Field(name):
                return self._codec.measure_column(name)
            case Period(field, unit):
                return self._period(self._codec.column(field), unit)
            case AgeBucket(field, as_of, edges):
                days = self._days_before(as_of, self._codec.column(field))
                whens: list[tuple[Any, str]] = [(days <= 0, "current")]
                low = 0
                for edge in edges:
                    whens.append((days <= edge, f"{low}-{edge}"))
                    low = edge + 1
                return sa.case(*whens, else_=f"{edges[-1]}+")
        raise TypeError(f"unknown group key {key!r}")

    def _measure_expression(self, measure: Measure) -> sa.ColumnElement[Any]:
        condition = None if measure.where is None else self.compile(measure.where)

        def only(value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
            return value if condition is None else sa.case((condition, value), else_=None)

        match measure:
            case Count():
                return sa.func.count() if condition is None else sa.func.count(only(sa.literal(1)))
            case Sum(field):
                return sa.func.coalesce(sa.func.sum(only(self._codec.measure_column(field))), 0)
            case Avg(field):
                return sa.func.avg(only(self._codec.measure_column(field)))
            case Min(field):
                return sa.func.min(only(self._codec.measure_column(field)))
            case Max(field):
                return sa.func.max(only(self._codec.measure_column(field)))
            case SumProduct(field, weight):
                product = self._codec.measure_column(field) * self._codec.measure_column(weight)
                return sa.func.coalesce(sa.func.sum(only(product)), 0)
            case AvgDuration(start, end):
                return sa.func.avg(only(self._seconds(start, end)))
            case MedianDuration(start, end):  # PostgreSQL; SQLite's is computed apart
                return sa.func.percentile_cont(0.5).within_group(only(self._seconds(start, end)))
        raise TypeError(f"unknown measure {measure!r}")

    def _seconds(self, start: str, end: str) -> sa.ColumnElement[Any]:
        """``end - start`` in seconds."""
        a, b = self._codec.column(start), self._codec.column(end)
        if self._dialect == "sqlite":
            return (sa.func.julianday(b) - sa.func.julianday(a)) * 86400.0
        return sa.extract("epoch", b - a)

    def aggregate(
        self,
        where: Filter | None,
        group_by: Sequence[GroupKey],
        measures: Mapping[str, Measure],
    ) -> list[dict[str, Any]]:
        """One GROUP BY query: a dict per group with its keys and measures.

        SQLite has no median aggregate: with a median among the measures the
        query groups a subquery that numbers each group's values in order
        (see :meth:`_ranked`).
        """
        ranked = self._dialect != "postgresql" and any(
            isinstance(m, MedianDuration) for m in measures.values()
        )

        def build(bind: _Binds) -> sa.Select[Any]:
            if ranked:
                return self._ranked(where, group_by, measures, bind)
            keys = [self._group_expression(k).label(f"g{i}") for i, k in enumerate(group_by)]
            values = [
                self._measure_expression(m).label(f"m{i}") for i, m in enumerate(measures.values())
            ]
            query = self._where(sa.select(*keys, *values).select_from(self._table), where, bind)
            return query.group_by(*keys) if keys else query

        # Groups and measures are few and fixed in code; their values (an as-of
        # date, a measure's own condition) are part of the statement's key, and
        # so is the tenant, which a measure's condition holds as it is.
        key: Any = ("aggregate", self._uow.tenant_id, tuple(group_by), tuple(measures.items()))
        try:
            hash(key)
        except TypeError:  # an unhashable value somewhere: build it every time
            key = None
        query, params = self._kept(key, where, build)
        rows = []
        for row in self._uow.execute(query, params).all():
            out: dict[str, Any] = {}
            for i, key in enumerate(group_by):
                value = row[i]
                if isinstance(key, Field) and isinstance(value, datetime) and value.tzinfo is None:
                    value = value.replace(tzinfo=UTC)
                out[key.name if isinstance(key, Field) else key.field] = value
            for j, (name, measure) in enumerate(measures.items()):
                out[name] = _number(row[len(group_by) + j], measure)
            rows.append(out)
        return rows

    def _ranked(
        self,
        where: Filter | None,
        group_by: Sequence[GroupKey],
        measures: Mapping[str, Measure],
        bind: _Binds,
    ) -> sa.Select[Any]:
        """The aggregate as a GROUP BY over a subquery with window functions (for SQLite).

        For each median the subquery holds its value per row (NULL where the
        row does not count), the value's number in its group's order
        (``row_number()``, NULLs last) and how many values the group has; the
        median is the mean of the values numbered ``(n + 1) / 2`` and
        ``(n + 2) / 2`` (one value when ``n`` is odd). The other measures read
        the subquery's copy of the table's columns.
        """
        partition = [self._group_expression(k) for k in group_by] or None
        windows: list[sa.ColumnElement[Any]] = []
        for i, measure in enumerate(measures.values()):
            if not isinstance(measure, MedianDuration):
                continue
            counted: list[sa.ColumnElement[bool]] = [
                self._codec.column(measure.start).is_not(None),
                self._codec.column(measure.end).is_not(None),
            ]
            if measure.where is not None:
                counted.append(self.compile(measure.where))
            value = sa.case((sa.and_(*counted), self._seconds(measure.start, measure.end)))
            order = value.asc().nulls_last()
            windows += [
                value.label(f"v{i}"),
                sa.func.row_number().over(partition_by=partition, order_by=order).label(f"r{i}"),
                sa.func.count(value).over(partition_by=partition).label(f"n{i}"),
            ]
        plain = {
            i: self._measure_expression(m)
            for i, m in enumerate(measures.values())
            if not isinstance(m, MedianDuration)
        }
        groups = [self._group_expression(k) for k in group_by]
        # Only the columns the groups and the other measures read go through the sort.
        needed = {
            element
            for expression in (*groups, *plain.values())
            for element in visitors.iterate(expression)
            if isinstance(element, sa.Column) and element.table is self._table
        }
        inner = sa.select(*sorted(needed, key=lambda c: c.name), *windows)
        sub = self._where(inner.select_from(self._table), where, bind).subquery()
        adapt = ClauseAdapter(sub).traverse
        keys = [adapt(g).label(f"g{i}") for i, g in enumerate(groups)]
        values: list[sa.ColumnElement[Any]] = []
        for i, _ in enumerate(measures.values()):
            if i in plain:
                values.append(adapt(plain[i]).label(f"m{i}"))
                continue
            v, r, n = sub.c[f"v{i}"], sub.c[f"r{i}"], sub.c[f"n{i}"]
            middle = r.in_([(n + 1) // 2, (n + 2) // 2])
            values.append(sa.func.avg(sa.case((middle, v))).label(f"m{i}"))
        query = sa.select(*keys, *values).select_from(sub)
        return query.group_by(*keys) if keys else query

    def _where(self, query: sa.Select[Any], where: Filter | None, bind: _Binds) -> sa.Select[Any]:
        query = query.where(self._scoped(bind))
        return query if where is None else query.where(self.compile(where, bind))

    def find(
        self,
        where: Filter | None = None,
        *,
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[S]:
        """The matching records, in order, in one query."""

        def build(bind: _Binds) -> sa.Select[Any]:
            query = self._where(sa.select(self._table), where, bind)
            for order in order_by:
                column = self._codec.column(order.field)
                query = query.order_by(
                    column.desc().nulls_last() if order.descending else column.asc().nulls_last()
                )
            query = query.order_by(self._table.c.id)
            if limit is not None:
                query = query.limit(_LIMIT)
            return query.offset(_OFFSET) if offset else query

        order = tuple((o.field, o.descending) for o in order_by)  # hashed in C
        key = ("find", order, limit is not None, bool(offset))
        query, params = self._kept(key, where, build)
        rows = self._uow.execute(query, params | {"limit": limit, "offset": offset}).all()
        return [self._codec.from_values(row) for row in rows]

    def find_holders(
        self, kind: str, keys: Sequence[str], where: Filter | None = None, *, per_key: int
    ) -> dict[str, list[S]]:
        """For each key: the first ``per_key`` matching records (by id) that hold it.

        Two index-driven queries: the key index's rows for the keys, numbered
        per key in id order (``row_number()``) among the records that match
        ``where``; then those records by id. (Joining the numbered rows to the
        table in one query made SQLite scan the table once per key row.)
        """
        k, t = self._keys, self._table

        def build(bind: _Binds) -> sa.Select[Any]:
            ranked = sa.select(
                k.c.record_id,
                k.c.key,
                sa.func.row_number().over(partition_by=k.c.key, order_by=k.c.record_id).label("n"),
            ).where(
                k.c.record_type == self._resource,
                k.c.kind == _KIND,
                k.c.key.in_(_KEYS),
            )
            if where is None:
                ranked = ranked.where(k.c.tenant_id == bind(self._uow.tenant_id))
            else:  # the filter's own statement binds the tenant first
                matching = self._where(sa.select(t.c.id), where, bind)
                ranked = ranked.where(k.c.tenant_id == _TENANT, k.c.record_id.in_(matching))
            numbered = ranked.subquery()
            return sa.select(numbered.c.record_id, numbered.c.key).where(numbered.c.n <= _LIMIT)

        query, params = self._kept("find_holders", where, build)
        params |= {"tenant": self._uow.tenant_id, "kind": kind, "limit": per_key}
        pairs: list[tuple[str, str]] = []
        for part in chunks(list(dict.fromkeys(keys))):
            rows = self._uow.execute(query, params | {"keys": part})
            pairs += [(row.record_id, row.key) for row in rows]
        records = self.get_many([id for id, _ in pairs])
        found: dict[str, list[S]] = {}
        for id, key in sorted(pairs, key=lambda pair: (pair[1], pair[0])):
            if id in records:
                found.setdefault(key, []).append(records[id])
        return found

    def count_by(self, field: str, where: Filter | None = None) -> dict[Any, int]:
        """Count the matching rows per value of ``field`` with one GROUP BY."""

        def build(bind: _Binds) -> sa.Select[Any]:
            column = self._codec.column(field)
            return self._where(sa.select(column, sa.func.count()), where, bind).group_by(column)

        query, params = self._kept(("count_by", field), where, build)
        rows: list[Any] = list(self._uow.execute(query, params).all())
        return {value: int(n) for value, n in rows}

    def count(self, where: Filter | None = None) -> int:
        """Count the matching rows in SQL."""

        def build(bind: _Binds) -> sa.Select[Any]:
            return self._where(sa.select(sa.func.count()).select_from(self._table), where, bind)

        query, params = self._kept("count", where, build)
        return int(self._uow.execute(query, params).scalar_one())


def _number(value: Any, measure: Measure) -> Any:
    """Driver numbers as Python ones: counts and sums int, averages float."""
    if value is None:
        return None
    if isinstance(measure, Count | Sum | SumProduct):
        return int(value)
    if isinstance(measure, Avg | AvgDuration | MedianDuration):
        return float(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value
