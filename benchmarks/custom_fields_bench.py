"""Custom-field search: an indexed custom field against a built-in indexed column.

Loads 100,000 customers (``--quick``: 10,000) and a searchable custom field
``branch`` (an expression index on the SQL adapters). Each customer's owner
and branch go together: the customers of owner *k* are exactly those of
branch *k*, 1% of all. So ``s.customers.search(custom={"branch": b})`` and
``s.customers.search(owner_id=o)`` (a built-in column with an index) return
the same customers in the same order, and the only difference between the two
timings is how the database finds them. Three searches are timed:

* ``first page``: the first 50 of the 1,000 matches, by name, in an open session;
* ``all matches``: all 1,000 matches (``limit=1000``), in an open session;
* ``new session``: the first page in a session of its own, as a web request
  would (a custom search then also reads the field definitions once).

The two paths take turns, each search is tried ``--repeat`` times and its best
try counts, and the ratio custom/built-in is printed; the target is at most
2x. After the timings it prints each search's query plan (``EXPLAIN QUERY
PLAN`` on SQLite, ``EXPLAIN ANALYZE`` on PostgreSQL) and whether it looks the
rows up in an index by the searched value (the field's index, or one with
``owner_id``).

SQLite is measured twice: as pycrm leaves the file (no table statistics; pycrm
never runs ``ANALYZE``), then after ``ANALYZE``. PostgreSQL is measured after
``ANALYZE``, which autovacuum would run soon after a bulk load anyway.

    python benchmarks/custom_fields_bench.py                 # SQLite (and PostgreSQL if configured)
    python benchmarks/custom_fields_bench.py --quick         # smoke run
    python benchmarks/custom_fields_bench.py --type number   # a searchable number field instead
    PYCRM_TEST_POSTGRES_URL=postgresql+psycopg://... python benchmarks/custom_fields_bench.py
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from backends import postgres_crm, sqlite_crm
from rich.console import Console
from rich.table import Table

import pycrm
from pycrm.domain.custom_fields import check_custom
from pycrm.domain.customers import Customer

console = Console(width=None if sys.stdout.isatty() else 120)
TARGET = 2.0
KEY = "branch"
PAGE = 50
BATCH = 5000  # customers per add_many
WORDS = ("amber", "birch", "cobalt", "delta", "ember", "fjord", "granite", "harbor", "iris")


def field_value(kind: str, k: int) -> Any:
    """The custom field's value for owner ``k``."""
    return k if kind == "number" else f"BR-{k:03d}"


# -- setup ---------------------------------------------------------------------


def populate(
    crm: pycrm.CRM, customers: int, values: int, kind: str, rng: random.Random
) -> tuple[str, list[str]]:
    """Define the field and load the customers; return the searching user and the owner ids.

    Customer ``i`` belongs to owner ``i % values`` and has that owner's branch.
    The first ``values`` customers go through ``s.customers.create`` (so the
    benchmark also searches rows the service wrote); the rest are stamped by the
    session and inserted with the repository's ``add_many`` in one unit of work,
    the same rows without audit entries and outbox messages.
    """
    choices = [field_value("text", k) for k in range(values)]
    with crm.session(actor=crm.system_actor) as s:
        options: dict[str, Any] = {"choices": choices} if kind == "choice" else {}
        s.fields.define("customer", KEY, kind, searchable=True, **options)
        users = [
            s.org.create_user(name=f"Owner {k:03d}", email=f"owner{k}@bench.example",
                              department="sales")
            for k in range(values)
        ]  # fmt: skip
    owners = [u.id for u in users]

    def name(i: int) -> str:  # random words first: name order has nothing to do with the owner
        return f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {i:06d} GmbH"

    with crm.session(actor=crm.system_actor) as s:
        for i in range(min(values, customers)):
            s.customers.create(
                name(i),
                owner_id=owners[i % values],
                custom={KEY: field_value(kind, i % values)},
                on_duplicate="allow",
            )
    with crm.session(actor=crm.system_actor) as s:
        definitions = s._field_definitions("customer")
        custom = [
            check_custom(definitions, {}, {KEY: field_value(kind, k)}, creating=True)
            for k in range(values)
        ]
        repo = s._uow.repo(Customer)
        for start in range(values, customers, BATCH):
            repo.add_many(
                [
                    Customer(
                        **s._stamp(
                            name=name(i), owner_id=owners[i % values], custom=custom[i % values]
                        )
                    )
                    for i in range(start, min(start + BATCH, customers))
                ]
            )
    return owners[0], owners


