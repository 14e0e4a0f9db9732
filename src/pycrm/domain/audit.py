"""The audit trail: who changed what, when, from which value to which."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.records import Stored

__all__ = ["AuditEntry", "FieldChange", "diff"]


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
    """Field name → ``[old, new]`` in JSON form."""
    snapshot: dict[str, Any] | None = None
    """The whole record after the write, in JSON form (for ``as_of``)."""


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
