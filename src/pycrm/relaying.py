"""``pycrm relay`` (the long-running relay worker) and ``pycrm outbox`` (its dead letters).

The worker loops over its tenants (``--tenant``, repeatable, or every tenant
that holds data, looked up again each round): it delivers batches until a
tenant has nothing due, then sleeps ``--poll`` seconds. SIGTERM or SIGINT
lets the batch in hand finish and settle, then the worker exits 0. Every
``--health-every`` seconds it writes one line to standard error, and with
``--health-file`` it also touches that file (a liveness probe checks its age).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape

from pycrm.crm import CRM, connect
from pycrm.outbox import worker_name
from pycrm.relays import Relay, RetryPolicy, relays_from_config
from pycrm.terminal import Failure, print_json

__all__ = ["run_outbox", "run_relay"]

_PURGE_EVERY = 3600.0


def _tenants(crm: CRM, chosen: list[str] | None) -> list[str]:
    return list(chosen) if chosen else crm.store.tenants()


def _close(relays: list[Relay]) -> None:
    for relay in relays:
        close = getattr(relay, "close", None)
        if callable(close):
            close()


def run_relay(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Relay events until stopped (or one round with ``--once``); print a summary."""
    if args.batch < 1 or args.batch > 10_000:
        raise Failure("--batch must be from 1 to 10,000")
    if args.poll <= 0 or args.lease <= 0:
        raise Failure("--poll and --lease must be positive")
    relays = relays_from_config(args.config)
    retry = RetryPolicy(max_attempts=args.max_attempts)
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        err.print("stopping after the batch in hand", highlight=False, soft_wrap=True)
        stop.set()

    previous = (
        {s: signal.signal(s, stopping) for s in (signal.SIGTERM, signal.SIGINT)}
        if threading.current_thread() is threading.main_thread()
        else {}  # signals reach only the main thread: elsewhere the caller stops the process
    )
    totals: Counter[str] = Counter()
    window: Counter[str] = Counter()
    me = worker_name()
    last_health = last_purge = time.monotonic()
    try:
        with connect(args.db) as crm:
            err.print(
                f"relay {me}: {len(relays)} relays ({', '.join(r.name for r in relays)}), "
                f"batch {args.batch}, poll {args.poll} s",
                highlight=False,
                soft_wrap=True,
            )
            if args.purge_after is not None:
                _purge(crm, args, err)
            while not stop.is_set():
                for tenant in _tenants(crm, args.tenant):
                    while not stop.is_set():
                        report = crm.outbox.deliver(
                            relays,
                            tenant=tenant,
                            limit=args.batch,
                            worker=me,
                            lease=timedelta(seconds=args.lease),
                            retry=retry,
                        )
                        for key in ("delivered", "failed", "dead"):
                            totals[key] += getattr(report, key)
                            window[key] += getattr(report, key)
                        # A full batch may have more behind it, and a delivered event
                        # may have let its record's next one become due.
                        if report.claimed < args.batch and not report.delivered:
                            break
                now = time.monotonic()
                if now - last_health >= args.health_every:
                    _health(crm, args, err, window, now - last_health)
                    window.clear()
                    last_health = now
                if args.purge_after is not None and now - last_purge >= _PURGE_EVERY:
                    _purge(crm, args, err)
                    last_purge = now
                if args.once:
                    break
                stop.wait(args.poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _close(relays)
    summary = {key: totals[key] for key in ("delivered", "failed", "dead")}
    if args.json:
        print_json(summary)
    else:
        out.print(
            f"relayed: {summary['delivered']:,} delivered, {summary['failed']:,} to retry, "
            f"{summary['dead']:,} dead-lettered",
            highlight=False,
        )
    return 0


def _health(
    crm: CRM, args: argparse.Namespace, err: Console, window: Counter[str], seconds: float
) -> None:
    pending = dead = 0
    oldest: float | None = None
    now = crm.clock.now()
    for tenant in _tenants(crm, args.tenant):
        stats = crm.outbox.stats(tenant=tenant)
        pending += stats.pending
        dead += stats.dead
        if stats.oldest_pending_at is not None:
            age = (now - stats.oldest_pending_at).total_seconds()
            oldest = age if oldest is None else max(oldest, age)
    lag = "nothing pending" if oldest is None else f"oldest pending {oldest:,.1f} s"
    err.print(
        f"relay ok: {window['delivered']:,} delivered, {window['failed']:,} to retry, "
        f"{window['dead']:,} dead-lettered in {seconds:,.0f} s; {pending:,} pending ({lag}), "
        f"{dead:,} dead letters",
        highlight=False,
        soft_wrap=True,
    )
    if args.health_file:
        Path(args.health_file).touch()


def _purge(crm: CRM, args: argparse.Namespace, err: Console) -> None:
    age = timedelta(days=args.purge_after)
    gone = sum(crm.outbox.purge(age, tenant=t) for t in _tenants(crm, args.tenant))
    if gone:
        err.print(
            f"purged {gone:,} delivered events older than {args.purge_after} days",
            highlight=False,
            soft_wrap=True,
        )


def run_outbox(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``pycrm outbox stats | dead | replay | purge``."""
    with connect(args.db) as crm:
        tenant = args.tenant
        if args.outbox_command == "stats":
            stats = crm.outbox.stats(tenant=tenant)
            data: dict[str, Any] = {
                "tenant": stats.tenant,
                "pending": stats.pending,
                "retrying": stats.retrying,
                "dead": stats.dead,
                "oldest_pending_at": stats.oldest_pending_at.isoformat()
                if stats.oldest_pending_at
                else None,
            }
            if args.json:
                print_json(data)
            else:
                out.print(
                    f"{escape(stats.tenant)}: {stats.pending:,} pending "
                    f"({stats.retrying:,} retrying), {stats.dead:,} dead letters",
                    highlight=False,
                )
            return 0
        if args.outbox_command == "dead":
            letters = crm.outbox.dead_letters(tenant=tenant, limit=args.limit)
            rows = [
                {
                    "id": m.id,
                    "name": m.name,
                    "record_id": m.record_id,
                    "attempts": m.attempts,
                    "dead_at": m.dead_at.isoformat() if m.dead_at else None,
                    "last_error": m.last_error,
                    "sent_to": list(m.sent_to),
                }
                for m in letters
            ]
            if args.json:
                print_json(rows)
            else:
                for row in rows:
                    out.print(
                        f"{row['id']}  {row['name']}  {row['attempts']} attempts  "
                        f"{escape(str(row['last_error']))}",
                        highlight=False,
                        soft_wrap=True,
                    )
                err.print(f"{len(rows):,} dead letters", highlight=False)
            return 0
        if args.outbox_command == "replay":
            ids = list(args.ids)
            if args.all:
                ids += [m.id for m in crm.outbox.dead_letters(tenant=tenant, limit=10_000)]
            if not ids:
                raise Failure("give event ids or --all")
            revived = crm.outbox.replay(ids, tenant=tenant)
            out.print(f"{revived:,} events pending again", highlight=False)
            return 0
        gone = crm.outbox.purge(timedelta(days=args.older_than), tenant=tenant)
        out.print(f"purged {gone:,} delivered events", highlight=False)
        return 0
