"""``pycrm mail``: a mailbox (Maildir or mbox) into the service desk, one email at a time.

Each email goes through ``s.tickets.receive_mail`` in a session of its own,
so one the desk refuses (a bad category, a grant missing) is reported with
its place in the mailbox and the others still count. Reading the same
mailbox again does nothing new: emails received before are duplicates.
"""

from __future__ import annotations

import argparse
import mailbox
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from pycrm.crm import connect
from pycrm.errors import CRMError
from pycrm.terminal import Failure, actor_for, explained, message, print_json

__all__ = ["OUTCOMES", "mailbox_messages", "run_mail"]

#: What can happen to an email, in the order the summary lists them.
OUTCOMES = ("opened", "replied", "duplicate", "ignored", "refused")


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


def run_mail(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Feed the mailbox ``args.mailbox`` to the desk; print what happened; 1 if any refused."""
    counts: Counter[str] = Counter()
    refused: list[dict[str, object]] = []
    with connect(args.db) as crm, explained(crm, args.tenant):
        actor = actor_for(crm, args.actor, args.tenant)
        for number, raw in enumerate(mailbox_messages(args.mailbox), start=1):
            try:
                with crm.session(actor=actor, tenant=args.tenant) as s:
                    receipt = s.tickets.receive_mail(
                        raw, category=args.category, priority=args.priority
                    )
            except CRMError as exc:
                counts["refused"] += 1
                refused.append({"email": number, "reason": message(exc)})
                continue
            counts[receipt.outcome] += 1
    summary = {name: counts[name] for name in OUTCOMES}
    if args.json:
        print_json({**summary, "refusals": refused})
    else:
        said = ", ".join(f"{counts[name]:,} {name}" for name in OUTCOMES)
        out.print(f"{escape(str(args.mailbox))}: {said}", highlight=False)
        for item in refused:
            err.print(f"email {item['email']}: {escape(str(item['reason']))}", highlight=False)
    return 1 if refused else 0