def analyze(crm: pycrm.CRM) -> None:
    """Gather table statistics for the customers table (``ANALYZE``)."""
    table = crm.store.schema.codec(Customer).table  # type: ignore[attr-defined]
    name = crm.engine.dialect.identifier_preparer.format_table(table)
    with crm.engine.begin() as conn:
        conn.exec_driver_sql(f"ANALYZE {name}")
    # A SQLite connection reads the statistics when it loads the schema: reconnect, so
    # that every pooled connection plans with them, not only the one that ran ANALYZE.
    crm.engine.dispose()


# -- the searches --------------------------------------------------------------

Search = Callable[[pycrm.CRM, Any, str, Any, Any], list[Customer]]


def in_session(limit: int) -> Search:
    def run(crm: pycrm.CRM, s: Any, user: str, owner: Any, value: Any) -> list[Customer]:
        if value is not None:
            return s.customers.search(custom={KEY: value}, limit=limit)  # type: ignore[no-any-return]
        return s.customers.search(owner_id=owner, limit=limit)  # type: ignore[no-any-return]

    return run


def new_session(crm: pycrm.CRM, s: Any, user: str, owner: Any, value: Any) -> list[Customer]:
    with crm.session(actor=user) as fresh:
        return in_session(PAGE)(crm, fresh, user, owner, value)


def searches(per_owner: int) -> dict[str, tuple[Search, int]]:
    """Name → (search, rows it returns)."""
    every = min(per_owner, 1000)
    return {
        "first page": (in_session(PAGE), min(PAGE, per_owner)),
        f"all matches ({every:,})": (in_session(every), every),
        "new session": (new_session, min(PAGE, per_owner)),
    }


def bind(
    search: Search,
    crm: pycrm.CRM,
    s: Any,
    user: str,
    owners: list[str] | None,
    value: Callable[[int], Any] | None,
) -> Callable[[int], list[Customer]]:
    """The search for owner ``k``: by owner id, or by ``value(k)`` in the custom field."""

    def run(k: int) -> list[Customer]:
        if value is not None:
            return search(crm, s, user, None, value(k))
        assert owners is not None
        return search(crm, s, user, owners[k], None)

    return run


@contextmanager
def captured(engine: sa.Engine, table: str) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs on ``table`` sent inside the block, as the driver got them."""
    found: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            found.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        yield found
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)


def measure(
    crm: pycrm.CRM,
    user: str,
    owners: list[str],
    kind: str,
    per_owner: int,
    samples: int,
    repeat: int,
    rng: random.Random,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, tuple[str, Any]]]]:
    """Best time per sampled owner, per search and path; and each search's SQL."""
    table = crm.store.schema.codec(Customer).table  # type: ignore[attr-defined]
    fullname = crm.engine.dialect.identifier_preparer.format_table(table)
    picks = [rng.randrange(len(owners)) for _ in range(samples)]
    times: dict[str, dict[str, list[float]]] = {}
    sql: dict[str, dict[str, tuple[str, Any]]] = {}
    with crm.session(actor=user) as s:
        for label, (search, rows) in searches(per_owner).items():
            paths = {
                "custom": bind(search, crm, s, user, None, lambda k: field_value(kind, k)),
                "built-in": bind(search, crm, s, user, owners, None),
            }
            sql[label] = {}
            for name, path in paths.items():  # the SQL of one search, for EXPLAIN
                with captured(crm.engine, fullname) as statements:
                    path(picks[0])
                sql[label][name] = statements[-1]
            for k in sorted(set(picks)):  # both find the same customers; warms the caches
                custom, builtin = paths["custom"](k), paths["built-in"](k)
                assert [c.id for c in custom] == [c.id for c in builtin], (label, k)
                assert len(custom) == rows, (label, k, len(custom), rows)
                assert all(
                    c.owner_id == owners[k] and c.custom == {KEY: field_value(kind, k)}
                    for c in custom
                ), (label, k)
            times[label] = {"custom": [], "built-in": []}
            for i, k in enumerate(picks):
                best = {"custom": float("inf"), "built-in": float("inf")}
                for r in range(repeat):
                    order = ("custom", "built-in") if (i + r) % 2 == 0 else ("built-in", "custom")
                    for name in order:
                        started = time.perf_counter()
                        paths[name](k)
                        best[name] = min(best[name], time.perf_counter() - started)
                for name, t in best.items():
                    times[label][name].append(t)
    return times, sql


