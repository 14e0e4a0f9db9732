"""Documents: files attached to records, versioned, their bytes in the CRM's blob store."""

from __future__ import annotations

import builtins
import hashlib
import mimetypes
from typing import Any

from pycrm.domain import RECORD_BY_RESOURCE
from pycrm.domain.documents import Document
from pycrm.domain.fields import check_id, check_one_of, check_text
from pycrm.domain.ids import new_id
from pycrm.domain.query import Eq, OrderBy, all_of
from pycrm.domain.records import Stored
from pycrm.errors import NotFound, StorageError, ValidationError
from pycrm.services.records import RecordService, write

__all__ = ["DocumentService"]

#: The largest document pycrm accepts.
MAX_SIZE = 100 * 1024 * 1024


class DocumentService(RecordService[Document]):
    """Attach files to any record; access follows the record's permissions."""

    record_type = Document

    def _parent(self, record_type: str, record_id: str, action: str) -> Any:
        check_one_of("record_type", record_type, RECORD_BY_RESOURCE)
        check_id("record_id", record_id)
        service = getattr(self._s, record_type + "s", None)
        if service is None or not hasattr(service, "_load"):
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
    ) -> Document:
        """Attach a file to a record (needs the right to update the record)."""
        self._parent(record_type, record_id, "update")
        filename = check_text("name", name, required=True, limit=255)
        assert filename is not None
        check_text("content_type", content_type, limit=255)
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
            )

    @write
    def new_version(self, document_key: str, data: bytes, *, name: str | None = None) -> Document:
        """Upload a new version of a document; the previous one stays readable."""
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
            )

    def _latest(self, document_key: str) -> Document:
        found = self._repo.find(
            all_of([Eq("document_key", document_key), Eq("latest", True)]), limit=1
        )
        if not found:
            raise NotFound("document", document_key)
        return found[0]

    def list(self, record_type: str, record_id: str) -> list[Document]:
        """The latest version of each document attached to a record."""
        self._parent(record_type, record_id, "read")
        where = all_of(
            [Eq("record_id", record_id), Eq("record_type", record_type), Eq("latest", True)]
        )
        return self._repo.find(where, order_by=[OrderBy("created_at")])

    def versions(self, document_key: str) -> builtins.list[Document]:
        """Every version of a document, oldest first."""
        latest = self._latest(document_key)
        self._parent(latest.record_type, latest.record_id, "read")
        return self._repo.find(Eq("document_key", document_key), order_by=[OrderBy("number")])

    def read(self, id: str) -> bytes:
        """A document version's bytes, checked against its checksum."""
        document = self._repo.get(check_id("id", id))
        if document is None:
            raise NotFound("document", str(id))
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
