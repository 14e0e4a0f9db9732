"""A killed import resumes where it stopped: no lost rows, no duplicates.

Runs the real ``pycrm import leads`` command in a subprocess on a SQLite file,
kills it with SIGKILL once some (but not all) chunks are committed, then runs
the same command again to completion. Each chunk is one transaction, so the
kill leaves whole chunks; the second run skips them by external id (or by
row hash, for a file without an id column) and imports the rest.

This is part of the default suite (no marker, no skip): it takes 10-30 s.
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import pycrm

ROWS = 6000
CHUNK = 250
BAD_EVERY = 500  # every 500th row has a bad email and is rejected, both runs


def write_file(path: Path, *, with_ids: bool) -> set[str]:
    """The CSV, and the emails of the rows that should end up as leads."""
    expected: set[str] = set()
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow((["id"] if with_ids else []) + ["name", "email", "phone", "company"])
        for i in range(ROWS):
            email = f"person{i}@company{i % 300}.example"
            if i % BAD_EVERY == BAD_EVERY - 1:
                email = f"person{i} at company{i % 300}.example"
            else:
                expected.add(email)
            writer.writerow(
                ([f"EXT-{i:06d}"] if with_ids else [])
                + [f"Person {i}", email, f"+49 30 {2000000 + i}", f"Company {i % 300} GmbH"]
            )
    return expected


def command(path: Path, url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pycrm.cli",
        "import",
        "leads",
        str(path),
        "--db",
        url,
        "--as",
        "mia@corp.example",
        "--chunk-size",
        str(CHUNK),
    ]


def count(db: Path, sql: str = "SELECT count(*) FROM pycrm_leads") -> int:
    connection = sqlite3.connect(db, timeout=30)
    try:
        return int(connection.execute(sql).fetchone()[0])
    finally:
        connection.close()


def kill_midway(path: Path, url: str, db: Path, tmp_path: Path, total: int) -> int:
    """Start the import, SIGKILL it once a few chunks are in; return the leads it left."""
    log = open(tmp_path / "killed.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "COLUMNS": "120"}
    process = subprocess.Popen(command(path, url), stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    try:
        while True:
            done = count(db)
            if done >= 3 * CHUNK:
                break
            assert process.poll() is None, (
                f"the import ended (status {process.returncode}) before it could be killed: "
                + (tmp_path / "killed.log").read_text(errors="replace")
            )
            assert time.monotonic() < deadline, "the import wrote too few leads in 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    left = count(db)
    assert 0 < left < total, f"the kill came too late: {left} of {total} leads were in"
    return left


@pytest.mark.parametrize("with_ids", [True, False], ids=["external-ids", "row-hash"])
def test_an_import_killed_mid_way_resumes_without_losing_or_duplicating_a_row(
    tmp_path: Path, with_ids: bool
) -> None:
    db = tmp_path / "crm.db"
    url = f"sqlite:///{db}"
    with pycrm.connect(url) as crm, crm.session(actor=crm.system_actor) as s:
        s.org.create_user(name="Mia", email="mia@corp.example", department="marketing")
    path = tmp_path / "leads.csv"
    expected = write_file(path, with_ids=with_ids)
    total = len(expected)
    rejected = ROWS - total

    left = kill_midway(path, url, db, tmp_path, total)

    # Chunks are atomic: what the kill left is the good rows of the first whole chunks.
    good_per_chunk = [
        sum(1 for i in range(c, min(c + CHUNK, ROWS)) if i % BAD_EVERY != BAD_EVERY - 1)
        for c in range(0, ROWS, CHUNK)
    ]
    whole_chunks = [sum(good_per_chunk[:k]) for k in range(len(good_per_chunk) + 1)]
    assert left in whole_chunks

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        command(path, url), capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{total - left:,}" in done.stdout  # created by the second run

    connection = sqlite3.connect(db)
    try:
        leads = connection.execute(
            "SELECT id, external_id, json_extract(contact_points, '$[0].value') FROM pycrm_leads"
        ).fetchall()
        audit = Counter(
            connection.execute(
                "SELECT record_id FROM pycrm_audit_entries "
                "WHERE record_type = 'lead' AND action = 'import'"
            ).fetchall()
        )
        announced = Counter(
            row[0]
            for row in connection.execute(
                "SELECT json_extract(payload, '$.record_id') FROM pycrm_outbox_messages "
                "WHERE name = 'lead_captured'"
            )
        )
    finally:
        connection.close()

    assert len(leads) == total
    assert len({lead[0] for lead in leads}) == total
    emails = Counter(lead[2] for lead in leads)
    assert set(emails) == expected
    assert max(emails.values()) == 1
    external_ids = Counter(lead[1] for lead in leads)
    assert max(external_ids.values()) == 1
    if with_ids:
        assert set(external_ids) == {
            f"EXT-{i:06d}" for i in range(ROWS) if i % BAD_EVERY != BAD_EVERY - 1
        }
    else:
        assert all(str(e).startswith("row:") for e in external_ids)
    # Every lead audited and announced exactly once, none for rows that were not kept.
    assert sorted(audit.values()) == [1] * total
    assert {r[0] for r in audit} == {lead[0] for lead in leads}
    assert announced == Counter({lead[0]: 1 for lead in leads})

    rejects = list(csv.reader((tmp_path / "leads.rejects.csv").read_text().splitlines()))
    assert len(rejects) - 1 == rejected
    assert {r[1] for r in rejects[1:]} == {"email"}
