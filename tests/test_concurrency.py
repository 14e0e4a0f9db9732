"""Several writers at once: nothing is lost, SQLite writers wait, round-robin stays exact.

SQLite and PostgreSQL run real OS processes (``concurrency_worker.py``) against
one database, all released together; the memory adapter, which lives in one
process, runs the same jobs in threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pycrm
from concurrency_worker import JOBS

WORKER = Path(__file__).with_name("concurrency_worker.py")
RULES = [{"name": "rr", "pick": "round_robin"}]


class Shared:
    """A database several workers open at once."""

    def __init__(self, kind: str, url: str, schema: str, crm: pycrm.CRM) -> None:
        self.kind = kind
        self.url = url
        self.schema = schema
        self.crm = crm

    def run(self, job: str, workers: int, count: int, target: str = "") -> list[dict[str, Any]]:
        """Run ``job`` in ``workers`` processes (threads for memory) that start together."""
        if self.kind == "memory":
            return self._threads(job, workers, count, target)
        return self._processes(job, workers, count, target)

    def _threads(self, job: str, workers: int, count: int, target: str) -> list[dict[str, Any]]:
        barrier = threading.Barrier(workers)
        results: list[dict[str, Any]] = [{} for _ in range(workers)]

        def work(n: int) -> None:
            barrier.wait()
            began = time.time()
            results[n] = JOBS[job](self.crm, f"w{n}", count, target)
            results[n].update(began=began, ended=time.time())

        threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        return results

    def _processes(self, job: str, workers: int, count: int, target: str) -> list[dict[str, Any]]:
        folder = Path(self.url.removeprefix("sqlite:///")).parent if self.kind == "sqlite" else None
        signals = Path(folder or os.environ.get("TMPDIR", "/tmp")) / f"signals-{os.getpid()}"
        signals.mkdir(exist_ok=True)
        start = signals / f"start-{job}"
        ready = [signals / f"ready-{job}-{n}" for n in range(workers)]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    job,
                    self.url,
                    self.schema,
                    str(ready[n]),
                    str(start),
                    f"w{n}",
                    str(count),
                    target,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(workers)
        ]
        try:
            deadline = time.monotonic() + 60
            while not all(path.exists() for path in ready):
                failed = [p for p in procs if p.poll() not in (None, 0)]
                assert not failed, failed[0].communicate()[1]
                assert time.monotonic() < deadline, "the workers did not get ready"
                time.sleep(0.01)
            start.touch()
            outputs = [p.communicate(timeout=180) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        for p, (_, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, err
        return [json.loads(out) for out, _ in outputs]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shared]:
    kind: str = request.param
    if kind == "memory":
        crm = pycrm.connect("memory://", routing_rules=RULES, load_plugins=False)
        yield Shared(kind, "memory://", "", crm)
        return
    if kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'shared.db'}", ""
        crm = pycrm.connect(url, routing_rules=RULES, load_plugins=False)
    else:
        request.node.add_marker(pytest.mark.postgres)
        engine = request.getfixturevalue("pg_engine")
        schema = request.getfixturevalue("pg_schema")
        url = os.environ["PYCRM_TEST_POSTGRES_URL"]
        crm = pycrm.connect(engine, schema=schema, routing_rules=RULES, load_plugins=False)
    yield Shared(kind, url, schema, crm)
    crm.close()


def overlapped(results: list[dict[str, Any]]) -> bool:
    """Every worker started before any finished: they really ran at the same time."""
    return max(r["began"] for r in results) < min(r["ended"] for r in results)


def test_read_modify_write_without_version_loses_nothing(shared: Shared) -> None:
    with shared.crm.session(shared.crm.system_actor) as s:
        target = s.customers.create("Contended Ltd", size=0).id
    results = shared.run("read_modify_write", workers=4, count=40, target=target)
    assert overlapped(results)
    committed = sum(r["committed"] for r in results)
    conflicts = sum(r["conflicts"] for r in results)
    assert committed + conflicts == 4 * 40
    with shared.crm.session(shared.crm.system_actor) as s:
        final = s.customers.get(target)
    # Every committed increment is in the final value: none overwrote another.
    assert final.size == committed
    assert final.version == committed + 1


def test_unrelated_concurrent_writes_all_succeed(shared: Shared) -> None:
    results = shared.run("create_customers", workers=4, count=40)
    assert overlapped(results)
    assert [e for r in results for e in r["errors"]] == []
    with shared.crm.session(shared.crm.system_actor) as s:
        assert s.customers.count() == 4 * 40


def test_round_robin_takes_every_turn_once_under_concurrency(shared: Shared) -> None:
    with shared.crm.session(shared.crm.system_actor) as s:
        users = {
            s.org.create_user(name, f"{name.lower()}@example.com", "sales").id
            for name in ("Ann", "Bob", "Cid")
        }
    results = shared.run("capture_leads", workers=4, count=30)
    assert overlapped(results)
    assert [e for r in results for e in r["errors"]] == []
    captured = [lead for r in results for lead in r["leads"]]
    assert len({lead_id for lead_id, _, _ in captured}) == 4 * 30
    turns = sorted(int(reason.split("turn ")[1].split(" of ")[0]) for _, _, reason in captured)
    assert turns == list(range(1, 4 * 30 + 1))
    per_user = Counter(owner for _, owner, _ in captured)
    assert set(per_user) == users
    assert max(per_user.values()) - min(per_user.values()) <= 1
