"""``s.mail``: email intake (an email to a ticket or a lead), and acknowledging it."""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage
from functools import partial
from typing import TYPE_CHECKING

from pycrm.domain.tickets import Priority
from pycrm.errors import ConfigurationError, CRMError, ValidationError
from pycrm.mail import InboundMail, MailReceipt, MailSender, find_token, ticket_token
from pycrm.rules.context import RuleContext
from pycrm.services.records import Service

if TYPE_CHECKING:
    from pycrm.domain.tickets import Ticket
    from pycrm.session import Session

__all__ = ["TARGETS", "MailService", "acknowledge"]

#: Where ``s.mail.receive`` can take an email.
TARGETS = ("ticket", "lead")

_HOOK = "pycrm_mail_acknowledgement"
log = logging.getLogger("pycrm.mail")


class MailService(Service):
    """Email intake on a session: ``s.mail.receive(message, to="ticket")``.

    One entry for both desks; ``s.tickets.receive_mail`` and
    ``s.leads.receive_mail`` do the work (see them for what each outcome means).
    """

    def receive(
        self,
        message: bytes | str | EmailMessage,
        *,
        to: str = "ticket",
        category: str | None = None,
        priority: Priority | str | None = None,
        source: str | None = None,
        campaign: str | None = None,
    ) -> MailReceipt:
        """Take one email (RFC 5322 bytes or text, or an ``email`` Message) to a ticket or a lead.

        ``to="ticket"`` (the default) threads it to the ticket it answers or
        opens one, with ``category`` and ``priority`` (default ``normal``):
        ``s.tickets.receive_mail``. A ticket it opens is acknowledged to the
        customer when the CRM has a ``mail_sender`` (hook
        ``pycrm_mail_acknowledgement``). ``to="lead"`` captures it as a lead
        with ``source`` (default ``email``) and ``campaign``:
        ``s.leads.receive_mail``. Either way an email received before (its
        ``Message-ID``) is a ``duplicate`` and a machine's mail is ``ignored``.

        :raises ValidationError: (``to``) for another target; (``category``,
            ``priority``, ``source`` or ``campaign``) given for the other
            target, or wrong; as the service it goes to.
        :raises PermissionDenied: without the grants that service needs.
        """
        if to == "ticket":
            for name, value in (("source", source), ("campaign", campaign)):
                if value is not None:
                    raise ValidationError(name, value, "applies to leads only (to='lead')")
            return self._s.tickets.receive_mail(
                message,
                category=category,
                priority=Priority.NORMAL if priority is None else priority,
            )
        if to == "lead":
            for name, value in (("category", category), ("priority", priority)):
                if value is not None:
                    raise ValidationError(name, value, "applies to tickets only (to='ticket')")
            return self._s.leads.receive_mail(
                message, source="email" if source is None else source, campaign=campaign
            )
        raise ValidationError("to", to, f"must be one of {', '.join(TARGETS)}")


def acknowledge(s: Session, ticket: Ticket, mail: InboundMail) -> None:
    """Have the plugins answer ``mail``, which opened ``ticket``; send it after ``s`` commits.

    The ``pycrm_mail_acknowledgement`` plugins are asked only when the CRM
    has a mail sender and a person sent ``mail`` from an address of its own.

    :raises ConfigurationError: when a plugin raises or returns something else
        than an EmailMessage or None (the intake is undone with it).
    """
    sender = s.crm.mail_sender
    if sender is None or mail.sender is None or mail.automatic is not None:
        return
    own = getattr(sender, "from_address", None)
    if isinstance(own, str) and own.strip().casefold() == mail.sender.casefold():
        return  # our own mail came back: answering it would loop
    engine = s.crm.rules
    arguments = {"ticket": ticket, "mail": mail, "ctx": RuleContext(s, kind="ticket")}
    for impl in engine._impls(_HOOK):
        answer = engine._call(impl, _HOOK, arguments)
        if answer is None:
            continue
        if not isinstance(answer, EmailMessage):
            raise ConfigurationError(
                f"plugin {impl.plugin_name!r} returned {answer!r} from {_HOOK}; "
                "expected an email.message.EmailMessage or None"
            )
        try:
            message = _completed(answer, ticket, mail, own if isinstance(own, str) else None)
        except (ValueError, TypeError, IndexError) as exc:
            raise ConfigurationError(
                f"plugin {impl.plugin_name!r} returned a message pycrm cannot complete "
                f"from {_HOOK}: {exc}"
            ) from exc
        s._after_commit(partial(_send, sender, message, ticket.id))
        return


def _completed(
    message: EmailMessage, ticket: Ticket, mail: InboundMail, own: str | None
) -> EmailMessage:
    """``message`` with the headers an acknowledgement needs (those it has are kept)."""
    assert mail.sender is not None
    if message.get("To") is None:
        message["To"] = mail.sender
    if message.get("From") is None and own:
        message["From"] = own
    subject = str(message.get("Subject") or "")
    if find_token(subject) != ticket.id.lower():
        subject = f"{subject} {ticket_token(ticket.id)}".strip()
        del message["Subject"]
        message["Subject"] = subject
    if mail.message_id:
        if message.get("In-Reply-To") is None:
            message["In-Reply-To"] = f"<{mail.message_id}>"
        if message.get("References") is None:
            ids = [*mail.references, mail.message_id]
            message["References"] = " ".join(f"<{i}>" for i in dict.fromkeys(ids))
    del message["Auto-Submitted"]
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834: no one auto-answers this
    if message.get("X-Auto-Response-Suppress") is None:
        message["X-Auto-Response-Suppress"] = "All"  # Exchange's own loop guard
    return message


_SPACE = re.compile(r"\s+")


def _send(sender: MailSender, message: EmailMessage, ticket_id: str) -> None:
    """Send an acknowledgement after the commit; a failure is logged, never raised."""
    try:
        sender.send(message)
    except CRMError as exc:
        log.warning("the acknowledgement of ticket %s was not sent: %s", ticket_id, exc)
    except Exception:
        log.exception("the acknowledgement of ticket %s was not sent", ticket_id)
    else:
        log.info(
            "acknowledged ticket %s to %s",
            ticket_id,
            _SPACE.sub(" ", str(message.get("To"))),
        )