# -- query plans ---------------------------------------------------------------


def explain(crm: pycrm.CRM, statement: str, params: Any) -> list[str]:
    """The query plan of one captured statement."""
    with crm.engine.connect() as conn:
        if crm.engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            return [str(r[-1]) for r in rows]
        prefix = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
        return [str(r[0]) for r in conn.exec_driver_sql(prefix + statement, params)]


def index_verdict(dialect: str, plan: list[str], path: str) -> tuple[bool, str]:
    """Whether the plan looks the rows up in an index by the searched value, and which one.

    ``custom``: an index on the field's JSON expression; ``built-in``: an index with
    ``owner_id``. An index used only for its leading ``tenant_id`` does not count.
    """
    if dialect == "sqlite":
        marker = "<expr>=" if path == "custom" else "owner_id="
        used = re.findall(r"USING (?:COVERING )?INDEX (\S+) \(([^)]*)\)", "\n".join(plan))
        for name, terms in used:
            if marker in terms:
                return True, f"{name} ({terms})"
        what = ", ".join(f"{n} ({t})" for n, t in used) or "a full scan"
        return False, f"no index by {path} value: the plan uses {what}"
    marker = "custom ->>" if path == "custom" else "owner_id"
    scan = re.compile(r"(?:Index|Index Only|Bitmap Index) Scan (?:Backward )?(?:using|on) (\S+)")
    names: list[str] = []
    for line in plan:
        if found := scan.search(line):
            names.append(found.group(1))
        elif "Index Cond:" in line and marker in line and names:
            return True, names[-1]
    return False, f"no index by {path} value: the plan uses {', '.join(names) or 'a seq scan'}"


# -- backends ------------------------------------------------------------------


