"""The transactional outbox: events written in the same transaction as the work."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["Claim", "OutboxMessage"]


@attrs.frozen(kw_only=True)
class OutboxMessage(Record):
    """One event waiting to be relayed to another process (its id is the event's id).

    Ids are time-ordered, so ordering by id is ordering by when the events
    happened. A message is *pending* until it is delivered or dead-lettered;
    a relay worker *claims* pending messages for a while (a lease) before it
    sends them, so two workers never hold the same message at once. Its
    version guards against two relays changing it at once.
    """

    resource: ClassVar[str] = "outbox_message"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("delivered", "created_at"),
        ("delivered", "id"),
        ("record_id", "delivered", "id"),
    )

    name: str
    """The signal name."""
    payload: dict[str, Any]
    """The event in JSON form (see :mod:`pycrm.serialization`)."""
    record_id: str = ""
    """The record the event is about: its events are relayed in order, one at a time."""
    delivered: bool = False
    """Marked once every relay target has it."""
    delivered_at: datetime | None = None
    """When it was marked delivered."""
    attempts: int = 0
    """How many relay attempts failed."""
    next_attempt_at: datetime | None = None
    """After a failure: not tried again before this time (exponential backoff)."""
    last_error: str | None = None
    """What the last failed attempt reported."""
    sent_to: tuple[str, ...] = ()
    """The relay targets that already have it (a retry skips them)."""
    dead_at: datetime | None = None
    """When it was dead-lettered (too many failed attempts); ``replay`` makes it pending again."""
    claimed_by: str | None = None
    """The relay worker holding it, until :attr:`claimed_until`."""
    claimed_until: datetime | None = None
    """When the worker's lease ends (a crashed worker's messages are claimed again then)."""

    @property
    def pending(self) -> bool:
        """Neither delivered nor dead-lettered."""
        return not self.delivered and self.dead_at is None


@attrs.frozen(kw_only=True)
class Claim:
    """An outbox message leased to a relay worker: what sending and settling it needs."""

    id: str
    """The event id."""
    tenant_id: str
    """The tenant."""
    name: str
    """The signal name."""
    record_id: str
    """The record the event is about."""
    payload: dict[str, Any]
    """The event in JSON form."""
    attempts: int
    """Failed attempts so far."""
    sent_to: tuple[str, ...]
    """The relays that already have it."""
    version: int
    """The message's version after the claim: settling checks it is still the claimer's."""
