"""Email intake from an IMAP folder, with the standard :mod:`imaplib`.

:class:`ImapPoller` logs in to a mailbox named by a URL
(``imaps://support%40shop.example@mail.shop.example/INBOX``), fetches the
folder's unseen messages without marking them (``BODY.PEEK``), oldest first
and in batches, and gives each to ``s.mail.receive`` in a session of its
own. A message the desk took (opened, replied, captured, a duplicate, or a
machine's mail it ignores) is then marked ``Seen``, or moved to
``processed_folder``; one the desk refused (a ``CRMError``) stays unseen for
a person to look at, or is moved to ``error_folder``. Reading a folder again
does nothing new: intake knows the emails it received by their ``Message-ID``,
so a crash between the commit and the ``Seen`` flag makes a duplicate, not
a second ticket.

``pycrm mail --imap URL`` runs it in a loop (see :mod:`pycrm.intake`).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import ipaddress
import os
import re
import ssl
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import attrs

from pycrm.errors import ConfigurationError, CRMError

if TYPE_CHECKING:
    from pycrm.crm import CRM
    from pycrm.domain.org import Actor, User

__all__ = [
    "IMAP_SECURITY",
    "OUTCOMES",
    "ImapAddress",
    "ImapPoller",
    "PollReport",
    "Refusal",
    "imap_address",
]

#: How the poller secures its connection, and the port each uses by default.
IMAP_SECURITY = {"ssl": 993, "starttls": 143, "plain": 143}

#: What can happen to a message, in the order a summary lists them.
OUTCOMES = ("opened", "replied", "captured", "duplicate", "ignored", "refused")

_UID = re.compile(rb"\bUID (\d+)")


@attrs.frozen
class ImapAddress:
    """Where a mailbox is: what an ``imap://`` or ``imaps://`` URL says."""

    security: str
    """``ssl`` (``imaps://``), ``starttls`` or ``plain``."""
    host: str
    """The server's name or address."""
    port: int
    """Its port (993 for ``imaps://``, 143 for ``imap://`` unless the URL says)."""
    username: str
    """Who to log in as (percent-decoded: ``support%40shop.example`` is ``support@shop.example``)."""
    password: str | None
    """The password written in the URL, if any (prefer ``password_env``)."""
    folder: str
    """The folder to read (the URL's path; ``INBOX`` without one)."""
    loose: bool = False
    """``imap://`` to a loopback host: plain text when the server offers no STARTTLS."""

    def __str__(self) -> str:
        scheme = "imaps" if self.security == "ssl" else "imap"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.folder}"


def imap_address(url: str, *, security: str | None = None) -> ImapAddress:
    """Read an IMAP URL: ``imaps://user@host[:port]/FOLDER`` or ``imap://…``.

    ``imaps://`` is TLS from the start; ``imap://`` is upgraded with
    STARTTLS, which must be offered, except on a loopback address (a server
    on the same machine, tests), where plain text is used when it is not.
    ``security`` (``ssl``, ``starttls`` or ``plain``) says it outright.

    :raises ConfigurationError: naming what is wrong with the URL.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"IMAP URL must be text, not {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"IMAP URL {_shown(url)}: {exc}") from None
    if parts.scheme not in ("imap", "imaps"):
        raise ConfigurationError(
            f"IMAP URL {_shown(url)} must begin imaps:// (TLS) or imap:// (STARTTLS)"
        )
    if not parts.hostname:
        raise ConfigurationError(f"IMAP URL {_shown(url)} names no host")
    if not parts.username:
        raise ConfigurationError(
            f"IMAP URL {_shown(url)} names no user: imaps://USER@{parts.hostname}/INBOX"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"IMAP URL {_shown(url)}: a query or fragment means nothing here")
    if security is None:
        chosen = "ssl" if parts.scheme == "imaps" else "starttls"
    elif security in IMAP_SECURITY:
        chosen = security
    else:
        raise ConfigurationError(
            f"IMAP security {security!r} must be one of {', '.join(IMAP_SECURITY)}"
        )
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapAddress(
        security=chosen,
        host=parts.hostname,
        port=port or IMAP_SECURITY[chosen],
        username=unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
        folder=folder,
        loose=security is None and chosen == "starttls" and _loopback(parts.hostname),
    )


def _shown(url: str) -> str:
    """``url`` with any password in it masked, for messages."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class Refusal:
    """A message the desk refused."""

    uid: int
    """Its IMAP UID in the folder."""
    reason: str
    """The error, as the desk said it."""


