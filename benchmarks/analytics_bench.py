"""Analytics on many deals: pycrm's reports against hand-written SQLAlchemy aggregates.

Loads ``--deals`` deals (default 1,000,000; ``--quick``: 50,000) into a fresh
SQLite file, in bulk through pycrm's own deals table (rows made by pycrm's
codec from real ``Deal`` records, so pycrm reads them as its own), spread over
20 owners, 18 months of expected close dates, the four open stages, won and
lost. Then, per report:

* ``forecast``: ``s.analytics.forecast()`` (open pipeline, weighted pipeline
  and won amount per month of expected close and owner), and
* ``win rate``: ``s.analytics.win_rate(by="owner")`` (won, lost and the mean
  sales cycle of won deals per owner),

against one hand-written SQLAlchemy Core ``GROUP BY`` of the same figures on
the same table. An untimed pass checks both give the same numbers (the run
fails if not); then the two paths take turns, ``--repeat`` times each, and
the medians and their ratio are printed (target: pycrm ≤ 1.3× the baseline).

Peak memory: each report also runs under ``tracemalloc`` on the full table
and on a tenth of it (a second tenant holding 10 % of the rows), and the
ratio of the peaks is printed. Rows never reach Python, so it stays near 1×.

    python benchmarks/analytics_bench.py [--quick] [--deals N] [--repeat R] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Any

import sqlalchemy as sa
from backends import sqlite_crm

import pycrm
from pycrm.adapters.sqlalchemy.store import SqlStore
from pycrm.domain.deals import Deal, DealStatus
from pycrm.domain.ids import new_id
from pycrm.domain.money import Money

TARGET = 1.3
OWNERS = 20
STAGES = (("qualification", 10), ("needs_analysis", 25), ("proposal", 50), ("negotiation", 75))
START = datetime(2025, 1, 1, tzinfo=UTC)


def load(crm: pycrm.CRM, tenant: str, deals: int, rng: random.Random) -> list[str]:
    """Bulk-load ``deals`` deals into ``tenant``; return the owner ids."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        owners = [
            s.org.create_user(f"Owner {i:02d}", f"owner{i:02d}@bench.example", "sales").id
            for i in range(OWNERS)
        ]
        customer = s.customers.create("Bench GmbH")
        pipeline = s.deals.pipeline()
        template = Deal(
            **s.stamp(
                name="Deal",
                customer_id=customer.id,
                pipeline_id=pipeline.id,
                stage="qualification",
                probability=10,
                amount=Money.of("1", "EUR"),
            )
        )
    store = crm.store
    assert isinstance(store, SqlStore)
    codec = store.schema.codec(Deal)
    base = codec.to_row(template)
    rows: list[dict[str, Any]] = []
    with store.engine.begin() as connection:
        for _ in range(deals):
            created = START + timedelta(minutes=rng.randrange(0, 540 * 24 * 60))
            roll = rng.random()
            if roll < 0.2:
                status, stage, probability = DealStatus.WON, "won", 100
                closed: datetime | None = created + timedelta(hours=rng.randrange(1, 24 * 120))
            elif roll < 0.35:
                status, stage, probability = DealStatus.LOST, "lost", 0
                closed = created + timedelta(hours=rng.randrange(1, 24 * 120))
            else:
                status, closed = DealStatus.OPEN, None
                stage, probability = rng.choice(STAGES)
            row = dict(base)
            row.update(
                id=new_id(),
                owner_id=rng.choice(owners),
                status=status.value,
                stage=stage,
                probability=probability,
                amount_minor=rng.randrange(100_00, 250_000_00),
                expected_close=(created + timedelta(days=rng.randrange(10, 120))).date(),
                created_at=created.replace(tzinfo=None),
                closed_at=None if closed is None else closed.replace(tzinfo=None),
            )
            rows.append(row)
            if len(rows) == 20_000:
                connection.execute(codec.table.insert(), rows)
                rows = []
        if rows:
            connection.execute(codec.table.insert(), rows)
    return owners


# -- the hand-written baselines ------------------------------------------------