def summary(samples: list[float]) -> tuple[float, float]:
    """Median and best, in milliseconds."""
    return statistics.median(samples) * 1000, min(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, help="customers to load (default 100,000)")
    parser.add_argument(
        "--values",
        type=int,
        default=100,
        help="owners, and branches; each matches customers/values (default 100)",
    )
    parser.add_argument(
        "--type",
        dest="kind",
        choices=["text", "choice", "number"],
        default="text",
        help="the custom field's type (default text)",
    )
    parser.add_argument("--samples", type=int, help="owners to search per path (default 40)")
    parser.add_argument("--repeat", type=int, help="tries per search; the best counts (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 customers")
    args = parser.parse_args()  # fmt: skip
    customers = args.customers or (10_000 if args.quick else 100_000)
    samples = args.samples or (10 if args.quick else 40)
    repeat = max(1, args.repeat or (2 if args.quick else 3))
    values = max(1, min(args.values, customers))
    per_owner = customers // values
    if customers % values:
        parser.error("--customers must be a multiple of --values")

    backends: list[tuple[str, Callable[[], AbstractContextManager[pycrm.CRM]]]] = [
        ("SQLite", sqlite_crm)
    ]
    if url := os.environ.get("PYCRM_TEST_POSTGRES_URL"):
        backends.append(("PostgreSQL", lambda: postgres_crm(url)))

    table = Table(
        title=f"Searching {customers:,} customers: custom field {KEY!r} ({args.kind}, "
        "indexed) vs owner_id (built-in, indexed)",
        caption=f"ms per search: median / best; ratio = custom / built-in, of the medians "
        f"and of the bests; target <= {TARGET:g}x",
    )
    for column in (
        "backend",
        "search",
        "rows",
        "custom ms",
        "built-in ms",
        "ratio",
        "ratio (best)",
    ):
        table.add_column(column, justify="left" if column in ("backend", "search") else "right")
    plans: list[tuple[str, str, str, list[str], bool, str]] = []
    verdicts: list[tuple[str, str, float]] = []
    for label, open_crm in backends:
        rng = random.Random(args.seed)
        with open_crm() as crm:
            started = time.perf_counter()
            user, owners = populate(crm, customers, values, args.kind, rng)
            console.print(
                f"{label}: loaded {customers:,} customers ({values} owners and {KEY} values, "
                f"{per_owner:,} customers each) in {time.perf_counter() - started:.1f} s"
            )
            states = ["no stats", "ANALYZE"] if label == "SQLite" else ["ANALYZE"]
            for state in states:
                if state == "ANALYZE":
                    analyze(crm)
                backend = f"{label} ({state})"
                times, sql = measure(
                    crm, user, owners, args.kind, per_owner, samples, repeat,
                    random.Random(args.seed),
                )  # fmt: skip
                rows = {name: n for name, (_, n) in searches(per_owner).items()}
                for search, by_path in times.items():
                    custom, builtin = summary(by_path["custom"]), summary(by_path["built-in"])
                    ratio, best_ratio = custom[0] / builtin[0], custom[1] / builtin[1]
                    mark = "OK" if ratio <= TARGET else "MISSES"
                    table.add_row(
                        backend, search, f"{rows[search]:,}",
                        f"{custom[0]:.2f} / {custom[1]:.2f}",
                        f"{builtin[0]:.2f} / {builtin[1]:.2f}",
                        f"[bold]{ratio:.2f}x[/] {mark}", f"{best_ratio:.2f}x",
                    )  # fmt: skip
                    verdicts.append((backend, search, ratio))
                    if search == "new session":
                        continue  # the same SQL as the first page
                    for path, (statement, params) in sql[search].items():
                        plan = explain(crm, statement, params)
                        used, why = index_verdict(crm.engine.dialect.name, plan, path)
                        plans.append((backend, search, path, plan, used, why))
                table.add_section()

    console.print(table)
    console.print(
        f"{samples} owners per search, each search the best of {repeat} tries, the paths "
        "interleaved, after an untimed pass that checks both return the same customers."
    )
    console.print("\n[bold]Query plans[/] (the WHERE clause is the same but for the column)")
    for backend, search, path, plan, used, why in plans:
        mark = "[green]index used[/]" if used else "[red]INDEX NOT USED[/]"
        console.print(f"\n{backend}, {search}, {path}: {mark}: {why}")
        for line in plan:
            console.print(f"    {line}", markup=False, highlight=False)
    missed = [v for v in verdicts if v[2] > TARGET]
    unused = [p for p in plans if not p[4] and p[2] == "custom"]
    console.print()
    for backend, search, ratio in verdicts:
        if search == "first page":
            verdict = "meets" if ratio <= TARGET else "MISSES"
            console.print(
                f"{backend}: first page, custom / built-in = {ratio:.2f}x "
                f"({verdict} the <= {TARGET:g}x target)"
            )
    if missed:
        console.print(f"{len(missed)} of {len(verdicts)} ratios miss the target.")
    if unused:
        console.print(
            f"The custom field's index is not used in {len(unused)} of "
            f"{sum(p[2] == 'custom' for p in plans)} custom-field plans (see above)."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
