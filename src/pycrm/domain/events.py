"""Domain events: frozen facts about what a unit of work did.

The session collects them while it works and hands them to
:mod:`pycrm.signals` only after the transaction commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

__all__ = ["Event"]


@attrs.frozen(kw_only=True)
class Event:
    """Something that happened, with enough context for a consumer in another department."""

    id: str
    """Stable unique id: consumers use it to process each event once."""
    name: str
    """The signal name, e.g. ``"customer_created"``."""
    tenant_id: str
    """The tenant it happened in."""
    actor_id: str
    """Who did it."""
    occurred_at: datetime
    """When (UTC)."""
    record_type: str
    """The kind of record concerned."""
    record_id: str
    """The record concerned."""
    before: dict[str, Any] | None = None
    """The record before the change, in JSON form (None on create)."""
    after: dict[str, Any] | None = None
    """The record after the change, in JSON form."""
