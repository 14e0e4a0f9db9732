"""Round-robin stays fair when many processes capture leads at once (PostgreSQL).

Eight OS processes each capture 125 leads through ``pycrm.connect`` against
the same PostgreSQL schema, all starting together. Every turn of the
round-robin counter must be taken exactly once: each lead assigned once, the
per-user counts within one of each other, and the counter at 1,000.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

import pycrm
from pycrm.domain.audit import AuditEntry
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.query import Eq

pytestmark = pytest.mark.postgres

PROCESSES = 8
LEADS_EACH = 125
TOTAL = PROCESSES * LEADS_EACH
RULES = [{"name": "rr", "pick": "round_robin"}]

WORKER = r"""
import json, sys, time, traceback
from pathlib import Path

import pycrm

url, schema, ready, start, tag, count = sys.argv[1:7]
try:
    crm = pycrm.connect(url, schema=schema, routing_rules=[{"name": "rr", "pick": "round_robin"}])
    with crm.session(crm.system_actor) as s:  # warm up: connection, tables, users
        s.leads.candidates()
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not Path(start).exists():
        if time.monotonic() > deadline:
            raise SystemExit("start signal never came")
        time.sleep(0.001)
    began = time.time()
    leads = []
    for i in range(int(count)):
        with crm.session(crm.system_actor) as s:
            lead = s.leads.capture(f"{tag}-{i}", source="api")
        leads.append([lead.id, lead.owner_id, lead.assignment_reason])
    ended = time.time()
    crm.close()
    print(json.dumps({"began": began, "ended": ended, "leads": leads}))
except BaseException:
    traceback.print_exc()
    sys.exit(1)
"""


def test_round_robin_is_fair_across_processes(
    pg_engine: sa.Engine, pg_schema: str, tmp_path: Path
) -> None:
    url = os.environ["PYCRM_TEST_POSTGRES_URL"]
    with (
        pycrm.connect(pg_engine, schema=pg_schema, routing_rules=RULES) as crm,
        crm.session(crm.system_actor) as s,
    ):
        users = {
            s.org.create_user(name, f"{name.lower()}@example.com", "sales").id
            for name in ("Ann", "Bob", "Cid", "Dee")
        }

    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    start = tmp_path / "start"
    ready = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                url,
                pg_schema,
                str(ready[n]),
                str(start),
                f"w{n}",
                str(LEADS_EACH),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(path.exists() for path in ready):
            failed = [w for w in workers if w.poll() not in (None, 0)]
            assert not failed, failed[0].communicate()[1]
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.01)
        start.touch()  # everyone goes at once
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]

    # They really ran at the same time: every worker started before any finished.
    assert max(r["began"] for r in results) < min(r["ended"] for r in results)

    captured = [lead for r in results for lead in r["leads"]]
    assert len(captured) == TOTAL
    assert len({lead_id for lead_id, _, _ in captured}) == TOTAL
    assert {owner for _, owner, _ in captured} <= users
    turns = sorted(int(reason.split("turn ")[1].split(" of ")[0]) for _, _, reason in captured)
    assert turns == list(range(1, TOTAL + 1))  # every turn taken exactly once

    with pycrm.connect(pg_engine, schema=pg_schema) as crm, crm.session(crm.system_actor) as s:
        leads = s._uow.repo(Lead)
        assert leads.count() == TOTAL
        assert leads.count(Eq("status", LeadStatus.ASSIGNED)) == TOTAL
        per_user = leads.count_by("owner_id")
        assert set(per_user) == users
        assert sum(per_user.values()) == TOTAL
        assert max(per_user.values()) - min(per_user.values()) <= 1
        assigned = s._uow.repo(AuditEntry).count_by("record_id", Eq("action", "assign"))
        assert len(assigned) == TOTAL
        assert Counter(assigned.values()) == {1: TOTAL}  # each lead assigned exactly once

    counters = sa.Table("pycrm_counters", sa.MetaData(schema=pg_schema), autoload_with=pg_engine)
    with pg_engine.connect() as connection:
        value = connection.execute(
            sa.select(counters.c.value).where(counters.c.key == "lead:round_robin:rr")
        ).scalar_one()
    assert value == TOTAL
