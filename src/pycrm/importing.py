"""``pycrm import``: a CSV file into the CRM, with a progress bar and a summary.

The options are checked by the importer itself (the same checks as
``s.importer.leads(...)``), and so are the actor's right to create and the
file's header, all before the progress bar is drawn or a rejects file is
created. Ctrl-C stops after the chunk in progress is rolled back; every
chunk committed before it stays, and running the same command again resumes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pycrm.crm import connect
from pycrm.csvfiles import CsvRow, count_rows, read_rows
from pycrm.domain.imports import ImportReport, Reject
from pycrm.errors import ConfigurationError, CRMError, ValidationError
from pycrm.regions import region_code
from pycrm.services.imports import RejectsWriter
from pycrm.terminal import (
    Failure,
    actor_for,
    explained,
    interrupted,
    print_json,
    table,
    tenant_name,
)

__all__ = ["run_import"]

#: How many reasons the "Why" table lists before it sums up the rest.
REASONS_SHOWN = 15

#: The command-line option of each importer option a refusal may name.
_OPTIONS = {
    "default_region": "--default-region",
    "chunk_size": "--chunk-size",
    "on_duplicate": "--on-duplicate",
    "source": "--source",
    "campaign": "--campaign",
    "external_id": "--external-id",
}


class _Bar:
    """A progress bar on standard error, drawn only once :meth:`start` is called."""

    def __init__(self, err: Console, description: str, total: int) -> None:
        self._progress: Progress | None = None
        self._err = err
        self._description = description
        self._total = total
        self.done = 0
        """Rows in the chunks committed so far."""

    def start(self) -> None:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} rows/s"),
            TimeElapsedColumn(),
        )
        self._progress = Progress(*columns, console=self._err, transient=False)
        self._progress.start()
        self._progress.add_task(escape(self._description), total=self._total, speed="-")

    def advance(self, done: int) -> None:
        self.done = done
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        speed = f"{done / elapsed:,.0f}" if elapsed else "-"
        self._progress.update(task.id, completed=done, speed=speed)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class _Rows:
    """The file's rows; the progress bar starts when the importer asks for the second.

    The importer checks its options and the actor's right before it reads a
    row, and the header (a name column) on the first row, so a refused import
    never draws a bar.
    """

    def __init__(self, rows: Iterator[CsvRow], start: Callable[[], None]) -> None:
        self._rows = rows
        self._start = start
        self._read = 0

    def __iter__(self) -> _Rows:
        return self

    def __next__(self) -> CsvRow:
        self._read += 1
        if self._read == 2:
            self._start()
        return next(self._rows)


class _RejectsFile:
    """The rejects CSV, created at the first rejected row (a refused import leaves none)."""

    def __init__(self, path: Path | None, encoding: str) -> None:
        self.path = path
        self._encoding = encoding
        self._stream: IO[str] | None = None
        self._writer: RejectsWriter | None = None

    def __call__(self, reject: Reject) -> None:
        if self.path is None:
            return
        if self._writer is None:
            self._stream = open(  # noqa: SIM115 - closed by close()
                self.path, "w", encoding=self._encoding, errors="surrogateescape", newline=""
            )
            self._writer = RejectsWriter(self._stream, list(reject.values))
        self._writer(reject)

    @property
    def written(self) -> bool:
        return self._writer is not None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _mapping(name: str | None) -> dict[str, str] | None:
    if not name:
        return None
    try:
        loaded = json.loads(Path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot read mapping {name}: {' '.join(str(exc).split())}") from None
    if not isinstance(loaded, dict):
        raise Failure(f"mapping {name} must hold a JSON object of field to column name")
    return loaded


def _rejects_path(args: argparse.Namespace, path: Path) -> Path | None:
    if args.dry_run and not args.rejects:
        return None
    chosen = Path(args.rejects) if args.rejects else path.with_suffix(".rejects.csv")
    if not chosen.parent.is_dir():
        raise Failure(f"--rejects {chosen}: the folder {chosen.parent} does not exist")
    if chosen.resolve() == path.resolve():
        raise Failure(f"--rejects {chosen} is the file being imported")
    return chosen


def _refusal(exc: ValidationError, path: Path, header: list[str]) -> Failure:
    """The importer's refusal of an option or of the file, in the command line's words."""
    if exc.field in _OPTIONS:
        return Failure(f"{_OPTIONS[exc.field]} {exc.value!r} {exc.reason}")
    if exc.field == "mapping":
        columns = ", ".join(header) or "none"
        return Failure(
            f"{path} has no column for the required field 'name' (its columns: {columns}); "
            "rename one, or map one with --mapping"
        )
    if exc.field == "file":
        return Failure(f"{path} {exc.reason}")
    return Failure(str(exc))


def run_import(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Run the import the parsed command line asks for; return the exit status."""
    path = Path(args.file)
    if not path.is_file():
        raise Failure(f"{path}: no such file")
    mapping = _mapping(args.mapping)
    region = args.default_region
    if region is not None:
        try:
            region = region_code(region)
        except ValidationError as exc:  # checked before the database is opened
            raise _refusal(exc, path, []) from None
    try:
        encoding, rows = read_rows(path, args.encoding)
    except ValidationError as exc:
        raise _refusal(exc, path, []) from None
    rejects = _RejectsFile(_rejects_path(args, path), encoding)
    total = count_rows(path)
    bar = _Bar(err, f"{args.kind} ({encoding})", total)
    header: list[str] = []

    def first(rows: Iterator[CsvRow]) -> Iterator[CsvRow]:
        for row in rows:
            if not header:
                header.extend(row)
            yield row

    try:
        with connect(args.db) as crm, explained(crm, args.tenant):
            actor = actor_for(crm, args.actor, args.tenant)
            with crm.session(actor=actor, tenant=args.tenant) as s:
                options: dict[str, Any] = {
                    "mapping": mapping,
                    "default_region": region,
                    "on_duplicate": args.on_duplicate,
                    "external_id": args.external_id,
                    "chunk_size": args.chunk_size,
                    "rejects": rejects,
                    "progress": bar.advance,
                    "dry_run": args.dry_run,
                }
                if args.kind == "leads":
                    options.update(source=args.source, campaign=args.campaign)
                try:
                    report = getattr(s.importer, args.kind)(
                        _Rows(first(rows), bar.start), **options
                    )
                except ValidationError as exc:
                    raise _refusal(exc, path, header) from None
                except ConfigurationError as exc:
                    if str(exc).startswith("mapping:"):
                        raise Failure(f"--mapping {args.mapping}: {str(exc)[9:]}") from None
                    raise
    except (KeyboardInterrupt, CRMError) as exc:
        bar.stop()
        rejects.close()
        if isinstance(exc, CRMError) and not interrupted(exc):
            raise
        if args.dry_run:
            said = "Interrupted: a dry run, so nothing was written."
        else:
            said = (
                f"Interrupted: {bar.done:,} of {total:,} rows were imported and committed; "
                "run the same command again to import the rest (rows already imported are skipped)."
            )
        err.print(said, soft_wrap=True, highlight=False)
        return 130
    finally:
        bar.stop()
        rejects.close()
    if not report.rejected and rejects.path is not None:
        rejects.path.unlink(missing_ok=True)  # an earlier run's rejects are no longer true
    if args.json:
        print_json(_summary(args, path, encoding, report, rejects))
    else:
        _print(out, args, path, encoding, report, rejects)
    return 1 if args.strict and report.rejected else 0


