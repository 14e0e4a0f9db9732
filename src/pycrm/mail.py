"""Inbound email, read with the standard library: what a message says and who sent it.

:func:`parse_mail` turns an RFC 5322 message (bytes, text or an
:class:`email.message.Message`) into an :class:`InboundMail`: the sender,
recipients, subject and sending time decoded (RFC 2047 words, any charset
Python knows; undecodable bytes become U+FFFD rather than an error), the
plain-text body (the ``text/plain`` part, else the HTML part turned into
text), the attachments, the threading headers, and whether a machine sent it
(an auto-reply, a bounce, a mailing list), which intake must not answer or
open work for. :func:`read_mbox` and :func:`read_maildir` read a batch.

``s.mail.receive`` (or ``s.tickets.receive_mail`` and ``s.leads.receive_mail``)
turns messages into tickets and leads and answers with a :class:`MailReceipt`;
:mod:`pycrm.imap` fetches them from an IMAP folder.

Outgoing mail goes through a :class:`MailSender`: :class:`SmtpSender` (the
standard ``smtplib``), :class:`MemorySender` for tests, or your own.
:class:`MailAcknowledgement` is the built-in ``pycrm_mail_acknowledgement``
plugin that answers a customer whose email opened a ticket.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import smtplib
import ssl
import threading
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, make_msgid, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from pycrm.errors import ConfigurationError, ValidationError
from pycrm.rules.hookspecs import hookimpl

if TYPE_CHECKING:
    from pycrm.domain.tickets import Ticket
    from pycrm.rules.context import RuleContext

__all__ = [
    "Attachment",
    "InboundMail",
    "MailAcknowledgement",
    "MailReceipt",
    "MailSender",
    "MemorySender",
    "SmtpSender",
    "TextMailer",
    "clip",
    "find_token",
    "html_to_text",
    "parse_mail",
    "prepare_outgoing",
    "read_maildir",
    "read_mbox",
    "ticket_token",
]

#: Subject beginnings of automatic replies (case-folded), in the languages seen most.
AUTO_SUBJECTS = (
    "auto:",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "auto reply",
    "out of office",
    "out of the office",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "自动回复",
    "自動回覆",
    "自動応答",
    "delivery status notification",
    "undeliverable:",
    "undelivered mail returned to sender",
    "mail delivery failed",
)

#: Senders that are machines: bounces and mailer daemons (local part, case-folded).
MACHINE_SENDERS = ("mailer-daemon", "postmaster", "no-reply", "noreply", "do-not-reply")

_TOKEN = re.compile(r"\[#T-([0-9a-z]{8,40})\]", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


@attrs.frozen
class Attachment:
    """A file that came with a message."""

    filename: str
    """Its name as sent (``attachment`` when none was given)."""
    content_type: str
    """Its MIME type, e.g. ``application/pdf``."""
    data: bytes
    """Its content, decoded from base64 or quoted-printable."""


@attrs.frozen
class InboundMail:
    """What one inbound message says, decoded."""

    message_id: str | None
    """The ``Message-ID``, without angle brackets."""
    sender: str | None
    """The ``From`` address (``anna@acme.example``), or None when there is none."""
    sender_name: str | None
    """The display name in ``From``, decoded."""
    to: tuple[str, ...]
    """The ``To`` and ``Cc`` addresses."""
    subject: str
    """The subject, decoded, runs of white space made one space ("" without one)."""
    text: str
    """The plain-text body: the ``text/plain`` part, else the HTML part as text."""
    html: str | None
    """The HTML body, where there is one."""
    in_reply_to: str | None
    """The ``In-Reply-To`` message id, without angle brackets."""
    references: tuple[str, ...]
    """The ``References`` message ids, oldest first."""
    attachments: tuple[Attachment, ...]
    """The files sent with it (inline images too, when they have a file name)."""
    sent_at: datetime | None
    """The ``Date`` header in UTC (None when missing or unreadable)."""
    automatic: str | None
    """Why a machine sent it (an auto-reply, a bounce, a list), or None for a person."""

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The message ids this one answers: ``In-Reply-To``, then ``References`` newest first."""
        seen: list[str] = []
        for found in (self.in_reply_to, *reversed(self.references)):
            if found and found not in seen:
                seen.append(found)
        return tuple(seen)

    @property
    def token(self) -> str | None:
        """The ticket id a ``[#T-…]`` token in the subject names (see :func:`ticket_token`)."""
        return find_token(self.subject)


