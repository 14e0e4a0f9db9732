"""Bulk import: pycrm's full lead import of a CSV file against a floor, and its memory.

Generates a CSV file of leads (``--rows``, default 100,000) as exported from
another system: names with accents, emails, phone numbers in several national
and international formats, companies, titles and notes (some quoted, some over
two lines), with about 3% bad rows (a phone that is no number, an email that is
no address, no name) and about 4% duplicates (the same person again with the
email in other letter case, or the very same row again).

Speed, into a fresh SQLite file each time, the two paths taking turns,
``--repeat`` times (the best counts):

* ``pycrm``: the file read by ``pycrm.csvfiles.read_rows`` (encoding detected)
  and imported with ``s.importer.leads(rows, rejects=RejectsWriter(...))``, as
  ``pycrm import leads`` does: validated, normalised, deduplicated, scored and
  routed, with audit entries and outbox messages, one transaction per chunk.
* ``floor``: the same file read with ``csv.DictReader``, each phone parsed with
  ``phonenumbers.parse`` and formatted as E.164, each email checked with
  ``email_validator.validate_email(check_deliverability=False)``, bad rows written
  to a rejects file and the rest inserted into a plain table with one SQLAlchemy
  Core ``executemany``. The least any import of these rows must do.


Then ``storage``: the rows pycrm's import wrote (leads, match keys, audit
entries, outbox messages), read back already encoded and stored again by
``sqlite3``'s own ``executemany`` into an empty copy of pycrm's schema, in as
many transactions: the database's share of the import, printed as a ratio to
the floor too.

Target: the full import takes at most 1.6x (floor + storage): pycrm's own
work (validation, dedupe, scoring, routing, audit and outbox building) adds at
most 0.6x of what the database and the least validation must cost anyway.
The ratio to the bare floor is printed too. And the bytes: the SQLite file
pycrm's import left (all tables and indexes, after a checkpoint) per lead
created, at most 2 KB.

Memory: the import of ``--memory-rows`` files (default 100,000 and 1,000,000
rows) each run in a subprocess of its own, which reports its resident set size
just before the import and its peak (``resource.getrusage(...).ru_maxrss``)
after it. Target: the larger file's peak at most 1.5x the smaller's (the
import streams). The growth during the import (peak minus the size before)
is printed too: it leaves out the interpreter, pycrm and SQLAlchemy.

    python benchmarks/import_bench.py                  # 100k rows; memory 100k vs 1M
    python benchmarks/import_bench.py --quick          # 5k rows; memory 1k vs 10k
    python benchmarks/import_bench.py --rows 20000 --memory-rows 20000 200000
    python benchmarks/import_bench.py --quick --no-memory --postgres   # with PostgreSQL

With ``--postgres`` (and ``PYCRM_TEST_POSTGRES_URL``), the same file is also
imported into a fresh PostgreSQL schema, against a floor of its own: the same
validation, then ``COPY`` of the narrow rows through psycopg 3. Target: at most
2x that floor.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import email_validator
import phonenumbers
import sqlalchemy as sa
from backends import postgres_crm

import pycrm
from pycrm.csvfiles import read_rows
from pycrm.domain.leads import Lead
from pycrm.services.imports import RejectsWriter

SPEED_TARGET = 1.6  # x (floor + storage)
POSTGRES_TARGET = 2.0  # x the COPY floor
BYTES_TARGET = 2048  # per lead created
MEMORY_TARGET = 1.5
REGION = "DE"
CHUNK = 1000  # rows per transaction: the importer's default chunk_size
HEADER = ["name", "email", "phone", "company", "title", "needs"]

FIRST = ("Anna", "Bernd", "Carla", "Dieter", "Elif", "Frank", "Greta", "Hans", "Ines", "Jonas",
         "Klara", "Lukas", "Mia", "Noah", "Olga", "Paul", "José", "Zoë", "Søren", "Łukasz",
         "Chloé", "Björn", "Ana", "Mehmet", "Wei", "Priya", "Sean", "Ingrid")  # fmt: skip
LAST = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
        "Hoffmann", "Schulz", "Smith", "García", "Dubois", "Rossi", "Nowak", "O'Brien",
        "van der Berg", "Yılmaz", "Zhang", "Patel", "Kowalski", "Lindqvist")  # fmt: skip
# Family names made of parts, as many real ones are ("Hof" + "mann"), beside the
# LAST ones above: about 900 in all, so a 100,000-row file has namesakes, as
# a real one has, but not one person in every tenth row.
STEMS = ("Hof", "Berg", "Brand", "Eich", "Feld", "Gold", "Grün", "Hahn", "Kirch", "Lind",
         "Mühl", "Neu", "Ober", "Rein", "Rosen", "Sand", "Stein", "Wald", "Weiß", "Wolf",
         "Adler", "Bach", "Dorn", "Eis", "Falk", "Gros", "Holz", "Kling", "Lamb", "Zimmer")  # fmt: skip
ENDINGS = ("mann", "er", "ner", "hardt", "bauer", "meier", "inger", "stätter", "huber", "ke",
           "ler", "berger", "wald", "feld", "ow", "horst", "hoff", "sen", "mayr", "ski",
           "rich", "brecht", "hagen", "mund", "rath", "stein", "thal", "kamp", "weg", "dorf")  # fmt: skip
FAMILY = LAST + tuple(stem + ending for stem in STEMS for ending in ENDINGS)
FORMS = ("GmbH", "AG", "KG", "Ltd", "SARL", "S.p.A.", "Inc.", "& Söhne")
TITLES = ("Buyer", "Head of Purchasing", "CTO", "Office Manager", "Managing Director", "")
DOMAINS = ("example.com", "example.de", "mail.example", "corp.example.org")
NEEDS = (
    "",
    "demo please",
    "Wants a quote for 20 seats, call back after 3 pm",
    'Asked about the "Pro" plan',
    "Met at the trade fair\nfollow up in May",
)


# -- the file ------------------------------------------------------------------


def ascii_word(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def phone(rng: random.Random) -> str:
    """A valid number in one of several ways people write them."""
    n = rng.randrange(10_000_000)
    r = rng.random()
    if r < 0.25:
        return f"+49 30 {2_000_000 + n % 8_000_000}"
    if r < 0.40:
        return f"030 {2_000_000 + n % 8_000_000}"  # national: needs the default region
    if r < 0.50:
        return f"(030) {200 + n % 800} {n % 10_000:04d}"
    if r < 0.60:
        return f"0049-89-{1_000_000 + n % 9_000_000}"
    if r < 0.75:
        return f"+1 (212) {200 + n % 700}-{n % 10_000:04d}"
    if r < 0.85:
        return f"+44 20 7{n % 1000:03d} {n % 10_000:04d}"
    if r < 0.95:
        return f"+33 1 {40 + n % 10} {n % 100:02d} {n // 100 % 100:02d} {n // 10_000 % 100:02d}"
    return f"+86 138 {n % 10_000:04d} {n // 10_000 % 10_000:04d}"


def generate(path: Path, rows: int, seed: int) -> dict[str, int]:
    """Write ``rows`` data rows to ``path``; return how many of each kind."""
    rng = random.Random(seed)
    recent: deque[list[str]] = deque(maxlen=5000)  # duplicates come from here: constant memory
    kinds = dict.fromkeys(("good", "bad phone", "bad email", "no name", "same person",
                           "same row"), 0)  # fmt: skip
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(rows):
            r = rng.random()
            if recent and r < 0.03:  # the same person again, the email in other letter case
                kind = "same person"
                name, email, _, company, title, needs = rng.choice(recent)
                row = [name, email.upper() if rng.random() < 0.5 else f" {email.title()} ",
                       phone(rng) if rng.random() < 0.5 else "", company, title, needs]  # fmt: skip
            elif recent and r < 0.04:  # the very same row again (an export run twice)
                kind, row = "same row", list(rng.choice(recent))
            else:
                first, last = rng.choice(FIRST), rng.choice(FAMILY)
                company = f"{rng.choice(FAMILY)} {rng.choice(FORMS)}"
                local = f"{ascii_word(first)}.{ascii_word(last)}{i}"
                email = f"{local}@{rng.choice(DOMAINS)}" if rng.random() < 0.95 else ""
                number = phone(rng) if rng.random() < 0.85 else ""
                kind, name = "good", f"{first} {last}"
                if r < 0.055:
                    kind, number = "bad phone", rng.choice(("12345", "+49 30", "call me", "0"))
                elif r < 0.065:
                    kind = "bad email"
                    email = rng.choice((f"{local}@@example.com", f"{local}.example.com",
                                        f"{local}@example..com"))  # fmt: skip
                elif r < 0.07:
                    kind, name = "no name", ""
                row = [name, email, number, company, rng.choice(TITLES), rng.choice(NEEDS)]
                if kind == "good":
                    recent.append(row)
            kinds[kind] += 1
            writer.writerow(row)
    return kinds


# -- the two paths -------------------------------------------------------------


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def floor_import(source: Path, db: Path) -> dict[str, Any]:
    """The floor: DictReader, phonenumbers, email-validator, one Core executemany."""
    engine = sa.create_engine(f"sqlite:///{fresh(db)}")
    metadata = sa.MetaData()
    table = sa.Table(
        "leads",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(c, sa.String(500)) for c in HEADER),
    )
    metadata.create_all(engine)
    started = time.perf_counter()
    good, rejected = validated(source, db.with_suffix(".rejects.csv"))
    with engine.begin() as conn:
        conn.execute(sa.insert(table), good)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "inserted": len(good), "rejected": rejected}


def validated(source: Path, rejects_path: Path) -> tuple[list[dict[str, Any]], int]:
    """The floor's validation: the good rows normalised, the bad ones written out."""
    good: list[dict[str, Any]] = []
    rejected = 0
    with (
        open(source, encoding="utf-8", newline="") as stream,
        open(rejects_path, "w", encoding="utf-8", newline="") as out,
    ):
        rejects = csv.writer(out)
        for row in csv.DictReader(stream):
            values = {c: (row[c] or "").strip() for c in HEADER}
            try:
                if not values["name"]:
                    raise ValueError("name is required")
                if values["email"]:
                    checked = email_validator.validate_email(
                        values["email"], check_deliverability=False
                    )
                    values["email"] = checked.normalized
                if values["phone"]:
                    number = phonenumbers.parse(values["phone"], REGION)
                    values["phone"] = phonenumbers.format_number(
                        number, phonenumbers.PhoneNumberFormat.E164
                    )
            except (ValueError, phonenumbers.NumberParseException) as exc:
                rejected += 1  # EmailNotValidError is a ValueError
                rejects.writerow([str(exc), *row.values()])
                continue
            good.append(values)
    return good, rejected


