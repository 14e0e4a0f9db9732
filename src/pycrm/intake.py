"""``pycrm mail``: a mailbox (Maildir or mbox) or an IMAP folder into the desk, one email at a time.

Each email goes through ``s.mail.receive`` (to a ticket, or with ``--to
lead`` to a lead) in a session of its own, so one the desk refuses (a bad
category, a grant missing) is reported with its place in the mailbox and the
others still count. Reading the same mailbox again does nothing new: emails
received before are duplicates.

With ``--imap URL`` the unseen messages of an IMAP folder are read by
:class:`pycrm.imap.ImapPoller`, every ``--poll`` seconds until SIGTERM or
Ctrl-C (the batch in hand is finished first), or once with ``--once``.
"""

from __future__ import annotations

import argparse
import mailbox
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape

from pycrm.crm import connect
from pycrm.errors import ConfigurationError, CRMError
from pycrm.imap import ImapPoller
from pycrm.terminal import Failure, actor_for, explained, message, print_json

__all__ = ["LEAD_OUTCOMES", "OUTCOMES", "mailbox_messages", "run_mail"]

#: What can happen to an email sent to the desk, in the order the summary lists them.
OUTCOMES = ("opened", "replied", "duplicate", "ignored", "refused")

#: What can happen to an email captured as a lead (``--to lead``).
LEAD_OUTCOMES = ("captured", "duplicate", "ignored", "refused")


def mailbox_messages(path: str | Path) -> Iterator[bytes]:
    """The raw emails of a Maildir (a directory; oldest file name first) or an mbox file."""
    where = Path(path)
    if where.is_dir():
        box: mailbox.Mailbox[mailbox.Message] = mailbox.Maildir(str(where), create=False)
        keys = sorted(box.iterkeys())
    elif where.is_file():
        box = mailbox.mbox(str(where), create=False)
        keys = list(box.iterkeys())
    else:
        raise Failure(f"no mailbox at {where}: give a Maildir folder or an mbox file")
    try:
        for key in keys:
            yield box.get_bytes(key)
    finally:
        box.close()


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``s.mail.receive`` takes besides the message, as the command line says it."""
    return {
        "to": args.to,
        "category": args.category,
        "priority": args.priority,
        "source": args.source,
        "campaign": args.campaign,
    }


def _said(counts: Counter[str], names: tuple[str, ...]) -> str:
    return ", ".join(f"{counts[name]:,} {name}" for name in names)


def run_mail(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Feed ``args.mailbox`` or the IMAP folder ``args.imap`` to the desk; 1 if any refused."""
    if (args.mailbox is None) == (args.imap is None):
        raise Failure("give a MAILBOX (a Maildir folder or an mbox file) or --imap URL, not both")
    if args.to == "lead" and (args.category is not None or args.priority is not None):
        raise Failure("--category and --priority are for tickets; --to lead takes --source")
    if args.to == "ticket" and (args.source is not None or args.campaign is not None):
        raise Failure("--source and --campaign are for leads (--to lead)")
    if args.imap is not None:
        return _run_imap(args, out, err)
    if args.mailbox is not None and (args.password_env or args.once):
        raise Failure("--password-env and --once are for --imap")
    names = LEAD_OUTCOMES if args.to == "lead" else OUTCOMES
    counts: Counter[str] = Counter()
    refused: list[dict[str, object]] = []
    with connect(args.db) as crm, explained(crm, args.tenant):
        actor = actor_for(crm, args.actor, args.tenant)
        for number, raw in enumerate(mailbox_messages(args.mailbox), start=1):
            try:
                with crm.session(actor=actor, tenant=args.tenant) as s:
                    receipt = s.mail.receive(raw, **_options(args))
            except CRMError as exc:
                counts["refused"] += 1
                refused.append({"email": number, "reason": message(exc)})
                continue
            counts[receipt.outcome] += 1
    summary = {name: counts[name] for name in names}
    if args.json:
        print_json({**summary, "refusals": refused})
    else:
        out.print(f"{escape(str(args.mailbox))}: {_said(counts, names)}", highlight=False)
        for item in refused:
            err.print(f"email {item['email']}: {escape(str(item['reason']))}", highlight=False)
    return 1 if refused else 0


def _run_imap(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Poll the IMAP folder until stopped (or once); print the totals; 1 if any refused."""
    if args.poll <= 0:
        raise Failure("--poll must be a positive number of seconds")
    if not 1 <= args.batch <= 1000:
        raise Failure("--batch must be from 1 to 1,000")
    poller = ImapPoller(
        args.imap,
        password_env=args.password_env,
        security=args.imap_security,
        processed_folder=args.processed_folder,
        error_folder=args.error_folder,
        batch=args.batch,
    )
    names = LEAD_OUTCOMES if args.to == "lead" else OUTCOMES
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        err.print("stopping after the batch in hand", highlight=False, soft_wrap=True)
        stop.set()

    previous = (
        {s: signal.signal(s, stopping) for s in (signal.SIGTERM, signal.SIGINT)}
        if threading.current_thread() is threading.main_thread()
        else {}  # signals reach only the main thread: elsewhere the caller stops the process
    )
    totals: Counter[str] = Counter()
    refused: list[dict[str, object]] = []
    rounds = 0
    try:
        with connect(args.db) as crm, explained(crm, args.tenant):
            actor = actor_for(crm, args.actor, args.tenant)
            if not args.once:
                err.print(
                    f"mail: reading {escape(str(poller.address))} every {args.poll:g} s "
                    f"into {args.to}s; SIGTERM or Ctrl-C stops",
                    highlight=False,
                    soft_wrap=True,
                )
            while not stop.is_set():
                try:
                    report = poller.poll(
                        crm, actor=actor, tenant=args.tenant, stop=stop, **_options(args)
                    )
                except ConfigurationError as exc:
                    # The first round proves the settings: a wrong password or folder
                    # stops at once. Later, the server may be away for a while.
                    if rounds == 0 or args.once:
                        raise
                    err.print(f"mail: {escape(message(exc))}", highlight=False, soft_wrap=True)
                else:
                    totals.update(report.counts)
                    refused.extend({"uid": r.uid, "reason": r.reason} for r in report.refusals)
                    if not args.once and report.total:
                        err.print(
                            f"mail: {_said(Counter(report.counts), names)}",
                            highlight=False,
                            soft_wrap=True,
                        )
                    for r in report.refusals:
                        err.print(
                            f"message {r.uid}: {escape(r.reason)}", highlight=False, soft_wrap=True
                        )
                rounds += 1
                if args.once:
                    break
                stop.wait(args.poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = {name: totals[name] for name in names}
    if args.json:
        print_json({**summary, "refusals": refused})
    else:
        out.print(f"{escape(str(poller.address))}: {_said(totals, names)}", highlight=False)
    return 1 if refused else 0
