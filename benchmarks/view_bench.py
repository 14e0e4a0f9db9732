"""Customer 360 view: pycrm's ``customers.view()`` against hand-written SQLAlchemy Core.

Both read the same data from the same tables on the same engine: the customer,
its active contacts by name, its 20 most recent activities (without other
users' private ones), the current assessment per (attribute, source), and its
leads, deals, contracts, quotes (the latest version of each, without the
costs and margins sales may not see), receivables and tickets, as the view
does. The
baseline is what an application would write by hand: a few Core selects and
plain dicts, with the viewer's permissions written in as WHERE clauses.

Every timing is taken in this run, the two paths interleaved, and reported as
a ratio, so the figure is comparable across machines.

    python benchmarks/view_bench.py                # SQLite (and PostgreSQL if configured)
    python benchmarks/view_bench.py --quick        # smoke run for CI
    PYCRM_TEST_POSTGRES_URL=postgresql+psycopg://... python benchmarks/view_bench.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from backends import postgres_crm, sqlite_crm
from rich.console import Console
from rich.table import Table

import pycrm
from pycrm.domain.contracts import Contract
from pycrm.domain.deals import Deal
from pycrm.domain.documents import Document
from pycrm.domain.leads import Lead
from pycrm.domain.quotes import Quote
from pycrm.domain.receivables import Receivable
from pycrm.domain.tickets import Ticket

console = Console()
ACTIVITIES_SHOWN = 20  # the view's default
CHUNK = 50  # customers per batch of setup sessions
WORDS = ("amber", "birch", "cobalt", "delta", "ember", "fjord", "granite", "harbor", "iris")


# -- setup ---------------------------------------------------------------------


def populate(
    crm: pycrm.CRM, customers: int, contacts: int, activities: int, rng: random.Random
) -> tuple[str, list[str]]:
    """Create the data through pycrm's API; return the viewer's user id and the customer ids."""
    with crm.session(actor=crm.system_actor) as s:
        users = [
            s.org.create_user(name="Ana", email="ana@example.com", department="sales"),
            s.org.create_user(name="Ben", email="ben@example.com", department="sales"),
            s.org.create_user(name="Cleo", email="cleo@example.com", department="service"),
        ]
    now = datetime.now(UTC)
    ids: list[str] = []
    for start in range(0, customers, CHUNK):
        batch: list[tuple[str, list[str]]] = []
        with crm.session(actor=crm.system_actor) as s:
            for i in range(start, min(start + CHUNK, customers)):
                name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {i} GmbH"
                owner = rng.choice(users[:2]).id
                c = s.customers.create(name, owner_id=owner, on_duplicate="allow")
                people = [
                    s.contacts.create(
                        f"{rng.choice(WORDS).title()} Person{i}x{j}",
                        customer_id=c.id,
                        emails=[f"p{i}x{j}@example.com"],
                        on_duplicate="allow",
                    ).id
                    for j in range(contacts)
                ]
                if people and i % 5 == 0:  # some archived contacts, which the view leaves out
                    s.contacts.archive(people[0])
                s.customers.assess(c.id, "grade", rng.choice("ABC"), source="sales")
                s.customers.assess(c.id, "grade", rng.choice("ABC"), source="service")
                if i % 3 == 0:  # a newer rating supersedes the older one of its source
                    s.customers.assess(c.id, "grade", rng.choice("ABC"), source="sales")
                if i % 2 == 0:  # a deal and its quote; now and then a revised quote
                    amount = pycrm.Money.of(rng.randrange(1_000, 90_000), "EUR")
                    deal = s.deals.create("Order", customer_id=c.id, amount=amount, owner_id=owner)
                    line = {"description": "Machine", "unit_price": amount, "quantity": 1}
                    quote = s.quotes.draft(deal.id, lines=[line])
                    if i % 4 == 0:
                        s.quotes.revise(quote.id)
                batch.append((c.id, people))
        # Activities are authored by several users, some private, so the
        # visibility filter has rows to leave out.
        plan: dict[str, list[tuple[str, str | None]]] = {u.id: [] for u in users}
        for customer_id, people in batch:
            for _ in range(activities):
                contact = rng.choice(people) if people and rng.random() < 0.3 else None
                plan[rng.choice(users).id].append((customer_id, contact))
        for author, items in plan.items():
            with crm.session(actor=author) as s:
                for customer_id, contact in items:
                    s.activities.log(
                        rng.choice(["call", "email", "meeting", "note"]),
                        "Touch point",
                        body="Discussed the next order.",
                        customer_id=customer_id,
                        contact_id=contact,
                        occurred_at=now - timedelta(minutes=rng.randrange(1, 1_000_000)),
                        private=rng.random() < 0.15,
                    )
        # Files on every other customer, filed by an integration: open to all,
        # shared with sales only, or with service only (which the sales viewer
        # may not read); sometimes a new version supersedes the first.
        with crm.session(actor=crm.system_actor) as s:
            for customer_id, _ in batch[::2]:
                readers = rng.choice([None, ["sales"], ["service"]])
                doc = s.documents.attach(
                    "customer", customer_id, "offer.pdf", b"%PDF-1.4", readable_by=readers
                )
                if rng.random() < 0.3:
                    s.documents.new_version(doc.document_key, b"%PDF-1.5")
        ids.extend(c for c, _ in batch)
    return users[0].id, ids


# -- the hand-written baseline -------------------------------------------------


class Baseline:
    """The 360 view as an application would write it in SQLAlchemy Core.

    The statements are built once with bound parameters, as a careful
    application would; each view only executes them and makes dicts of the rows.
    """

    def __init__(
        self, crm: pycrm.CRM, viewer: str, department: str, tenant: str = "default"
    ) -> None:
        schema = crm.store.schema  # type: ignore[attr-defined]
        id: sa.BindParameter[str] = sa.bindparam("id")

        def select(cls: type, *where: Any, order: Any = (), columns: Any = None) -> sa.Select[Any]:
            table: sa.Table = schema.codec(cls).table
            query = sa.select(*(columns or [table])).where(table.c.tenant_id == tenant, *where)
            return query.order_by(*order, table.c.id)

        def by_customer(cls: type, *order: Any, newest: str = "created_at") -> sa.Select[Any]:
            table: sa.Table = schema.codec(cls).table
            return select(cls, table.c.customer_id == id, order=[table.c[newest].desc(), *order])

        cu, co = schema.codec(pycrm.Customer).table, schema.codec(pycrm.Contact).table
        ac, rc = schema.codec(pycrm.Activity).table, schema.codec(Receivable).table
        qu = schema.codec(Quote).table
        asm = schema.codec(pycrm.Assessment).table
        do, keys = schema.codec(Document).table, schema.match_keys
        self.customer = select(pycrm.Customer, cu.c.id == id)
        self.parts: dict[str, sa.Select[Any]] = {
            "contacts": select(
                pycrm.Contact,
                co.c.customer_id == id,
                co.c.status == "active",
                order=[co.c.name_key],
            ),
            "activities": select(
                pycrm.Activity,
                ac.c.customer_id == id,
                sa.or_(ac.c.private.is_(False), ac.c.author_id == viewer),
                order=[ac.c.occurred_at.desc(), ac.c.id.desc()],
            ).limit(ACTIVITIES_SHOWN),
            "assessments": by_customer(pycrm.Assessment, asm.c.id.desc(), newest="assessed_at"),
            "leads": by_customer(Lead),
            "deals": by_customer(Deal),
            "contracts": by_customer(Contract),
            # The latest version of each quote; sales may not see costs and margins.
            "quotes": select(
                Quote,
                qu.c.customer_id == id,
                qu.c.status != "superseded",
                order=[qu.c.created_at.desc()],
                columns=[
                    c for c in qu.c if c.name.split("_")[0] not in ("costs", "cost", "margin")
                ],
            ),
            # Sales sees only its own receivables, and not their payments.
            "receivables": select(
                Receivable,
                rc.c.customer_id == id,
                rc.c.owner_id == viewer,
                order=[rc.c.due, rc.c.instalment],
                columns=[c for c in rc.c if c.name not in ("payments", "overpaid")],
            ),
            "tickets": by_customer(Ticket, newest="opened_at"),
            # The latest version of each document filed on the customer that the
            # viewer wrote or that is shared with them, everyone or their department.
            "documents": select(
                Document,
                do.c.record_type == "customer",
                do.c.record_id == id,
                do.c.latest.is_(True),
                sa.or_(
                    do.c.created_by == viewer,
                    do.c.id.in_(
                        sa.select(keys.c.record_id).where(
                            keys.c.tenant_id == tenant,
                            keys.c.record_type == "document",
                            keys.c.kind == "reader",
                            keys.c.key.in_(["*", viewer, department]),
                        )
                    ),
                ),
                order=[do.c.created_at],
            ),
        }

    def view(self, conn: sa.Connection, id: str) -> dict[str, Any]:
        customer = conn.execute(self.customer, {"id": id}).mappings().first()
        if customer is None:
            raise LookupError(id)
        view: dict[str, Any] = {"customer": dict(customer)}
        for name, query in self.parts.items():
            view[name] = [dict(r) for r in conn.execute(query, {"id": id}).mappings()]
        current: dict[tuple[str, str], dict[str, Any]] = {}  # the latest rating per source
        for a in view["assessments"]:
            current.setdefault((a["attribute"], a["source"]), a)
        view["assessments"] = list(current.values())
        return view


def same_data(view: pycrm.Customer360, plain: dict[str, Any]) -> bool:
    """The two paths found the same records, in the same order."""

    def ids(records: Any) -> list[str]:
        return [r.id if hasattr(r, "id") else r["id"] for r in records]

    return view.customer.id == plain["customer"]["id"] and all(
        ids(getattr(view, part)) == ids(plain[part]) for part in plain if part != "customer"
    )


# -- measuring -----------------------------------------------------------------


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[int]]:
    """Count the SQL statements sent to the database inside the block."""
    count = [0]

    def tick(*_: Any) -> None:
        count[0] += 1

    sa.event.listen(engine, "before_cursor_execute", tick)
    try:
        yield count
    finally:
        sa.event.remove(engine, "before_cursor_execute", tick)


def measure(crm: pycrm.CRM, viewer: str, ids: list[str], repeat: int) -> dict[str, Any]:
    """Time each view ``repeat`` times per path, alternating paths; keep each view's best."""
    baseline = Baseline(crm, viewer, "sales")
    times: dict[str, list[float]] = {"pycrm": [], "baseline": []}
    with crm.session(actor=viewer) as s, crm.engine.connect() as conn:
        runs: dict[str, Callable[[str], Any]] = {
            "pycrm": s.customers.view,
            "baseline": lambda id: baseline.view(conn, id),
        }
        for id in ids:  # check both agree, warming caches (compiled SQL, pages) on the way
            assert same_data(s.customers.view(id), baseline.view(conn, id)), id
        counts = {}
        for name, run in runs.items():
            with statements(crm.engine) as n:
                run(ids[0])
            counts[name] = n[0]
        for i, id in enumerate(ids):
            best = {"pycrm": float("inf"), "baseline": float("inf")}
            # The best of a few tries drops the tries another process interrupted.
            for r in range(repeat):
                order = ("pycrm", "baseline") if (i + r) % 2 == 0 else ("baseline", "pycrm")
                for name in order:
                    start = time.perf_counter()
                    runs[name](id)
                    best[name] = min(best[name], time.perf_counter() - start)
            for name, t in best.items():
                times[name].append(t)
    return {"times": times, "statements": counts}