def postgres_floor(source: Path, tmp: Path, url: str) -> dict[str, Any]:
    """The PostgreSQL floor: the same validation, then COPY of the narrow rows (psycopg 3)."""
    engine = sa.create_engine(url)
    table = f"import_floor_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            columns = ", ".join(f"{c} varchar(500)" for c in HEADER)
            conn.exec_driver_sql(f"CREATE TABLE {table} (id serial PRIMARY KEY, {columns})")
        started = time.perf_counter()
        good, rejected = validated(source, tmp / "pg-floor.rejects.csv")
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY {table} ({', '.join(HEADER)}) FROM STDIN") as copy:
                for values in good:
                    copy.write_row([values[c] for c in HEADER])
        seconds = time.perf_counter() - started
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()
    return {"seconds": seconds, "inserted": len(good), "rejected": rejected}


def postgres_speed(source: Path, tmp: Path, url: str, repeat: int) -> dict[str, Any]:
    """pycrm's import into a fresh PostgreSQL schema against the COPY floor, turn by turn."""
    best = {"pycrm": float("inf"), "floor": float("inf")}
    created = 0
    for r in range(repeat):
        for name in ("pycrm", "floor") if r % 2 == 0 else ("floor", "pycrm"):
            if name == "floor":
                result = postgres_floor(source, tmp, url)
            else:
                with postgres_crm(url, default_region=REGION) as crm:
                    with crm.session(actor=crm.system_actor) as s:
                        user = s.org.create_user(
                            "Importer", "importer@bench.example", "marketing"
                        ).id
                    result = pycrm_import(crm, user, source, tmp / "pg")
                    created = result["created"]
            best[name] = min(best[name], result["seconds"])
            print(f"  PostgreSQL run {r + 1}, {name}: {result['seconds']:.2f} s", flush=True)
    return best | {"created": created}


