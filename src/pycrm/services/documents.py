"""Documents: files attached to records, versioned, their bytes in the CRM's blob store.

A document is as readable as the record it is attached to, unless it is
shared with chosen readers (``readable_by``): then only they read it. Both
rules live in the one permission gate (``Document.about`` and
``Document.read_rule``), so they hold on every read path: ``get``, ``list``,
``versions``, ``read``, the customer 360 view, exports and the audit trail.
"""

from __future__ import annotations

import builtins
import hashlib
import mimetypes
from collections.abc import Sequence
from typing import Any

from pycrm.domain import RECORD_BY_RESOURCE
from pycrm.domain.documents import Document
from pycrm.domain.fields import check_id, check_one_of, check_text
from pycrm.domain.ids import new_id
from pycrm.domain.org import User
from pycrm.domain.query import Eq, OrderBy, all_of
from pycrm.domain.records import Stored
from pycrm.errors import NotFound, StorageError, ValidationError
from pycrm.services.records import RecordService, write

__all__ = ["DocumentService"]

#: The largest document pycrm accepts.
MAX_SIZE = 100 * 1024 * 1024


class DocumentService(RecordService[Document]):
    """Attach files to any record; access follows the record's permissions, or chosen readers'."""

    record_type = Document

    def _readers(self, value: Any) -> tuple[str, ...] | None:
        """``readable_by`` checked: None, or departments, roles and user ids this tenant knows."""
        if value is None:
            return None
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
            raise ValidationError(
                "readable_by",
                value,
                "must be a non-empty list of departments, roles or user ids (or None: "
                "whoever reads the record)",
            )
        names = [
            check_text(f"readable_by[{i}]", item, required=True, limit=64) or ""
            for i, item in enumerate(value)
        ]
        policy = self._s.crm.policy
        known = set(self._s.org.departments())
        known |= {r for g in policy.grants for r in g.roles} | {
            r for rule in policy.fields for r in rule.allowed
        }
        users = self._s._uow.repo(User)
        known |= set(users.get_many([n for n in names if n not in known]))
        if not set(names) <= known:
            known |= {role for user in users.find() for role in user.roles}
        for i, name in enumerate(names):
            if name not in known or name == "*":
                raise ValidationError(
                    f"readable_by[{i}]", name, "is no department, role or user id of this tenant"
                )
        return tuple(dict.fromkeys(names))

    def _parent(self, record_type: str, record_id: str, action: str) -> Any:
        check_one_of("record_type", record_type, RECORD_BY_RESOURCE)
        check_id("record_id", record_id)
        service = getattr(self._s, record_type + "s", None)
        # Only records with a record service take documents (settings have a
        # service of another kind), and not those that are themselves about
        # another record (a document): the guard reads such a record through its
        # subject, and one about a document would be readable by no one.
        if (
            not isinstance(service, RecordService)
            or RECORD_BY_RESOURCE[record_type].about is not None
        ):
            raise ValidationError("record_type", record_type, "takes no documents")
        record = service._load(record_id)
        self._s._guard.require(record, action)
        return record

    def _store(self, data: Any) -> tuple[str, str, int]:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError("data", type(data).__name__, "must be bytes")
        content = bytes(data)
        if len(content) > MAX_SIZE:
            raise ValidationError("data", len(content), f"is larger than {MAX_SIZE:,} bytes")
        checksum = hashlib.sha256(content).hexdigest()
        # Content-addressed: the same bytes are stored once, and a write whose
        # transaction rolls back leaves at most a blob that a later upload reuses.
        self._s.crm.blob_store.put(checksum, content)
        return checksum, checksum, len(content)

    @write
    def attach(
        self,
        record_type: str,
        record_id: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        readable_by: Sequence[str] | None = None,
    ) -> Document:
        """Attach a file to a record (needs the right to update the record).

        :param readable_by: share it with these departments, roles and user
            ids only (and the uploader), among those who may read the record;
            None (the default): whoever may read the record reads it. Change
            it later with :meth:`share`.
        """
        self._parent(record_type, record_id, "update")
        filename = check_text("name", name, required=True, limit=255)
        assert filename is not None
        check_text("content_type", content_type, limit=255)
        readers = self._readers(readable_by)
        kind = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        blob, checksum, size = self._store(data)
        with self._s._guard.bypass():  # the right that counts is the record's, checked above
            return self._add(
                "attach",
                record_type=record_type,
                record_id=record_id,
                document_key=new_id(),
                number=1,
                name=filename,
                content_type=kind,
                size=size,
                checksum=checksum,
                blob_key=blob,
                readable_by=readers,
            )

    @write
    def new_version(self, document_key: str, data: bytes, *, name: str | None = None) -> Document:
        """Upload a new version of a document; the previous one stays readable.

        The new version is shared like the previous one (``readable_by``).
        """
        latest = self._latest(document_key)
        self._parent(latest.record_type, latest.record_id, "update")
        filename = check_text("name", name, limit=255) or latest.name
        blob, checksum, size = self._store(data)
        with self._s._guard.bypass():  # the right that counts is the record's, checked above
            self._change(latest, None, "supersede", latest=False)
            return self._add(
                "attach",
                record_type=latest.record_type,
                record_id=latest.record_id,
                document_key=document_key,
                number=latest.number + 1,
                name=filename,
                content_type=mimetypes.guess_type(filename)[0] or latest.content_type,
                size=size,
                checksum=checksum,
                blob_key=blob,
                readable_by=latest.readable_by,
            )

    @write
    def share(self, document_key: str, readable_by: Sequence[str] | None) -> Document:
        """Change who reads a document (every version): chosen readers, or None for everyone.

        ``readable_by`` is as for :meth:`attach`. Needs the right to update the
        record the document is attached to, and to read the document. Returns
        the latest version.
        """
        latest = self._latest(document_key)
        readers = self._readers(readable_by)
        self._parent(latest.record_type, latest.record_id, "update")
        versions = self._repo.find(Eq("document_key", document_key))
        with self._s._guard.bypass():  # the right that counts is the record's, checked above
            changed = [self._change(v, None, "share", readable_by=readers) for v in versions]
        return next(v for v in changed if v.latest)

    def _latest(self, document_key: str) -> Document:
        """The latest version of a document the actor may read (whole: for writing)."""
        check_id("document_key", document_key)
        found = self._repo.find(
            all_of(
                [
                    Eq("document_key", document_key),
                    Eq("latest", True),
                    self._s._guard.filter(Document),
                ]
            ),
            limit=1,
        )
        if not found:
            raise NotFound("document", document_key)
        self._s._saw(found)
        return found[0]

    def list(self, record_type: str, record_id: str) -> list[Document]:
        """The latest version of each document attached to a record that the actor may read.

        Returns all of them: this list has no pages.
        """
        self._parent(record_type, record_id, "read")
        where = all_of(
            [Eq("record_id", record_id), Eq("record_type", record_type), Eq("latest", True)]
        )
        return self._find(where, order_by=[OrderBy("created_at")])

    def versions(self, document_key: str) -> builtins.list[Document]:
        """Every version of a document the actor may read, oldest first."""
        latest = self._latest(document_key)
        self._parent(latest.record_type, latest.record_id, "read")
        return self._find(Eq("document_key", document_key), order_by=[OrderBy("number")])

    def read(self, id: str) -> bytes:
        """A document version's bytes, checked against its checksum."""
        document = self._load(id)
        self._parent(document.record_type, document.record_id, "read")
        data = self._s.crm.blob_store.get(document.blob_key)
        if hashlib.sha256(data).hexdigest() != document.checksum:
            raise StorageError(f"document {id} does not match its checksum: the blob was altered")
        return data

    def orphans(self) -> builtins.list[Document]:
        """Documents whose record is gone or whose bytes are missing (for a steward to look at).

        pycrm never deletes records (it archives them, and merges re-point
        documents at the survivor), so this is normally empty.
        """
        self._require_admin("audit", "document")
        documents = self._repo.find(order_by=[OrderBy("id")])
        parents: dict[str, Stored] = {}
        for kind in {d.record_type for d in documents}:
            ids = [d.record_id for d in documents if d.record_type == kind]
            parents.update(self._s._uow.repo(RECORD_BY_RESOURCE[kind]).get_many(ids))
        guard = self._s._guard
        missing: builtins.list[Document] = []
        for document in documents:
            parent = parents.get(document.record_id)
            if parent is None:
                missing.append(document)  # nothing left to hide it behind
            elif guard.allows(parent, "read") and not self._s.crm.blob_store.exists(
                document.blob_key
            ):
                missing.append(document)
        return missing
