"""Relays: hand the outbox's events to the systems around pycrm, at least once.

A relay is one destination (a webhook subscriber, a Redis stream, a Kafka
topic). :meth:`pycrm.outbox.Outbox.deliver` claims a batch of due events,
gives each relay the events it accepts, and settles the batch: an event every
relay took is marked delivered; one a relay refused is tried again later with
exponential backoff, only on the relays that do not have it yet, and is
dead-lettered after :attr:`RetryPolicy.max_attempts` attempts.

Relays are plugins: a package names a factory in the ``pycrm.relays`` entry
point group and :func:`load_relay` builds it from options (``pycrm relay
--config relays.toml`` reads them from a file). Two are built in: ``webhook``
(:class:`~pycrm.relays.webhook.WebhookRelay`) and ``redis``
(:class:`~pycrm.relays.redis_streams.RedisStreamRelay`).
"""

from __future__ import annotations

import fnmatch
import json
import random
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from pycrm.domain.events import Event
from pycrm.errors import ConfigurationError
from pycrm.serialization import from_dict

__all__ = [
    "ENTRY_POINT_GROUP",
    "Envelope",
    "EventFilter",
    "FunctionRelay",
    "Relay",
    "RelayReport",
    "RetryPolicy",
    "available_relays",
    "load_relay",
    "relays_from_config",
]

ENTRY_POINT_GROUP = "pycrm.relays"
"""The entry point group relay plugins register their factories in."""


@attrs.frozen(kw_only=True)
class Envelope:
    """One outbox event on its way to a relay."""

    id: str
    """The event id: consumers de-duplicate by it (a redelivery keeps it)."""
    name: str
    """The signal name, e.g. ``"deal_won"``."""
    tenant_id: str
    """The tenant it happened in."""
    record_id: str
    """The record it is about; one record's events arrive in order."""
    payload: Mapping[str, Any]
    """The event in JSON form, as stored (see :mod:`pycrm.serialization`)."""
    attempt: int
    """1 on the first try, 2 on the first retry, and so on."""

    def body(self) -> bytes:
        """The payload as compact UTF-8 JSON: what webhooks post and streams carry."""
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":")).encode()

    @property
    def event(self) -> Event:
        """The payload decoded into an :class:`~pycrm.domain.events.Event`."""
        return from_dict(Event, dict(self.payload))


@runtime_checkable
class Relay(Protocol):
    """A destination for outbox events.

    ``send`` gets the events the relay :meth:`accepts` that it does not have
    yet, oldest first and at most one per record, and answers per event:
    ``None`` for delivered, an exception for not delivered (tried again
    later). Raising from ``send`` itself counts as failing the whole batch.
    """

    name: str
    """Unique among a worker's relays: the outbox remembers which relays have an event."""

    def accepts(self, envelope: Envelope) -> bool:
        """Whether this relay wants the event at all (its filter)."""
        ...

    def send(self, envelopes: Sequence[Envelope]) -> Sequence[BaseException | None]:
        """Deliver the events; one outcome per event, in the same order."""
        ...


@attrs.frozen
class EventFilter:
    """Which events a relay takes: signal-name patterns (``fnmatch``), all by default."""

    patterns: tuple[str, ...] = ("*",)

    @classmethod
    def of(cls, events: str | Iterable[str] | None, *, field: str = "events") -> EventFilter:
        """A filter from a pattern or a list of them; ConfigurationError naming ``field``."""
        if events is None:
            return cls()
        if isinstance(events, str):
            events = [events]
        patterns = tuple(events) if not isinstance(events, Mapping) else ()
        if not patterns or not all(isinstance(p, str) and p.strip() for p in patterns):
            raise ConfigurationError(f"{field} must be signal names or patterns like 'deal_*'")
        return cls(tuple(p.strip() for p in patterns))

    def __call__(self, envelope: Envelope) -> bool:
        """Whether the event's name matches a pattern."""
        return any(fnmatch.fnmatchcase(envelope.name, p) for p in self.patterns)