@attrs.frozen
class MailReceipt:
    """What intake did with one email (``s.tickets.receive_mail``, ``s.leads.receive_mail``)."""

    outcome: str
    """``opened`` (a new ticket), ``replied`` (added to the ticket it answers),
    ``captured`` (a lead), ``duplicate`` (received before: nothing done) or
    ``ignored`` (a machine sent it: nothing stored)."""
    record: Any = None
    """The ticket or lead it opened, answered or captured (None when ignored)."""
    reason: str | None = None
    """Why it was ignored, how it was threaded, or that no contact has the sender."""
    document_ids: tuple[str, ...] = ()
    """The documents its attachments became, on the record."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis saying where (for fields with a limit)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ticket_token(ticket_id: str) -> str:
    """The token to put in a ticket's mail subjects, so replies find it: ``[#T-<id>]``."""
    return f"[#T-{ticket_id}]"


def find_token(subject: str) -> str | None:
    """The ticket id of the first ``[#T-…]`` token in ``subject``, or None."""
    found = _TOKEN.search(subject or "")
    return found.group(1).lower() if found else None


def parse_mail(raw: bytes | str | Message) -> InboundMail:
    """Read one RFC 5322 message.

    :raises ValidationError: (``message``) when ``raw`` is not bytes, text or a Message.
    """
    message = _message(raw)
    sender_name, sender = _sender(message)
    text, html, attachments = _bodies(message)
    return InboundMail(
        message_id=_msgid(message.get("Message-ID")),
        sender=sender,
        sender_name=sender_name,
        to=tuple(_addresses(message, "To", "Cc")),
        subject=_clean(_header(message, "Subject")),
        text=text,
        html=html,
        in_reply_to=_msgid(message.get("In-Reply-To")),
        references=tuple(_msgids(_header(message, "References"))),
        attachments=tuple(attachments),
        sent_at=_date(message.get("Date")),
        automatic=_automatic(message, sender, _clean(_header(message, "Subject"))),
    )


def read_mbox(path: str | Path) -> Iterator[InboundMail]:
    """Every message of an mbox file, in file order."""
    box = mailbox.mbox(str(path), create=False)
    try:
        for key in box.iterkeys():
            yield parse_mail(box.get_bytes(key))
    finally:
        box.close()


def read_maildir(path: str | Path) -> Iterator[InboundMail]:
    """Every message of a maildir (``new`` and ``cur``), oldest file name first."""
    box = mailbox.Maildir(str(path), create=False)
    for key in sorted(box.iterkeys()):
        yield parse_mail(box.get_bytes(key))


# -- sending -------------------------------------------------------------------------


