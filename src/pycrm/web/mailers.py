"""The mail port the double opt-in sends its confirmation emails through."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["FakeMailer", "Mailer", "SentMail"]


@runtime_checkable
class Mailer(Protocol):
    """Sends one plain-text email. Implement it with your mail system (SMTP, an API).

    ``send`` is called in a worker thread, never on the event loop, so it
    may block. When it raises, the visitor is told the form is unavailable
    (503) and nothing is stored.
    """

    def send(self, to: str, subject: str, text: str) -> None:
        """Send ``text`` with ``subject`` to the address ``to``."""
        ...


@attrs.frozen
class SentMail:
    """An email a :class:`FakeMailer` was asked to send."""

    to: str
    """The recipient's address."""
    subject: str
    """The subject."""
    text: str
    """The plain-text body."""


class FakeMailer:
    """A :class:`Mailer` for tests: keeps what it is asked to send in :attr:`sent`.

    :param fail: raise this exception on every send (to test a mail outage).
    """

    def __init__(self, *, fail: Exception | None = None) -> None:
        self.sent: list[SentMail] = []
        """Every email sent, oldest first."""
        self.fail = fail
        """The exception each send raises, or None."""
        self._lock = threading.Lock()

    def send(self, to: str, subject: str, text: str) -> None:
        """Keep the email (or raise :attr:`fail`)."""
        if self.fail is not None:
            raise self.fail
        with self._lock:
            self.sent.append(SentMail(to, subject, text))
