"""Relaying the outbox: ``crm.outbox.deliver`` against a hand-written relay loop.

Both deliver the same pending events, in batches, to the same destinations:
a local HTTP receiver (one signed POST per event on a kept-alive connection)
and a local Redis server (one pipelined ``XADD`` per event, a round trip per
batch). The hand-written loop does the reads and writes a careful relay
needs and nothing else: claim a batch in one statement (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), commit, send, mark the batch delivered in one
statement, commit. pycrm also keeps per-record order, retry state and
per-relay progress.

Every timing is taken in this run, the two paths interleaved, and reported as
events per second and a ratio (pycrm time / hand-written time; target at most
1.5x).

    python benchmarks/relay_bench.py                 # SQLite (and PostgreSQL if configured)
    python benchmarks/relay_bench.py --quick         # smoke run
    PYCRM_TEST_REDIS_URL=redis://127.0.0.1:6379/0 python benchmarks/relay_bench.py
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa
from backends import postgres_crm, sqlite_crm
from rich.console import Console
from rich.table import Table

import pycrm
from pycrm.domain.ids import new_id
from pycrm.domain.outbox import OutboxMessage
from pycrm.relays import Relay
from pycrm.relays.webhook import WebhookRelay, sign

console = Console()
TARGET = Decimal("1.5")
SECRET = "relay-bench-secret-0123456789"
TENANT = "default"


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real webhook endpoint would

    def do_POST(self) -> None:  # http.server's name for the method
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def receiver() -> Iterator[str]:
    """A local HTTP server answering 204 to every POST; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def seed(crm: pycrm.CRM, events: int) -> None:
    """Write ``events`` pending outbox messages about ``events // 2`` records (not timed)."""
    store: Any = crm.store
    uow = store.begin(TENANT)
    now = datetime.now(UTC)
    rows = []
    for i in range(events):
        record = f"lead-{i // 2:06d}"
        id = new_id()
        payload = {
            "id": id,
            "name": "lead_captured" if i % 2 == 0 else "lead_assigned",
            "tenant_id": TENANT,
            "actor_id": "system",
            "occurred_at": now.isoformat(),
            "record_type": "lead",
            "record_id": record,
            "before": None,
            "after": {"name": f"Lead {i}", "email": f"lead{i}@example.com", "source": "web"},
        }
        rows.append(
            OutboxMessage(
                id=id,
                tenant_id=TENANT,
                created_at=now,
                created_by="system",
                updated_at=now,
                updated_by="system",
                name=str(payload["name"]),
                payload=payload,
                record_id=record,
            )
        )
    uow.repo(OutboxMessage).add_many(rows)
    uow.commit()


def reset(crm: pycrm.CRM) -> None:
    """Make every event pending again (not timed)."""
    table: sa.Table = crm.store.schema.codec(OutboxMessage).table  # type: ignore[attr-defined]
    with crm.engine.begin() as conn:
        conn.execute(
            sa.update(table).values(
                delivered=False,
                delivered_at=None,
                claimed_by=None,
                claimed_until=None,
                sent_to=[],
                attempts=0,
            )
        )


class HandWritten:
    """The baseline: claim, send, mark, in Core statements on pycrm's outbox table."""

    def __init__(self, crm: pycrm.CRM, batch: int, send: Callable[[Sequence[Any]], None]) -> None:
        t: sa.Table = crm.store.schema.codec(OutboxMessage).table  # type: ignore[attr-defined]
        self._engine = crm.engine
        self._send = send
        pick = (
            sa.select(t.c.id)
            .where(t.c.tenant_id == TENANT, t.c.delivered.is_(False))
            .order_by(t.c.id)
            .limit(batch)
        )
        if crm.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
            picked = pick.cte("picked").prefix_with("MATERIALIZED")
            among = t.c.id.in_(sa.select(picked.c.id))
        else:
            among = t.c.id.in_(pick.scalar_subquery())
        self._claim = (
            sa.update(t)
            .where(t.c.tenant_id == TENANT, among)
            .values(claimed_by="hand", claimed_until=sa.bindparam("until"))
            .returning(t.c.id, t.c.name, t.c.payload)
        )
        self._mark = (
            sa.update(t)
            .where(t.c.tenant_id == TENANT, t.c.id.in_(sa.bindparam("ids", expanding=True)))
            .values(delivered=True, delivered_at=sa.bindparam("now"), claimed_by=None)
        )

    def run(self) -> int:
        """Deliver everything pending; return how many."""
        done = 0
        while True:
            now = datetime.now(UTC)
            with self._engine.begin() as conn:
                rows = conn.execute(self._claim, {"until": now + timedelta(minutes=1)}).all()
            if not rows:
                return done
            self._send(rows)
            with self._engine.begin() as conn:
                conn.execute(self._mark, {"ids": [r.id for r in rows], "now": now})
            done += len(rows)


