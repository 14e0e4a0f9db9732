"""Service writes: pycrm's calls against hand-written SQLAlchemy Core writing the same rows.

Five calls, each ``--calls`` times (default 300) on records made beforehand:

* ``customers.create`` (a company with an email, a phone and a tag),
* ``contacts.create`` (a person at one of those companies),
* ``leads.capture`` (from a web form; scored and routed by the CRM's rules),
* ``deals.update`` (a new name and amount),
* ``tickets.reply`` (a public reply by the assigned agent),

each in two ways: one call per session (as a web request makes it) and all
calls in one session (as a script does).

The baseline writes the very rows pycrm wrote for the same calls: the record,
its match keys, the audit entry and the outbox message (an update as an
``UPDATE ... WHERE id AND version``, the match keys replaced). A listener
remembers pycrm's inserts, updates and deletes as they run (holding on to the
statements costs nothing measurable); the baseline then sends them as its own
Core statements into a tenant of its own, one transaction per call or one for
all, as pycrm did. It does no reading, validation, dedupe, permission check,
scoring or routing: it is the least any library writing these rows must do.

Every timing is taken in this run, the paths taking turns, and reported as a
ratio (pycrm / baseline). Target: at most 2x for every call.

    python benchmarks/write_bench.py                # SQLite (and PostgreSQL if configured)
    python benchmarks/write_bench.py --quick        # smoke run
    PYCRM_TEST_POSTGRES_URL=postgresql+psycopg://... python benchmarks/write_bench.py
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from backends import postgres_crm, sqlite_crm
from rich.console import Console
from rich.table import Table
from sqlalchemy.dialects import postgresql, sqlite

import pycrm

TARGET = 2.0
BASELINE_TENANT = "baseline"
RULES = [  # the routing the leads go through
    {"name": "machinery", "when": {"industry": "machinery"}, "skills": ["machinery"]},
    {"name": "rr", "pick": "round_robin"},
]
console = Console()
# Names as varied as a real customer base: a dedupe block holds a few records, not all.
FIRST = ("Anna", "Bernd", "Carla", "Dieter", "Elif", "Frank", "Greta", "Hans", "Ines", "Jonas",
         "Klara", "Lukas", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Uwe", "Vera",
         "Wim", "Xenia", "Yusuf", "Zoe", "Ahmet", "Birgit", "Chen", "Dana", "Emil", "Fatma")  # fmt: skip
LAST = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
        "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz", "Braun",
        "Zimmermann", "Hartmann", "Krüger", "Lange", "Werner", "Krause", "Lehmann", "Köhler",
        "Maier", "Huber", "Kaiser", "Fuchs", "Peters", "Scholz", "Jung", "Hahn", "Vogel")  # fmt: skip
WORDS = ("Alpen", "Berg", "Delta", "Elbe", "Falke", "Granit", "Hafen", "Isar", "Kristall",
         "Linden", "Main", "Nord", "Oder", "Polar", "Quelle", "Rhein", "Sonne", "Tal", "Ufer",
         "Wald", "Zeder", "Adler", "Birke", "Eiche", "Fluss", "Garten", "Horizont")  # fmt: skip
TRADES = ("Maschinenbau", "Logistik", "Elektro", "Bau", "Handel", "Software", "Druck", "Metall")


def person(i: int) -> str:
    """The i-th of many different names."""
    return f"{FIRST[i % len(FIRST)]} {LAST[(i * 7 + i // len(FIRST)) % len(LAST)]}"


def company(i: int) -> str:
    """The i-th of many different company names."""
    a, b = WORDS[i % len(WORDS)], WORDS[(i * 5 + i // len(WORDS)) % len(WORDS)]
    return f"{a}{b.lower()} {TRADES[i % len(TRADES)]} {i} GmbH"


#: One write: (table, "insert" | "update" | "delete" | "count", rows or values, the WHERE's values).
Write = tuple[sa.Table, str, Any, dict[str, Any]]


class Recorder:
    """Keeps the statements pycrm sends while ``recording``, per call."""

    def __init__(self, engine: sa.Engine) -> None:
        self.calls: list[list[tuple[Any, Any]]] = []
        self.on = False
        sa.event.listen(engine, "before_execute", self._seen)

    def _seen(self, conn: Any, statement: Any, multiparams: Any, params: Any, options: Any) -> None:
        if self.on and isinstance(statement, sa.Insert | sa.Update | sa.Delete):
            # One row comes as params, several as multiparams.
            self.calls[-1].append((statement, multiparams or ([params] if params else [])))

    @contextmanager
    def call(self) -> Iterator[None]:
        self.calls.append([])
        self.on = True
        try:
            yield
        finally:
            self.on = False

    def writes(self) -> list[list[Write]]:
        """Each call's writes, as plain rows and values (decoded after the timing)."""
        return [[_write(statement, multi) for statement, multi in call] for call in self.calls]


