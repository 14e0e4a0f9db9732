"""The ``pycrm`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from pycrm.crm import DEFAULT_URL, connect
from pycrm.domain.ids import new_id
from pycrm.errors import CRMError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pycrm", description="pycrm: an embeddable CRM.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="run the cross-department demo and print what happened")
    demo.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    demo.add_argument("--tenant", help="tenant to build the demo in (default: a new one each run)")
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
    console = Console()
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
        if args.command == "db":
            with connect(args.db, schema=args.schema, table_prefix=args.table_prefix):
                console.print(f"pycrm tables are up to date in {args.db}")
            return 0
    except CRMError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