@attrs.frozen
class PollReport:
    """What one round of :meth:`ImapPoller.poll` did."""

    counts: Mapping[str, int]
    """Messages by outcome (:data:`OUTCOMES`): ``opened``, ``replied``, ``captured``,
    ``duplicate``, ``ignored`` (a machine's mail) and ``refused``."""
    refusals: tuple[Refusal, ...] = ()
    """The refused messages and why."""
    stopped: bool = False
    """True when a stop request ended the round before every unseen message was read."""

    @property
    def total(self) -> int:
        """How many messages the round read."""
        return sum(self.counts.values())


class ImapPoller:
    """Reads the unseen messages of one IMAP folder into the CRM.

    :param url: the mailbox, ``imaps://user@host[:port]/FOLDER`` (see :func:`imap_address`).
    :param password_env: the environment variable holding the password
        (read at each round, so a rotated secret is picked up).
    :param password: the password itself (else ``password_env``, else the URL's).
    :param security: ``ssl``, ``starttls`` or ``plain``, to override the URL's scheme.
    :param processed_folder: move the messages taken here (default: mark them ``Seen``).
    :param error_folder: move the refused messages here (default: leave them unseen).
    :param batch: messages fetched per round trip (1 to 1,000).
    :param timeout: seconds to wait for the server.
    :param ssl_context: for TLS (default: the system's trusted certificates).
    :raises ConfigurationError: naming the setting that is wrong.
    """

    def __init__(
        self,
        url: str,
        *,
        password_env: str | None = None,
        password: str | None = None,
        security: str | None = None,
        processed_folder: str | None = None,
        error_folder: str | None = None,
        batch: int = 50,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.address = imap_address(url, security=security)
        """Where the mailbox is."""
        if password_env is not None and password is not None:
            raise ConfigurationError("ImapPoller takes password_env or password, not both")
        if password_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", password_env):
            raise ConfigurationError(
                f"ImapPoller password_env {password_env!r} is not an environment variable name"
            )
        for name, folder in (
            ("processed_folder", processed_folder),
            ("error_folder", error_folder),
        ):
            if folder is not None and (not isinstance(folder, str) or not folder.strip()):
                raise ConfigurationError(f"ImapPoller {name} must be a folder name")
            if folder is not None and folder == self.address.folder:
                raise ConfigurationError(f"ImapPoller {name} must differ from the folder read")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1000:
            raise ConfigurationError("ImapPoller batch must be from 1 to 1,000")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigurationError("ImapPoller timeout must be a positive number of seconds")
        self.password_env = password_env
        """The environment variable holding the password."""
        self._password = password
        self.processed_folder = processed_folder
        """Where the messages taken go (None: they stay, marked ``Seen``)."""
        self.error_folder = error_folder
        """Where the refused messages go (None: they stay unseen)."""
        self.batch = batch
        """Messages fetched per round trip."""
        self.timeout = float(timeout)
        """Seconds to wait for the server."""
        self._context = ssl_context
        self._secret()  # a missing password is a configuration error now, not at the first poll

    def __repr__(self) -> str:
        return f"ImapPoller({self.address})"

    def _secret(self) -> str:
        if self._password is not None:
            return self._password
        if self.password_env is not None:
            secret = os.environ.get(self.password_env)
            if not secret:
                raise ConfigurationError(
                    f"IMAP password: the environment variable {self.password_env} is not set"
                )
            return secret
        if self.address.password is not None:
            return self.address.password
        raise ConfigurationError(
            f"IMAP password for {self.address}: give password_env (pycrm mail --password-env VAR)"
        )

    def poll(
        self,
        crm: CRM,
        *,
        actor: str | User | Actor,
        tenant: str | None = None,
        to: str = "ticket",
        category: str | None = None,
        priority: str | None = None,
        source: str | None = None,
        campaign: str | None = None,
        stop: threading.Event | None = None,
    ) -> PollReport:
        """One round: every unseen message of the folder into ``s.mail.receive``, then settled.

        Each message gets a session of its own as ``actor`` in ``tenant``,
        so one refused does not stop the rest; ``to``, ``category``,
        ``priority``, ``source`` and ``campaign`` are passed on. With
        ``stop`` set, the round ends after the batch in hand.

        :raises ConfigurationError: when the server cannot be reached, refuses
            the login, has no such folder, or fails mid-round (the messages
            settled so far stay settled; the rest are read next round).
        """
        counts: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        refusals: list[Refusal] = []
        stopped = False
        with self._session() as box:
            uids = box.unseen()
            for start in range(0, len(uids), self.batch):
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                for uid, raw in box.fetch(uids[start : start + self.batch]):
                    try:
                        with crm.session(actor=actor, tenant=tenant) as s:
                            receipt = s.mail.receive(
                                raw,
                                to=to,
                                category=category,
                                priority=priority,
                                source=source,
                                campaign=campaign,
                            )
                    except CRMError as exc:
                        counts["refused"] += 1
                        refusals.append(Refusal(uid, _reason(exc)))
                        if self.error_folder is not None:
                            box.move(uid, self.error_folder)
                        continue
                    counts[receipt.outcome] += 1
                    box.done(uid, self.processed_folder)
        return PollReport(dict(counts), tuple(refusals), stopped)

    def _session(self) -> _Box:
        return _Box(self)


def _reason(exc: CRMError) -> str:
    return " ".join(str(exc).split())  # one line: a driver's message may run over several


class _Box:
    """One logged-in connection with the folder selected (a context manager)."""

    def __init__(self, poller: ImapPoller) -> None:
        self.poller = poller
        self.where = f"{poller.address.host}:{poller.address.port}"
        self.imap: imaplib.IMAP4 | None = None
        self.capabilities: set[str] = set()
        self.folders: set[str] = set()

    def __enter__(self) -> _Box:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        imap, self.imap = self.imap, None
        if imap is None:
            return
        try:
            if imap.state == "SELECTED":
                imap.close()
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            with contextlib.suppress(OSError):
                imap.shutdown()

    # -- talking to the server -----------------------------------------------------

    def _fail(self, doing: str, exc: BaseException) -> ConfigurationError:
        said = exc.args[0] if exc.args else exc
        if isinstance(said, bytes):
            said = said.decode("utf-8", "replace")
        return ConfigurationError(f"IMAP {self.where}: {doing}: {said}")

    def _ok(self, doing: str, answer: tuple[str, list[Any]]) -> list[Any]:
        kind, data = answer
        if kind != "OK":
            said = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise ConfigurationError(f"IMAP {self.where}: {doing}: {kind} {said}".rstrip())
        return data

    def _open(self) -> None:
        poller, address = self.poller, self.poller.address
        context = poller._context or ssl.create_default_context()
        secret = poller._secret()
        try:
            if address.security == "ssl":
                self.imap = imaplib.IMAP4_SSL(
                    address.host, address.port, ssl_context=context, timeout=poller.timeout
                )
            else:
                self.imap = imaplib.IMAP4(address.host, address.port, timeout=poller.timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._fail("cannot connect", exc) from exc
        imap = self.imap
        try:
            if address.security == "starttls":
                if "STARTTLS" in imap.capabilities:
                    imap.starttls(ssl_context=context)
                elif not address.loose:
                    raise ConfigurationError(
                        f"IMAP {self.where} does not offer STARTTLS: use imaps://, or "
                        "security='plain' (--imap-security plain) for a server you trust"
                    )
            try:
                if "AUTH=PLAIN" in imap.capabilities:  # UTF-8 safe, unlike LOGIN
                    user = address.username.encode()
                    imap.authenticate("PLAIN", lambda _: b"\0" + user + b"\0" + secret.encode())
                else:
                    imap.login(address.username, secret)
            except imaplib.IMAP4.error as exc:
                raise self._fail(f"the login of {address.username!r} was refused", exc) from None
            self.capabilities = {
                c.upper() for c in self._ok("CAPABILITY", imap.capability())[0].decode().split()
            }
            for folder in (poller.processed_folder, poller.error_folder):
                if folder is not None:
                    self._ensure(folder)
            self._ok(f"select folder {address.folder!r}", imap.select(_name(address.folder)))
        except ConfigurationError:
            self.__exit__()
            raise
        except (OSError, imaplib.IMAP4.error) as exc:
            self.__exit__()
            raise self._fail("the server failed", exc) from exc

    def _ensure(self, folder: str) -> None:
        """Create ``folder`` unless it exists."""
        assert self.imap is not None
        data = self._ok(f"list folder {folder!r}", self.imap.list('""', _name(folder)))
        if any(isinstance(line, bytes) and line for line in data):
            return
        self._ok(f"create folder {folder!r}", self.imap.create(_name(folder)))

    def unseen(self) -> list[int]:
        """The UIDs of the folder's unseen messages, oldest first."""
        assert self.imap is not None
        try:
            data = self._ok("search unseen", self.imap.uid("SEARCH", "UNSEEN"))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._fail("search unseen", exc) from exc
        return sorted(int(n) for n in (data[0] or b"").split())

    def fetch(self, uids: list[int]) -> Iterator[tuple[int, bytes]]:
        """Each message of ``uids`` (UID, raw bytes), unmarked, in ``uids`` order."""
        assert self.imap is not None
        try:
            data = self._ok("fetch", self.imap.uid("FETCH", _set(uids), "(UID BODY.PEEK[])"))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._fail("fetch", exc) from exc
        found: dict[int, bytes] = {}
        for index, item in enumerate(data):
            if not isinstance(item, tuple):
                continue
            head, body = item[0], item[1]
            match = _UID.search(head)
            if match is None and index + 1 < len(data) and isinstance(data[index + 1], bytes):
                match = _UID.search(data[index + 1])  # "BODY[] {n} … UID 7)": after the body
            if match is not None:
                found[int(match.group(1))] = body
        for uid in uids:
            if uid in found:  # a message deleted meanwhile is simply gone
                yield uid, found[uid]

    def done(self, uid: int, folder: str | None) -> None:
        """Mark ``uid`` seen, and move it to ``folder`` when one is given."""
        assert self.imap is not None
        try:
            self._ok("mark seen", self.imap.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)"))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._fail("mark seen", exc) from exc
        if folder is not None:
            self.move(uid, folder)

    def move(self, uid: int, folder: str) -> None:
        """Move ``uid`` to ``folder``: MOVE where offered, else COPY, delete and expunge."""
        assert self.imap is not None
        imap, target = self.imap, _name(folder)
        try:
            if "MOVE" in self.capabilities:
                self._ok(f"move to {folder!r}", imap.uid("MOVE", str(uid), target))
                return
            self._ok(f"copy to {folder!r}", imap.uid("COPY", str(uid), target))
            self._ok("delete", imap.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)"))
            if "UIDPLUS" in self.capabilities:  # only this message; a bare EXPUNGE takes all
                self._ok("expunge", imap.uid("EXPUNGE", str(uid)))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._fail(f"move to {folder!r}", exc) from exc


def _set(uids: list[int]) -> str:
    return ",".join(str(uid) for uid in uids)


def _name(folder: str) -> str:
    """A folder name as IMAP writes it: modified UTF-7 (RFC 3501), quoted."""
    encoded = _utf7(folder)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _utf7(text: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in text:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)
