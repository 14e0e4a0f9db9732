"""Documents attached to records; their bytes live in a blob store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

import attrs

from pycrm.domain.query import AnyKey, Eq, Filter, Or
from pycrm.domain.records import Record

if TYPE_CHECKING:
    from pycrm.domain.org import Actor

__all__ = ["EVERYONE", "Document"]

#: The reader key of a document shared with nobody in particular: whoever reads its record.
EVERYONE = "*"


@attrs.frozen(kw_only=True)
class Document(Record):
    """One version of a file attached to a record (a quote, a contract scan, a screenshot).

    Whoever may read the record reads its documents, unless a document is
    shared with chosen readers (:attr:`readable_by`): then only they (and
    the user who uploaded that version) read it, on every read path.
    """

    resource: ClassVar[str] = "document"
    about: ClassVar[tuple[str, str] | None] = ("record_type", "record_id")
    read_follows_about: ClassVar[bool] = True
    key_fields: ClassVar[Mapping[str, str]] = {**Record.key_fields, "reader": "readable_by"}
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
    readable_by: tuple[str, ...] | None = None
    """Departments, roles and user ids it is shared with; None: whoever reads the record."""

    @classmethod
    def read_rule(cls, actor: Actor) -> Filter | None:
        """Unshared documents, and shared ones the actor is a reader or the uploader of.

        A reader is named by user id, department or role. The system actor
        reads every document.
        """
        if actor.is_system:
            return None
        return Or(
            (
                Eq("created_by", actor.id),
                AnyKey("reader", (EVERYONE, actor.id, actor.department, *actor.roles)),
            )
        )

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """``("reader", who)`` per reader it is shared with; ``("reader", "*")`` if unshared.

        Who may read a document is then one index probe away.
        """
        for reader in self.readable_by or (EVERYONE,):
            yield "reader", reader
