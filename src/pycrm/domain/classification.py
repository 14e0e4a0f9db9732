"""Controlled, hierarchical categories (e.g. an industry tree)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["Category"]


@attrs.frozen(kw_only=True)
class Category(Record):
    """One node of a taxonomy; its ``path`` joins the keys from the root, e.g. ``industry/manufacturing``."""

    resource: ClassVar[str] = "category"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("path",),)
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("taxonomy",),)

    taxonomy: str
    """The tree it belongs to (its root key), e.g. ``industry``."""
    key: str
    """Lower-case identifier, unique among its siblings."""
    name: str
    """Display name."""
    parent_id: str | None = None
    """The parent category (None for a root)."""
    path: str
    """Keys from the root, joined by ``/``."""
