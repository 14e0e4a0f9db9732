"""The ``webhook`` relay: each event as a signed JSON POST to a subscriber's URL.

Every request carries:

- ``Content-Type: application/json`` and the event as its body (see
  :meth:`~pycrm.relays.Envelope.body`);
- ``Pycrm-Event``, ``Pycrm-Event-Id`` (de-duplicate by it: a retry keeps it),
  ``Pycrm-Tenant`` and ``Pycrm-Attempt``;
- ``Pycrm-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
  HMAC-SHA256 with the subscriber's secret over ``"<t>.<body>"``. A receiver
  checks it with :func:`verify_signature` (or the same three lines in its own
  language) and refuses old timestamps, so a captured request cannot be
  replayed later.

Any 2xx answer is delivery; anything else (another status, a timeout, a
refused connection) is a failure the outbox retries with backoff. Redirects
are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from pycrm.errors import ConfigurationError
from pycrm.relays import Envelope, EventFilter

__all__ = ["SIGNATURE_HEADER", "WebhookError", "WebhookRelay", "sign", "verify_signature"]

SIGNATURE_HEADER = "Pycrm-Signature"
"""The header that carries the timestamp and the HMAC."""


# What a kept-alive connection the subscriber has closed fails with on reuse.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class WebhookError(Exception):
    """A subscriber did not answer 2xx."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(f"{url} answered {status} {reason}")
        self.status = status


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Pycrm-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str | bytes,
    header: str,
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` s old.

    For receivers: compare in constant time, and refuse a request whose
    timestamp is too far from now (a replayed capture).
    """
    key = secret.encode() if isinstance(secret, str) else secret
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(key, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookRelay:
    """POST events to one subscriber's URL, signed with its secret.

    ``secret`` (or ``secret_env``, the name of an environment variable holding
    it) is shared with the subscriber; ``events`` filters by signal name
    (``fnmatch`` patterns: ``["deal_*", "payment_received"]``). One connection
    is kept open between requests; when the subscriber has closed it meanwhile
    (an idle timeout), the request goes once more on a new connection.
    """

    def __init__(
        self,
        *,
        url: str,
        name: str | None = None,
        secret: str | None = None,
        secret_env: str | None = None,
        events: str | Iterable[str] | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"webhook url must be an http(s) URL, not {url!r}")
        if secret_env is not None:
            secret = os.environ.get(secret_env)
            if not secret:
                raise ConfigurationError(f"environment variable {secret_env} holds no secret")
        if not isinstance(secret, str) or len(secret) < 16:
            raise ConfigurationError("webhook secret must be a string of at least 16 characters")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigurationError("webhook timeout must be a positive number of seconds")
        self.name = name or f"webhook:{parts.hostname}"
        self.url = url
        self._secret = secret.encode()
        self._filter = EventFilter.of(events)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = float(timeout)
        self._headers = dict(headers or {})
        self._clock = clock
        self._connection: http.client.HTTPConnection | None = None

    def accepts(self, envelope: Envelope) -> bool:
        """Whether the event's name matches the subscriber's filter."""
        return self._filter(envelope)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = kind(self._host, self._port, timeout=self._timeout)
        return self._connection

    def _exchange(self, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        connection = self._connect()
        try:
            connection.request("POST", self._path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.close()  # a broken connection is not reused
            raise
        return response

    def _post(self, envelope: Envelope) -> None:
        body = envelope.body()
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": "pycrm-webhook",
            "Pycrm-Event": envelope.name,
            "Pycrm-Event-Id": envelope.id,
            "Pycrm-Tenant": envelope.tenant_id,
            "Pycrm-Attempt": str(envelope.attempt),
            SIGNATURE_HEADER: sign(self._secret, int(self._clock()), body),
        }
        reused = self._connection is not None
        try:
            response = self._exchange(body, headers)
        except _STALE:
            if not reused:
                raise
            # The subscriber closed the kept connection while it was idle (a keep-alive
            # timeout): not a failure of the subscriber, so once more on a new connection.
            response = self._exchange(body, headers)
        if response.will_close:
            self.close()
        if not 200 <= response.status < 300:
            raise WebhookError(self.url, response.status, response.reason)

    def send(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """POST each event; a failure of one does not stop the others (each is another record)."""
        outcomes: list[BaseException | None] = []
        for envelope in envelopes:
            try:
                self._post(envelope)
            except (OSError, http.client.HTTPException, WebhookError) as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    def close(self) -> None:
        """Close the kept connection (the next request opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