def http_sender(url: str) -> Callable[[Sequence[Any]], None]:
    """POST each event, signed, on one kept-alive connection."""
    parts = url.split("/", 3)
    host, port = parts[2].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    key = SECRET.encode()

    def send(rows: Sequence[Any]) -> None:
        for row in rows:
            body = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":")).encode()
            stamp = int(time.time())
            digest = hmac.new(key, str(stamp).encode() + b"." + body, hashlib.sha256).hexdigest()
            connection.request(
                "POST",
                "/" + parts[3],
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "Pycrm-Event": row.name,
                    "Pycrm-Event-Id": row.id,
                    "Pycrm-Signature": f"t={stamp},v1={digest}",
                },
            )
            response = connection.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(response.status)

    assert sign(key, 1, b"x")  # the same signature scheme as the relay
    return send


def redis_sender(url: str, stream: str) -> Callable[[Sequence[Any]], None]:
    """XADD each event, one pipeline per batch."""
    import redis

    client = redis.Redis.from_url(url)

    def send(rows: Sequence[Any]) -> None:
        pipe = client.pipeline(transaction=False)
        for row in rows:
            body = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":")).encode()
            pipe.xadd(
                stream,
                {
                    "id": row.id,
                    "name": row.name,
                    "tenant": TENANT,
                    "record_id": row.payload["record_id"],
                    "payload": body,
                },
            )
        pipe.execute()

    return send


def measure(
    crm: pycrm.CRM, events: int, batch: int, rounds: int, destinations: dict[str, Any]
) -> list[tuple[str, float, float]]:
    """Per destination: (name, pycrm seconds, hand-written seconds), medians of ``rounds``."""
    seed(crm, events)
    results = []
    for name, (relay, baseline) in destinations.items():
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(rounds):
            for path in ("pycrm", "hand"):  # interleaved: a slow moment hits both
                reset(crm)
                start = time.perf_counter()
                if path == "pycrm":
                    done = 0
                    while True:
                        report = crm.outbox.deliver([relay], limit=batch)
                        done += report.delivered
                        if report.claimed == 0:
                            break
                    ours.append(time.perf_counter() - start)
                else:
                    done = HandWritten(crm, batch, baseline).run()
                    theirs.append(time.perf_counter() - start)
                if done != events:
                    raise AssertionError(f"{path} delivered {done} of {events} to {name}")
        results.append((name, statistics.median(ours), statistics.median(theirs)))
    return results


def destinations(url: str, redis_url: str | None) -> dict[str, tuple[Relay, Any]]:
    """The relays and their hand-written senders."""
    found: dict[str, tuple[Relay, Any]] = {
        "webhook": (WebhookRelay(url=url, secret=SECRET, name="bench"), http_sender(url))
    }
    if redis_url:
        from pycrm.relays.redis_streams import RedisStreamRelay

        stream = f"relay-bench-{uuid.uuid4().hex[:8]}"
        found["redis"] = (
            RedisStreamRelay(url=redis_url, stream=stream + ":{tenant}"),
            redis_sender(redis_url, f"{stream}:{TENANT}"),
        )
    return found


def main() -> None:
    """Print events per second and ratios per backend and destination."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--seed", type=int, default=0, help="unused; shared by all benchmarks")
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds = 400, 1
    postgres = os.environ.get("PYCRM_TEST_POSTGRES_URL")
    redis_url = os.environ.get("PYCRM_TEST_REDIS_URL")
    table = Table(
        title="Relaying the outbox",
        caption=f"{args.events:,} events, batches of {args.batch}; "
        f"ratio = pycrm time / hand-written time (target <= {TARGET}x)",
    )
    for column in ("backend", "destination", "pycrm ev/s", "hand ev/s", "ratio"):
        table.add_column(column, justify="right" if "/" in column or column == "ratio" else "left")
    worst = Decimal(0)
    backends: list[tuple[str, Callable[[], Any]]] = [("sqlite", sqlite_crm)]
    if postgres:
        backends.append(("postgresql", lambda: postgres_crm(postgres)))
    with receiver() as url:
        for backend, opened in backends:
            with opened() as crm:
                found = destinations(url, redis_url)
                for name, ours, theirs in measure(crm, args.events, args.batch, args.rounds, found):
                    ratio = Decimal(ours / theirs).quantize(Decimal("0.01"))
                    worst = max(worst, ratio)
                    style = "" if ratio <= TARGET else "[red]"
                    table.add_row(
                        backend,
                        name,
                        f"{args.events / ours:,.0f}",
                        f"{args.events / theirs:,.0f}",
                        f"{style}{ratio}x",
                    )
    console.print(table)
    if not redis_url:
        console.print("Redis skipped: set PYCRM_TEST_REDIS_URL to include it.")
    console.print(f"worst ratio {worst}x (target <= {TARGET}x)")


if __name__ == "__main__":
    main()