@runtime_checkable
class MailSender(Protocol):
    """Sends one email: how pycrm sends mail (``pycrm.connect(mail_sender=...)``).

    Implement it with your mail system (an API, a queue), or use
    :class:`SmtpSender`. pycrm calls it after the unit of work committed,
    outside any transaction, so it may block. A sender with a
    ``from_address`` attribute names the address pycrm's mail comes from:
    intake never acknowledges mail from that address (a loop).
    """

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` to the addresses in its ``To``, ``Cc`` and ``Bcc`` headers."""
        ...


def prepare_outgoing(message: Any, from_address: str | None) -> EmailMessage:
    """``message`` ready to send, the headers it lacks added (to it: it is returned).

    ``From`` becomes ``from_address`` when it has none; ``Date`` and
    ``Message-ID`` are made when missing.

    :raises ValidationError: (``message``) when it is not an EmailMessage, (``From``) when it
        has no sender and there is no ``from_address``, (``To``) when it names no recipient.
    """
    if not isinstance(message, EmailMessage):
        raise ValidationError(
            "message", type(message).__name__, "must be an email.message.EmailMessage"
        )
    if message.get("From") is None:
        if not from_address:
            raise ValidationError("From", None, "the message has no From and no from_address")
        message["From"] = from_address
    if not _addresses(message, "To", "Cc", "Bcc"):
        raise ValidationError("To", message.get("To"), "the message names no recipient")
    if message.get("Date") is None:
        message["Date"] = format_datetime(datetime.now(UTC))
    if message.get("Message-ID") is None:
        _, sender = _sender(message)
        domain = (sender or "").rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(domain=domain)
    return message


class MemorySender:
    """A :class:`MailSender` for tests: keeps what it is asked to send in :attr:`sent`.

    :param from_address: the ``From`` of messages that have none.
    :param fail: raise this exception on every send (to test a mail outage).
    """

    def __init__(self, *, from_address: str | None = None, fail: Exception | None = None) -> None:
        self.from_address = from_address
        """The ``From`` of messages that have none."""
        self.sent: list[EmailMessage] = []
        """Every message sent, oldest first."""
        self.fail = fail
        """The exception each send raises, or None."""
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        """Keep ``message`` (or raise :attr:`fail`).

        :raises ValidationError: as :func:`prepare_outgoing`.
        """
        prepare_outgoing(message, self.from_address)
        if self.fail is not None:
            raise self.fail
        with self._lock:
            self.sent.append(message)


#: How :class:`SmtpSender` secures its connection, and the port each uses by default.
SMTP_SECURITY = {"ssl": 465, "starttls": 587, "plain": 25}


class SmtpSender:
    """A :class:`MailSender` for an SMTP server, with the standard :mod:`smtplib`.

    Each message goes over a connection of its own (thread-safe; nothing
    is left open between sends).

    :param host: the server's name or address.
    :param port: its port (default: 465 for ``ssl``, 587 for ``starttls``, 25 for ``plain``).
    :param security: ``starttls`` (the default: the connection is upgraded
        to TLS, and a server that does not offer it is refused), ``ssl``
        (TLS from the start, "SMTPS") or ``plain`` (no TLS: a relay on the
        same machine, tests).
    :param username: log in as this user (then a password is needed).
    :param password_env: the environment variable that holds the password
        (read at every send, so a rotated secret is picked up).
    :param password: the password itself (prefer ``password_env``).
    :param from_address: the ``From`` of messages that have none.
    :param timeout: seconds to wait for the server.
    :param ssl_context: for ``ssl`` and ``starttls`` (default: the system's
        trusted certificates, host names checked).
    :raises ConfigurationError: naming the setting that is wrong.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: str = "starttls",
        username: str | None = None,
        password_env: str | None = None,
        password: str | None = None,
        from_address: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(host, str) or not host.strip():
            raise ConfigurationError("SmtpSender host must be a host name or address")
        if security not in SMTP_SECURITY:
            raise ConfigurationError(
                f"SmtpSender security {security!r} must be one of {', '.join(SMTP_SECURITY)}"
            )
        if port is None:
            port = SMTP_SECURITY[security]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"SmtpSender port {port!r} must be from 1 to 65535")
        if username is not None and password_env is None and password is None:
            raise ConfigurationError("SmtpSender username needs password_env (or password)")
        if password_env is not None and password is not None:
            raise ConfigurationError("SmtpSender takes password_env or password, not both")
        if (password_env is not None or password is not None) and username is None:
            raise ConfigurationError("SmtpSender password_env needs a username to log in as")
        if password_env is not None and not os.environ.get(password_env):
            raise ConfigurationError(
                f"SmtpSender password_env: the environment variable {password_env} is not set"
            )
        if from_address is not None:
            try:
                from_address = str(Address(addr_spec=from_address))
            except (ValueError, IndexError, TypeError):
                raise ConfigurationError(
                    f"SmtpSender from_address {from_address!r} is not an email address"
                ) from None
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigurationError("SmtpSender timeout must be a positive number of seconds")
        self.host = host
        """The server's name or address."""
        self.port = port
        """The server's port."""
        self.security = security
        """``ssl``, ``starttls`` or ``plain``."""
        self.username = username
        """Who it logs in as (None: no login)."""
        self.password_env = password_env
        """The environment variable holding the password."""
        self._password = password
        self.from_address = from_address
        """The ``From`` of messages that have none (and the address intake never answers)."""
        self.timeout = float(timeout)
        """Seconds to wait for the server."""
        self._context = ssl_context

    def __repr__(self) -> str:
        who = f"{self.username}@" if self.username else ""
        return f"SmtpSender({self.security}://{who}{self.host}:{self.port})"

    def _secret(self) -> str | None:
        if self.password_env is None:
            return self._password
        secret = os.environ.get(self.password_env)
        if not secret:
            raise ConfigurationError(
                f"SmtpSender password_env: the environment variable {self.password_env} is not set"
            )
        return secret

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` (headers it lacks are added, see :func:`prepare_outgoing`).

        :raises ValidationError: as :func:`prepare_outgoing`; (``To``) when
            the server refuses every recipient; (``From``) when it refuses the sender.
        :raises ConfigurationError: when the server cannot be reached, does
            not offer STARTTLS, refuses the login, or fails.
        """
        prepare_outgoing(message, self.from_address)
        secret = self._secret()
        where = f"{self.host}:{self.port}"
        context = self._context or ssl.create_default_context()
        try:
            smtp: smtplib.SMTP
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise ConfigurationError(
                            f"the SMTP server {where} does not offer STARTTLS; "
                            "use security='ssl', or 'plain' for a local relay"
                        )
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self.username is not None:
                    smtp.login(self.username, secret or "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise ConfigurationError(
                f"the SMTP server {where} refused the login of {self.username!r}: "
                f"{exc.smtp_code} {_said(exc.smtp_error)}"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            said = "; ".join(f"{a}: {c} {_said(t)}" for a, (c, t) in exc.recipients.items())
            raise ValidationError(
                "To", list(exc.recipients), f"refused by {where}: {said}"
            ) from None
        except smtplib.SMTPSenderRefused as exc:
            raise ValidationError(
                "From", exc.sender, f"refused by {where}: {exc.smtp_code} {_said(exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ConfigurationError(
                f"could not send through the SMTP server {where}: {type(exc).__name__}: {exc}"
            ) from exc


def _said(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


class TextMailer:
    """A plain-text mail port on a :class:`MailSender`, as ``pycrm.web`` takes it.

    ``send(to, subject, text)`` is the shape of ``pycrm.web.Mailer``, so
    ``App(..., mailer=TextMailer(SmtpSender(...)))`` sends the web forms'
    confirmation emails over SMTP.

    :param sender: what sends the messages.
    :param from_address: their ``From`` (default: the sender's ``from_address``).
    """

    def __init__(self, sender: MailSender, *, from_address: str | None = None) -> None:
        if not callable(getattr(sender, "send", None)):
            raise ConfigurationError("TextMailer sender must have a send(message) method")
        self.sender = sender
        """What sends the messages."""
        self.from_address = from_address
        """Their ``From`` (None: the sender's own)."""

    def send(self, to: str, subject: str, text: str) -> None:
        """Send ``text`` with ``subject`` to the address ``to``.

        :raises ValidationError: (``To``) when ``to`` is not an address; as the sender's ``send``.
        """
        message = EmailMessage()
        try:
            message["To"] = to
        except (ValueError, IndexError, TypeError):
            raise ValidationError("To", to, "is not an email address") from None
        message["Subject"] = subject
        if self.from_address is not None:
            message["From"] = self.from_address
        message.set_content(text)
        self.sender.send(message)


# -- acknowledging -------------------------------------------------------------------

_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|wg|fw|fwd|回复|答复)\s*[:：]\s*)+", re.IGNORECASE)


