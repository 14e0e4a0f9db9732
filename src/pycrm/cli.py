"""The ``pycrm`` command (also ``python -m pycrm``).

Results go to standard output, everything else (progress, warnings, errors)
to standard error. A refused or bad input is one ``error:`` line and exit
status 1; a mistyped command or option is argparse's usage message and
status 2; Ctrl-C is one line and status 130. Never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from pycrm.crm import DEFAULT_URL, connect
from pycrm.domain.ids import new_id
from pycrm.errors import CRMError
from pycrm.services.exports import KINDS
from pycrm.terminal import Failure, interrupted, message

__all__ = ["main", "parser"]

_REPORTS = """\
reports:
  funnel    leads per source: captured, assigned, contacted, qualified, converted
            and won (the chart puts every stage on a log scale when the range is wide)
  stages    deals per stage of the default pipeline: reached, moved on, stage-to-stage
            conversion and median days in the stage
  forecast  per month of expected close and owner: open pipeline, weighted forecast
            (amount x stage probability), won business and quota
  aging     unpaid receivables per bucket of days past due: current, 0-30, 31-60,
            61-90, 90+ (count and outstanding amount, per currency)
  service   tickets per priority: opened, resolved, mean first-response and
            resolution hours, SLA breach rate, mean CSAT (1-5)
  subscriptions
            per currency: running subscriptions, MRR and ARR, the MRR a month ago,
            new and churned MRR over the month, churn rate

Figures cover what the --as user may read (default: system, everything).
A chart file's extension picks its format: .png, .svg or .pdf (needs
pip install 'pycrm[charts]').
"""

_EXAMPLES = """\
examples:
  pycrm demo                                   # a company's CRM in ./pycrm.db
  pycrm tenants list                           # which tenants hold data
  pycrm users list --tenant demo-1a2b3c4d      # who can import (--as EMAIL)
  pycrm import leads fair.csv --as mia@example.com --default-region DE --dry-run
  pycrm report funnel --tenant demo-1a2b3c4d --chart funnel.svg
  eval "$(pycrm completion bash)"              # tab completion in this shell
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and shows each option's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def _command(
    commands: Any, name: str, help: str, description: str | None = None, epilog: str | None = None
) -> argparse.ArgumentParser:
    made: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        epilog=epilog,
        formatter_class=_Formatter,
    )
    return made


def _db(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--db",
        default=DEFAULT_URL,
        metavar="URL",
        help="database: sqlite:///FILE, postgresql+psycopg://USER@HOST/DB or memory://",
    )


def _tenant(command: argparse.ArgumentParser, help: str = "tenant to work in") -> None:
    command.add_argument("--tenant", metavar="NAME", help=help + " (default: default)")


def _as(command: argparse.ArgumentParser, *, required: bool = False, what: str = "acting") -> None:
    command.add_argument(
        "--as",
        dest="actor",
        metavar="USER",
        required=required,
        help=f"the {what} user's email or id, or system (the built-in actor"
        + ("" if required else "; the default")
        + ")",
    )


def _json(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--json", action="store_true", help=f"print {what} as JSON on standard output"
    )


