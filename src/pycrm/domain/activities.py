"""Interactions with customers: calls, emails, meetings and notes."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import attrs

from pycrm.domain.query import Eq, Filter, Or
from pycrm.domain.records import Record

if TYPE_CHECKING:
    from pycrm.domain.org import Actor

__all__ = ["Activity", "ActivityKind"]


class ActivityKind(enum.StrEnum):
    """What kind of interaction an activity records."""

    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    NOTE = "note"


@attrs.frozen(kw_only=True)
class Activity(Record):
    """One interaction on a customer's or contact's timeline.

    A private activity is visible to its author alone, in every read path.
    """

    resource: ClassVar[str] = "activity"
    owner_field: ClassVar[str] = "author_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("customer_id", "occurred_at"),
        ("contact_id", "occurred_at"),
        ("author_id",),
    )

    kind: ActivityKind
    """Call, email, meeting or note."""
    subject: str
    """A one-line summary."""
    body: str | None = None
    """The full text."""
    customer_id: str | None = None
    """The company it concerns (filled in from the contact when not given)."""
    contact_id: str | None = None
    """The person it concerns."""
    occurred_at: datetime
    """When it happened (UTC)."""
    author_id: str
    """Who recorded it."""
    private: bool = False
    """Visible to the author only."""

    @classmethod
    def read_rule(cls, actor: Actor) -> Filter:
        """Public activities, and the actor's own private ones."""
        return Or((Eq("private", False), Eq("author_id", actor.id)))