def pycrm_crm(db: Path) -> tuple[pycrm.CRM, str]:
    """A fresh pycrm on ``db`` and the importing user (marketing, which may create leads)."""
    crm = pycrm.connect(f"sqlite:///{fresh(db)}", default_region=REGION, load_plugins=False)
    with crm.session(actor=crm.system_actor) as s:
        user = s.org.create_user(name="Importer", email="importer@bench.example",
                                 department="marketing")  # fmt: skip
    return crm, user.id


def pycrm_import(
    crm: pycrm.CRM,
    user: str,
    source: Path,
    db: Path,
    progress: Callable[[int], object] | None = None,
) -> dict[str, Any]:
    """The full import, as ``pycrm import leads FILE`` runs it."""
    started = time.perf_counter()
    encoding, rows = read_rows(source)
    with (
        open(db.with_suffix(".rejects.csv"), "w", encoding=encoding, errors="surrogateescape",
             newline="") as out,
        crm.session(actor=user) as s,
    ):  # fmt: skip
        report = s.importer.leads(rows, rejects=RejectsWriter(out, HEADER), progress=progress)
    seconds = time.perf_counter() - started
    leads = crm.store.schema.codec(Lead).table  # type: ignore[attr-defined]
    with crm.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(leads)).scalar_one()
    accounted = report.created + report.merged + report.skipped + report.rejected
    assert report.rows == accounted, report
    assert stored == report.created, (stored, report.created)
    return {
        "seconds": seconds,
        "rows": report.rows,
        "created": report.created,
        "skipped": report.skipped,
        "rejected": report.rejected,
        "reasons": report.reasons.most_common(6),
    }