def _write(statement: Any, multiparams: Any) -> Write:
    table: sa.Table = statement.table
    params = statement.compile().params
    if isinstance(statement, sa.Insert) and not multiparams:  # a counter's upsert
        return table, "count", None, {"key": params["key"]}
    if isinstance(statement, sa.Insert):
        rows = [{**row, "tenant_id": BASELINE_TENANT} for row in multiparams]
        return table, "insert", rows, {}
    where = {k.removesuffix("_1"): v for k, v in params.items() if k.endswith("_1")}
    if isinstance(statement, sa.Update):
        values = {k: v for k, v in params.items() if k in table.c and not k.endswith("_1")}
        return table, "update", values | {"tenant_id": BASELINE_TENANT}, where
    return table, "delete", None, where


def replay(conn: sa.Connection, writes: list[Write]) -> None:
    """The baseline: the rows of one call, in hand-written Core statements."""
    for table, kind, rows, where in writes:
        if kind == "insert":
            conn.execute(sa.insert(table), rows)
            continue
        if kind == "count":  # a numbering counter: one upsert, as pycrm's
            insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert
            conn.execute(
                insert(table)
                .values(tenant_id=BASELINE_TENANT, key=where["key"], value=1)
                .on_conflict_do_update(
                    index_elements=[table.c.tenant_id, table.c.key],
                    set_={"value": table.c.value + 1},
                )
                .returning(table.c.value)
            ).scalar_one()
            continue
        scope = [table.c.tenant_id == BASELINE_TENANT]
        scope += [table.c[k] == v for k, v in where.items() if k != "tenant_id"]
        if kind == "update":
            result = conn.execute(sa.update(table).where(*scope).values(rows))
            assert result.rowcount == 1, (table.name, where)  # the version check held
        else:
            conn.execute(sa.delete(table).where(*scope))


# -- the calls -------------------------------------------------------------------


class World:
    """The users and records the calls work on, made through pycrm before timing."""

    def __init__(self, crm: pycrm.CRM, calls: int) -> None:
        self.crm = crm
        with crm.session(actor=crm.system_actor) as s:
            self.sales = s.org.create_user("Ana", "ana@example.com", "sales", roles=["sales_rep"])
            self.marketing = s.org.create_user("Mo", "mo@example.com", "marketing")
            self.agent = s.org.create_user("Sam", "sam@example.com", "service")
            for i in range(3):  # someone to route leads to
                s.org.create_user(f"Rep {i}", f"rep{i}@example.com", "sales", roles=["sales_rep"])
        # Four rounds of calls (pycrm and baseline, two modes): records for each.
        self.customers: list[str] = []
        self.deals: list[str] = []
        self.tickets: list[str] = []
        with crm.session(actor=self.sales.id) as s:
            for i in range(2 * calls):
                c = s.customers.create(company(10_000 + i), on_duplicate="allow")
                self.customers.append(c.id)
                deal = s.deals.create(f"Deal {i}", customer_id=c.id, amount=(1000, "EUR"))
                self.deals.append(deal.id)
        with crm.session(actor=crm.system_actor) as s:
            for i in range(2 * calls):
                t = s.tickets.open(
                    f"Printer {i} jams", channel="email", customer_id=self.customers[i]
                )
                s.tickets.assign(t.id, self.agent.id)
                self.tickets.append(t.id)

    def operations(self) -> dict[str, tuple[str, Callable[[pycrm.Session, int], Any]]]:
        """Each call: (the actor, what it does with the i-th record or value)."""
        return {
            "customers.create": (
                self.sales.id,
                lambda s, i: s.customers.create(
                    company(i),
                    emails=[f"info{i}@company{i}.example"],
                    phones=[f"+49 30 {1000000 + i}"],
                    tags=["prospect"],
                ),
            ),
            "contacts.create": (
                self.sales.id,
                lambda s, i: s.contacts.create(
                    person(i),
                    customer_id=self.customers[i],
                    emails=[f"person{i}@company{i}.example"],
                    phones=[f"+49 170 {2000000 + i}"],
                ),
            ),
            "leads.capture": (
                self.marketing.id,
                lambda s, i: s.leads.capture(
                    person(5_000 + i),
                    source="webform",
                    email=f"lead{i}@prospect{i}.example",
                    phone=f"+49 40 {3000000 + i}",
                    company=company(20_000 + i),
                    industry="machinery",
                ),
            ),
            "deals.update": (
                self.sales.id,
                lambda s, i: s.deals.update(
                    self.deals[i], name=f"Deal {i} (revised)", amount=(1500 + i, "EUR")
                ),
            ),
            "tickets.reply": (
                self.agent.id,
                lambda s, i: s.tickets.reply(self.tickets[i], f"We sent a technician ({i})."),
            ),
        }


