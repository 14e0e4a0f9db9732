"""The transactional outbox: events written in the same transaction as the work."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["OutboxMessage"]


@attrs.frozen(kw_only=True)
class OutboxMessage(Record):
    """One event waiting to be relayed to another process (its id is the event's id).

    Its version guards against two relays marking it at once.
    """

    resource: ClassVar[str] = "outbox_message"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("delivered", "created_at"),)

    name: str
    """The signal name."""
    payload: dict[str, Any]
    """The event in JSON form (see :mod:`pycrm.serialization`)."""
    delivered: bool = False
    """Marked once a relay has handed it on."""
    delivered_at: datetime | None = None
    """When it was marked delivered."""
    attempts: int = 0
    """How many relay attempts failed."""
