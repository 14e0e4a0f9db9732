"""One relay worker process of the relay tests (run as a script, not collected).

Usage: ``python relay_worker.py URL SCHEMA HOOK SECRET WORKER BATCH LEASE DELAY READY START``.
It connects to the shared database, touches READY, waits for START to exist
(so every worker begins at once), then calls ``crm.outbox.deliver`` with one
webhook relay to HOOK (each request carries ``X-Worker: WORKER``) until
nothing is due and nothing is pending, and prints one JSON line. DELAY > 0
waits that many seconds before each event, so a test can kill the worker in
the middle of a batch.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pycrm
from pycrm.relays import Envelope
from pycrm.relays.webhook import WebhookRelay


class SlowRelay:
    """The webhook relay, one event at a time with a pause before each."""

    def __init__(self, inner: WebhookRelay, delay: float) -> None:
        self.name = inner.name
        self._inner = inner
        self._delay = delay

    def accepts(self, envelope: Envelope) -> bool:
        return self._inner.accepts(envelope)

    def send(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for envelope in envelopes:
            time.sleep(self._delay)
            outcomes.extend(self._inner.send([envelope]))
        return outcomes


def main() -> None:
    url, schema, hook, secret, worker, batch, lease, delay, ready, start = sys.argv[1:11]
    crm = pycrm.connect(url, schema=schema or None, load_plugins=False)
    webhook = WebhookRelay(url=hook, name="hook", secret=secret, headers={"X-Worker": worker})
    relay = SlowRelay(webhook, float(delay)) if float(delay) > 0 else webhook
    crm.outbox.stats()  # warm up: connection, tables
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not Path(start).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the start signal never came")
        time.sleep(0.002)
    began = time.time()
    claimed = delivered = batches = 0
    while True:
        if time.monotonic() > deadline:
            raise SystemExit("the outbox did not drain within a minute")
        report = crm.outbox.deliver(
            [relay], limit=int(batch), worker=worker, lease=timedelta(seconds=float(lease))
        )
        claimed += report.claimed
        delivered += report.delivered
        batches += 1 if report.claimed else 0
        if report.claimed == 0:
            if crm.outbox.stats().pending == 0:
                break
            time.sleep(0.02)  # another worker holds the due events (or their lease)
    ended = time.time()
    webhook.close()
    crm.close()
    result = {
        "worker": worker,
        "claimed": claimed,
        "delivered": delivered,
        "batches": batches,
        "began": began,
        "ended": ended,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