class FunctionRelay:
    """A relay around a plain function called once per event (``Outbox.relay`` uses it).

    It stops at the first event the function raises on: the events after it
    in the batch are reported as not tried, so they keep their place.
    """

    def __init__(
        self,
        send: Callable[[Envelope], object],
        *,
        name: str = "function",
        events: str | Iterable[str] | None = None,
    ) -> None:
        self.name = name
        self._send = send
        self._filter = EventFilter.of(events)

    def accepts(self, envelope: Envelope) -> bool:
        """Whether the event matches the relay's filter."""
        return self._filter(envelope)

    def send(self, envelopes: Sequence[Envelope]) -> Sequence[BaseException | None]:
        """Call the function for each event until one raises."""
        outcomes: list[BaseException | None] = []
        for envelope in envelopes:
            if outcomes and outcomes[-1] is not None:
                outcomes.append(NotTried())
                continue
            try:
                self._send(envelope)
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes


class NotTried(Exception):
    """An event a relay did not try because an earlier one failed: it keeps its place."""


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When a failed event is tried again, and when it is given up (dead-lettered)."""

    max_attempts: int = 10
    """Failed attempts after which the event is dead-lettered."""
    first_delay: timedelta = timedelta(seconds=5)
    """The wait after the first failure; it doubles after each one."""
    max_delay: timedelta = timedelta(hours=1)
    """The longest wait between attempts."""
    jitter: float = 0.5
    """Up to this share of each wait is random, so failed events do not retry in step."""

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigurationError("max_attempts must be a whole number")
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if not isinstance(self.first_delay, timedelta) or not isinstance(self.max_delay, timedelta):
            raise ConfigurationError("first_delay and max_delay must be timedeltas")
        if self.first_delay < timedelta(0) or self.max_delay < self.first_delay:
            raise ConfigurationError("retry delays must satisfy 0 <= first_delay <= max_delay")
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise ConfigurationError("jitter must be a number between 0 and 1")

    def delay(self, failures: int, *, rand: Callable[[], float] = random.random) -> timedelta:
        """The wait after the ``failures``-th failed attempt (1 for the first)."""
        grown = self.first_delay.total_seconds() * 2.0 ** min(max(failures, 1) - 1, 60)
        full = min(self.max_delay.total_seconds(), grown)
        return timedelta(seconds=full * (1 - self.jitter * float(rand())))


@attrs.frozen(kw_only=True)
class RelayReport:
    """What one pass of :meth:`~pycrm.outbox.Outbox.deliver` did."""

    tenant: str
    """The tenant whose outbox it worked on."""
    claimed: int = 0
    """Events it leased."""
    delivered: int = 0
    """Events now delivered to every relay that takes them."""
    failed: int = 0
    """Events some relay refused: tried again later."""
    dead: int = 0
    """Events dead-lettered by this pass (after the last allowed attempt)."""
    released: int = 0
    """Events handed back untried (a relay stopped at an earlier failure)."""


def available_relays() -> dict[str, Callable[..., Relay]]:
    """The relay factories installed, by entry point name (``webhook``, ``redis``, …)."""
    found: dict[str, Callable[..., Relay]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point.load())
    return found


def load_relay(kind: str, **options: Any) -> Relay:
    """Build the relay plugin ``kind`` with ``options``; ConfigurationError if it cannot be."""
    factories = available_relays()
    if kind not in factories:
        known = ", ".join(sorted(factories)) or "none"
        raise ConfigurationError(f"no relay named {kind!r} is installed (installed: {known})")
    try:
        relay = factories[kind](**options)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"relay {kind!r}: {exc}") from exc
    if not isinstance(relay, Relay):
        raise ConfigurationError(f"relay {kind!r} does not have name, accepts() and send()")
    return relay


def relays_from_config(path: str | Path) -> list[Relay]:
    """Build the relays a TOML file lists, one ``[[relay]]`` table each.

    Each table names its plugin with ``type`` and passes every other key to the
    factory; a key ending in ``_env`` is read from that environment variable
    by the plugin (secrets stay out of the file)::

        [[relay]]
        type = "webhook"
        name = "erp"
        url = "https://erp.example/hooks/crm"
        secret_env = "ERP_HOOK_SECRET"
        events = ["deal_won", "payment_*"]
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read relay configuration {str(path)!r}: {exc}") from exc
    tables = data.get("relay")
    if not isinstance(tables, list) or not tables:
        raise ConfigurationError(f"{str(path)!r} lists no [[relay]] tables")
    relays: list[Relay] = []
    for number, table in enumerate(tables, 1):
        options = dict(table)
        kind = options.pop("type", None)
        if not isinstance(kind, str):
            raise ConfigurationError(f"[[relay]] number {number} has no type")
        relays.append(load_relay(kind, **options))
    names = [r.name for r in relays]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"relay names must be unique: {names}")
    return relays
