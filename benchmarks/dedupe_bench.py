"""Dedupe benchmark: scan quality and speed, and the cost of the check at the door.

    python benchmarks/dedupe_bench.py                  # 10k and 100k contacts, check 2k vs 200k
    python benchmarks/dedupe_bench.py --quick          # 2k contacts, check 2k vs 20k
    python benchmarks/dedupe_bench.py --sizes 10000 --check-sizes 2000 50000

For each size, synthetic contacts with injected duplicates
(:mod:`dedupe_data`) are loaded into a fresh SQLite file, then
``s.dedupe.scan("contact")`` is timed and its clusters are scored against the
injected truth (pairwise precision, recall, F1; recall per kind of injected
change). Then the p50 latency of ``s.dedupe.check("contact", name=...,
emails=[...])`` is measured with few and with many stored contacts.

Loading (``--load``):

* ``service``: every company and contact goes through ``s.customers.create`` /
  ``s.contacts.create`` with ``on_duplicate="allow"``, 5,000 per session:
  normalised, audited, with outbox events, exactly as an application would.
  1.6 ms a contact on SQLite on an idle 2-core machine (4-6 ms when busy), so
  100k takes 3-10 minutes.
* ``bulk``: the same normalisation (``check_points`` with the CRM's default
  region, ``clean_text``), records stamped by the session and inserted with
  ``crm.store``'s repositories (``repo.add_many``) inside one unit of work. No
  audit entries, outbox rows or duplicate check at load time (the scan does
  not need them). Several times faster.
* ``auto`` (default): ``service`` up to 20,000 contacts, ``bulk`` above.

``--reuse`` reopens the SQLite files of an earlier run instead of loading again.

Targets: F1 >= 0.95, 100k scan <= 60 s, 100k/10k scan-time ratio <= 15,
check p50 ratio (200k/2k stored) <= 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dedupe_data

import pycrm
from pycrm.domain.contact_points import clean_text
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.fields import check_points

REGION = "DE"
BATCH = 5000


# -- loading ---------------------------------------------------------------------------


def _fresh(path: Path) -> pycrm.CRM:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return pycrm.connect(f"sqlite:///{path}", default_region=REGION, load_plugins=False)


def load_service(crm: pycrm.CRM, rows: list[dict[str, Any]]) -> list[str]:
    """Through the services, ``BATCH`` rows per session."""
    companies: dict[str, str] = {}
    ids: list[str] = []
    for start in range(0, len(rows), BATCH):
        with crm.session(actor=crm.system_actor) as s:
            for row in rows[start : start + BATCH]:
                customer_id = None
                if row["company"]:
                    customer_id = companies.get(row["company"])
                    if customer_id is None:
                        customer_id = s.customers.create(row["company"], on_duplicate="allow").id
                        companies[row["company"]] = customer_id
                contact = s.contacts.create(
                    row["name"],
                    emails=row["emails"],
                    phones=row["phones"],
                    title=row["title"],
                    customer_id=customer_id,
                    on_duplicate="allow",
                    lenient=True,
                )
                ids.append(contact.id)
    return ids


def load_bulk(crm: pycrm.CRM, rows: list[dict[str, Any]]) -> list[str]:
    """Normalised like the services do, inserted with ``add_many`` in one unit of work."""
    ids: list[str] = []
    with crm.session(actor=crm.system_actor) as s:
        companies: dict[str, str] = {}
        new_companies: list[Customer] = []
        for row in rows:
            name = row["company"]
            if name and name not in companies:
                customer = Customer(**s._stamp(name=clean_text(name, "name", required=True)))
                companies[name] = customer.id
                new_companies.append(customer)
        customers = s._uow.repo(Customer)
        for start in range(0, len(new_companies), BATCH):
            customers.add_many(new_companies[start : start + BATCH])
        contacts = s._uow.repo(Contact)
        batch: list[Contact] = []
        for row in rows:
            contact = Contact(
                **s._stamp(
                    name=clean_text(row["name"], "name", required=True),
                    title=clean_text(row["title"], "title"),
                    customer_id=companies.get(row["company"]) if row["company"] else None,
                    contact_points=check_points(
                        row["emails"], row["phones"], region=REGION, lenient=True
                    ),
                )
            )
            ids.append(contact.id)
            batch.append(contact)
            if len(batch) == BATCH:
                contacts.add_many(batch)
                batch = []
        contacts.add_many(batch)
    return ids


def load(
    path: Path, rows: list[dict[str, Any]], mode: str, *, reuse: bool = False
) -> tuple[pycrm.CRM, list[str], str, float]:
    """Load ``rows`` into a fresh SQLite file (or, with ``reuse``, open the one left before)."""
    if mode == "auto":
        mode = "service" if len(rows) <= 20_000 else "bulk"
    saved = Path(f"{path}.ids.json")
    if reuse and path.exists() and saved.exists():
        ids = json.loads(saved.read_text())
        if len(ids) == len(rows):
            crm = pycrm.connect(f"sqlite:///{path}", default_region=REGION, load_plugins=False)
            return crm, ids, "reused", 0.0
    saved.unlink(missing_ok=True)
    crm = _fresh(path)
    started = time.perf_counter()
    ids = (load_service if mode == "service" else load_bulk)(crm, rows)
    elapsed = time.perf_counter() - started
    saved.write_text(json.dumps(ids))
    return crm, ids, mode, elapsed


# -- scan quality --------------------------------------------------------------------------


def _pairs(groups: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for group in groups:
        out.update((min(a, b), max(a, b)) for a, b in combinations(sorted(set(group)), 2))
    return out


def evaluate(data: dedupe_data.Dataset, clusters: list[Any], ids: list[str]) -> dict[str, Any]:
    index = {id: i for i, id in enumerate(ids)}
    predicted = _pairs([index[r] for r in c.record_ids] for c in clusters)
    linked = {
        (min(index[a], index[b]), max(index[a], index[b]))
        for c in clusters
        for a, b, _, _ in c.pairs
    }
    tp = len(predicted & data.truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(data.truth) if data.truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pair, kinds in data.kinds.items():
        for kind in kinds:
            per_kind[kind][1] += 1
            per_kind[kind][0] += pair in predicted
        label = "+".join(kinds)
        if len(kinds) > 1:
            per_kind[label][1] += 1
            per_kind[label][0] += pair in predicted
    return {
        "truth_pairs": len(data.truth),
        "predicted_pairs": len(predicted),
        "directly_linked_pairs": len(linked),
        "true_positives": tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "recall_by_kind": {k: v[0] / v[1] for k, v in sorted(per_kind.items()) if v[1]},
        "pairs_by_kind": {k: v[1] for k, v in sorted(per_kind.items())},
        "missed": sorted(data.truth - predicted),
        "false": sorted(predicted - data.truth),
    }


def diagnose(
    crm: pycrm.CRM, data: dedupe_data.Dataset, ids: list[str], result: dict[str, Any], limit: int
) -> dict[str, Any]:
    """Why pairs were missed (never compared, or scored too low) and what false pairs share.

    Uses pycrm's private matching helpers, for analysis only.
    """
    from pycrm.domain.matching import reachable_without_keys, score
    from pycrm.services.dedupe import MAX_BLOCK, _blocks, _profile

    threshold = crm.duplicate_threshold
    names = threshold <= reachable_without_keys("contact")  # as the scan decides
    with crm.session(actor=crm.system_actor) as s:
        records = {}
        repo = s._uow.repo(Contact)
        for start in range(0, len(ids), 900):
            records.update(repo.get_many(ids[start : start + 900]))
        profiles = {i: _profile(records[id]) for i, id in enumerate(ids)}
    block_size: Counter[str] = Counter()
    for p in profiles.values():
        block_size.update(set(_blocks(p, names)))
    reasons: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    examples: list[str] = []
    for a, b in result["missed"]:
        pa, pb = profiles[a], profiles[b]
        value, evidence = score(pa, pb)
        shared = set(_blocks(pa, names)) & set(_blocks(pb, names))
        usable = [k for k in shared if block_size[k] <= MAX_BLOCK]
        if value < threshold:
            why = "scored below threshold"
        elif not shared:
            why = "no shared blocking key"
        elif not usable:
            why = f"shared blocks all larger than MAX_BLOCK={MAX_BLOCK}"
        else:
            why = "compared but not clustered (?)"
        reasons[why] += 1
        kinds = data.kinds.get((a, b), ("duplicate-of-duplicate",))
        by_kind["+".join(kinds)][why] += 1
        if len(examples) < limit:
            examples.append(
                f"{'+'.join(kinds)}: {data.rows[a]['name']!r} {data.rows[a]['emails']} "
                f"{data.rows[a]['phones']} ~ {data.rows[b]['name']!r} {data.rows[b]['emails']} "
                f"{data.rows[b]['phones']} -> {value:.2f} {[e.field for e in evidence]} ({why})"
            )
    false_examples = []
    for a, b in result["false"][:limit]:
        value, evidence = score(profiles[a], profiles[b])
        false_examples.append(
            f"{data.rows[a]['name']!r} ~ {data.rows[b]['name']!r} -> {value:.2f} "
            f"{[e.detail for e in evidence]}"
        )
    return {
        "missed_reasons": dict(reasons),
        "missed_reasons_by_kind": {k: dict(v) for k, v in by_kind.items()},
        "missed_examples": examples,
        "false_examples": false_examples,
        "largest_blocks": block_size.most_common(5),
        "blocks_over_max": sum(1 for n in block_size.values() if n > MAX_BLOCK),
    }


def bench_scan(
    size: int, seed: int, mode: str, workdir: Path, explain: int, reuse: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    data = dedupe_data.generate(size, seed)
    generated = time.perf_counter() - started
    crm, ids, used, load_seconds = load(
        workdir / f"scan-{size}-{seed}.db", data.rows, mode, reuse=reuse
    )
    gc.collect()
    with crm.session(actor=crm.system_actor) as s:
        started = time.perf_counter()
        clusters = s.dedupe.scan("contact")
        scan_seconds = time.perf_counter() - started
    quality = evaluate(data, clusters, ids)
    out = {
        "size": size,
        "generate_s": generated,
        "load": used,
        "load_s": load_seconds,
        "scan_s": scan_seconds,
        "clusters": len(clusters),
        **{k: v for k, v in quality.items() if k not in ("missed", "false")},
    }
    if explain and (quality["missed"] or quality["false"]):
        out["diagnosis"] = diagnose(crm, data, ids, quality, explain)
    crm.close()
    return out


# -- check latency --------------------------------------------------------------------------


def queries(data: dedupe_data.Dataset, count: int, seed: int) -> list[dict[str, Any]]:
    """Half lookalikes of stored contacts (email case / +tag, swapped names), half newcomers."""
    import random

    rng = random.Random(seed)
    with_email = [r for r in data.rows if r["emails"]]
    out = []
    for i in range(count):
        if i % 2 == 0:
            row = rng.choice(with_email)
            name = row["name"]
            if " " in name and rng.random() < 0.5:
                first, last = name.split(" ", 1)
                name = f"{last}, {first}"
            local, _, domain = row["emails"][0].partition("@")
            out.append({"name": name.upper(), "emails": [f"{local}+q@{domain.upper()}"]})
        else:
            row = rng.choice(data.rows)  # a namesake with a new address
            out.append({"name": row["name"], "emails": [f"newcomer{i}@fresh.example"]})
    return out


def bench_check(size: int, seed: int, workdir: Path, count: int, reuse: bool) -> dict[str, Any]:
    data = dedupe_data.generate(size, seed)
    crm, _, used, load_seconds = load(
        workdir / f"check-{size}-{seed}.db", data.rows, "bulk", reuse=reuse
    )
    asks = queries(data, count, seed)
    times: list[float] = []
    hits = 0
    with crm.session(actor=crm.system_actor) as s:
        for ask in asks[:20]:  # warm up caches and the connection
            s.dedupe.check("contact", **ask)
        for ask in asks:
            started = time.perf_counter()
            found = s.dedupe.check("contact", **ask)
            times.append(time.perf_counter() - started)
            hits += bool(found)
    crm.close()
    times.sort()
    return {
        "stored": size,
        "load": used,
        "load_s": load_seconds,
        "checks": count,
        "with_candidates": hits,
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(len(times) * 0.95) - 1] * 1000,
        "max_ms": times[-1] * 1000,
    }


# -- main -------------------------------------------------------------------------------


def _print_scan(r: dict[str, Any]) -> None:
    print(
        f"\n== scan: {r['size']:,} contacts (loaded via {r['load']} in {r['load_s']:.1f} s, "
        f"{r['load_s'] / r['size'] * 1000:.2f} ms/contact)"
    )
    print(
        f"   scan {r['scan_s']:.2f} s, {r['clusters']:,} clusters; "
        f"pairs: truth {r['truth_pairs']:,}, predicted {r['predicted_pairs']:,}, "
        f"correct {r['true_positives']:,}"
    )
    print(
        f"   precision {r['precision']:.4f}  recall {r['recall']:.4f}  F1 {r['f1']:.4f}"
        f"   {'OK' if r['f1'] >= 0.95 else 'BELOW TARGET 0.95'}"
    )
    print("   recall by injected kind:")
    for kind, value in r["recall_by_kind"].items():
        print(f"     {kind:<32} {value:6.3f}  ({r['pairs_by_kind'][kind]:,} pairs)")
    diagnosis = r.get("diagnosis")
    if diagnosis:
        print("   missed pairs, why:", diagnosis["missed_reasons"])
        for kind, reasons in sorted(diagnosis["missed_reasons_by_kind"].items()):
            print(f"     {kind:<32} {reasons}")
        print(
            "   largest blocks:",
            diagnosis["largest_blocks"],
            "over MAX_BLOCK:",
            diagnosis["blocks_over_max"],
        )
        for line in diagnosis["missed_examples"]:
            print("     missed:", line)
        for line in diagnosis["false_examples"]:
            print("     false: ", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--check-sizes", type=int, nargs=2, default=[2_000, 200_000])
    parser.add_argument("--checks", type=int, default=400, help="check calls per size")
    parser.add_argument("--quick", action="store_true", help="2k contacts; check 2k vs 20k")
    parser.add_argument("--load", choices=["auto", "service", "bulk"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "pycrm-dedupe-bench",
    )
    parser.add_argument("--explain", type=int, default=8, help="examples of misses to print")
    parser.add_argument("--no-check", action="store_true", help="skip the check-latency part")
    parser.add_argument("--no-scan", action="store_true", help="skip the scan part")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the SQLite files of an earlier run"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.check_sizes = [2_000], [2_000, 20_000]
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"scan": [], "check": []}

    if not args.no_scan:
        for size in args.sizes:
            result = bench_scan(size, args.seed, args.load, args.workdir, args.explain, args.reuse)
            report["scan"].append(result)
            _print_scan(result)
        scans = {r["size"]: r for r in report["scan"]}
        if len(scans) >= 2:
            small, big = min(scans), max(scans)
            ratio = scans[big]["scan_s"] / scans[small]["scan_s"]
            report["scan_ratio"] = ratio
            print(
                f"\n== scan time {big:,}/{small:,}: {ratio:.1f}x for {big / small:.0f}x the data"
                f"   {'OK' if ratio <= 15 else 'ABOVE TARGET 15'}"
            )
        for r in report["scan"]:
            if r["size"] >= 100_000:
                verdict = "OK" if r["scan_s"] <= 60 else "ABOVE TARGET 60 s"
                print(f"== scan of {r['size']:,}: {r['scan_s']:.1f} s   {verdict}")

    if not args.no_check:
        for size in args.check_sizes:
            result = bench_check(size, args.seed, args.workdir, args.checks, args.reuse)
            report["check"].append(result)
            print(
                f"\n== check at the door with {size:,} stored contacts ({result['load']}-loaded in "
                f"{result['load_s']:.1f} s): p50 {result['p50_ms']:.2f} ms, "
                f"p95 {result['p95_ms']:.2f} ms, max {result['max_ms']:.1f} ms; "
                f"{result['with_candidates']}/{result['checks']} found candidates"
            )
        few, many = report["check"][0], report["check"][-1]
        ratio = many["p50_ms"] / few["p50_ms"]
        report["check_ratio"] = ratio
        print(
            f"== check p50 {many['stored']:,} vs {few['stored']:,} stored: {ratio:.2f}x"
            f"   {'OK' if ratio <= 2 else 'ABOVE TARGET 2'}"
        )

    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