class MailAcknowledgement:
    """The built-in acknowledgement: "we have your email, it is ticket [#T-…]".

    pycrm registers it as plugin ``pycrm.acknowledgement`` when a CRM is
    connected with a ``mail_sender``. It answers last (``trylast``), so a
    plugin of yours that returns a message wins; unregister it
    (``crm.plugins.unregister(name="pycrm.acknowledgement")``) to send none.
    The templates may use ``{name}`` (the sender's name, else their
    address), ``{subject}`` (the customer's subject without "Re:"),
    ``{token}`` (``[#T-<id>]``) and ``{ticket_id}``.

    :param subject: the subject template (the token is added when it has none).
    :param text: the body template.
    :param from_address: the ``From`` (default: the sender's ``from_address``).
    :raises ConfigurationError: when a template names another field.
    """

    SUBJECT = "Re: {subject} {token}"
    """The default subject template."""
    TEXT = (
        "Hello {name},\n\n"
        "thank you for your email. We have opened ticket {token} for it and will answer "
        "as soon as we can. Please keep {token} in the subject when you write about it.\n\n"
        "This message was sent automatically."
    )
    """The default body template."""

    def __init__(
        self, *, subject: str = SUBJECT, text: str = TEXT, from_address: str | None = None
    ) -> None:
        for name, template in (("subject", subject), ("text", text)):
            try:
                template.format(name="", subject="", token="", ticket_id="")
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise ConfigurationError(
                    f"MailAcknowledgement {name} template: {type(exc).__name__}: {exc}; "
                    "use {name}, {subject}, {token} and {ticket_id}"
                ) from None
        self.subject = subject
        """The subject template."""
        self.text = text
        """The body template."""
        self.from_address = from_address
        """The ``From`` (None: the sender's)."""

    @hookimpl(trylast=True)
    def pycrm_mail_acknowledgement(
        self, ticket: Ticket, mail: InboundMail, ctx: RuleContext
    ) -> EmailMessage | None:
        """The acknowledgement of ``mail``, which opened ``ticket``."""
        values = {
            "name": mail.sender_name or mail.sender or "",
            "subject": _REPLY_PREFIX.sub("", mail.subject).strip() or "(no subject)",
            "token": ticket_token(ticket.id),
            "ticket_id": ticket.id,
        }
        message = EmailMessage()
        message["Subject"] = _clean(self.subject.format(**values))
        if self.from_address is not None:
            message["From"] = self.from_address
        message.set_content(self.text.format(**values))
        return message