def summary(samples: list[float]) -> tuple[float, float, float]:
    """Median, 95th percentile and best, in milliseconds."""
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[18]
    return statistics.median(samples) * 1000, p95 * 1000, min(samples) * 1000


# -- backends ------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=120, help="customers to create")
    parser.add_argument("--contacts", type=int, default=5, help="contacts per customer")
    parser.add_argument("--activities", type=int, default=40, help="activities per customer")
    parser.add_argument("--samples", type=int, default=300, help="views to time per path")
    parser.add_argument("--repeat", type=int, default=3, help="tries per view; the best counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 small customers")
    args = parser.parse_args()
    if args.quick:  # setup through the API dominates: keep it to a few seconds
        args.customers, args.samples, args.contacts, args.activities = 50, 50, 3, 25
    backends: list[tuple[str, Callable[[], Any]]] = [("SQLite", sqlite_crm)]
    if url := os.environ.get("PYCRM_TEST_POSTGRES_URL"):
        backends.append(("PostgreSQL", lambda: postgres_crm(url)))

    table = Table(
        title="Customer 360 view: pycrm vs hand-written SQLAlchemy Core",
        caption="ms per view; ratio = pycrm / baseline",
    )
    for column in ("backend", "path", "median", "p95", "best", "SQL statements"):
        table.add_column(column, justify="left" if column in ("backend", "path") else "right")
    for label, open_crm in backends:
        rng = random.Random(args.seed)
        with open_crm() as crm:
            started = time.perf_counter()
            viewer, ids = populate(crm, args.customers, args.contacts, args.activities, rng)
            console.print(
                f"{label}: created {len(ids)} customers x ({args.contacts} contacts, "
                f"{args.activities} activities, 2-3 assessments) through the API "
                f"in {time.perf_counter() - started:.1f} s"
            )
            k = args.samples  # distinct customers while there are enough
            sample = rng.sample(ids, k) if k <= len(ids) else rng.choices(ids, k=k)
            result = measure(crm, viewer, sample, max(1, args.repeat))
        stats = {name: summary(t) for name, t in result["times"].items()}
        for name in ("pycrm", "baseline"):
            cells = [f"{v:.2f}" for v in stats[name]]
            table.add_row(label, name, *cells, str(result["statements"][name]))
        ratio = [f"{p / b:.2f}x" for p, b in zip(stats["pycrm"], stats["baseline"], strict=True)]
        ratio[0] = f"[bold]{ratio[0]}[/]"
        table.add_row(label, "[bold]ratio[/]", *ratio, "", end_section=True)
    console.print(table)
    console.print(
        f"{len(sample)} views per path, each the best of {args.repeat} tries, the paths "
        "interleaved, after an untimed pass that checks both return the same records."
    )


if __name__ == "__main__":
    main()