def copy_rows(crm: pycrm.CRM, table: sa.Table, ids: list[str]) -> None:
    """Copy records into the baseline's tenant, as they are before pycrm changes them."""
    with crm.engine.begin() as conn:
        rows = conn.execute(
            sa.select(table).where(table.c.tenant_id == "default", table.c.id.in_(ids))
        ).mappings()
        copies = [{**row, "tenant_id": BASELINE_TENANT} for row in rows]
        if copies:
            conn.execute(sa.insert(table), copies)


def measure(crm: pycrm.CRM, calls: int) -> list[tuple[str, str, float, float]]:
    """(call, mode, pycrm seconds, baseline seconds) for every call and mode."""
    world = World(crm, calls)
    schema = crm.store.schema  # type: ignore[attr-defined]
    from pycrm.domain.deals import Deal
    from pycrm.domain.tickets import Ticket

    copy_rows(crm, schema.codec(Deal).table, world.deals)
    copy_rows(crm, schema.codec(Ticket).table, world.tickets)
    recorder = Recorder(crm.engine)
    results: list[tuple[str, str, float, float]] = []
    for name, (actor, call) in world.operations().items():
        for mode, offset in (("one per session", 0), ("many per session", calls)):
            numbers = range(offset, offset + calls)
            recorder.calls.clear()
            started = time.perf_counter()
            if mode == "one per session":
                for i in numbers:
                    with crm.session(actor=actor) as s, recorder.call():
                        call(s, i)
            else:
                with crm.session(actor=actor) as s:
                    for i in numbers:
                        with recorder.call():
                            call(s, i)
            ours = time.perf_counter() - started
            writes = recorder.writes()
            assert all(writes), f"{name}: a call wrote nothing"
            started = time.perf_counter()
            if mode == "one per session":
                for call_writes in writes:
                    with crm.engine.begin() as conn:
                        replay(conn, call_writes)
            else:
                with crm.engine.begin() as conn:
                    for call_writes in writes:
                        replay(conn, call_writes)
            theirs = time.perf_counter() - started
            results.append((name, mode, ours, theirs))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per call and mode")
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 calls")
    parser.add_argument("--seed", type=int, default=1, help="unused: the data is fixed")
    args = parser.parse_args()
    if args.quick:
        args.calls = 30
    backends: list[tuple[str, Callable[[], Any]]] = [
        ("SQLite", lambda: sqlite_crm(routing_rules=RULES))
    ]
    if url := os.environ.get("PYCRM_TEST_POSTGRES_URL"):
        backends.append(("PostgreSQL", lambda: postgres_crm(url, routing_rules=RULES)))
    table = Table(
        title="Service writes: pycrm vs hand-written Core writing the same rows",
        caption=f"ms per call; ratio = pycrm / baseline (target <= {TARGET}x)",
    )
    for column in ("backend", "call", "mode", "pycrm", "baseline", "ratio"):
        table.add_column(
            column, justify="left" if column in ("backend", "call", "mode") else "right"
        )
    worst = Decimal(0)
    for label, open_crm in backends:
        with open_crm() as crm:
            for name, mode, ours, theirs in measure(crm, args.calls):
                ratio = Decimal(ours / theirs).quantize(Decimal("0.01"))
                worst = max(worst, ratio)
                style = "" if ratio <= TARGET else "[red]"
                table.add_row(
                    label,
                    name,
                    mode,
                    f"{ours / args.calls * 1000:.2f}",
                    f"{theirs / args.calls * 1000:.2f}",
                    f"{style}{ratio}x",
                )
        table.add_section()
    console.print(table)
    console.print(f"{args.calls} calls per row; worst ratio {worst}x (target <= {TARGET}x)")


if __name__ == "__main__":
    main()
