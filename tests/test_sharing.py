"""Documents shared by permission (issue 17, seed 001), on every backend.

A document is as readable as its record, unless it is shared with chosen
departments, roles or people (``readable_by``): then only they (and its
uploader) read it, on every read path: ``get``, ``list``, ``versions``,
``read``, the customer 360 view, exports and the audit trail. The rule lives
in the permission gate (``Document.read_rule``), like private activities.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
from pycrm.errors import NotFound, PermissionDenied, ValidationError
from pycrm.session import Session
from support import refused, staff


@pytest.fixture
def world(crm: pycrm.CRM) -> SimpleNamespace:
    """Acme with a public quote and a contract scan shared with legal; people to read them."""
    people = staff(
        crm,
        sam="sales",
        lea=("legal", ["legal"]),
        max=("sales", ["sales_manager"]),
        ann="analytics",
        ada=("admin", ["admin"]),
        mia="marketing",
    )
    with crm.session(actor=people.sam.id) as s:
        acme = s.customers.create("Acme GmbH")
        quote = s.documents.attach("customer", acme.id, "quote.pdf", b"quote")
        scan = s.documents.attach(
            "customer", acme.id, "contract.pdf", b"scan", readable_by=["legal"]
        )
    return SimpleNamespace(crm=crm, acme=acme, quote=quote, scan=scan, **vars(people))


def seen(s: Session, w: SimpleNamespace) -> dict[str, Any]:
    """What one reader sees of the scan on every read path (None: refused)."""

    def answer(ask: Any) -> Any:
        try:
            return ask()
        except (NotFound, PermissionDenied):
            return None

    scan = w.scan
    return {
        "get": answer(lambda: s.documents.get(scan.id).name),
        "list": [d.name for d in s.documents.list("customer", w.acme.id)],
        "versions": answer(lambda: [d.number for d in s.documents.versions(scan.document_key)]),
        "read": answer(lambda: s.documents.read(scan.id)),
        "view": [d.name for d in s.customers.view(w.acme.id).documents],
        "reader": [d.name for d in s.read(pycrm.domain.Document).find()],
        "export": answer(lambda: sorted(r["name"] for r in s.export.rows("documents"))),
        "audit": answer(
            lambda: sorted({e.record_id for e in s.audit.find(record_type="document", limit=100)})
        ),
    }


def test_a_document_shared_with_legal_is_read_by_legal_and_its_uploader_alone(
    world: SimpleNamespace,
) -> None:
    w, crm = world, world.crm
    with crm.session(actor=w.lea.id) as s:
        lawyer = seen(s, w)
    with crm.session(actor=w.max.id) as s:
        manager = seen(s, w)
    with crm.session(actor=w.sam.id) as s:
        uploader = seen(s, w)
    with crm.session(actor=w.ann.id) as s:
        analyst = seen(s, w)
    with crm.session(actor=w.ada.id) as s:
        admin = seen(s, w)
    with crm.session(actor=crm.system_actor) as s:
        system = seen(s, w)
    assert lawyer["get"] == "contract.pdf"
    assert lawyer["list"] == lawyer["view"] == ["quote.pdf", "contract.pdf"]
    assert (lawyer["versions"], lawyer["read"]) == ([1], b"scan")
    assert sorted(lawyer["reader"]) == ["contract.pdf", "quote.pdf"]
    assert uploader["list"] == ["quote.pdf", "contract.pdf"]
    assert uploader["read"] == b"scan"
    assert system["read"] == b"scan"
    for other in (manager, analyst, admin):  # reads Acme, not the scan: on no path at all
        assert (other["get"], other["versions"], other["read"]) == (None, None, None)
        assert other["list"] == other["view"] == other["reader"] == ["quote.pdf"]
    assert analyst["export"] == ["quote.pdf"]
    assert w.scan.id not in admin["audit"]
    assert w.quote.id in admin["audit"]


def test_sharing_is_changed_later_and_new_versions_keep_it(world: SimpleNamespace) -> None:
    w, crm = world, world.crm
    with crm.session(actor=w.sam.id) as s:
        s.documents.share(w.scan.document_key, ["legal", "analytics", w.max.id])
    with crm.session(actor=w.sam.id) as s:
        v2 = s.documents.new_version(w.scan.document_key, b"scan, signed")
    assert v2.readable_by == ("legal", "analytics", w.max.id)
    with crm.session(actor=w.max.id) as s:
        assert [d.number for d in s.documents.versions(w.scan.document_key)] == [1, 2]
        assert s.documents.read(v2.id) == b"scan, signed"
    with crm.session(actor=w.ann.id) as s:
        assert sorted(r["name"] for r in s.export.rows("documents")) == [
            "contract.pdf",
            "contract.pdf",
            "quote.pdf",
        ]
    with crm.session(actor=w.ada.id) as s, pytest.raises(NotFound):
        s.documents.get(v2.id)
    with crm.session(actor=w.sam.id) as s:
        everyone = s.documents.share(w.scan.document_key, None)
    assert everyone.readable_by is None
    with crm.session(actor=w.ada.id) as s:
        assert s.documents.read(v2.id) == b"scan, signed"
        shares = s.audit.find(record_type="document", action="share", limit=100)
    assert len(shares) == 3  # the first sharing changed one version, the second two
    with crm.session(actor=w.mia.id) as s:  # marketing reads Acme, so the scan now
        assert [d.number for d in s.documents.versions(w.scan.document_key)] == [1, 2]


def test_sharing_is_checked(world: SimpleNamespace) -> None:
    w, crm = world, world.crm
    errors = refused(
        crm,
        w.sam.id,
        (ValidationError, lambda s: s.documents.share(w.quote.document_key, [])),
        (ValidationError, lambda s: s.documents.share(w.quote.document_key, "legal")),
        (ValidationError, lambda s: s.documents.share(w.quote.document_key, ["lawyers"])),
        (ValidationError, lambda s: s.documents.share(w.quote.document_key, ["*"])),
        (ValidationError, lambda s: s.documents.share(w.quote.document_key, ["legal", 5])),
        (
            ValidationError,
            lambda s: s.documents.attach("customer", w.acme.id, "x.txt", b"x", readable_by=["x"]),
        ),
        (NotFound, lambda s: s.documents.share("no-such-key", ["legal"])),
    )
    assert [getattr(e, "field", None) for e in errors] == [
        "readable_by",
        "readable_by",
        "readable_by[0]",
        "readable_by[0]",
        "readable_by[1]",
        "readable_by[0]",
        None,
    ]
    # sharing needs the right to update the record (marketing updates its own customers only)
    refused(
        crm, w.mia.id, (PermissionDenied, lambda s: s.documents.share(w.quote.document_key, None))
    )
    # and to read the document: the manager reads Acme but not the scan
    refused(crm, w.max.id, (NotFound, lambda s: s.documents.share(w.scan.document_key, None)))


def test_a_document_shared_with_a_role_or_a_person(world: SimpleNamespace) -> None:
    w, crm = world, world.crm
    with crm.session(actor=w.sam.id) as s:
        memo = s.documents.attach(
            "customer", w.acme.id, "memo.txt", b"memo", readable_by=["sales_manager"]
        )
        note = s.documents.attach(
            "customer", w.acme.id, "note.txt", b"note", readable_by=[w.mia.id]
        )
    with crm.session(actor=w.max.id) as s:
        assert s.documents.read(memo.id) == b"memo"
        with pytest.raises(NotFound):
            s.documents.read(note.id)
    with crm.session(actor=w.mia.id) as s:
        assert s.documents.read(note.id) == b"note"
        assert [d.name for d in s.documents.list("customer", w.acme.id)] == [
            "quote.pdf",
            "note.txt",
        ]


def test_documents_and_settings_take_no_documents(world: SimpleNamespace) -> None:
    # A document is read through the record it is about; one about a document used to be
    # stored but readable by no one, the system actor included. Attaching to a setting
    # failed with a TypeError. (refused() checks that nothing is stored.)
    w, crm = world, world.crm
    with crm.session(actor=crm.system_actor) as s:
        setting = s.settings.set("default_region", "DE")
    for actor in (crm.system_actor, w.sam.id):
        errors = refused(
            crm,
            actor,
            (ValidationError, lambda s: s.documents.attach("document", w.quote.id, "x", b"x")),
            (ValidationError, lambda s: s.documents.attach("setting", setting.id, "x", b"x")),
        )
        assert [getattr(e, "field", None) for e in errors] == ["record_type"] * 2