# -- reading -------------------------------------------------------------------------


def _message(raw: Any) -> EmailMessage:
    if isinstance(raw, EmailMessage):
        return raw
    if isinstance(raw, Message):
        return _message(raw.as_bytes())
    if isinstance(raw, bytes | bytearray):
        parsed = email.message_from_bytes(bytes(raw), policy=email.policy.default)
    elif isinstance(raw, str):
        parsed = email.message_from_string(raw, policy=email.policy.default)
    else:
        raise ValidationError(
            "message", type(raw).__name__, "must be bytes, text or an email Message"
        )
    assert isinstance(parsed, EmailMessage)  # what the default policy makes
    return parsed


def _header(message: EmailMessage, name: str) -> str:
    """A header's decoded text ("" when missing or beyond repair)."""
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot parse: its raw text
        wanted = name.lower()
        value = next((v for k, v in message.raw_items() if k.lower() == wanted), None)
    return "" if value is None else str(value)


def _clean(text: str) -> str:
    return _SPACE.sub(" ", _shown(text)).strip()


def _shown(text: str) -> str:
    """``text`` without control, surrogate and private-use characters (tabs and breaks kept).

    Mail carries them (a NUL, a stray escape) where no reader sees them, and
    pycrm's text fields refuse them: intake drops them instead.
    """
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs", "Co")
    )


