"""Every statement a tenant's session sends is restricted to that one tenant.

A distributed PostgreSQL such as Citus shards pycrm's tables by ``tenant_id``
and routes a statement to one shard when every distributed table in it is
filtered on one tenant. Citus cannot run here, so this module proves the
property it needs, on PostgreSQL (what Citus routes) and SQLite:

- :func:`test_every_statement_of_a_tenants_calls_names_that_tenant` drives every
  public call of the contract suite (``CALLS`` and ``build_world`` of
  tests/test_fuzz.py) for two tenants, each in a world of its own, once as the
  system actor and once as a sales rep (whose reads carry permission filters and
  whose refusals are audited apart), plus the calls outside services that run
  per tenant: sessions as a user, as a deactivated user and inside the
  application's transaction, ``Session.read``, the store's own units of work and
  every call of the outbox. What exists is found by introspection
  (:func:`test_every_public_call_is_driven_or_skipped_with_a_reason`);
- :class:`Recorder` records every statement sent to the database (SQLAlchemy's
  ``before_cursor_execute``) with its compiled statement and bound parameters;
- :func:`shape_of` compiles the statement once more to see each SELECT's FROM
  list as SQLAlchemy renders it (subqueries, CTEs and EXISTS on their own, after
  correlation), and :func:`verdict` checks an execution: every tenant table a
  SELECT reads, an UPDATE or DELETE changes, must have ``tenant_id = :param``
  among the top-level AND conditions (or an inner join's ON condition); every
  INSERT into one, and every UPDATE that sets ``tenant_id``, must write it; and
  every such value must be the tenant of the call.

Statements at ``connect()`` (creating or migrating the tables, the alembic
version) are outside any tenant's session: they are recorded as ``connect`` and
left out. What is not single-tenant is in :data:`ALLOWED` with its reason, and
docs/tenants-and-scaling.md lists the same (:func:`test_the_docs_list_the_allowed_statements`).
:func:`test_the_checker_reports_statements_that_do_not_name_one_tenant` feeds the
checker leaks, so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import operators
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ClauseElement,
    ColumnClause,
    Grouping,
)
from sqlalchemy.sql.selectable import Alias, CompoundSelect, FromClause, Join, Select

import pycrm
from pycrm.adapters.blobs import MemoryBlobStore
from pycrm.adapters.sqlalchemy.tables import UTCDateTime, build_schema
from pycrm.domain.aggregates import Count, Field
from pycrm.domain.customers import Customer
from pycrm.domain.org import Actor
from pycrm.domain.query import AnyKey, Eq, In, Not, OrderBy
from pycrm.errors import CRMError, PermissionDenied
from pycrm.relays import FunctionRelay, RetryPolicy
from pycrm.session import Reader, Session
from pycrm.testing import FakeClock
from test_fuzz import CALLS, METHODS, build_world, valid_arguments

DOCS = Path(__file__).resolve().parent.parent / "docs" / "tenants-and-scaling.md"
TENANTS = ("acme-gmbh", "beta-ltd")

#: The tables of the default prefix, by name.
TABLES = {t.name: t for t in build_schema().metadata.tables.values()}
#: The tables that hold ``tenant_id``: every table pycrm has.
TENANT_TABLES = frozenset(name for name, t in TABLES.items() if "tenant_id" in t.c)

#: Labels of statements sent outside any tenant's session.
CONNECT = "connect"
TENANTS_CALL = "crm.store.tenants"

_CONTROL = re.compile(
    r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|END)\b", re.IGNORECASE | re.ASCII
)


# -- the checker -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scan:
    """One table in one statement: read by a SELECT, or the target of an UPDATE or DELETE.

    ``binds`` are the parameters of the ``tenant_id = :param`` conditions that
    restrict it (none: every tenant's rows).
    """

    table: str
    binds: tuple[BindParameter[Any], ...]


@dataclass(frozen=True)
class Shape:
    """What a compiled statement does, whatever its parameters: worked out once per statement."""

    kind: str
    """``select``, ``insert``, ``update``, ``delete``, ``ddl``, ``control`` (transactions) or ``other``."""
    scans: tuple[Scan, ...] = ()
    insert_into: str | None = None
    """The table an INSERT writes (its rows' ``tenant_id`` are checked)."""
    unchecked: str | None = None
    """Why the statement cannot be checked (a reason to fail)."""
    tables: tuple[str, ...] = ()
    """Every table the statement names."""
    sets_tenant: bool = False
    """Whether an UPDATE writes ``tenant_id`` (a record's update writes every column)."""


def _conjuncts(clause: Any) -> list[ClauseElement]:
    """The top-level AND conditions of a WHERE or ON clause."""
    if clause is None:
        return []
    if isinstance(clause, Grouping):
        return _conjuncts(clause.element)
    if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
        return [c for part in clause.clauses for c in _conjuncts(part)]
    return [clause]


def _restrictions(conditions: list[ClauseElement]) -> dict[Any, list[BindParameter[Any]]]:
    """FROM object → the parameters of its ``tenant_id = :param`` conditions among ``conditions``."""
    found: dict[Any, list[BindParameter[Any]]] = {}
    for condition in conditions:
        if not isinstance(condition, BinaryExpression) or condition.operator is not operators.eq:
            continue
        for column, value in ((condition.left, condition.right), (condition.right, condition.left)):
            if (
                isinstance(column, ColumnClause)
                and column.name == "tenant_id"
                and column.table is not None
                and isinstance(value, BindParameter)
                and not value.expanding
            ):
                found.setdefault(column.table, []).append(value)
    return found


def _table_name(element: Any) -> str | None:
    """The table a FROM element reads directly (a table or an alias of one), else None."""
    if isinstance(element, sa.Table):
        return element.name
    if isinstance(element, Alias) and isinstance(element.element, sa.Table):
        return element.element.name
    return None


def _scans(froms: list[FromClause], where: ClauseElement | None) -> list[Scan]:
    """The tables among ``froms`` (joins opened) and what restricts each to a tenant.

    Subqueries and CTEs in ``froms`` are SELECTs of their own, checked on their own.
    """
    restricted = _restrictions(_conjuncts(where))
    scans: list[Scan] = []

    def visit(element: Any, on: dict[Any, list[BindParameter[Any]]]) -> None:
        if isinstance(element, Join):
            inner = {} if element.full else _restrictions(_conjuncts(element.onclause))
            both = {k: [*on.get(k, ()), *inner.get(k, ())] for k in {*on, *inner}}
            # A LEFT JOIN's ON condition limits the joined rows, not the left side's.
            visit(element.left, on if element.isouter else both)
            visit(element.right, both)
            return
        name = _table_name(element)
        if name is not None:
            binds = (*restricted.get(element, ()), *on.get(element, ()))
            scans.append(Scan(name, tuple(binds)))

    for element in froms:
        visit(element, {})
    return scans


class _Scanning:
    """Mixed into a dialect's compiler: collects each SELECT's rendered FROM list and WHERE.

    ``_compose_select_body`` is where SQLAlchemy's compiler has the FROM list it
    renders, after correlation has removed the enclosing query's tables.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.scans: list[Scan] = []
        super().__init__(*args, **kwargs)  # compiles the statement

    def _compose_select_body(  # the compiler's signature, positional as it is called
        self,
        text: str,
        select: Select[Any],
        compile_state: Any,
        inner_columns: Any,
        froms: list[FromClause],
        *rest: Any,
    ) -> str:
        self.scans.extend(_scans(froms, select.whereclause))
        composed: str = super()._compose_select_body(  # type: ignore[misc]
            text, select, compile_state, inner_columns, froms, *rest
        )
        return composed


_COMPILERS: dict[type[Any], type[Any]] = {}


def _scanning_compile(dialect: Dialect, statement: ClauseElement) -> Any:
    base = dialect.statement_compiler
    compiler = _COMPILERS.get(base)
    if compiler is None:
        compiler = _COMPILERS[base] = type(f"Scanning{base.__name__}", (_Scanning, base), {})
    return compiler(dialect, statement)


def shape_of(dialect: Dialect, statement: ClauseElement) -> Shape:
    """What ``statement`` reads and writes, and what restricts each table to a tenant."""
    if isinstance(statement, sa.schema.ExecutableDDLElement):
        target = getattr(statement, "element", None)
        table = getattr(target, "table", target)
        return Shape("ddl", tables=(table.name,) if isinstance(table, sa.Table) else ())
    if not isinstance(statement, Select | CompoundSelect | Insert | Update | Delete):
        return Shape("other")
    compiler = _scanning_compile(dialect, statement)
    scans: list[Scan] = list(compiler.scans)
    kind = type(statement).__name__.lower()
    if isinstance(statement, CompoundSelect):
        kind = "select"
    insert_into = unchecked = None
    if isinstance(statement, Insert):
        insert_into = _table_name(statement.table)
        if statement.select is not None:
            unchecked = "INSERT … SELECT is not checked: write the rows as values"
    elif isinstance(statement, Update | Delete):
        froms = [statement.table, *getattr(compiler.compile_state, "_extra_froms", ())]
        scans += _scans(froms, statement.whereclause)
    sets = re.search(r"\bSET\b(.*?)(\bWHERE\b|$)", compiler.string, re.DOTALL)
    sets_tenant = isinstance(statement, Update) and bool(
        sets and re.search(r"\btenant_id\s*=", sets.group(1))
    )
    tables = {s.table for s in scans} | ({insert_into} if insert_into else set())
    return Shape(kind, tuple(scans), insert_into, unchecked, tuple(sorted(tables)), sets_tenant)


def _values(
    bind: BindParameter[Any], names: Mapping[Any, str], parameters: list[Mapping[str, Any]]
) -> set[Any] | None:
    """The values ``bind`` had in this execution (one per parameter set), or None if not found.

    ``names`` are the compiled statement's names of its parameters: an
    anonymous one is named when compiled (``tenant_id_1``).
    """
    name = names.get(bind, bind.key)
    if all(name in p for p in parameters):
        return {p[name] for p in parameters}
    return None


def verdict(
    shape: Shape, names: Mapping[Any, str], parameters: list[Mapping[str, Any]], tenant: str | None
) -> list[str]:
    """What makes an execution of ``shape`` with ``parameters`` other than single-tenant."""
    problems = []
    if shape.unchecked and set(shape.tables) & TENANT_TABLES:
        problems.append(shape.unchecked)
    for scan in shape.scans:
        if scan.table not in TENANT_TABLES:
            continue
        if not scan.binds:
            problems.append(f"{scan.table} is read or changed without tenant_id = :param")
            continue
        for bind in scan.binds:
            values = _values(bind, names, parameters)
            if values is None:
                problems.append(
                    f"{scan.table}: the value of {bind.key} is not among the parameters"
                )
            elif values != {tenant}:
                problems.append(
                    f"{scan.table}: tenant_id = {sorted(map(str, values))}, not {tenant!r}"
                )
    if shape.insert_into in TENANT_TABLES or shape.sets_tenant:
        # The value SQLAlchemy binds for the column is named after it.
        written = {p.get("tenant_id") for p in parameters}
        if written != {tenant}:
            verb = f"INSERT INTO {shape.insert_into}" if shape.insert_into else "UPDATE"
            problems.append(f"{verb} writes tenant_id {sorted(map(str, written))}, not {tenant!r}")
    return problems


def _named_tables(sql: str) -> tuple[str, ...]:
    """The tenant tables a statement's text names (for statements sent as text)."""
    return tuple(sorted(t for t in TENANT_TABLES if re.search(rf"\b{t}\b", sql)))


# -- the recorder ----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One statement sent to the database, with what the checker made of it."""

    call: str
    tenant: str | None
    sql: str
    kind: str
    tables: tuple[str, ...]
    problems: tuple[str, ...]

    def __str__(self) -> str:
        sql = " ".join(self.sql.split())
        return f"{self.call} [{self.tenant}] {'; '.join(self.problems)}: {sql[:240]}"


@dataclass
class Recorder:
    """Records and checks every statement an engine sends, labelled with the call that sent it."""

    seen: list[Seen] = field(default_factory=list)
    call: str | None = None
    tenant: str | None = None
    _shapes: dict[int, tuple[Any, Shape]] = field(default_factory=dict)

    @contextmanager
    def attached(self, engine: sa.Engine) -> Iterator[Recorder]:
        sa.event.listen(engine, "before_cursor_execute", self._before)
        try:
            yield self
        finally:
            sa.event.remove(engine, "before_cursor_execute", self._before)

    @contextmanager
    def calling(self, tenant: str | None, call: str) -> Iterator[None]:
        """Label the statements sent in the block: ``call`` for ``tenant``."""
        before = self.tenant, self.call
        self.tenant, self.call = tenant, call
        try:
            yield
        finally:
            self.tenant, self.call = before

    def _shape(self, compiled: Any, dialect: Dialect) -> Shape:
        # Kept with the compiled statement itself, so that its id is not reused.
        kept = self._shapes.get(id(compiled))
        if kept is None:
            kept = self._shapes[id(compiled)] = (compiled, shape_of(dialect, compiled.statement))
        return kept[1]

    def _before(
        self,
        conn: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        call = self.call or "(no call)"
        problems: list[str] = [] if self.call else ["sent outside any labelled call"]
        compiled = getattr(context, "compiled", None)
        if _CONTROL.match(statement):
            shape = Shape("control")
        elif compiled is None:  # SQL given to the driver as it is
            shape = Shape("other")
        else:
            shape = self._shape(compiled, conn.dialect)
            names = getattr(compiled, "bind_names", {})
            parameters = list(getattr(context, "compiled_parameters", None) or [{}])
            problems += verdict(shape, names, parameters, self.tenant)
        if shape.kind == "other":  # text: only a careful look at its words
            shape = replace(shape, tables=_named_tables(statement))
            if shape.tables:
                problems.append("SQL text naming tenant tables cannot be checked")
            elif self.tenant is not None:
                problems.append("a statement on no tenant table (a reference table?)")
        self.seen.append(
            Seen(call, self.tenant, statement, shape.kind, shape.tables, tuple(problems))
        )


# -- what may be other than single-tenant ----------------------------------------------

_INDEX = re.compile(r"\s*CREATE INDEX IF NOT EXISTS \S+ ON \S+ \(tenant_id, ", re.ASCII)

#: Statements that are not single-tenant: name → (which statements, why they may be).
#: docs/tenants-and-scaling.md lists the same names with the same reasons.
ALLOWED: dict[str, tuple[Callable[[Seen], bool], str]] = {
    "crm.store.tenants()": (
        lambda seen: seen.call == TENANTS_CALL and seen.tenant is None,
        "lists the tenants that hold records (pycrm tenants, relaying every tenant in turn): "
        "it reads every tenant by design, outside any tenant's session",
    ),
    "CREATE INDEX for a searchable custom field": (
        lambda seen: seen.kind == "ddl" and bool(_INDEX.match(seen.sql)),
        "s.fields.define(..., searchable=True) creates the expression index "
        "(tenant_id, custom ->> key) once per table and key; it is DDL, which Citus "
        "applies to every shard, and reads or writes no tenant's rows",
    ),
}


def _allowed(seen: Seen) -> str | None:
    return next((name for name, (matches, _) in ALLOWED.items() if matches(seen)), None)


# -- driving every call ----------------------------------------------------------------


class InTenant:
    """A CRM whose sessions open in one tenant unless told otherwise (for ``build_world``)."""

    def __init__(self, crm: pycrm.CRM, tenant: str) -> None:
        self._crm = crm
        self._tenant = tenant

    @property
    def system_actor(self) -> Actor:
        return self._crm.system_actor

    def session(self, actor: Any, *, tenant: str | None = None, connection: Any = None) -> Session:
        return self._crm.session(actor, tenant=tenant or self._tenant, connection=connection)


#: Public names of the CRM, its store, its outbox and a session that the drive calls.
DRIVEN = {
    "crm": {"session", "outbox", "approval_steps", "store"},
    "crm.store": {"begin", "join", "tenants"},
    "crm.outbox": {
        "pending",
        "stats",
        "relay",
        "deliver",
        "dead_letters",
        "replay",
        "mark_delivered",
        "purge",
    },
    "session": {"commit", "rollback", "read"},
    "session.read": {"find", "find_holders", "count", "count_by", "aggregate", "get"},
}

_SETTING = "a setting given to connect(): the services read it, it sends no statement"

#: Public names the drive does not call, each with why no tenant's statement hides there.
SKIPPED: dict[str, dict[str, str]] = {
    "crm": {
        "close": "releases the connections pycrm opened; sends no statement",
        "engine": "the SQLAlchemy engine itself, for the application's own use",
        "system_actor": "a value: the built-in actor (every session of the drive uses it)",
        "rules": "runs the plugins' hooks for the services, inside their sessions",
        "plugins": "the pluggy plugin manager; hooks run inside the services' sessions",
        "clock": "where time comes from; sends no statement",
        "blob_store": "document bytes live outside the database",
        **dict.fromkeys(
            [
                "approval_policy",
                "assessment_rules",
                "currency",
                "default_region",
                "duplicate_threshold",
                "first_contact_within",
                "followups",
                "lead_departments",
                "mail_sender",
                "merge_threshold",
                "on_duplicate",
                "policy",
                "routing_rules",
                "scoring",
                "sla_policy",
                "ticket_departments",
            ],
            _SETTING,
        ),
    },
    "crm.store": {
        "close": "disposes of the engine pycrm created; sends no statement",
        "engine": "the SQLAlchemy engine itself",
        "schema": "the table definitions; sends no statement",
        "statement": "the store's cache of built statements; sends no statement",
    },
    "crm.outbox": {},
    "session": {},
    "session.read": {},
}


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def _services() -> set[str]:
    return {name.split(".")[0] for name in METHODS}


def public_surface(crm: pycrm.CRM) -> dict[str, set[str]]:
    """The public names of each object the drive covers, by introspection."""
    return {
        "crm": _public(crm),
        "crm.store": _public(crm.store),
        "crm.outbox": _public(crm.outbox),
        "session": _public(Session) - _services(),
        "session.read": _public(Reader),
    }


def _call(s: Session, method: str, arguments: dict[str, Any]) -> None:
    service, name = method.split(".")
    result = getattr(getattr(s, service), name)(**arguments)
    if isinstance(result, Iterator):  # iter(): the pages are read as they are taken
        list(result)


def drive(crm: pycrm.CRM, recorder: Recorder) -> list[str]:
    """Make every public call for each tenant; return the calls that failed."""
    failed: list[str] = []
    worlds: dict[str, SimpleNamespace] = {}
    for tenant in TENANTS:
        with recorder.calling(tenant, "build_world"):
            worlds[tenant] = build_world(cast(pycrm.CRM, InTenant(crm, tenant)))
    # Every call of the contract suite, tenant after tenant, so that each statement
    # the store keeps and reuses runs for both.
    for who in ("system", "rep"):
        for method in CALLS:
            for tenant in TENANTS:
                world = worlds[tenant]
                actor = crm.system_actor if who == "system" else world.rep
                with recorder.calling(tenant, method):
                    s = crm.session(actor=actor, tenant=tenant)
                    try:
                        _call(s, method, valid_arguments(method, world))
                    except CRMError as exc:  # a rep may be refused; the system actor may not
                        if who == "system":
                            failed.append(f"{method} [{tenant}]: {type(exc).__name__}: {exc}")
                    finally:
                        s.rollback()
    for tenant in TENANTS:
        _drive_around_the_services(crm, recorder, tenant, worlds[tenant])
    with recorder.calling(None, TENANTS_CALL):
        listed = crm.store.tenants()
    if not set(TENANTS) <= set(listed):
        failed.append(f"crm.store.tenants() listed {listed}")
    return failed


def _drive_around_the_services(
    crm: pycrm.CRM, recorder: Recorder, tenant: str, world: SimpleNamespace
) -> None:
    """The calls outside the services that run per tenant."""
    with recorder.calling(tenant, "crm.session"):
        with crm.session(actor=world.rep, tenant=tenant) as s:  # a user: resolved in the tenant
            s.customers.search("acme")
        with crm.session(actor=crm.system_actor, tenant=tenant) as s:
            gone = s.org.create_user("Gus", "gus@corp.example", "sales")
            s.org.deactivate_user(gone.id)
        with pytest.raises(PermissionDenied):  # refused, and the refusal audited apart
            crm.session(actor=gone.id, tenant=tenant)
        with (
            crm.engine.connect() as connection,  # the application's, in its own transaction
            connection.begin(),
            crm.session(actor=crm.system_actor, tenant=tenant, connection=connection) as s,
        ):
            s.customers.create("Joined Ltd", on_duplicate="allow")
    # Round robin takes the tenant's turn counter.
    with (
        recorder.calling(tenant, "leads.capture"),
        crm.session(actor=crm.system_actor, tenant=tenant) as s,
    ):
        s.settings.set("routing_rules", [{"name": "everyone", "pick": "round_robin"}])
        s.leads.capture("Rita", source="webform", email="rita@x.example")
    with (
        recorder.calling(tenant, "crm.approval_steps"),
        crm.session(actor=crm.system_actor, tenant=tenant) as s,
    ):
        crm.approval_steps(s, s.contracts.get(world.pending))
    with recorder.calling(tenant, "crm.store.begin"):
        uow = crm.store.begin(tenant)
        try:
            uow.repo(Customer).count()
        finally:
            uow.rollback()
    store: Any = crm.store  # the SQL store: join() is no part of the Store port
    with (
        recorder.calling(tenant, "crm.store.join"),
        crm.engine.connect() as connection,
        connection.begin(),
    ):
        uow = store.join(connection, tenant)
        try:
            uow.repo(Customer).find(Eq("industry", "machinery"))
        finally:
            uow.rollback()
    with recorder.calling(tenant, "crm.session"):
        s = crm.session(actor=world.rep, tenant=tenant)  # as a plugin reads: permitted rows
    try:
        read = s.read(Customer)
        reads: dict[str, Callable[[], object]] = {
            "find": lambda: read.find(
                Eq("industry", "machinery"), order_by=[OrderBy("name_key")], limit=5
            ),
            "find_holders": lambda: (
                read.find_holders("email", ["info@acme.example"], per_key=2),
                read.find_holders("email", ["info@acme.example"], Eq("size", 3), per_key=2),
            ),
            "count": read.count,
            "count_by": lambda: read.count_by("industry"),
            "aggregate": lambda: read.aggregate(None, [Field("industry")], {"n": Count()}),
            "get": lambda: read.get(world.customer),
        }
        for name, call in reads.items():
            with recorder.calling(tenant, f"session.read.{name}"):
                call()
    finally:
        with recorder.calling(tenant, "crm.session"):
            s.rollback()
    _drive_the_outbox(crm, recorder, tenant)


def _drive_the_outbox(crm: pycrm.CRM, recorder: Recorder, tenant: str) -> None:
    """Every public call of ``crm.outbox``, for ``tenant``: relay workers work tenant by tenant."""
    outbox = crm.outbox

    def refuse(event: object) -> None:
        raise RuntimeError("the queue is down")

    dead: list[str] = []
    calls: dict[str, Callable[[], object]] = {
        "pending": lambda: outbox.pending(tenant=tenant, limit=5),
        "stats": lambda: outbox.stats(tenant=tenant),
        "relay": lambda: (
            outbox.relay(refuse, tenant=tenant),  # a failed attempt
            outbox.relay(lambda event: None, tenant=tenant, limit=5),
        ),
        "deliver": lambda: outbox.deliver(  # dead-letters one event
            [FunctionRelay(refuse, name="down")],
            tenant=tenant,
            limit=1,
            retry=RetryPolicy(max_attempts=1),
        ),
        "dead_letters": lambda: dead.extend(m.id for m in outbox.dead_letters(tenant=tenant)),
        "replay": lambda: outbox.replay(dead, tenant=tenant),
        "mark_delivered": lambda: outbox.mark_delivered(
            [e.id for e in outbox.pending(tenant=tenant, limit=3)], tenant=tenant
        ),
        "purge": lambda: outbox.purge(timedelta(0), tenant=tenant),
    }
    for name, call in calls.items():
        with recorder.calling(tenant, f"crm.outbox.{name}"):
            call()
    assert dead, "deliver() dead-lettered an event"


# -- the tests -------------------------------------------------------------------------


@dataclass
class Drive:
    """One backend's drive: what was sent, and which calls failed."""

    backend: str
    seen: list[Seen]
    failed: list[str]


def _connect(target: str | sa.Engine, **options: Any) -> pycrm.CRM:
    return pycrm.connect(
        target,
        clock=FakeClock(),
        default_region="DE",
        blob_store=MemoryBlobStore(),
        load_plugins=False,
        **options,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def drive_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Drive]:
    """Every call driven for two tenants on the backend, with every statement recorded."""
    backend: str = request.param
    options: dict[str, Any] = {}
    if backend == "postgresql":
        request.node.add_marker(pytest.mark.postgres)
        engine = request.getfixturevalue("pg_engine")
        options["schema"] = request.getfixturevalue("pg_pycrm_schema")
    else:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    recorder = Recorder()
    try:
        with recorder.attached(engine):
            with recorder.calling(None, CONNECT):
                crm = _connect(engine, **options)
            try:
                failed = drive(crm, recorder)
            finally:
                crm.close()
        yield Drive(backend, recorder.seen, failed)
    finally:
        if backend == "sqlite":
            engine.dispose()


def summary(drive: Drive) -> str:
    """The statements counted by backend, tenant and kind (printed with ``pytest -s``)."""
    kinds = Counter(
        (s.tenant or s.call, _allowed(s) or ("PROBLEM" if s.problems else s.kind))
        for s in drive.seen
        if s.call != CONNECT
    )
    kinds.update((CONNECT, f"{s.kind} (left out)") for s in drive.seen if s.call == CONNECT)
    lines = [f"{drive.backend}: {len(drive.seen)} statements"]
    for (who, kind), n in sorted(kinds.items()):
        lines.append(f"  {who:<18} {kind:<45} {n:>6}")
    return "\n".join(lines)


def test_every_statement_of_a_tenants_calls_names_that_tenant(drive_on: Drive) -> None:
    """Each read, update and delete of a tenant table is filtered on the call's tenant; each insert writes it."""
    drive = drive_on
    print(summary(drive))
    assert not drive.failed, "calls that failed, so their statements went unseen:\n" + "\n".join(
        drive.failed
    )
    leaks = [str(s) for s in drive.seen if s.problems and s.call != CONNECT and _allowed(s) is None]
    assert not leaks, (
        f"{len(leaks)} statements not restricted to one tenant (add tenant_id = :tenant to "
        "each, or allow it in ALLOWED with its reason and list it in "
        "docs/tenants-and-scaling.md):\n" + "\n".join(leaks[:40])
    )
    # Nothing but connect() and the allowed calls runs outside a tenant.
    outside = {s.call for s in drive.seen if s.tenant is None}
    assert outside <= {CONNECT, TENANTS_CALL}, outside
    # Every allowance is used, so none outlives the statement it was made for.
    used = {_allowed(s) for s in drive.seen}
    assert set(ALLOWED) <= used, f"allowances no statement needs: {set(ALLOWED) - used}"
    # Reads, inserts, updates and deletes of every table, for each tenant.
    for tenant in TENANTS:
        mine = [s for s in drive.seen if s.tenant == tenant and not s.problems]
        kinds = Counter(s.kind for s in mine)
        assert all(kinds[k] > 50 for k in ("select", "insert", "update", "delete")), kinds
        touched = {t for s in mine if s.kind != "ddl" for t in s.tables}
        assert touched == TENANT_TABLES, f"tables no call reached: {TENANT_TABLES - touched}"
    # Every call of the contract suite and every call around the services ran, for both
    # tenants (the CRM's outbox and store by their own names).
    around = {
        f"{owner}.{name}"
        for owner in ("crm.store", "crm.outbox", "session.read")
        for name in DRIVEN[owner]
    } | {"crm.session", "crm.approval_steps"}
    ran = {(s.call, s.tenant) for s in drive.seen}
    missing = sorted(
        m for m in (*CALLS, *around - {TENANTS_CALL}) for t in TENANTS if (m, t) not in ran
    )
    assert not missing, f"calls that sent no statement: {missing}"


def test_every_public_call_is_driven_or_skipped_with_a_reason() -> None:
    """A public name added to the CRM, its store, its outbox or a session fails here until driven."""
    crm = _connect("sqlite://")
    try:
        surface = public_surface(crm)
    finally:
        crm.close()
    # The services' methods are CALLS: tests/test_fuzz.py checks that against them.
    problems = []
    for owner, names in surface.items():
        known = DRIVEN[owner] | set(SKIPPED[owner])
        for name in sorted(names - known):
            problems.append(
                f"{owner}.{name} is new: call it in drive() in tests/test_tenant_statements.py, "
                "or add it to SKIPPED with the reason it sends no tenant's statement"
            )
        for name in sorted(known - names):
            problems.append(f"{owner}.{name} no longer exists: remove it from DRIVEN or SKIPPED")
        for name in sorted(DRIVEN[owner] & set(SKIPPED[owner])):
            problems.append(f"{owner}.{name} is both driven and skipped")
    assert not problems, "\n".join(problems)


# -- the checker itself ----------------------------------------------------------------

T = TABLES


@pytest.fixture
def checked() -> Iterator[Callable[..., list[Seen]]]:
    """Run statements on an empty SQLite database of pycrm's tables, as tenant ``a``."""
    engine = sa.create_engine("sqlite://")
    build_schema().metadata.create_all(engine)
    recorder = Recorder()

    def run(*statements: Any, params: Any = None) -> list[Seen]:
        recorder.seen.clear()
        with recorder.attached(engine), recorder.calling("a", "test"), engine.connect() as conn:
            for statement in statements:
                conn.execute(statement, params)
            conn.rollback()
        return list(recorder.seen)

    yield run
    engine.dispose()


def _customer(tenant: str) -> dict[str, Any]:
    """A customer row: only the columns that may not be NULL."""
    samples: list[tuple[type[Any], Any]] = [
        (sa.BigInteger, 1),
        (sa.Boolean, False),
        (sa.JSON, []),
        (UTCDateTime, datetime(2026, 1, 5, tzinfo=UTC)),
    ]
    row: dict[str, Any] = {}
    for column in T["pycrm_customers"].c:
        if not column.nullable:
            kind = type(column.type)
            row[column.name] = next((v for t, v in samples if issubclass(kind, t)), "x")
    return row | {"tenant_id": tenant, "id": f"id-{tenant}"}


customers, keys, contacts = T["pycrm_customers"], T["pycrm_match_keys"], T["pycrm_contacts"]
OWN = customers.c.tenant_id == "a"


@pytest.mark.parametrize(
    ("statement", "reported"),
    [
        (sa.select(customers), "pycrm_customers is read or changed without"),
        (
            sa.select(customers).where(sa.or_(OWN, customers.c.tenant_id == "b")),
            "pycrm_customers is read or changed without",
        ),
        (
            sa.select(customers).where(customers.c.tenant_id.in_(["a", "b"])),
            "pycrm_customers is read or changed without",
        ),
        (sa.select(customers).where(customers.c.tenant_id == "b"), "tenant_id = ['b'], not 'a'"),
        (  # folded into WHERE 0 = 1: what In(field, []) once sent
            sa.select(customers).where(OWN).where(sa.false()),
            "pycrm_customers is read or changed without",
        ),
        (
            sa.select(customers).where(OWN, customers.c.id.in_(sa.select(keys.c.record_id))),
            "pycrm_match_keys is read or changed without",
        ),
        (
            sa.select(customers).where(
                OWN,
                sa.select(contacts.c.id).where(contacts.c.customer_id == customers.c.id).exists(),
            ),
            "pycrm_contacts is read or changed without",
        ),
        (
            sa.select(customers).where(
                OWN,
                sa.select(contacts.c.id)
                .where(contacts.c.customer_id == customers.c.id, contacts.c.tenant_id == "b")
                .exists(),
            ),
            "pycrm_contacts: tenant_id = ['b'], not 'a'",
        ),
        (
            sa.select(customers.c.id)
            .select_from(customers.join(contacts, contacts.c.customer_id == customers.c.id))
            .where(OWN),
            "pycrm_contacts is read or changed without",
        ),
        (
            sa.select(sa.func.count()).select_from(
                sa.select(contacts.c.id).where(contacts.c.name == "x").subquery()
            ),
            "pycrm_contacts is read or changed without",
        ),
        (
            sa.select(sa.func.min(customers.c.tenant_id)).union_all(
                sa.select(customers.c.tenant_id).where(OWN)
            ),
            "pycrm_customers is read or changed without",
        ),
        (sa.update(customers).where(customers.c.id == "x").values(name="y"), "without"),
        (
            sa.update(customers).where(sa.or_(customers.c.id == "x", OWN)).values(name="y"),
            "pycrm_customers is read or changed without",
        ),
        (sa.delete(keys).where(keys.c.record_id == "x"), "pycrm_match_keys is read or changed"),
        (
            sa.delete(keys).where(
                keys.c.tenant_id == "a",
                keys.c.record_id.in_(sa.select(customers.c.id).where(customers.c.name == "x")),
            ),
            "pycrm_customers is read or changed without",
        ),
        (sa.text("DELETE FROM pycrm_customers"), "SQL text naming tenant tables"),
    ],
    ids=lambda value: "" if isinstance(value, str) else str(value).split("\n")[0][:40],
)
def test_the_checker_reports_statements_that_do_not_name_one_tenant(
    checked: Callable[..., list[Seen]], statement: Any, reported: str
) -> None:
    (seen,) = checked(statement)
    assert any(reported in p for p in seen.problems), seen.problems


def test_the_checker_reports_inserts_of_another_tenants_rows(
    checked: Callable[..., list[Seen]],
) -> None:
    (other,) = checked(sa.insert(customers), params=[_customer("b")])
    assert other.problems == ("INSERT INTO pycrm_customers writes tenant_id ['b'], not 'a'",)
    (mixed,) = checked(sa.insert(customers), params=[_customer("a"), _customer("b")])
    assert mixed.problems == ("INSERT INTO pycrm_customers writes tenant_id ['a', 'b'], not 'a'",)
    (own,) = checked(sa.insert(customers).values(_customer("a")))
    assert own.problems == ()


def test_the_checker_reports_updates_that_move_rows_to_another_tenant(
    checked: Callable[..., list[Seen]],
) -> None:
    """Citus refuses to change a row's distribution column; writing the same value is a no-op."""
    (moved,) = checked(sa.update(customers).where(OWN).values(tenant_id="b", name="y"))
    assert moved.problems == ("UPDATE writes tenant_id ['b'], not 'a'",)
    (kept,) = checked(sa.update(customers).where(OWN).values(tenant_id="a", name="y"))
    assert kept.problems == ()


def test_the_checker_passes_statements_restricted_to_the_tenant(
    checked: Callable[..., list[Seen]],
) -> None:
    restricted = [
        sa.select(customers).where(OWN, customers.c.name == "x"),
        sa.select(customers).where(
            OWN,
            customers.c.id.in_(
                sa.select(keys.c.record_id).where(keys.c.tenant_id == "a", keys.c.key == "k")
            ),
        ),
        sa.select(customers).where(  # correlated: the outer table's condition covers it
            OWN,
            sa.select(contacts.c.id)
            .where(contacts.c.tenant_id == "a", contacts.c.customer_id == customers.c.id)
            .exists(),
        ),
        sa.select(customers.c.id)
        .select_from(
            customers.join(
                contacts,
                sa.and_(contacts.c.customer_id == customers.c.id, contacts.c.tenant_id == "a"),
            )
        )
        .where(OWN),
        sa.update(customers).where(customers.c.id == "x", OWN).values(name="y"),
        sa.delete(keys).where(keys.c.tenant_id == sa.bindparam("t"), keys.c.record_id == "x"),
    ]
    seen = checked(*restricted[:-1]) + checked(restricted[-1], params={"t": "a"})
    assert [s.problems for s in seen] == [()] * len(restricted)
    assert [s.kind for s in seen] == ["select"] * 4 + ["update", "delete"]


def test_the_checker_sees_the_tenant_bound_at_execution_not_when_built(
    checked: Callable[..., list[Seen]],
) -> None:
    """A statement kept and run again for another tenant is judged by the values it runs with."""
    kept = sa.select(customers).where(customers.c.tenant_id == sa.bindparam("tenant"))
    (right,) = checked(kept, params={"tenant": "a"})
    (wrong,) = checked(kept, params={"tenant": "b"})
    assert right.problems == ()
    assert wrong.problems == ("pycrm_customers: tenant_id = ['b'], not 'a'",)


def test_a_filter_that_matches_nothing_keeps_the_tenant_condition() -> None:
    """``In(field, [])`` once compiled to ``false``, which swallowed ``tenant_id = :tenant``.

    SQLAlchemy folds ``tenant_id = ? AND false`` into ``0 = 1``: no row came
    back, but the statement named no tenant, so Citus could not route it.
    """
    recorder = Recorder()
    crm = _connect("sqlite://")
    try:
        with crm.session(actor=crm.system_actor, tenant="a") as s:
            s.customers.create("Acme GmbH")
        with recorder.attached(crm.engine), recorder.calling("a", "find"):
            uow = crm.store.begin("a")
            try:
                repo = uow.repo(Customer)
                assert repo.find(In("industry", [])) == []
                assert repo.count(Not(In("industry", []))) == 1
                assert repo.count(AnyKey("email", [])) == 0
            finally:
                uow.rollback()
    finally:
        crm.close()
    assert [s.problems for s in recorder.seen if s.kind == "select"] == [(), (), ()]


# -- the schema and the docs -----------------------------------------------------------


def _section(title: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_docs_distribute_every_table_by_tenant() -> None:
    """The DDL in the docs distributes exactly the tables tables.py builds, co-located."""
    section = _section("Distributing by tenant (Citus)")
    distributed = re.findall(r"create_distributed_table\('(\w+)', 'tenant_id'", section)
    assert sorted(distributed) == sorted(TENANT_TABLES)
    assert len(distributed) == len(set(distributed))
    first = distributed[0]
    colocated = re.findall(r"colocate_with => '(\w+)'", section)
    assert colocated == [first] * (len(distributed) - 1)
    references = re.findall(r"create_reference_table\('(\w+)'\)", section)
    # None: every table has tenant_id.
    assert sorted(references) == sorted(set(TABLES) - TENANT_TABLES) == []


def test_every_key_and_index_holds_the_tenant_and_every_unique_one_leads_with_it() -> None:
    """Citus needs the distribution column in every primary key and unique constraint."""
    problems = []
    for table in TABLES.values():
        primary = [c.name for c in table.primary_key.columns]
        if "tenant_id" not in primary:
            problems.append(f"{table.name}: primary key {primary}")
        if table.c.tenant_id.nullable:
            problems.append(f"{table.name}: tenant_id may be NULL")
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint):
                columns = [c.name for c in constraint.columns]
                if columns[0] != "tenant_id":
                    problems.append(f"{table.name}: unique {columns}")
            if isinstance(constraint, sa.ForeignKeyConstraint):
                problems.append(f"{table.name}: foreign key {constraint.name}")
        for index in table.indexes:
            first = next(iter(index.expressions))
            if getattr(first, "name", None) != "tenant_id":
                problems.append(f"{table.name}: index {index.name}")
    assert not problems, problems


def test_the_docs_state_the_primary_keys_as_they_are() -> None:
    """A record table's key is (id, tenant_id); the key and counter tables lead with tenant_id."""
    section = " ".join(_section("Distributing by tenant (Citus)").split())
    for table in TABLES.values():
        primary = ", ".join(c.name for c in table.primary_key.columns)
        if primary == "id, tenant_id":
            continue
        assert f"`{table.name}`: `({primary})`" in section, table.name
    assert "`(id, tenant_id)`" in section


def test_the_docs_list_the_allowed_statements() -> None:
    """Each allowance of this module is in the docs, by the same name, and no other is."""
    section = _section("Distributing by tenant (Citus)")
    listed = re.findall(r"^- \*\*(.+?)\*\*", section, flags=re.MULTILINE)
    assert sorted(listed) == sorted(ALLOWED)


def test_the_postgresql_tables_hold_the_tenant_in_every_key_and_index(
    pg_engine: sa.Engine, pg_pycrm_schema: str
) -> None:
    """The live PostgreSQL tables hold tenant_id in every key and lead every index with it."""
    crm = _connect(pg_engine, schema=pg_pycrm_schema)
    crm.close()
    inspector = sa.inspect(pg_engine)
    problems = []
    for name in inspector.get_table_names(schema=pg_pycrm_schema):
        if name not in TABLES:
            continue
        primary = inspector.get_pk_constraint(name, schema=pg_pycrm_schema)["constrained_columns"]
        if "tenant_id" not in primary:
            problems.append(f"{name}: primary key {primary}")
        for unique in inspector.get_unique_constraints(name, schema=pg_pycrm_schema):
            if unique["column_names"][0] != "tenant_id":
                problems.append(f"{name}: unique {unique['column_names']}")
        for index in inspector.get_indexes(name, schema=pg_pycrm_schema):
            if index["column_names"][0] != "tenant_id":
                problems.append(f"{name}: index {index['name']}")
        if inspector.get_foreign_keys(name, schema=pg_pycrm_schema):
            problems.append(f"{name}: foreign keys")
    assert not problems, problems
