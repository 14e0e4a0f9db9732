"""``pycrm export``: one kind of record as CSV or JSON Lines, to a file or standard output."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from pycrm.crm import connect
from pycrm.errors import ValidationError
from pycrm.terminal import actor_for, explained, warn_if_empty

__all__ = ["run_export"]


def _when(field: str, text: str | None) -> datetime | None:
    """An ISO 8601 datetime from the command line; UTC when it names no offset."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(field, text, "is not an ISO 8601 date or datetime") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def run_export(args: argparse.Namespace, console: Console) -> int:
    """Run the export the parsed command line asks for; return the exit status.

    The data goes to ``--out`` or standard output; ``console`` (standard
    error) gets the summary.
    """
    since = _when("since", args.since)
    until = _when("until", args.until)
    fields = [f.strip() for f in args.fields.split(",")] if args.fields else None
    with connect(args.db) as crm, explained(crm, args.tenant):
        warn_if_empty(crm, args.tenant, console)
        actor = actor_for(crm, args.actor, args.tenant)
        with crm.session(actor=actor, tenant=args.tenant) as s:
            write = s.export.csv if args.format == "csv" else s.export.jsonl
            count = write(
                args.kind, args.out or sys.stdout, since=since, until=until, fields=fields
            )
    where = f" to {escape(args.out)}" if args.out else ""
    console.print(f"Exported {count:,} {escape(args.kind)} as {args.format}{where}")
    return 0