def _msgid(value: Any) -> str | None:
    ids = _msgids("" if value is None else str(value))
    return ids[0] if ids else None


def _msgids(value: str) -> list[str]:
    found = re.findall(r"<([^<>\s]+)>", value)
    if not found and value.strip():
        found = [part.strip("<>") for part in value.split() if part.strip("<>")]
    return found


def _sender(message: EmailMessage) -> tuple[str | None, str | None]:
    try:
        header = message["From"]
    except Exception:
        header = None
    if header is None:
        return None, None
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    raw = next((str(v) for k, v in message.raw_items() if k.lower() == "from"), "")
    pairs = getaddresses([raw])  # the raw text: also the old "a@b.example (Name)" form
    if addresses:
        name, address = addresses[0].display_name, addresses[0].addr_spec
        if not name and pairs:
            name = pairs[0][0]
    else:
        name, address = pairs[0] if pairs else ("", "")
    return (_clean(name) or None), (None if address in ("", "<>") else address)


def _addresses(message: EmailMessage, *names: str) -> list[str]:
    found: list[str] = []
    for name in names:
        for value in message.get_all(name, []):
            for address in getattr(value, "addresses", ()):
                if address.addr_spec and address.addr_spec not in found:
                    found.append(address.addr_spec)
    return found


def _date(value: Any) -> datetime | None:
    if value is None:
        return None
    when = getattr(value, "datetime", None)
    try:
        if when is None:
            when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _content(part: EmailMessage) -> str:
    """A text part's content, decoded: its charset, else UTF-8, bad bytes as U+FFFD."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return payload.decode("utf-8", errors="replace")


def _bodies(message: EmailMessage) -> tuple[str, str | None, list[Attachment]]:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if filename or disposition == "attachment" or not kind.startswith("text/"):
            if kind == "message/rfc822" or part.get_payload(decode=True) is None:
                continue
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                attachments.append(Attachment(_clean(filename or "") or "attachment", kind, data))
            continue
        if kind == "text/plain":
            plain.append(_content(part))
        elif kind == "text/html":
            html.append(_content(part))
    html_text = "\n".join(html) if html else None
    if plain:
        text = "\n".join(plain)
    elif html_text is not None:
        text = html_to_text(html_text)
    else:
        text = ""
    return _shown(text.replace("\r\n", "\n")).strip(), html_text, attachments


def _automatic(message: EmailMessage, sender: str | None, subject: str) -> str | None:
    """Why a machine sent ``message`` (RFC 3834 and the headers mail systems use), or None."""
    auto = _header(message, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autogenerated"):
        if message.get(name) is not None:
            return f"{name} header"
    suppress = _header(message, "X-Auto-Response-Suppress").lower()
    if any(word in suppress for word in ("all", "oof", "autoreply")):
        return f"X-Auto-Response-Suppress: {suppress}"
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    if message.get("List-Id") is not None or message.get("List-Unsubscribe") is not None:
        return "a mailing list (List-Id)"
    if message.get_content_type() == "multipart/report":
        return "a delivery report (multipart/report)"
    if _header(message, "Return-Path").strip() == "<>":
        return "a bounce (empty Return-Path)"
    local = (sender or "").partition("@")[0].lower()
    if local in MACHINE_SENDERS:
        return f"sent by {local}"
    folded = subject.casefold()
    for start in AUTO_SUBJECTS:
        if folded.startswith(start):
            return f"an automatic subject ({subject[: len(start)]})"
    return None


# -- HTML to text ----------------------------------------------------------------------

_BLOCKS = {
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "table", "ul", "ol", "hr", "section", "article", "header", "footer",
}  # fmt: skip


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The text a reader sees in ``html``: tags gone, entities decoded, blocks on lines."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (_clean(line) for line in "".join(parser.parts).splitlines())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
