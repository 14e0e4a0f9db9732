"""``pycrm import``: a CSV file into the CRM, with a progress bar and a summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pycrm.crm import connect
from pycrm.csvfiles import count_rows, read_rows
from pycrm.domain.org import User
from pycrm.domain.query import Eq
from pycrm.errors import ConfigurationError, NotFound
from pycrm.services.imports import RejectsWriter

__all__ = ["run_import"]


def _actor(crm: Any, who: str, tenant: str | None) -> str:
    if "@" not in who:
        return who
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        found = s._uow.repo(User).find(Eq("email", who.strip().lower()), limit=1)
    if not found:
        raise NotFound("user", who)
    return str(found[0].id)


def run_import(args: argparse.Namespace, console: Console) -> int:
    """Run the import the parsed command line asks for; return the exit status."""
    path = Path(args.file)
    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}")
    mapping = None
    if args.mapping:
        try:
            mapping = json.loads(Path(args.mapping).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read mapping {args.mapping}: {exc}") from None
    encoding, rows = read_rows(path, args.encoding)
    total = count_rows(path)
    rejects_path = Path(args.rejects) if args.rejects else path.with_suffix(".rejects.csv")
    with (
        connect(args.db) as crm,
        open(rejects_path, "w", encoding=encoding, errors="surrogateescape", newline="") as out,
    ):
        actor = _actor(crm, args.actor, args.tenant)
        writer: RejectsWriter | None = None

        def reject(item: Any) -> None:
            nonlocal writer
            if writer is None:
                writer = RejectsWriter(out, list(item.values))
            writer(item)

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} rows/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{args.kind} ({encoding})", total=total, speed="-")

            def advance(done: int) -> None:
                elapsed = progress.tasks[0].elapsed or 0.0
                speed = f"{done / elapsed:,.0f}" if elapsed else "-"
                progress.update(task, completed=done, speed=speed)

            with crm.session(actor=actor, tenant=args.tenant) as s:
                run = getattr(s.importer, args.kind)
                options: dict[str, Any] = {
                    "mapping": mapping,
                    "default_region": args.default_region,
                    "on_duplicate": args.on_duplicate,
                    "external_id": args.external_id,
                    "chunk_size": args.chunk_size,
                    "rejects": reject,
                    "progress": advance,
                }
                if args.kind == "leads":
                    options.update(source=args.source, campaign=args.campaign)
                report = run(rows, **options)
    table = Table("outcome", "rows", title=f"Imported {path.name}", title_justify="left")
    for outcome in ("rows", "created", "merged", "skipped", "flagged", "rejected"):
        table.add_row(outcome, f"{getattr(report, outcome):,}")
    table.add_row("rows/s", f"{report.rows_per_second:,.0f}")
    console.print(table)
    if report.reasons:
        reasons = Table("reason", "rows", title="Why", title_justify="left")
        for reason, count in report.reasons.most_common(15):
            reasons.add_row(reason, f"{count:,}")
        console.print(reasons)
    if report.rejected:
        console.print(f"Rejected rows with line numbers and reasons: {rejects_path}")
    else:
        rejects_path.unlink(missing_ok=True)
    return 1 if args.strict and report.rejected else 0