def _summary(
    args: argparse.Namespace, path: Path, encoding: str, report: ImportReport, rejects: _RejectsFile
) -> dict[str, Any]:
    return {
        "file": str(path),
        "kind": args.kind,
        "tenant": tenant_name(args.tenant),
        "encoding": encoding,
        "dry_run": args.dry_run,
        **{
            outcome: getattr(report, outcome)
            for outcome in ("rows", "created", "merged", "skipped", "flagged", "rejected")
        },
        "reasons": dict(report.reasons.most_common()),
        "rejects_file": str(rejects.path) if rejects.written else None,
        "seconds": round(report.elapsed, 3),
        "rows_per_second": round(report.rows_per_second, 1),
    }


def _print(
    out: Console,
    args: argparse.Namespace,
    path: Path,
    encoding: str,
    report: ImportReport,
    rejects: _RejectsFile,
) -> None:
    title = (
        f"Dry run of {path.name} ({encoding}): nothing was written"
        if args.dry_run
        else f"Imported {path.name} ({encoding})"
    )
    outcomes = [
        (outcome, f"{getattr(report, outcome):,}")
        for outcome in ("rows", "created", "merged", "skipped", "flagged", "rejected")
    ]
    out.print(
        table(title, ["outcome", "rows"], [*outcomes, ("rows/s", f"{report.rows_per_second:,.0f}")])
    )
    if report.reasons:
        ranked = report.reasons.most_common()
        shown = [(reason, f"{count:,}") for reason, count in ranked[:REASONS_SHOWN]]
        rest = ranked[REASONS_SHOWN:]
        if rest:
            more = sum(count for _, count in rest)
            shown.append((f"… {len(rest)} more reasons (all of them with --json)", f"{more:,}"))
        out.print(table("Why", ["reason", "rows"], shown))
    if rejects.written:
        out.print(
            f"Rejected rows with line numbers and reasons: {escape(str(rejects.path))}",
            highlight=False,
        )
    elif report.rejected:
        out.print("Rejected rows were counted, not written (a dry run: add --rejects FILE).")