def storage_floor(imported: Path, tmp: Path, transactions: int) -> dict[str, Any]:
    """How long sqlite3 alone takes to store the rows pycrm's import wrote.

    Every row the import left in ``imported`` (leads, match keys, audit
    entries, outbox messages …), already encoded, goes into an empty copy of
    pycrm's schema (same indexes, same WAL journal) with the driver's own
    ``executemany``, in as many transactions as the import used. No
    validation, no Python objects: the least time the database needs for the
    rows pycrm's design writes per lead. Returns the seconds, the rows per
    table and each table's ``executemany`` seconds.
    """
    target = fresh(tmp / "storage.db")
    pycrm.connect(f"sqlite:///{target}", load_plugins=False).close()  # tables, indexes, WAL
    with closing(sqlite3.connect(target)) as empty, closing(sqlite3.connect(imported)) as source:
        tables = [
            name
            for (name,) in empty.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if empty.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == 0
        ]
        data = {t: source.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
    data = {t: rows for t, rows in data.items() if rows}
    spent = dict.fromkeys(data, 0.0)  # the executemany time per table, commits aside
    with closing(sqlite3.connect(target, isolation_level=None)) as db:
        started = time.perf_counter()
        for i in range(transactions):
            db.execute("BEGIN")
            for table, rows in data.items():
                part = rows[i * len(rows) // transactions : (i + 1) * len(rows) // transactions]
                if part:
                    marks = ", ".join("?" * len(part[0]))
                    began = time.perf_counter()
                    db.executemany(f'INSERT INTO "{table}" VALUES ({marks})', part)
                    spent[table] += time.perf_counter() - began
            db.execute("COMMIT")
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": {t: len(rows) for t, rows in data.items()},
        "by table": spent,
    }


# -- memory, in a subprocess ---------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def rss_mib() -> float:
    """This process's resident set size now (Linux); elsewhere its peak so far."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return peak_rss_mib()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) / 1024


def child(source: Path, db: Path) -> None:
    """Run one full import and print its figures as JSON (the parent's --memory-rows runs)."""
    crm, user = pycrm_crm(db)
    before = rss_mib()
    during = [before]  # the RSS after each chunk

    def sample(rows: int) -> None:
        during.append(rss_mib())

    result = pycrm_import(crm, user, source, db, progress=sample)
    # ru_maxrss and VmRSS are sampled apart: the peak is at least the most seen after a chunk
    result.update(rss_before=before, rss_during=max(during))
    result.update(rss_peak=max(peak_rss_mib(), max(during)))
    result.update(
        rss_curve=[round(during[i], 1) for i in range(0, len(during), max(1, len(during) // 10))]
    )
    crm.close()
    print(json.dumps(result))


def measure_memory(source: Path, db: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(source), str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the import of {source.name} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the run -------------------------------------------------------------------


def speed(source: Path, tmp: Path, repeat: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Best seconds per path, the paths taking turns; and the last result of each."""
    best = {"pycrm": float("inf"), "floor": float("inf")}
    last: dict[str, Any] = {}
    for r in range(repeat):
        for name in ("pycrm", "floor") if r % 2 == 0 else ("floor", "pycrm"):
            db = tmp / f"{name}.db"
            if name == "pycrm":
                crm, user = pycrm_crm(db)
                try:
                    result = pycrm_import(crm, user, source, db)
                finally:
                    crm.close()
            else:
                result = floor_import(source, db)
            last[name] = result
            best[name] = min(best[name], result["seconds"])
            print(f"  run {r + 1}, {name}: {result['seconds']:.2f} s", flush=True)
    return best, last


def file_bytes(db: Path) -> int:
    """The SQLite file's size with its write-ahead log folded in."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db.stat().st_size


def rows_per_s(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows in the timed file (default 100,000)")
    parser.add_argument(
        "--memory-rows",
        type=int,
        nargs=2,
        metavar=("SMALL", "LARGE"),
        help="rows of the two memory runs (default 100,000 1,000,000)",
    )
    parser.add_argument(
        "--repeat", type=int, help="timed runs per path; the best counts (default 3)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also import into PostgreSQL (PYCRM_TEST_POSTGRES_URL) against a COPY floor",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 5,000 rows, memory 1,000 vs 10,000"
    )
    parser.add_argument("--child", nargs=2, metavar=("CSV", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()  # fmt: skip
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return 0
    rows = args.rows or (5_000 if args.quick else 100_000)
    small, large = args.memory_rows or ((1_000, 10_000) if args.quick else (100_000, 1_000_000))
    repeat = max(1, args.repeat or (2 if args.quick else 3))

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        source = tmp / f"leads-{rows}.csv"
        started = time.perf_counter()
        kinds = generate(source, rows, args.seed)
        print(
            f"generated {rows:,} rows ({source.stat().st_size / 2**20:.1f} MiB) in "
            f"{time.perf_counter() - started:.1f} s: "
            + ", ".join(f"{n:,} {kind}" for kind, n in kinds.items())
        )
        print(f"timing {repeat} runs per path, the paths taking turns:")
        best, last = speed(source, tmp, repeat)
        stored_bytes = file_bytes(tmp / "pycrm.db")
        postgres: dict[str, Any] = {}
        if args.postgres:
            url = os.environ.get("PYCRM_TEST_POSTGRES_URL")
            if not url:
                parser.error("--postgres needs PYCRM_TEST_POSTGRES_URL (see ../shared/ci)")
            postgres = postgres_speed(source, tmp, url, repeat)
        print("timing sqlite3 alone storing the rows pycrm wrote:", flush=True)
        stored = min(
            (storage_floor(tmp / "pycrm.db", tmp, -(-rows // CHUNK)) for _ in range(repeat)),
            key=lambda result: float(result["seconds"]),
        )

        memory: dict[int, dict[str, Any]] = {}
        if not args.no_memory:
            for n in (small, large):
                path = source if n == rows else tmp / f"leads-{n}.csv"
                if not path.exists():
                    generate(path, n, args.seed)
                print(f"memory run: importing {n:,} rows in a subprocess ...", flush=True)
                memory[n] = measure_memory(path, tmp / f"memory-{n}.db")
                if path != source:
                    path.unlink()

    full, floor = last["pycrm"], last["floor"]
    print(f"\nSQLite file, {rows:,} rows, best of {repeat} runs per path")
    print(f"{'path':<8}{'seconds':>10}{'rows/s':>10}   outcome")
    print(
        f"{'pycrm':<8}{best['pycrm']:>10.2f}{rows_per_s(rows, best['pycrm']):>10}   "
        f"{full['created']:,} created, {full['skipped']:,} skipped, {full['rejected']:,} rejected"
    )
    print(
        f"{'floor':<8}{best['floor']:>10.2f}{rows_per_s(rows, best['floor']):>10}   "
        f"{floor['inserted']:,} inserted, {floor['rejected']:,} rejected"
    )
    print("pycrm's reasons: " + "; ".join(f"{reason} ({n:,})" for reason, n in full["reasons"]))
    print(
        f"{'storage':<8}{stored['seconds']:>10.2f}{'':>10}   sqlite3 alone storing pycrm's rows: "
        + ", ".join(
            f"{n:,} {table} ({stored['by table'][table]:.2f} s)"
            for table, n in stored["rows"].items()
        )
    )
    ratio = best["pycrm"] / (best["floor"] + stored["seconds"])
    verdict = "meets" if ratio <= SPEED_TARGET else "MISSES"
    print(
        f"\nfull import / (floor + storage) = {ratio:.2f}x "
        f"({verdict} the <= {SPEED_TARGET:g}x target); "
        f"full import / floor = {best['pycrm'] / best['floor']:.2f}x"
    )
    if postgres:
        ratio = postgres["pycrm"] / postgres["floor"]
        verdict = "meets" if ratio <= POSTGRES_TARGET else "MISSES"
        print(
            f"PostgreSQL: pycrm {postgres['pycrm']:.2f} s ({postgres['created']:,} created), "
            f"COPY floor {postgres['floor']:.2f} s: {ratio:.2f}x "
            f"({verdict} the <= {POSTGRES_TARGET:g}x target)"
        )
    per_lead = stored_bytes / max(full["created"], 1)
    verdict = "meets" if per_lead <= BYTES_TARGET else "MISSES"
    print(
        f"bytes per lead created: {stored_bytes / 2**20:.1f} MiB / {full['created']:,} = "
        f"{per_lead:,.0f} B ({verdict} the <= {BYTES_TARGET:,} B target)"
    )
    print(
        f"storage / floor = {stored['seconds'] / best['floor']:.2f}x: the database's own share "
        "of the rows pycrm's design writes per lead, before any validation or Python"
    )
    if memory:
        print(
            "\nmemory of the import in a subprocess (MiB): RSS before the import, "
            "the most after any chunk, the process's peak (ru_maxrss)"
        )
        print(
            f"{'rows':>10}{'before':>10}{'during':>10}{'growth':>10}{'peak':>10}"
            f"{'seconds':>10}{'rows/s':>10}"
        )
        for n, m in memory.items():
            print(
                f"{n:>10,}{m['rss_before']:>10.1f}{m['rss_during']:>10.1f}"
                f"{m['rss_during'] - m['rss_before']:>10.1f}{m['rss_peak']:>10.1f}"
                f"{m['seconds']:>10.1f}{rows_per_s(m['rows'], m['seconds']):>10}"
            )
            print(f"{'':>10}RSS by tenths of the import: {m['rss_curve']}")
        a, b = memory[small], memory[large]
        peak = b["rss_peak"] / a["rss_peak"]
        growth = (b["rss_during"] - b["rss_before"]) / max(a["rss_during"] - a["rss_before"], 0.1)
        verdict = "meets" if peak <= MEMORY_TARGET else "MISSES"
        print(
            f"\npeak RSS {large:,} / {small:,} rows = {peak:.2f}x "
            f"({verdict} the <= {MEMORY_TARGET:g}x target); "
            f"growth during the import, {large:,} / {small:,}: {growth:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
