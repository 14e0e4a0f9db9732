"""One worker process of the concurrency tests (run as a script, not collected).

Usage: ``python concurrency_worker.py JOB URL SCHEMA READY START TAG COUNT TARGET``.
It connects, warms up, touches READY, waits for START to exist (so every
worker begins at once), runs JOB COUNT times and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrm
from pycrm.errors import ConcurrencyError, CRMError


def read_modify_write(crm: pycrm.CRM, tag: str, count: int, target: str) -> dict[str, Any]:
    """Read a customer's size and write it back plus one, without ``version=``."""
    committed = conflicts = 0
    for _ in range(count):
        try:
            with crm.session(crm.system_actor) as s:
                customer = s.customers.get(target)
                time.sleep(0.001)  # widen the window between the read and the write
                s.customers.update(target, size=(customer.size or 0) + 1)
            committed += 1
        except ConcurrencyError:
            conflicts += 1
    return {"committed": committed, "conflicts": conflicts}


def create_customers(crm: pycrm.CRM, tag: str, count: int, target: str) -> dict[str, Any]:
    """Create unrelated customers, one session each, after a read in the same session."""
    errors: list[str] = []
    for i in range(count):
        try:
            with crm.session(crm.system_actor) as s:
                s.customers.count()  # a read first: the transaction must not go stale
                s.customers.create(f"{tag} Trading {i}", on_duplicate="allow")
        except CRMError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"errors": errors}


def capture_leads(crm: pycrm.CRM, tag: str, count: int, target: str) -> dict[str, Any]:
    """Capture leads routed round-robin; report who got each."""
    leads = []
    errors: list[str] = []
    for i in range(count):
        try:
            with crm.session(crm.system_actor) as s:
                lead = s.leads.capture(f"{tag}-{i}", source="api")
            leads.append([lead.id, lead.owner_id, lead.assignment_reason])
        except CRMError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"leads": leads, "errors": errors}


JOBS: dict[str, Callable[[pycrm.CRM, str, int, str], dict[str, Any]]] = {
    "read_modify_write": read_modify_write,
    "create_customers": create_customers,
    "capture_leads": capture_leads,
}


def main() -> None:
    job, url, schema, ready, start, tag, count, target = sys.argv[1:9]
    crm = pycrm.connect(
        url,
        schema=schema or None,
        routing_rules=[{"name": "rr", "pick": "round_robin"}],
        load_plugins=False,
    )
    with crm.session(crm.system_actor) as s:  # warm up: connection, tables
        s.customers.count()
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not Path(start).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the start signal never came")
        time.sleep(0.001)
    began = time.time()
    result = JOBS[job](crm, tag, int(count), target)
    result.update(began=began, ended=time.time())
    crm.close()
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
