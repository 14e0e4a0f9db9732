"""Documents attached to records; their bytes live in a blob store."""

from __future__ import annotations

from typing import ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["Document"]


@attrs.frozen(kw_only=True)
class Document(Record):
    """One version of a file attached to a record (a quote, a contract scan, a screenshot)."""

    resource: ClassVar[str] = "document"
    about: ClassVar[tuple[str, str] | None] = ("record_type", "record_id")
    read_follows_about: ClassVar[bool] = True
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("record_id",), ("document_key", "number"))

    record_type: str
    """The kind of record it is attached to."""
    record_id: str
    """The record."""
    document_key: str
    """Shared by every version of the same document."""
    number: int
    """Version number, 1 first."""
    name: str
    """File name."""
    content_type: str
    """MIME type."""
    size: int
    """Bytes."""
    checksum: str
    """SHA-256 of the content, hex."""
    blob_key: str
    """Where the blob store keeps the bytes (content-addressed)."""
    latest: bool = True
    """The current version."""
