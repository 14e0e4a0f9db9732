"""What a team-scoped read costs: listing customers as a team member vs as an admin.

Loads 100,000 customers (``--quick``: 10,000) into a SQLite file through the
repositories inside one unit of work, owned round-robin by 50 users in 10
teams of 5. Then lists the first page of customers (``s.customers.search``,
same page size, same query) as

* an admin, whose policy gives every customer (no permission filter), and
* a user whose only role gives ``read`` on customers with scope ``team``
  (the permission filter ``owner_id IN (their 5 team members)``, 10% of rows),

measured alternately in the same run, and prints team/admin ratios; the
target is at most 1.5×.

DEFAULT_POLICY lets everyone read every customer, and the widest scope wins,
so extending it cannot narrow anyone to a team: the benchmark builds its
policy as ``DEFAULT_POLICY`` without the everyone-reads-customers grant,
``.extend({...})``-ed with a ``team_reader`` role that reads customers of its
team, and checks that the team user's filter really is a team filter.

    python benchmarks/permissions_bench.py [--quick] [--customers N] [--repeat R] [--db PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrm
from pycrm.domain.customers import Customer
from pycrm.domain.permissions import DEFAULT_POLICY, Policy
from pycrm.domain.query import In

USERS, TEAMS, PAGE = 50, 10, 50
TARGET = 1.5


def bench_policy() -> Policy:
    """DEFAULT_POLICY, but customers are read per team by the ``team_reader`` role."""
    everyone_reads_customers = [
        g
        for g in DEFAULT_POLICY.grants
        if "*" in g.roles and "customer" in g.resources and "read" in g.actions
    ]
    assert everyone_reads_customers, "DEFAULT_POLICY changed: revisit this benchmark"
    kept = tuple(g for g in DEFAULT_POLICY.grants if g not in everyone_reads_customers)
    base = Policy(kept, DEFAULT_POLICY.fields)
    return base.extend(
        {
            "grants": [
                {"roles": ["*"], "resources": ["contact", "assessment"], "actions": ["read"],
                 "scope": "all"},
                {"roles": ["team_reader"], "resources": ["customer"], "actions": ["read"],
                 "scope": "team"},
            ]
        }
    )  # fmt: skip


def load(crm: pycrm.CRM, customers: int) -> tuple[str, str]:
    """Create the org and the customers; return (admin id, team reader id)."""
    with crm.session(actor=crm.system_actor) as s:
        s.org.create_department("bench", "Benchmark")
        admin = s.org.create_user(
            name="Admin", email="admin@bench.example", department="admin", roles=["admin"]
        )
        teams = [s.org.create_team(f"Team {t:02d}", "bench") for t in range(TEAMS)]
        owners = [
            s.org.create_user(
                name=f"Owner {u:02d}",
                email=f"owner{u:02d}@bench.example",
                department="bench",
                roles=["team_reader"],
                team_ids=[teams[u % TEAMS].id],
            )
            for u in range(USERS)
        ]
    started = time.perf_counter()
    with crm.session(actor=crm.system_actor) as s:  # one unit of work, straight to the repository
        repo = s._uow.repo(Customer)
        batch: list[Customer] = []
        for i in range(customers):
            owner = owners[i % USERS].id
            batch.append(Customer(**s._stamp(name=f"Customer {i:06d} GmbH", owner_id=owner)))
            if len(batch) == 5000:
                repo.add_many(batch)
                batch = []
        if batch:
            repo.add_many(batch)
    print(f"loaded {customers:,} customers in {time.perf_counter() - started:.1f}s")
    return admin.id, owners[0].id


def timed(call: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def request(crm: pycrm.CRM, user: str, operation: Callable[[Any], Any]) -> None:
    """One call in a session of its own, as a web request would make it."""
    with crm.session(actor=user) as s:
        operation(s)


OPERATIONS: dict[str, Callable[[Any], Any]] = {
    "first page": lambda s: s.customers.search(limit=PAGE),
    "page 20": lambda s: s.customers.search(limit=PAGE, offset=19 * PAGE),
    "name search": lambda s: s.customers.search("0012", limit=PAGE),
    "count": lambda s: s.customers.count(),
}


def measure(
    crm: pycrm.CRM, users: dict[str, str], repeat: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Median seconds per mode, operation and user, alternating users so drift hits both alike.

    ``request``: a fresh session per call, as a web request would (the session works out
    who is in the actor's teams); ``in session``: repeated calls in one open session.
    """
    results: dict[str, dict[str, dict[str, float]]] = {"request": {}, "in session": {}}
    for op, operation in OPERATIONS.items():
        per_request: dict[str, list[float]] = {who: [] for who in users}
        in_session: dict[str, list[float]] = {who: [] for who in users}
        sessions = {who: crm.session(actor=user) for who, user in users.items()}
        try:
            for who, user in users.items():  # warm up caches, the pool and each session
                request(crm, user, operation)
                operation(sessions[who])
            for _ in range(repeat):
                for who, user in users.items():
                    per_request[who].append(timed(request, crm, user, operation))
                    in_session[who].append(timed(operation, sessions[who]))
        finally:
            for session in sessions.values():
                session.rollback()
        results["request"][op] = {w: statistics.median(t) for w, t in per_request.items()}
        results["in session"][op] = {w: statistics.median(t) for w, t in in_session.items()}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 customers, fewer repeats")
    parser.add_argument("--customers", type=int, help="how many customers (default 100,000)")
    parser.add_argument("--repeat", type=int, help="timed runs per operation and user")
    parser.add_argument("--db", type=Path, help="SQLite file to use (default: a temporary one)")
    args = parser.parse_args()
    customers = args.customers or (10_000 if args.quick else 100_000)
    repeat = args.repeat or (15 if args.quick else 40)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.db"
        if path.exists():
            path.unlink()
        crm = pycrm.connect(f"sqlite:///{path}", policy=bench_policy())
        try:
            admin, reader = load(crm, customers)
            with crm.session(actor=reader) as s:
                where = s._guard.filter(Customer)
                visible = s.customers.count()
            assert isinstance(where, In), f"expected a team filter, got {where!r}"
            assert visible == customers // TEAMS, visible
            with crm.session(actor=admin) as s:
                assert s._guard.filter(Customer) is None
                assert s.customers.count() == customers
            print(
                f"team reader sees {visible:,} of {customers:,} customers "
                f"(filter: owner_id IN {len(where.values)} team members); admin sees all"
            )
            results = measure(crm, {"admin": admin, "team": reader}, repeat)
        finally:
            crm.close()

    print(f"\nSQLite, {customers:,} customers, page size {PAGE}, median of {repeat} runs")
    print(f"{'mode':<12}{'operation':<14}{'admin ms':>10}{'team ms':>10}{'team/admin':>12}")
    for mode, by_op in results.items():
        for op, by_user in by_op.items():
            ratio = by_user["team"] / by_user["admin"]
            print(
                f"{mode:<12}{op:<14}{by_user['admin'] * 1000:>10.2f}"
                f"{by_user['team'] * 1000:>10.2f}{ratio:>11.2f}×"
            )
    first = results["request"]["first page"]
    ratio = first["team"] / first["admin"]
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print(
        f"\nfirst page per request: team-scoped / unfiltered = {ratio:.2f}× "
        f"({verdict} the ≤ {TARGET}× target)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
