"""The audit trail: who changed what, when, from which value to which."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.records import Stored

__all__ = ["CHECKPOINT", "AuditEntry", "FieldChange", "compact", "diff", "replay"]


@attrs.frozen
class FieldChange:
    """One field's change in one write."""

    field: str
    """Field name."""
    old: Any
    """The value before, in its JSON form (None when created)."""
    new: Any
    """The value after, in its JSON form."""
    at: datetime
    """When the write happened."""
    actor_id: str
    """Who wrote it."""
    department: str
    """The writer's department."""


@attrs.frozen(kw_only=True)
class AuditEntry(Stored):
    """One write (or one refused attempt), as recorded in the audit trail.

    Entries are append-only: the API offers no way to change or delete them.
    """

    resource: ClassVar[str] = "audit_entry"
    owner_field: ClassVar[str] = "actor_id"
    about: ClassVar[tuple[str, str] | None] = ("record_type", "record_id")
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("record_id", "at"),
        ("actor_id", "at"),
        ("at",),
    )

    at: datetime
    """When it happened (UTC)."""
    actor_id: str
    """Who acted (``"system"`` for the system actor)."""
    department: str
    """The actor's department at the time."""
    action: str
    """``create``, ``update``, ``archive``, ``assess`` …"""
    record_type: str
    """The kind of record, e.g. ``"customer"``."""
    record_id: str
    """The record's id."""
    changes: dict[str, list[Any]] = attrs.field(factory=dict)
    """Field name → ``[old, new]`` in JSON form, for the fields an update changed.

    Empty for a creation, whose values are the ``snapshot``: see
    :meth:`field_changes`. Entries written before pycrm 0.2 repeat them here.
    """
    snapshot: dict[str, Any] | None = None
    """The record after the write in JSON form, without its empty fields.

    Written for a creation and, as a checkpoint, every :data:`CHECKPOINT`
    versions; ``as_of`` replays the changes of the entries after it. (Entries
    written before pycrm 0.2 hold one on every write.)
    """

    def field_changes(self) -> dict[str, list[Any]]:
        """Field → ``[old, new]`` of this write; a creation's come from its snapshot.

        A field going from None to empty (an empty list or mapping at creation)
        is no change, whichever form the entry was written in.
        """
        changes = self.changes or (diff(None, self.snapshot) if self.snapshot else {})
        return {
            name: pair
            for name, pair in changes.items()
            if not (pair[0] is None and pair[1] in ([], {}))
        }


#: An update's audit entry holds a snapshot when the record reaches a multiple of this
#: version, so ``as_of`` replays at most this many entries' changes.
CHECKPOINT = 32


def replay(newest_first: Iterable[AuditEntry]) -> dict[str, Any] | None:
    """The record's JSON form after the newest of ``newest_first`` (one record's entries).

    Starts from the latest snapshot and applies the changes of the entries
    after it, oldest first; the bookkeeping fields (``version``,
    ``updated_at``, ``updated_by``) follow the writes replayed. None when no
    snapshot is reached. Refused attempts (``denied:…``) are skipped.
    """
    after: list[AuditEntry] = []
    for entry in newest_first:
        if entry.action.startswith("denied:"):
            continue
        if entry.snapshot is None:
            after.append(entry)
            continue
        state = dict(entry.snapshot)
        for later in reversed(after):
            for name, (_, new) in later.changes.items():
                state[name] = new
            state["version"] = state.get("version", 1) + 1
            state["updated_at"] = later.at.isoformat()
            state["updated_by"] = later.actor_id
        return state
    return None


def compact(data: Mapping[str, Any]) -> dict[str, Any]:
    """A record's JSON form without its empty fields (None, empty lists and mappings)."""
    return {k: v for k, v in data.items() if v is not None and v != [] and v != {}}


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Return field → [old, new] for every field whose JSON form differs.

    Bookkeeping fields (version, updated_at/by) are left out: they change on every write.
    """
    skip = {"version", "updated_at", "updated_by", "created_at", "created_by", "tenant_id", "id"}
    old = before or {}
    return {
        key: [old.get(key), value]
        for key, value in after.items()
        if key not in skip and old.get(key) != value
    }