class Baseline:
    """The same figures, as one hand-written GROUP BY each."""

    def __init__(self, crm: pycrm.CRM, tenant: str) -> None:
        store = crm.store
        assert isinstance(store, SqlStore)
        self.engine = store.engine
        t = store.schema.codec(Deal).table
        opened = t.c.status == DealStatus.OPEN.value
        won = t.c.status == DealStatus.WON.value
        lost = t.c.status == DealStatus.LOST.value
        month = sa.func.strftime("%Y-%m", t.c.expected_close)

        def when(condition: Any, value: Any) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, value))), 0)

        self.forecast_query = (
            sa.select(
                month,
                t.c.owner_id,
                t.c.amount_currency,
                when(opened, t.c.amount_minor),
                when(opened, t.c.amount_minor * t.c.probability),
                when(won, t.c.amount_minor),
            )
            .where(t.c.tenant_id == tenant, t.c.expected_close.is_not(None))
            .group_by(month, t.c.owner_id, t.c.amount_currency)
        )
        seconds = (sa.func.julianday(t.c.closed_at) - sa.func.julianday(t.c.created_at)) * 86400.0
        self.win_rate_query = (
            sa.select(
                t.c.owner_id,
                sa.func.count(sa.case((won, 1))),
                sa.func.count(sa.case((lost, 1))),
                sa.func.avg(sa.case((won, seconds))),
            )
            .where(t.c.tenant_id == tenant, t.c.status.in_([DealStatus.WON.value, DealStatus.LOST.value]))
            .group_by(t.c.owner_id)
        )  # fmt: skip

    def forecast(self) -> dict[tuple[str, str], tuple[Money, Money, Money]]:
        with self.engine.connect() as connection:
            rows = connection.execute(self.forecast_query).all()
        out = {}
        for period, owner, currency, pipeline, weighted, won in rows:
            cents = int((Decimal(weighted) / 100).to_integral_value(ROUND_HALF_EVEN))
            out[(period, owner)] = (
                Money.from_minor(pipeline, currency),
                Money.from_minor(cents, currency),
                Money.from_minor(won, currency),
            )
        return out

    def win_rate(self) -> dict[str, tuple[int, int, float | None]]:
        with self.engine.connect() as connection:
            rows = connection.execute(self.win_rate_query).all()
        return {
            owner: (won, lost, None if cycle is None else round(cycle / 86400, 2))
            for owner, won, lost, cycle in rows
        }


# -- pycrm's side, as the same shapes ------------------------------------------


def pycrm_forecast(
    crm: pycrm.CRM, tenant: str
) -> dict[tuple[str, str], tuple[Money, Money, Money]]:
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.forecast()
    return {(r.period, r.owner_id or ""): (r.pipeline, r.weighted, r.won) for r in rows}


def pycrm_win_rate(crm: pycrm.CRM, tenant: str) -> dict[str, tuple[int, int, float | None]]:
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.win_rate(by="owner")
    return {r.group or "": (r.won, r.lost, r.avg_cycle_days) for r in rows}


def close(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    """Same keys and figures (cycle days may differ in the last rounding step)."""
    if a.keys() != b.keys():
        return False
    for key, left in a.items():
        right = b[key]
        for x, y in zip(left, right, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > 0.011:
                    return False
            elif x != y:
                return False
    return True


def median_ms(call: Callable[[], Any], samples: list[float]) -> None:
    started = time.perf_counter()
    call()
    samples.append((time.perf_counter() - started) * 1000)


def peak_kib(call: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def measure(name: str, ours: Callable[[str], Any], theirs: Callable[[], Any], repeat: int) -> bool:
    """Time both paths in turns, measure pycrm's peak memory, print a line; True if on target."""
    mine: list[float] = []
    base: list[float] = []
    for i in range(repeat):
        pair = [(lambda: ours("big"), mine), (theirs, base)]
        for call, samples in pair if i % 2 == 0 else reversed(pair):
            median_ms(call, samples)
    ratio = statistics.median(mine) / statistics.median(base)
    small, big = peak_kib(lambda: ours("small")), peak_kib(lambda: ours("big"))
    verdict = "OK" if ratio <= TARGET else f"MISSES ≤ {TARGET}×"
    print(
        f"{name:10} {statistics.median(mine):10.1f} {statistics.median(base):12.1f} "
        f"{ratio:6.2f}×  {small:15.0f} {big:15.0f} {big / small:6.2f}×  {verdict}"
    )
    return ratio <= TARGET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 deals, fewer repeats")
    parser.add_argument("--deals", type=int, help="how many deals (default 1,000,000)")
    parser.add_argument("--repeat", type=int, help="timed runs per path and report")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    deals = args.deals or (50_000 if args.quick else 1_000_000)
    repeat = args.repeat or (5 if args.quick else 9)
    rng = random.Random(args.seed)
    with sqlite_crm() as crm:
        started = time.perf_counter()
        load(crm, "big", deals, rng)
        load(crm, "small", deals // 10, rng)
        print(f"loaded {deals:,} + {deals // 10:,} deals in {time.perf_counter() - started:.0f}s")
        store = crm.store
        assert isinstance(store, SqlStore)
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        reports: dict[str, tuple[Callable[[str], Any], Callable[[Baseline], Any]]] = {
            "forecast": (lambda t: pycrm_forecast(crm, t), Baseline.forecast),
            "win rate": (lambda t: pycrm_win_rate(crm, t), Baseline.win_rate),
        }
        baselines = {"big": Baseline(crm, "big")}
        print(f"\nSQLite, {deals:,} deals, median of {repeat} runs each, paths interleaved")
        print(f"{'report':10} {'pycrm ms':>10} {'baseline ms':>12} {'ratio':>7}  "
              f"{'peak KiB (10%)':>15} {'peak KiB (all)':>15} {'growth':>7}")  # fmt: skip
        failed = False
        for name, (ours, theirs) in reports.items():
            if not close(ours("big"), theirs(baselines["big"])):
                print(f"!! {name}: pycrm and the baseline disagree")
                return 1
            failed |= not measure(name, ours, partial(theirs, baselines["big"]), repeat)
    print(
        "\nratio: pycrm / hand-written aggregate (target ≤ 1.3×); growth: peak Python memory "
        "for all the rows / for a tenth of them (rows never reach Python, so ~1×)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