def parser() -> argparse.ArgumentParser:
    """The ``pycrm`` argument parser (also what shell completion is built from)."""
    top = argparse.ArgumentParser(
        prog="pycrm",
        description="pycrm: an embeddable CRM. Results go to standard output; progress, "
        "warnings and errors to standard error.",
        epilog=_EXAMPLES,
        formatter_class=_Formatter,
    )
    top.add_argument("--version", action="store_true", help="print the version and exit")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")

    demo = _command(
        commands,
        "demo",
        "run the cross-department demo and print what each department sees",
        epilog="It ends by printing its tenant, its users' emails and commands to try next.",
    )
    _db(demo)
    demo.add_argument(
        "--tenant", metavar="NAME", help="tenant to build the demo in (default: a new one each run)"
    )

    imports = _command(
        commands,
        "import",
        "import leads, contacts or customers from a CSV file",
        epilog="Each chunk commits on its own: an interrupted import (Ctrl-C, a crash) keeps\n"
        "the chunks it finished, and running the same command again resumes (rows\n"
        "already imported are skipped). Rejected rows go to the rejects file with\n"
        "their line and reason. Exit status: 0 done, 1 refused (or --strict and a\n"
        "row was rejected), 2 a usage error, 130 interrupted.",
    )
    imports.add_argument(
        "kind", choices=["leads", "contacts", "customers"], help="what the rows are"
    )
    imports.add_argument("file", help="the CSV file, with a header row naming the columns")
    _db(imports)
    _as(imports, required=True, what="importing")
    _tenant(imports, "tenant to import into")
    imports.add_argument(
        "--mapping", metavar="FILE", help="JSON file mapping fields to column names"
    )
    imports.add_argument(
        "--on-duplicate",
        choices=["skip", "merge", "flag"],
        default="skip",
        help="a row matching a stored record or an earlier row by email or phone: skip it, "
        "merge its values into the empty fields of the match, or import it flagged for review",
    )
    imports.add_argument(
        "--default-region",
        metavar="CODE",
        help="ISO 3166 code for phones without a country code, e.g. DE or CN "
        "(without it such numbers are rejected)",
    )
    imports.add_argument(
        "--rejects",
        metavar="FILE",
        help="CSV file for rejected rows (default: FILE.rejects.csv; "
        "removed when nothing is rejected)",
    )
    imports.add_argument(
        "--encoding", metavar="NAME", help="the file's encoding (default: detected)"
    )
    imports.add_argument("--source", default="import", help="lead source for rows without one")
    imports.add_argument("--campaign", help="campaign for rows without one")
    imports.add_argument(
        "--external-id", metavar="COLUMN", help="column with each row's id in the source system"
    )
    imports.add_argument(
        "--chunk-size",
        type=int,
        default=1000,
        metavar="N",
        help="rows per transaction, 1 to 50,000: an interruption loses at most one chunk",
    )
    imports.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any row was rejected"
    )
    imports.add_argument(
        "--dry-run",
        action="store_true",
        help="check and count every row, then roll back: nothing is written "
        "(no rejects file either, unless --rejects names one)",
    )
    _json(imports, "the summary")

    report = _command(
        commands,
        "report",
        "print an analytics report, or draw it as a chart",
        description="Print an analytics report as a table (or JSON), and draw it as a chart.",
        epilog=_REPORTS,
    )
    report.add_argument(
        "report",
        choices=["funnel", "stages", "forecast", "aging", "service", "subscriptions"],
        help="which report",
    )
    _db(report)
    _as(report, what="reporting")
    _tenant(report)
    report.add_argument(
        "--chart", metavar="FILE", help="also draw the report in FILE: .png, .svg or .pdf"
    )
    report.add_argument("--png", metavar="FILE", help="the same as --chart (kept for scripts)")
    report.add_argument(
        "--in-reporting-currency",
        action="store_true",
        help="forecast, aging and subscriptions: every currency converted into the tenant's "
        "reporting currency at today's rates (the rows name the rates used)",
    )
    _json(report, "the report")

    export = _command(
        commands,
        "export",
        "export records as CSV or JSON Lines (needs the export grant)",
    )
    export.add_argument(
        "kind", choices=[*KINDS, *KINDS.values()], metavar="KIND", help=", ".join(KINDS)
    )
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="file format")
    export.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    export.add_argument(
        "--since", help="only records updated at or after this ISO 8601 time (UTC if no offset)"
    )
    export.add_argument("--until", help="only records updated before this ISO 8601 time")
    export.add_argument("--fields", help="comma-separated fields to export (default: all)")
    _as(export, required=True, what="exporting")
    _db(export)
    _tenant(export, "tenant to export from")

    mail = _command(
        commands,
        "mail",
        "read a mailbox or an IMAP folder into the service desk (or into leads)",
        description="Read every email of a Maildir folder or an mbox file, or the unseen "
        "messages of an IMAP folder (--imap, polled until SIGTERM or Ctrl-C unless --once), "
        "into the service desk: replies go to their tickets, other emails open tickets "
        "(--to lead: leads are captured), machines' mail is ignored, and emails read before "
        "are skipped.",
    )
    mail.add_argument("mailbox", nargs="?", help="a Maildir folder or an mbox file (or --imap)")
    mail.add_argument(
        "--to",
        default="ticket",
        choices=["ticket", "lead"],
        help="open tickets (the default) or capture leads",
    )
    mail.add_argument("--category", help="category of the tickets opened")
    mail.add_argument(
        "--priority",
        choices=["low", "normal", "high", "urgent"],
        help="priority of the tickets opened (default: normal)",
    )
    mail.add_argument("--source", help="source of the leads captured (default: email)")
    mail.add_argument("--campaign", help="campaign of the leads captured")
    mail.add_argument(
        "--imap",
        metavar="URL",
        help="an IMAP folder: imaps://USER@HOST[:PORT]/FOLDER (imap:// upgrades with STARTTLS)",
    )
    mail.add_argument(
        "--password-env", metavar="VAR", help="the environment variable holding the IMAP password"
    )
    mail.add_argument(
        "--imap-security",
        choices=["ssl", "starttls", "plain"],
        help="override the URL's scheme (plain: no TLS, for a server you trust)",
    )
    mail.add_argument(
        "--processed-folder",
        metavar="FOLDER",
        help="move the IMAP messages taken here (default: mark them seen)",
    )
    mail.add_argument(
        "--error-folder",
        metavar="FOLDER",
        help="move the IMAP messages refused here (default: leave them unseen)",
    )
    mail.add_argument(
        "--poll",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between IMAP rounds",
    )
    mail.add_argument("--once", action="store_true", help="one IMAP round, then exit")
    mail.add_argument(
        "--batch", type=int, default=50, metavar="N", help="IMAP messages fetched at a time"
    )
    _as(mail, what="receiving")
    _db(mail)
    _tenant(mail)
    _json(mail, "the counts and refusals")

    relay = _command(
        commands,
        "relay",
        "relay the outbox's events to webhooks, Redis streams or plugins until stopped",
        description="Deliver every tenant's outbox events to the relays a TOML file lists "
        "(one [[relay]] table each), in batches, until SIGTERM or Ctrl-C; several workers "
        "may run at once, on several machines.",
        epilog="example relays.toml:\n"
        '  [[relay]]\n  type = "webhook"\n  name = "erp"\n'
        '  url = "https://erp.example/hooks/crm"\n  secret_env = "ERP_HOOK_SECRET"\n'
        '  events = ["deal_won", "payment_*"]\n\n'
        '  [[relay]]\n  type = "redis"\n  url_env = "REDIS_URL"\n',
    )
    relay.add_argument("--config", required=True, metavar="FILE", help="the relays, in TOML")
    relay.add_argument(
        "--tenant",
        action="append",
        metavar="NAME",
        help="relay only this tenant's events (repeatable; default: every tenant)",
    )
    relay.add_argument("--batch", type=int, default=100, help="events claimed at once")
    relay.add_argument(
        "--poll", type=float, default=1.0, metavar="SECONDS", help="wait when nothing is due"
    )
    relay.add_argument(
        "--lease",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a claimed batch is this worker's (then another worker may take it)",
    )
    relay.add_argument(
        "--max-attempts", type=int, default=10, help="failed attempts before dead-lettering"
    )
    relay.add_argument(
        "--purge-after",
        type=float,
        metavar="DAYS",
        help="also delete delivered events older than this, at start and hourly",
    )
    relay.add_argument(
        "--health-every", type=float, default=60.0, metavar="SECONDS", help="health line interval"
    )
    relay.add_argument("--health-file", metavar="FILE", help="touch FILE with every health line")
    relay.add_argument("--once", action="store_true", help="one round over the tenants, then exit")
    _db(relay)
    _json(relay, "the totals")

    retention = _command(
        commands,
        "retention",
        "list or run the tenant's retention rules (erase, delete, clear bodies)",
        epilog="examples:\n"
        "  pycrm retention rules --tenant acme\n"
        "  pycrm retention run --tenant acme --as dpo@acme.example --dry-run\n"
        "  pycrm retention run --tenant acme --as dpo@acme.example --rule stale-leads\n"
        "Admins and the privacy role may; rules are set with s.retention.set_rules.",
    )
    retention_commands = retention.add_subparsers(
        dest="retention_command", metavar="ACTION", required=True
    )
    retention_run = _command(
        retention_commands,
        "run",
        "apply the retention rules, a batch (one transaction) at a time",
        description="Apply the tenant's retention rules (or one of them): erase, delete or "
        "clear what each selects, a batch at a time, each batch in a transaction of its own. "
        "People under a legal hold are skipped. Running it again carries on where a stopped "
        "run left off. Exit status 1 if an action failed for some record.",
    )
    retention_run.add_argument("--rule", metavar="NAME", help="run only this rule")
    retention_run.add_argument(
        "--dry-run", action="store_true", help="change nothing; say what would be done"
    )
    retention_run.add_argument(
        "--batch", type=int, default=500, metavar="N", help="records per transaction, 1 to 10,000"
    )
    retention_rules = _command(retention_commands, "rules", "list the tenant's retention rules")
    for command in (retention_run, retention_rules):
        _as(command, what="acting")
        _db(command)
        _tenant(command)
    _json(retention_run, "the counts per rule")
    _json(retention_rules, "the rules")

    outbox = _command(commands, "outbox", "inspect the outbox, replay dead letters, purge")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    stats = _command(outbox_commands, "stats", "pending, retrying and dead-lettered events")
    dead = _command(outbox_commands, "dead", "list dead-lettered events and their last error")
    dead.add_argument("--limit", type=int, default=100, help="at most this many")
    replay = _command(outbox_commands, "replay", "make dead-lettered events pending again")
    replay.add_argument("ids", nargs="*", metavar="EVENT_ID", help="the events to replay")
    replay.add_argument("--all", action="store_true", help="every dead-lettered event")
    purge = _command(outbox_commands, "purge", "delete delivered events older than some days")
    purge.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    for command in (stats, dead, replay, purge):
        _db(command)
        _tenant(command)
    _json(stats, "the counts")
    _json(dead, "the dead letters")

    users = _command(commands, "users", "create, list or deactivate users")
    user_commands = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    create = _command(
        user_commands,
        "create",
        "create a user",
        epilog="Only admins and the system actor may create users: create the first\n"
        "admin --as system.",
    )
    create.add_argument("name", help="the user's name")
    create.add_argument("email", help="the user's login email (unique in the tenant)")
    create.add_argument(
        "--department",
        required=True,
        help="marketing, sales, service, finance, legal, analytics, admin or one created",
    )
    create.add_argument(
        "--roles", default="", help="comma-separated roles, e.g. admin or sales_manager"
    )
    create.add_argument("--manager", metavar="USER", help="the manager's email or id")
    _as(create, what="creating")
    _db(create)
    _tenant(create)
    _json(create, "the user")
    listing = _command(user_commands, "list", "list the users of a tenant")
    listing.add_argument("--department", help="only this department's users")
    listing.add_argument("--all", action="store_true", help="include deactivated users")
    _as(listing, what="listing")
    _db(listing)
    _tenant(listing)
    _json(listing, "the users")
    deactivate = _command(
        user_commands,
        "deactivate",
        "deactivate a user and hand on their open work",
        epilog="Their open leads, deals, tasks and tickets go to --reassign-to, else to\n"
        "their manager. Admins only.",
    )
    deactivate.add_argument("user", help="the user's email or id")
    deactivate.add_argument(
        "--reassign-to", metavar="USER", help="email or id of who takes their open work"
    )
    _as(deactivate, what="deactivating")
    _db(deactivate)
    _tenant(deactivate)

    tenants = _command(commands, "tenants", "list the tenants that hold data")
    tenant_commands = tenants.add_subparsers(
        dest="tenants_command", metavar="ACTION", required=True
    )
    tenant_list = _command(tenant_commands, "list", "list the tenants that hold data")
    _db(tenant_list)
    _json(tenant_list, "the tenants")

    db = _command(commands, "db", "database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = _command(db_commands, "upgrade", "create or migrate pycrm's tables")
    _db(upgrade)
    upgrade.add_argument("--schema", help="database schema for pycrm's tables (PostgreSQL)")
    upgrade.add_argument("--table-prefix", default="pycrm_", help="table name prefix")

    completion = _command(
        commands,
        "completion",
        "print a shell completion script",
        epilog='bash: eval "$(pycrm completion bash)" in ~/.bashrc\n'
        "zsh:  pycrm completion zsh > ~/.zfunc/_pycrm (with ~/.zfunc on $fpath)",
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell")
    return top


def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.command == "demo":
        from pycrm.demo import next_steps, run_demo

        tenant = args.tenant or f"demo-{new_id()[-8:].lower()}"
        with connect(args.db) as crm:
            figures = run_demo(crm, tenant, out)
        next_steps(out, args.db, tenant, figures)
        return 0
    if args.command == "import":
        from pycrm.importing import run_import

        return run_import(args, out, err)
    if args.command == "export":
        from pycrm.exporting import run_export

        return run_export(args, err)
    if args.command == "mail":
        from pycrm.intake import run_mail

        return run_mail(args, out, err)
    if args.command in ("relay", "outbox"):
        from pycrm.relaying import run_outbox, run_relay

        return (run_relay if args.command == "relay" else run_outbox)(args, out, err)
    if args.command == "retention":
        from pycrm.retaining import run_retention

        return run_retention(args, out, err)
    if args.command == "report":
        from pycrm.reports import run_report

        return run_report(args, out, err)
    if args.command in ("users", "tenants"):
        from pycrm.accounts import run_tenants, run_users

        run = run_users if args.command == "users" else run_tenants
        return run(args, out, err)
    if args.command == "db":
        from sqlalchemy.engine import make_url

        with connect(args.db, schema=args.schema, table_prefix=args.table_prefix):
            shown = make_url(args.db).render_as_string(hide_password=True)
            out.print(f"pycrm tables are up to date in {escape(shown)}", highlight=False)
        return 0
    if args.command == "completion":
        import shtab

        sys.stdout.write(shtab.complete(parser(), shell=args.shell))
        return 0
    parser().print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pycrm`` command; return its exit status."""
    args = parser().parse_args(argv)
    out = Console()
    err = Console(stderr=True)

    def fail(text: str) -> None:
        err.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True, highlight=False)

    if args.version:
        from pycrm import __version__

        out.print(f"pycrm {__version__}", highlight=False)
        return 0
    try:
        return _run(args, out, err)
    except Failure as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("Interrupted.", soft_wrap=True, highlight=False)
        return 130
    except CRMError as exc:
        if interrupted(exc):
            err.print("Interrupted.", soft_wrap=True, highlight=False)
            return 130
        fail(message(exc))
    except OSError as exc:
        fail(" ".join(str(exc).split()))
    except Exception as exc:  # a bug: say so in one line, the traceback on request
        if os.environ.get("PYCRM_DEBUG"):
            traceback.print_exc()
        fail(
            f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
            "(set PYCRM_DEBUG=1 to see the traceback, and please report it)"
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
