"""The ``pycrm`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from sqlalchemy.engine import make_url

from pycrm.crm import DEFAULT_URL, connect
from pycrm.domain.ids import new_id
from pycrm.errors import CRMError
from pycrm.services.exports import KINDS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pycrm", description="pycrm: an embeddable CRM.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="run the cross-department demo and print what happened")
    demo.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    demo.add_argument("--tenant", help="tenant to build the demo in (default: a new one each run)")
    imports = commands.add_parser(
        "import", help="import leads, contacts or customers from a CSV file"
    )
    imports.add_argument("kind", choices=["leads", "contacts", "customers"])
    imports.add_argument("file", help="the CSV file (with a header row)")
    imports.add_argument("--db", default=DEFAULT_URL, help="database URL")
    imports.add_argument(
        "--as", dest="actor", required=True, help="the importing user's id or email"
    )
    imports.add_argument("--tenant", help="tenant to import into")
    imports.add_argument("--mapping", help="JSON file mapping fields to column names")
    imports.add_argument("--on-duplicate", choices=["skip", "merge", "flag"], default="skip")
    imports.add_argument(
        "--default-region", help="region for phones without a country code, e.g. CN"
    )
    imports.add_argument("--rejects", help="CSV file for rejected rows (default: FILE.rejects.csv)")
    imports.add_argument("--encoding", help="the file's encoding (default: detected)")
    imports.add_argument("--source", default="import", help="lead source for rows without one")
    imports.add_argument("--campaign", help="campaign for rows without one")
    imports.add_argument("--external-id", help="column with each row's id in the source system")
    imports.add_argument("--chunk-size", type=int, default=1000, help="rows per transaction")
    imports.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any row was rejected"
    )
    report = commands.add_parser("report", help="print an analytics report (or draw it)")
    report.add_argument("report", choices=["funnel", "forecast", "aging", "service"])
    report.add_argument("--db", default=DEFAULT_URL, help="database URL")
    report.add_argument(
        "--as", dest="actor", help="user id or email to report as (default: system)"
    )
    report.add_argument("--tenant", help="tenant")
    report.add_argument("--png", help="also draw the report as a chart in this PNG file")
    export = commands.add_parser(
        "export", help="export records as CSV or JSON Lines (needs the export grant)"
    )
    export.add_argument(
        "kind", choices=[*KINDS, *KINDS.values()], metavar="KIND", help=", ".join(KINDS)
    )
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="default csv")
    export.add_argument("--out", help="file to write (default: standard output)")
    export.add_argument(
        "--since", help="only records updated at or after this ISO 8601 time (UTC if no offset)"
    )
    export.add_argument("--until", help="only records updated before this ISO 8601 time")
    export.add_argument("--fields", help="comma-separated fields to export (default: all)")
    export.add_argument(
        "--as", dest="actor", required=True, help="the exporting user's id or email (or system)"
    )
    export.add_argument("--db", default=DEFAULT_URL, help="database URL")
    export.add_argument("--tenant", help="tenant to export from")
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create or migrate pycrm's tables")
    upgrade.add_argument("--db", default=DEFAULT_URL, help="database URL")
    upgrade.add_argument("--schema", help="database schema for pycrm's tables")
    upgrade.add_argument("--table-prefix", default="pycrm_", help="table name prefix")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pycrm`` command; return its exit status."""
    args = _parser().parse_args(argv)
    # An export's data may go to standard output: its messages go to standard error.
    console = Console(stderr=args.command == "export")
    if args.version:
        from pycrm import __version__

        console.print(f"pycrm {__version__}")
        return 0
    try:
        if args.command == "demo":
            from pycrm.demo import run_demo

            with connect(args.db) as crm:
                run_demo(crm, args.tenant or f"demo-{new_id()[-8:]}", console)
            return 0
        if args.command == "import":
            from pycrm.importing import run_import

            return run_import(args, console)
        if args.command == "export":
            from pycrm.exporting import run_export

            return run_export(args, console)
        if args.command == "report":
            from pycrm.reports import run_report

            return run_report(args, console)
        if args.command == "db":
            with connect(args.db, schema=args.schema, table_prefix=args.table_prefix):
                shown = make_url(args.db).render_as_string(hide_password=True)
                console.print(f"pycrm tables are up to date in {shown}")
            return 0
    except CRMError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
