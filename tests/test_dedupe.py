"""Dedupe contract tests: the check at the door, policies, scan, merge and unmerge.

Run on every backend (memory, SQLite, PostgreSQL) through the ``crm`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest

import pycrm
import support
from pycrm import signals
from pycrm.domain.audit import AuditEntry
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.leads import Lead
from pycrm.domain.matching import Evidence
from pycrm.domain.merging import MERGEABLE, REFERENCES, Merge, Pick, SourcePriority
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.query import Eq, In
from pycrm.domain.records import Record
from pycrm.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pycrm.serialization import to_dict
from pycrm.services.dedupe import Candidate, Cluster, DuplicateWarning, MergeResult
from pycrm.session import Session
from pycrm.testing import FakeClock

ConnectFn = Callable[..., pycrm.CRM]
VOLATILE = ("version", "updated_at", "updated_by")


# -- helpers ---------------------------------------------------------------------------


def dump(s: Session, *classes: type[Record]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every stored record of ``classes``, in JSON form, by (kind, id)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for cls in classes:
        for record in s._uow.repo(cls).find():
            out[(record.resource, record.id)] = to_dict(record)
    return out


STORE_KINDS: tuple[type[Record], ...] = (Customer, Contact, Lead, AuditEntry, OutboxMessage, Merge)


def stable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in VOLATILE}


def involved(s: Session, kind: str, ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """The merged records and every record pointing at any of them, without volatile fields."""
    out = {
        (kind, r.id): stable(to_dict(r))
        for r in s._uow.repo(MERGEABLE[kind]).get_many(ids).values()
    }
    for cls, field in REFERENCES[kind]:
        for record in s._uow.repo(cls).find(In(field, ids)):
            out[(record.resource, record.id)] = stable(to_dict(record))
    return out


def related_counts(s: Session, kind: str, ids: list[str]) -> dict[tuple[str, str], int]:
    """How many records of each referencing kind point at any of ``ids``."""
    return {
        (cls.resource, field): s._uow.repo(cls).count(In(field, ids))
        for cls, field in REFERENCES[kind]
    }


@contextmanager
def received(name: str, crm: pycrm.CRM) -> Iterator[list[Any]]:
    got: list[Any] = []

    def receiver(sender: Any, event: Any = None, **_: Any) -> None:
        if sender is crm:
            got.append(event)

    with signals.signal_for(name).connected_to(receiver):
        yield got


def ids_of(candidates: Any) -> list[str]:
    return [c.record_id for c in candidates]


# -- the check on create -------------------------------------------------------------------


def test_a_customer_written_differently_is_a_duplicate(system: Session) -> None:
    a = system.customers.create("ACME Ltd.", emails=["info@acme.example"], phones=["030 1234567"])
    b = system.customers.create("Acme Limited", phones=["+49 30 1234567"])
    assert b.id != a.id
    assert len(system.dedupe.warnings) == 1
    warning = system.dedupe.warnings[0]
    assert isinstance(warning, DuplicateWarning)
    assert (warning.record_type, warning.record_id) == ("customer", b.id)
    [candidate] = warning.candidates
    assert isinstance(candidate, Candidate)
    assert (candidate.record_type, candidate.record_id) == ("customer", a.id)
    assert 0.8 <= candidate.score <= 1
    fields = {e.field for e in candidate.evidence}
    assert {"phone", "name"} <= fields


def test_contacts_are_duplicates_by_email_case_and_plus_tag(system: Session) -> None:
    a = system.contacts.create("John Smith", emails=["john@acme.example"])
    system.contacts.create("Smith, John", emails=["John+crm@ACME.example"])
    [warning] = system.dedupe.warnings
    assert ids_of(warning.candidates) == [a.id]
    evidence = {e.field: e for e in warning.candidates[0].evidence}
    assert evidence["email"].similarity == 1.0
    assert "john@acme.example" in evidence["email"].detail
    assert evidence["name"].similarity == 1.0  # order and punctuation ignored


def test_leads_are_duplicates_of_leads(system: Session) -> None:
    a = system.leads.capture("Anna Schmidt", source="webform", email="anna@acme.example")
    b = system.leads.capture("anna  schmidt", source="import", phone="0151 23456789")
    assert system.dedupe.warnings == []  # same name alone is not enough
    c = system.leads.capture("Anna Schmidt", source="fair", email="ANNA@acme.example")
    [warning] = system.dedupe.warnings
    assert (warning.record_type, warning.record_id) == ("lead", c.id)
    assert ids_of(warning.candidates) == [a.id]
    assert b.id not in ids_of(warning.candidates)


def test_a_new_lead_matching_a_contact_is_a_duplicate(system: Session) -> None:
    contact = system.contacts.create("John Smith", emails=["john@acme.example"])
    lead = system.leads.capture("J. Smith", source="webform", email="john@acme.example")
    [warning] = system.dedupe.warnings
    assert (warning.record_type, warning.record_id) == ("lead", lead.id)
    assert [(c.record_type, c.record_id) for c in warning.candidates] == [("contact", contact.id)]
    with pytest.raises(DuplicateError) as info:
        system.leads.capture(
            "John Smith", source="webform", email="john@acme.example", on_duplicate="block"
        )
    assert {c.record_type for c in info.value.candidates} == {"contact", "lead"}


def test_a_contact_matching_an_open_lead_is_a_duplicate(system: Session) -> None:
    lead = system.leads.capture("Anna Schmidt", source="webform", phone="0151 23456789")
    contact = system.contacts.create("Anna Schmidt", phones=["+49 151 2345 6789"])
    [warning] = system.dedupe.warnings
    assert (warning.record_type, warning.record_id) == ("contact", contact.id)
    assert [(c.record_type, c.record_id) for c in warning.candidates] == [("lead", lead.id)]


def test_a_closed_lead_is_not_a_duplicate(system: Session) -> None:
    lead = system.leads.capture("Anna Schmidt", source="webform", phone="0151 23456789")
    system.leads.disqualify(lead.id, "spam")
    system.contacts.create("Anna Schmidt", phones=["+49 151 23456789"], on_duplicate="block")
    assert system.dedupe.warnings == []


def test_colleagues_sharing_a_switchboard_are_not_duplicates(system: Session) -> None:
    system.contacts.create("John Smith", phones=["030 1234567"], emails=["info@acme.example"])
    system.contacts.create(
        "Maria Garcia", phones=["030 1234567"], emails=["info@acme.example"], on_duplicate="block"
    )
    assert system.dedupe.warnings == []


def test_check_reports_without_writing(system: Session) -> None:
    a = system.contacts.create("John Smith", emails=["john@acme.example"])
    before = dump(system, *STORE_KINDS)
    found = system.dedupe.check("contact", name="Smith John", emails=["JOHN@acme.example"])
    assert ids_of(found) == [a.id]
    assert found[0].score >= 0.8
    assert system.dedupe.check("contact", name="Somebody Else", emails=["else@x.example"]) == []
    assert system.dedupe.check("customer", name="Nobody") == []
    assert ids_of(system.dedupe.check("lead", name="J Smith", emails=["john@acme.example"])) == [
        a.id
    ]
    assert dump(system, *STORE_KINDS) == before
    with pytest.raises(ValidationError) as info:
        system.dedupe.check("deal", name="x")
    assert info.value.field == "record_type"
    with pytest.raises(ValidationError) as info:
        system.dedupe.check("contact", name="x", phones=["12"])
    assert info.value.field == "phones[0]"


# -- policies ------------------------------------------------------------------------------


def test_block_raises_with_candidates_and_leaves_the_store_unchanged(system: Session) -> None:
    a = system.customers.create("ACME Ltd.", emails=["info@acme.example"], phones=["030 1234567"])
    before = dump(system, *STORE_KINDS)
    with pytest.raises(DuplicateError) as info:
        system.customers.create(
            "acme inc", emails=["INFO@acme.example"], phones=["030/1234567"], on_duplicate="block"
        )
    [candidate] = info.value.candidates
    assert (candidate.record_type, candidate.record_id) == ("customer", a.id)
    assert candidate.score >= 0.95
    assert {e.field for e in candidate.evidence} >= {"email", "phone", "name"}
    assert a.id in str(info.value)
    assert dump(system, *STORE_KINDS) == before
    assert system.dedupe.warnings == []
    # The session goes on working after the refusal.
    other = system.customers.create("Other GmbH", on_duplicate="block")
    assert system.customers.get(other.id) == other


def test_block_applies_to_contacts_and_leads(system: Session) -> None:
    system.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
    before = dump(system, *STORE_KINDS)
    with pytest.raises(DuplicateError):
        system.contacts.create("ada lovelace", emails=["ada@calc.example"], on_duplicate="block")
    with pytest.raises(DuplicateError):
        system.leads.capture(
            "Ada Lovelace", source="webform", email="ada+x@calc.example", on_duplicate="block"
        )
    assert dump(system, *STORE_KINDS) == before


def test_warn_writes_and_remembers_the_candidates(system: Session) -> None:
    a = system.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
    b = system.contacts.create("Ada Lovelace", emails=["ada@calc.example"], on_duplicate="warn")
    assert system.contacts.get(b.id) == b
    assert system.dedupe.warnings == [
        DuplicateWarning("contact", b.id, system.dedupe.warnings[0].candidates)
    ]
    assert ids_of(system.dedupe.warnings[0].candidates) == [a.id]


def test_merge_policy_folds_a_near_certain_duplicate_into_the_existing_record(
    system: Session,
) -> None:
    a = system.customers.create(
        "ACME Ltd.", emails=["info@acme.example"], phones=["030 1234567"], tags=["vip"]
    )
    count = system.customers.count()
    merged = system.customers.create(
        "Acme",
        emails=["info+x@acme.example", "sales@acme.example"],
        phones=["030 1234567"],
        website="acme.example",
        industry="machinery",
        tags=["VIP", "export"],
        on_duplicate="merge",
    )
    assert merged.id == a.id
    assert system.customers.count() == count
    stored = system.customers.get(a.id)
    assert stored == merged
    assert stored.name == "ACME Ltd."  # the existing record's values win
    assert (stored.website, stored.industry) == ("acme.example", "machinery")  # gaps filled
    assert stored.tags == ("vip", "export")
    emails = [p.value for p in stored.contact_points if p.kind.value == "email"]
    assert emails == ["info@acme.example", "sales@acme.example"]
    assert stored.version == a.version + 1
    assert system.dedupe.warnings == []


def test_merge_policy_folds_a_contact_into_the_existing_contact(system: Session) -> None:
    a = system.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
    merged = system.contacts.create(
        "Lovelace, Ada",
        emails=["ADA@calc.example"],
        phones=["030 1234567"],
        title="Countess",
        on_duplicate="merge",
    )
    assert merged.id == a.id
    stored = system.contacts.get(a.id)
    assert (stored.name, stored.title) == ("Ada Lovelace", "Countess")
    assert [p.value for p in stored.contact_points] == ["ada@calc.example", "+49301234567"]
    assert len(system.contacts.search(limit=10)) == 1


def test_merge_policy_below_the_merge_threshold_writes_and_warns(system: Session) -> None:
    a = system.customers.create("ACME Ltd.", phones=["030 1234567"])
    # A slip in the name and the same phone: likely, not near-certain.
    b = system.customers.create("Akme Limited", phones=["+49 30 1234567"], on_duplicate="merge")
    [warning] = system.dedupe.warnings
    score = warning.candidates[0].score
    assert 0.8 <= score < 0.95
    assert b.id != a.id
    assert system.customers.count() == 2


def test_merge_policy_does_not_fold_a_lead_into_a_contact(system: Session) -> None:
    contact = system.contacts.create("John Smith", emails=["john@acme.example"])
    lead = system.leads.capture(
        "John Smith", source="webform", email="john@acme.example", on_duplicate="merge"
    )
    assert lead.id != contact.id
    assert system.leads.get(lead.id).name == "John Smith"
    assert ids_of(system.dedupe.warnings[0].candidates) == [contact.id]


def test_merge_policy_folds_a_lead_into_an_open_lead(system: Session) -> None:
    a = system.leads.capture("John Smith", source="webform", email="john@acme.example")
    b = system.leads.capture(
        "John Smith",
        source="import",
        email="john@acme.example",
        company="Acme GmbH",
        on_duplicate="merge",
    )
    assert b.id == a.id
    assert b.company == "Acme GmbH"
    assert b.source == "webform"
    assert len(system.leads.search()) == 1


def test_allow_writes_without_checking(system: Session) -> None:
    system.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
    b = system.contacts.create("Ada Lovelace", emails=["ada@calc.example"], on_duplicate="allow")
    assert system.contacts.get(b.id) == b
    assert system.dedupe.warnings == []


def test_an_unknown_policy_is_refused(system: Session, connect_crm: ConnectFn) -> None:
    with pytest.raises(ValidationError) as info:
        system.contacts.create("Ada", on_duplicate="ignore")
    assert info.value.field == "on_duplicate"
    with pytest.raises(ConfigurationError):
        connect_crm(on_duplicate="ignore")
    with pytest.raises(ConfigurationError):
        connect_crm(duplicate_threshold=0.9, merge_threshold=0.8)


def test_the_crm_wide_policy_applies_unless_a_call_overrides_it(connect_crm: ConnectFn) -> None:
    crm = connect_crm(default_region="DE", on_duplicate="block")
    with crm.session(actor=crm.system_actor) as s:
        a = s.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
        with pytest.raises(DuplicateError):
            s.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
        with pytest.raises(DuplicateError):
            s.leads.capture("Ada Lovelace", source="api", email="ada@calc.example")
        b = s.contacts.create("Ada Lovelace", emails=["ada@calc.example"], on_duplicate="warn")
        assert ids_of(s.dedupe.warnings[0].candidates) == [a.id]
        s.contacts.create("Ada Lovelace", emails=["ada@calc.example"], on_duplicate="allow")
        assert b.id != a.id


def test_the_duplicate_threshold_setting_is_used(connect_crm: ConnectFn) -> None:
    crm = connect_crm(default_region="DE", duplicate_threshold=0.55, merge_threshold=0.99)
    with crm.session(actor=crm.system_actor) as s:
        a = s.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
        # Same name, nothing else: 0.6 — below the default 0.8, above 0.55.
        s.contacts.create("Ada Lovelace", phones=["030 1234567"])
        [warning] = s.dedupe.warnings
        assert ids_of(warning.candidates) == [a.id]
        assert [e.field for e in warning.candidates[0].evidence] == ["name"]
        # merge_threshold 0.99: a name-only match is not folded, an email-and-name one is.
        c = s.contacts.create("Ada Lovelace", phones=["030 7654321"], on_duplicate="merge")
        assert c.id != a.id
        d = s.contacts.create("Ada Lovelace", emails=["ada@calc.example"], on_duplicate="merge")
        assert d.id == a.id


def test_the_check_on_update(system: Session) -> None:
    a = system.contacts.create("Ada Lovelace", emails=["ada@calc.example"])
    b = system.contacts.create("Grace Hopper", emails=["grace@navy.example"])
    before = system.contacts.get(b.id)
    with pytest.raises(DuplicateError) as info:
        system.contacts.update(
            b.id, name="Ada Lovelace", emails=["ADA@calc.example"], on_duplicate="block"
        )
    assert ids_of(info.value.candidates) == [a.id]
    assert system.contacts.get(b.id) == before
    # warn (the default) writes and remembers.
    updated = system.contacts.update(b.id, name="Ada Lovelace", emails=["ada@calc.example"])
    assert updated.name == "Ada Lovelace"
    [warning] = system.dedupe.warnings
    assert (warning.record_type, warning.record_id) == ("contact", b.id)
    assert ids_of(warning.candidates) == [a.id]  # never itself
    # A change to a field that says nothing about identity is not checked.
    system.contacts.update(b.id, title="Admiral", on_duplicate="block")
    # merge on update only warns: the record is updated, not folded away.
    c = system.contacts.create("Someone", emails=["someone@x.example"])
    system.contacts.update(
        c.id, name="Ada Lovelace", emails=["ada@calc.example"], on_duplicate="merge"
    )
    assert system.contacts.get(c.id).status is RecordStatus.ACTIVE
    assert system.dedupe.warnings[-1].record_id == c.id


def test_the_check_on_update_of_customers_and_leads(system: Session) -> None:
    a = system.customers.create("ACME Ltd.", phones=["030 1234567"], emails=["info@acme.example"])
    b = system.customers.create("Beta GmbH")
    with pytest.raises(DuplicateError) as info:
        system.customers.update(
            b.id, name="Acme Inc", emails=["info@acme.example"], on_duplicate="block"
        )
    assert ids_of(info.value.candidates) == [a.id]
    contact = system.contacts.create("John Smith", emails=["john@acme.example"])
    lead = system.leads.capture("Jane Doe", source="webform", email="jane@doe.example")
    with pytest.raises(DuplicateError) as info:
        system.leads.update(
            lead.id, name="John Smith", emails=["john@acme.example"], on_duplicate="block"
        )
    assert [(c.record_type, c.record_id) for c in info.value.candidates] == [
        ("contact", contact.id)
    ]
    assert system.leads.get(lead.id).name == "Jane Doe"


def test_evidence_explains_the_score(system: Session) -> None:
    a = system.contacts.create(
        "Anna Schmidt",
        emails=["anna@acme.example"],
        phones=["030 1234567"],
        address={"line1": "Hauptstr. 1", "postcode": "10115", "city": "Berlin", "country": "DE"},
    )
    [candidate] = system.dedupe.check(
        "contact",
        name="Schmidt, Anna",
        emails=["Anna+news@ACME.example"],
        phones=["+49 (0)30 123 45 67"],
        address={"line1": "hauptstr 1", "postcode": "101 15", "city": "BERLIN", "country": "de"},
    )
    assert candidate.record_id == a.id
    assert all(isinstance(e, Evidence) for e in candidate.evidence)
    by_field = {e.field: e for e in candidate.evidence}
    assert set(by_field) == {"email", "phone", "name", "address"}
    assert "anna@acme.example" in by_field["email"].detail
    assert "+49301234567" in by_field["phone"].detail
    assert by_field["address"].detail == "same address"
    assert all(0 < e.similarity <= 1 for e in candidate.evidence)
    weights = [e.weight for e in candidate.evidence]
    assert weights == sorted(weights, reverse=True)  # strongest first
    assert weights[-1] > 0
    # The explanation: the prior, then each compared part's weight, summing to the match weight.
    assert candidate.weights[0].comparison == "prior"
    assert sum(w.weight for w in candidate.weights) == pytest.approx(
        candidate.match_weight, abs=0.01
    )
    assert candidate.score > 0.99


# -- scan ------------------------------------------------------------------------------


def test_scan_finds_clusters_with_pairwise_scores_and_reasons(system: Session) -> None:
    allow = {"on_duplicate": "allow"}
    j1 = system.contacts.create("John Smith", emails=["john@acme.example"], **allow)
    j2 = system.contacts.create("Smith, John", emails=["John+crm@acme.example"], **allow)
    j3 = system.contacts.create(
        "Jon Smith", emails=["JOHN@ACME.EXAMPLE"], phones=["030 1234567"], **allow
    )
    a1 = system.contacts.create("Anna Schmidt", phones=["0151 23456789"], **allow)
    a2 = system.contacts.create("anna schmidt", phones=["+4915123456789"], **allow)
    system.contacts.create("Maria Garcia", emails=["maria@x.example"], **allow)
    system.contacts.create("Peter Parker", phones=["030 1234567"], **allow)  # shares a phone only
    clusters = system.dedupe.scan("contact")
    assert all(isinstance(c, Cluster) for c in clusters)
    by_ids = {c.record_ids: c for c in clusters}
    assert set(by_ids) == {tuple(sorted([j1.id, j2.id, j3.id])), tuple(sorted([a1.id, a2.id]))}
    john = by_ids[tuple(sorted([j1.id, j2.id, j3.id]))]
    assert john.record_type == "contact"
    pairs = {frozenset((a, b)): (score, evidence) for a, b, score, evidence in john.pairs}
    assert frozenset((j1.id, j2.id)) in pairs
    for a, b, score, evidence in john.pairs:
        assert a < b
        assert 0.8 <= score <= 1
        assert evidence
        assert all(isinstance(e, Evidence) and e.detail for e in evidence)
    assert "email" in {e.field for e in pairs[frozenset((j1.id, j2.id))][1]}
    # A lower threshold links more; an invalid one is refused.
    assert len(system.dedupe.scan("contact", threshold=0.99)) <= len(clusters)
    with pytest.raises(ValidationError):
        system.dedupe.scan("contact", threshold=0)
    with pytest.raises(ValidationError):
        system.dedupe.scan("deal")


def test_scan_of_customers_and_leads_and_tombstones(system: Session) -> None:
    allow = {"on_duplicate": "allow"}
    a = system.customers.create("ACME Ltd.", phones=["030 1234567"], **allow)
    b = system.customers.create("Acme Limited", phones=["+49 30 1234567"], **allow)
    system.customers.create("Beta GmbH", **allow)
    [cluster] = system.dedupe.scan("customer")
    assert cluster.record_ids == tuple(sorted([a.id, b.id]))
    l1 = system.leads.capture("Ann Lee", source="webform", email="ann@lee.example", **allow)
    l2 = system.leads.capture("Ann Lee", source="import", email="ann@lee.example", **allow)
    assert [c.record_ids for c in system.dedupe.scan("lead")] == [tuple(sorted([l1.id, l2.id]))]
    system.dedupe.merge(a.id, [b.id])
    assert system.dedupe.scan("customer") == []  # a tombstone is not a duplicate


# -- merge: survivorship ----------------------------------------------------------------


def make_pair(s: Session, clock: FakeClock) -> tuple[Customer, Customer]:
    """Two duplicate customers: ``a`` (webshop, older) and ``b`` (erp, more recent, fuller)."""
    a = s.customers.create(
        "ACME Ltd.",
        emails=["info@acme.example"],
        phones=["030 1234567"],
        website="acme-shop.example",
        source="webshop",
        tags=["vip"],
    )
    clock.advance(hours=1)
    b = s.customers.create(
        "Acme Limited",
        phones=["+49 30 1234567", "+49 30 7654321"],
        emails=["accounts@acme.example"],
        website="acme.example",
        industry="machinery",
        size=120,
        region="north",
        source="erp",
        tags=["VIP", "erp"],
        on_duplicate="allow",
    )
    clock.advance(hours=1)
    return a, b


@pytest.fixture
def pair(system: Session, fake_clock: FakeClock) -> tuple[Customer, Customer]:
    return make_pair(system, fake_clock)


def test_default_survivorship_keeps_the_survivor_and_fills_its_gaps(
    system: Session, pair: tuple[Customer, Customer]
) -> None:
    a, b = pair
    result = system.dedupe.merge(a.id, [b.id])
    assert isinstance(result, MergeResult)
    survivor = system.customers.get(a.id)
    assert result.survivor == survivor
    assert result.merged_ids == (b.id,)
    assert (survivor.name, survivor.website, survivor.source) == (
        "ACME Ltd.",
        "acme-shop.example",
        "webshop",
    )
    assert (survivor.industry, survivor.size, survivor.region) == ("machinery", 120, "north")
    assert survivor.tags == ("vip", "erp")  # union, case-insensitive, survivor's first
    points = [(p.kind.value, p.value) for p in survivor.contact_points]
    assert points == [
        ("email", "info@acme.example"),
        ("phone", "+49301234567"),
        ("email", "accounts@acme.example"),
        ("phone", "+49307654321"),
    ]
    tomb = system.customers.get(b.id)
    assert (tomb.status, tomb.merged_into) == (RecordStatus.MERGED, a.id)
    assert tomb.name == b.name  # the tombstone keeps its values


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("survivor", "acme-shop.example"),
        ("most_recent", "acme.example"),
        ("most_complete", "acme.example"),
        (SourcePriority(("erp", "webshop")), "acme.example"),
        (SourcePriority(("webshop", "erp")), "acme-shop.example"),
        (SourcePriority(("crm",)), "acme-shop.example"),  # no ranked source: survivor first
    ],
)
def test_survivorship_rules_per_field(
    system: Session, pair: tuple[Customer, Customer], rule: Any, expected: str
) -> None:
    a, b = pair
    result = system.dedupe.merge(a.id, [b.id], rules={"website": rule})
    assert result.survivor.website == expected
    assert system.customers.get(a.id).website == expected


def test_pick_and_mixed_rules(system: Session, pair: tuple[Customer, Customer]) -> None:
    a, b = pair
    result = system.dedupe.merge(
        a.id,
        [b.id],
        rules={
            "name": Pick(b.id),
            "website": SourcePriority(("erp",)),
            "industry": "survivor",  # the survivor has none: None it stays
            "tags": Pick(a.id),
            "source": "most_recent",
        },
    )
    s = result.survivor
    assert (s.name, s.website, s.industry, s.tags, s.source) == (
        "Acme Limited",
        "acme.example",
        None,
        ("vip",),
        "erp",
    )
    assert s.size == 120  # fields without a rule: survivor's, else filled


def test_most_recent_follows_updates(
    system: Session, pair: tuple[Customer, Customer], fake_clock: FakeClock
) -> None:
    a, b = pair
    system.customers.update(a.id, region="south")  # a is now the most recently updated
    result = system.dedupe.merge(
        b.id, [a.id], rules={"region": "most_recent", "website": "most_recent"}
    )
    assert result.survivor.region == "south"
    assert result.survivor.website == "acme-shop.example"


def test_bad_rules_are_refused_and_nothing_is_written(
    system: Session, pair: tuple[Customer, Customer]
) -> None:
    a, b = pair
    before = dump(system, *STORE_KINDS)
    for rules, field in [
        ({"shoe_size": "survivor"}, "rules"),
        ({"status": "survivor"}, "rules"),
        ({"website": Pick("someone-else")}, "rules.website"),
        ({"website": "loudest"}, "rules.website"),
    ]:
        with pytest.raises(ValidationError) as info:
            system.dedupe.merge(a.id, [b.id], rules=rules)
        assert info.value.field == field
    assert dump(system, *STORE_KINDS) == before


def test_merge_arguments_are_checked(system: Session, pair: tuple[Customer, Customer]) -> None:
    a, b = pair
    with pytest.raises(ValidationError):
        system.dedupe.merge(a.id, [])
    with pytest.raises(ValidationError):
        system.dedupe.merge(a.id, b.id)  # a string, not a list
    with pytest.raises(ValidationError):
        system.dedupe.merge(a.id, [a.id])
    with pytest.raises(ValidationError):
        system.dedupe.merge(a.id, [b.id], record_type="deal")
    with pytest.raises(NotFound):
        system.dedupe.merge(a.id, [b.id], record_type="lead")  # ids are customers
    with pytest.raises(NotFound):
        system.dedupe.merge(a.id, ["nope"])
    with pytest.raises(NotFound):
        system.dedupe.merge(a.id, [b.id], record_type="contact")  # ids are customers
    with pytest.raises(NotFound):
        system.dedupe.unmerge("nope")


# -- merge: related records, dry run, signals, audit, unmerge ------------------------------


#: The kinds of related record lead_to_cash() gives a customer and a contact.
BUILT = {
    "customer": {
        "contact",
        "activity",
        "assessment",
        "lead",
        "deal",
        "contract",
        "receivable",
        "ticket",
        "task",
    },
    "contact": {"activity", "deal", "lead", "behaviour_event", "ticket", "task"},
}


def lead_to_cash(s: Session, customer: Customer, contact: Contact) -> dict[str, Any]:
    """Give ``customer`` and ``contact`` one of everything that can point at them."""
    rep = s.org.create_user(
        name="Sam Rep", email=f"sam-{customer.id}@x.example", department="sales"
    )
    s.activities.log("call", "intro", customer_id=customer.id)
    s.activities.log("meeting", "demo", contact_id=contact.id)
    s.customers.assess(customer.id, "grade", "B", source="sales")
    lead = s.leads.capture(
        contact.name,
        source="webform",
        email=next(p.value for p in contact.contact_points if p.kind.value == "email"),
        company=customer.name,
        needs="packaging line",
        on_duplicate="allow",
    )
    s.leads.assign(lead.id, rep.id)
    s.leads.mark_contacted(lead.id)
    s.leads.qualify(lead.id)
    _, converted_contact, deal = s.leads.convert(
        lead.id, customer_id=customer.id, amount=pycrm.Money.of("12000", "EUR")
    )
    assert converted_contact.id == contact.id
    s.deals.win(deal.id)
    contract = s.contracts.submit(
        s.contracts.draft(deal.id, instalments=3, first_due=date(2026, 2, 1)).id
    )
    if contract.status.value == "pending_approval":
        contract = s.contracts.approve(contract.id)
    s.contracts.sign(contract.id)
    s.tasks.create("call back", assignee_id=rep.id, related_type="customer", related_id=customer.id)
    s.tasks.create(
        "send brochure", assignee_id=rep.id, related_type="contact", related_id=contact.id
    )
    s.tickets.open("broken belt", channel="email", customer_id=customer.id, contact_id=contact.id)
    s.activities.track(contact.id, "viewed_pricing_page")
    return {"lead": lead, "deal": deal, "contract": contract, "rep": rep}


def make_family(s: Session, clock: FakeClock) -> dict[str, Any]:
    """Duplicate customers a and b; b and its duplicate contact have a full lead-to-cash history."""
    a, b = make_pair(s, clock)
    a_contact = s.contacts.create(
        "Anna Schmidt", customer_id=a.id, emails=["anna@acme.example"], source="webshop"
    )
    b_contact = s.contacts.create(
        "Schmidt, Anna",
        customer_id=b.id,
        emails=["Anna+crm@acme.example"],
        phones=["0151 23456789"],
        title="Buyer",
        source="erp",
        on_duplicate="allow",
    )
    s.activities.log("note", "a's own", customer_id=a.id)
    history = lead_to_cash(s, b, b_contact)
    return {"a": a, "b": b, "a_contact": a_contact, "b_contact": b_contact, **history}


@pytest.fixture
def family(system: Session, fake_clock: FakeClock) -> dict[str, Any]:
    return make_family(system, fake_clock)


def test_merge_reparents_every_related_record(system: Session, family: dict[str, Any]) -> None:
    a, b = family["a"], family["b"]
    ids = [a.id, b.id]
    before = related_counts(system, "customer", ids)
    # Every kind of record lead_to_cash builds points at one of them (kinds added to
    # REFERENCES later are still counted below, present or not).
    assert all(n >= 1 for (kind, _), n in before.items() if kind in BUILT["customer"]), before
    assert {kind for kind, _ in before} >= BUILT["customer"]
    moving = {
        (cls.resource, r.id, f)
        for cls, f in REFERENCES["customer"]
        for r in system._uow.repo(cls).find(Eq(f, b.id))
    }
    result = system.dedupe.merge(a.id, [b.id])
    assert set(result.reparented) == moving
    assert len(result.reparented) == len(moving)
    after = related_counts(system, "customer", [a.id])
    assert after == before
    assert related_counts(system, "customer", [b.id]) == dict.fromkeys(before, 0)
    view = system.customers.view(a.id)
    assert {c.id for c in view.contacts} == {family["a_contact"].id, family["b_contact"].id}
    assert [d.id for d in view.deals] == [family["deal"].id]
    assert len(view.receivables) == 3
    assert view.contracts[0].id == family["contract"].id


def test_merging_contacts_reparents_their_records(system: Session, family: dict[str, Any]) -> None:
    keep, dup = family["a_contact"], family["b_contact"]
    ids = [keep.id, dup.id]
    before = related_counts(system, "contact", ids)
    assert all(n >= 1 for (kind, _), n in before.items() if kind in BUILT["contact"]), before
    assert {kind for kind, _ in before} >= BUILT["contact"]
    with received("contacts_merged", system.crm) as got:
        result = system.dedupe.merge(keep.id, [dup.id], record_type="contact")
        assert got == []  # sent after commit, not before
    assert related_counts(system, "contact", [keep.id]) == before
    assert related_counts(system, "contact", [dup.id]) == dict.fromkeys(before, 0)
    survivor = system.contacts.get(keep.id)
    assert survivor.title == "Buyer"
    assert survivor.customer_id == family["a"].id  # the survivor's own company stays
    assert {p.value for p in survivor.contact_points} == {"anna@acme.example", "+4915123456789"}
    assert result.merge_id is not None
    assert system.contacts.get(dup.id).status is RecordStatus.MERGED


ALL_KINDS: tuple[type[Record], ...] = (
    *STORE_KINDS,
    *dict.fromkeys(cls for refs in REFERENCES.values() for cls, _ in refs),
)


def test_dry_run_writes_nothing_but_reports_everything(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        family = make_family(s, fake_clock)
    a, b = family["a"], family["b"]
    with crm.session(actor=crm.system_actor) as s:
        before = dump(s, *ALL_KINDS)
        moving = {
            (cls.resource, r.id, f)
            for cls, f in REFERENCES["customer"]
            for r in s._uow.repo(cls).find(Eq(f, b.id))
        }
    with received("customers_merged", crm) as got:
        with crm.session(actor=crm.system_actor) as s:
            dry = s.dedupe.merge(a.id, [b.id], dry_run=True)
        assert got == []
        with crm.session(actor=crm.system_actor) as s:
            assert dump(s, *ALL_KINDS) == before
            real = s.dedupe.merge(a.id, [b.id])
    assert dry.merge_id is None
    assert stable(to_dict(dry.survivor)) == stable(to_dict(real.survivor))
    assert dry.survivor.industry == "machinery"
    assert dry.merged_ids == real.merged_ids == (b.id,)
    assert len(dry.reparented) == len(set(dry.reparented))
    assert set(dry.reparented) == set(real.reparented) == moving
    assert [e.record_id for e in got] == [real.merge_id]


def test_merge_sends_its_signal_once_after_commit(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    with crm.session(actor=crm.system_actor) as s:
        a, b = make_pair(s, fake_clock)
    with received("customers_merged", crm) as got, crm.session(actor=crm.system_actor) as s:
        result = s.dedupe.merge(a.id, [b.id])
        assert got == []
    [event] = got
    assert event.name == "customers_merged"
    assert (event.record_type, event.record_id) == ("merge", result.merge_id)
    assert event.after["survivor_id"] == a.id
    assert event.after["merged_ids"] == [b.id]


def test_a_rolled_back_merge_sends_nothing(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    with crm.session(actor=crm.system_actor) as s:
        a, b = make_pair(s, fake_clock)
    with received("customers_merged", crm) as got:
        s = crm.session(actor=crm.system_actor)
        s.dedupe.merge(a.id, [b.id])
        s.rollback()
    assert got == []
    with crm.session(actor=crm.system_actor) as s:
        assert s.customers.get(b.id).status is RecordStatus.ACTIVE
        assert s._uow.repo(Merge).count() == 0


def test_merge_is_audited(system: Session, family: dict[str, Any]) -> None:
    a, b = family["a"], family["b"]
    result = system.dedupe.merge(a.id, [b.id])
    merges = system.audit.find(action="merge", limit=1000)
    by_record = {(e.record_type, e.record_id) for e in merges}
    assert {("customer", a.id), ("customer", b.id), ("merge", result.merge_id)} <= by_record
    tomb = next(e for e in merges if e.record_id == b.id)
    assert list(tomb.changes["status"]) == ["active", "merged"]
    assert tomb.actor_id == system.actor.id
    reparents = system.audit.find(action="reparent", limit=1000)
    assert {(e.record_type, e.record_id) for e in reparents} == {
        (kind, id) for kind, id, _ in result.reparented
    }
    history = system.customers.history(b.id, "status")
    assert [(c.old, c.new) for c in history][-1] == ("active", "merged")


def test_unmerge_restores_the_exact_prior_state(system: Session, family: dict[str, Any]) -> None:
    a, b = family["a"], family["b"]
    before = involved(system, "customer", [a.id, b.id])
    result = system.dedupe.merge(a.id, [b.id])
    assert involved(system, "customer", [a.id, b.id]) != before
    assert [c.id for c in system.customers.search(phone="+49 30 7654321")] == [a.id]
    undone = system.dedupe.unmerge(result.merge_id)
    assert undone.merge_id == result.merge_id
    assert undone.survivor == system.customers.get(a.id)
    assert involved(system, "customer", [a.id, b.id]) == before
    assert system.customers.get(b.id).status is RecordStatus.ACTIVE
    # The match keys follow: b's own phone finds b again, not a.
    assert [c.id for c in system.customers.search(phone="+49 30 7654321")] == [b.id]
    assert ids_of(system.dedupe.check("customer", name="Acme", phones=["030 7654321"])) == [b.id]
    assert {e.record_id for e in system.audit.find(action="unmerge", limit=1000)} >= {
        a.id,
        b.id,
        result.merge_id,
    }
    with pytest.raises(InvalidTransition):
        system.dedupe.unmerge(result.merge_id)
    # And it can be merged again.
    again = system.dedupe.merge(a.id, [b.id])
    assert again.merge_id != result.merge_id


def test_unmerge_of_contacts_restores_the_exact_prior_state(
    system: Session, family: dict[str, Any]
) -> None:
    ids = [family["a_contact"].id, family["b_contact"].id]
    before = involved(system, "contact", ids)
    result = system.dedupe.merge(ids[0], ids[1:], record_type="contact")
    system.dedupe.unmerge(result.merge_id)
    assert involved(system, "contact", ids) == before


def test_unmerge_sends_merge_undone(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    with crm.session(actor=crm.system_actor) as s:
        a, b = make_pair(s, fake_clock)
        merge_id = s.dedupe.merge(a.id, [b.id]).merge_id
    with received("merge_undone", crm) as got, crm.session(actor=crm.system_actor) as s:
        s.dedupe.unmerge(merge_id)
    assert [e.record_id for e in got] == [merge_id]


@pytest.mark.parametrize("changed", ["survivor", "tombstone", "reparented"])
def test_unmerge_after_a_change_is_refused(
    system: Session, family: dict[str, Any], changed: str
) -> None:
    a, b = family["a"], family["b"]
    result = system.dedupe.merge(a.id, [b.id])
    if changed == "survivor":
        system.customers.update(a.id, grade="A")
    elif changed == "tombstone":
        system.customers.update(b.id, website="changed.example")
    else:
        activity_id = next(id for kind, id, _ in result.reparented if kind == "activity")
        system.activities.update(activity_id, subject="renamed")
    state = dump(system, *STORE_KINDS)
    with pytest.raises(ConcurrencyError):
        system.dedupe.unmerge(result.merge_id)
    assert dump(system, *STORE_KINDS) == state  # all or nothing


def test_merging_an_already_merged_record_is_refused(
    system: Session, pair: tuple[Customer, Customer]
) -> None:
    a, b = pair
    c = system.customers.create("Acme Inc", on_duplicate="allow")
    system.dedupe.merge(a.id, [b.id])
    state = dump(system, *STORE_KINDS)
    with pytest.raises(InvalidTransition):
        system.dedupe.merge(a.id, [b.id])
    with pytest.raises(InvalidTransition):
        system.dedupe.merge(c.id, [b.id])
    with pytest.raises(InvalidTransition):
        system.dedupe.merge(b.id, [c.id])  # a tombstone cannot survive either
    assert dump(system, *STORE_KINDS) == state


def test_merge_several_duplicates_at_once(system: Session, fake_clock: FakeClock) -> None:
    allow = {"on_duplicate": "allow"}
    keep = system.contacts.create("John Smith", emails=["john@acme.example"], **allow)
    dups = [
        system.contacts.create("Smith, John", phones=[f"030 123456{i}"], tags=[f"t{i}"], **allow)
        for i in range(3)
    ]
    for d in dups:
        system.activities.log("call", f"call {d.id}", contact_id=d.id)
    ids = [keep.id, *(d.id for d in dups)]
    before = involved(system, "contact", ids)
    counts = related_counts(system, "contact", ids)
    result = system.dedupe.merge(keep.id, [d.id for d in dups], record_type="contact")
    assert result.merged_ids == tuple(d.id for d in dups)
    survivor = system.contacts.get(keep.id)
    assert len(survivor.contact_points) == 4
    assert survivor.tags == ("t0", "t1", "t2")
    assert related_counts(system, "contact", [keep.id]) == counts
    system.dedupe.unmerge(result.merge_id)
    assert involved(system, "contact", ids) == before


def test_merged_records_leave_the_check(system: Session, pair: tuple[Customer, Customer]) -> None:
    a, b = pair
    system.dedupe.merge(a.id, [b.id])
    found = system.dedupe.check("customer", name="Acme", phones=["+49 30 7654321"])
    assert ids_of(found) == [a.id]  # the survivor took b's phone; the tombstone is gone


# -- bugs found --------------------------------------------------------------------------


def test_check_of_a_lead_takes_what_capture_takes(system: Session) -> None:
    a = system.contacts.create("John Smith", emails=["john@acme.example"])
    found = system.dedupe.check("lead", name="J Smith", email="john@acme.example")
    assert ids_of(found) == [a.id]


def test_an_exact_duplicate_is_found_among_many_namesakes(system: Session) -> None:
    for i in range(60):
        system.contacts.create("John Smith", emails=[f"john{i}@x{i}.example"], on_duplicate="allow")
    target = system.contacts.create(
        "John Smith", emails=["jsmith@target.example"], on_duplicate="allow"
    )
    found = system.dedupe.check("contact", name="John Smith", emails=["jsmith@target.example"])
    assert target.id in ids_of(found)
    with pytest.raises(DuplicateError):
        system.contacts.create("John Smith", emails=["jsmith@target.example"], on_duplicate="block")


def test_colleagues_with_somewhat_similar_names_sharing_a_switchboard_are_not_duplicates(
    system: Session,
) -> None:
    system.contacts.create("Anna Fischmann", phones=["030 1234567"])
    assert system.dedupe.check("contact", name="Hannah Langmann", phones=["030 1234567"]) == []


def test_a_spelling_variant_of_the_first_letter_with_the_same_email_and_phone_is_a_duplicate(
    system: Session,
) -> None:
    a = system.contacts.create(
        "Katrin Jones", emails=["katrin@jones.example"], phones=["030 1234567"]
    )
    found = system.dedupe.check(
        "contact", name="Catrin Jones", emails=["katrin@jones.example"], phones=["030 1234567"]
    )
    assert ids_of(found) == [a.id]


# -- the cleansing report ---------------------------------------------------------------


def test_the_cleansing_report_lists_bad_points_unreachable_people_and_incomplete_addresses(
    crm: pycrm.CRM,
) -> None:
    with crm.session(crm.system_actor) as s:
        half = s.customers.create(
            "Half Address AG", address={"line1": "Main St 1", "city": "Berlin"}
        )
        nowhere = s.customers.create("Nowhere AG", address={"postcode": "10115"})
        s.customers.create(
            "Full Address AG",
            address={"line1": "Main St 2", "postcode": "10115", "city": "Berlin", "country": "DE"},
        )
        bare = s.customers.create("Bare AG")  # no address, no points: nothing to fix
        shelved = s.customers.create("Shelved AG", phones=["++49"], lenient=True)
        s.customers.archive(shelved.id)
        late = s.customers.create("Late AG", phones=["12"], lenient=True)
        mute = s.contacts.create("Mute Person", customer_id=bare.id)
        lost = s.leads.capture("Lost Lead", source="import", email="nope", lenient=True)
        s.leads.disqualify(lost.id, "gone")  # closed: not worth fixing
        open_lead = s.leads.capture("Open Lead", source="import", email="nope", lenient=True)
    with crm.session(crm.system_actor) as s:
        issues = [
            (i.record_type, i.record_id, i.field, i.value, i.problem)
            for i in s.dedupe.cleansing_report()
        ]
    assert sorted(issues, key=repr) == sorted(
        [
            ("customer", half.id, "address", to_dict(half.address), "missing postcode, country"),
            ("customer", nowhere.id, "address", to_dict(nowhere.address),
             "missing line1, city, country"),
            ("contact", mute.id, "contact_points", (), "no valid email or phone"),
            ("customer", late.id, "phone", "12", "not a valid phone"),
            ("lead", open_lead.id, "email", "nope", "not a valid email"),
            ("lead", open_lead.id, "contact_points", (), "no valid email or phone"),
        ],
        key=repr,
    )  # fmt: skip


def test_the_cleansing_report_leaves_out_kinds_the_user_may_not_read_unless_asked_for(
    crm: pycrm.CRM,
) -> None:
    people = support.staff(crm, fay="finance")
    with crm.session(crm.system_actor) as s:
        s.leads.capture("Open Lead", source="import", email="nope", lenient=True)
        mute = s.contacts.create("Mute Person")
    with crm.session(people.fay.id) as s:
        assert [(i.record_type, i.record_id) for i in s.dedupe.cleansing_report()] == [
            ("contact", mute.id)
        ]
        with pytest.raises(PermissionDenied):
            s.dedupe.cleansing_report("lead")


@pytest.mark.parametrize(
    ("call", "field", "value"),
    [
        (lambda s: s.dedupe.merge("a", ["b"], record_type="deal"), "record_type", "deal"),
        (lambda s: s.customers.create("Acme", on_duplicate="sometimes"), "on_duplicate",
         "sometimes"),
    ],
    ids=["merge-kind", "policy"],
)  # fmt: skip
def test_a_kind_that_is_not_merged_and_an_unknown_policy_are_refused_naming_them(
    system: Session, call: Callable[[Session], object], field: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        call(system)
    assert (info.value.field, info.value.value) == (field, value)
    assert info.value.reason


def test_the_matcher_reads_a_kind_page_by_page_each_record_once_in_id_order(
    system: Session,
) -> None:
    ids = sorted(
        system.contacts.create(f"Person{i} Page", on_duplicate="allow").id for i in range(5)
    )
    for page in (1, 2, 3, 5, 6):
        assert [r.id for r in system.dedupe._all(Contact, page=page)] == ids


def test_a_scan_of_a_kind_the_user_may_not_read_is_refused(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        clerk = s.org.create_user("Fay", "fay@x.example", "finance")  # no lead grant
    with crm.session(actor=clerk.id) as s, pytest.raises(PermissionDenied):
        s.dedupe.scan("lead")


def test_a_record_folded_in_by_the_merge_policy_is_audited_as_an_update(
    system: Session,
) -> None:
    a = system.customers.create("ACME Ltd.", phones=["030 1234567"])
    system.customers.create(
        "Acme", phones=["030 1234567"], website="acme.example", on_duplicate="merge"
    )
    actions = [
        e.action
        for e in system._uow.repo(AuditEntry).find(Eq("record_id", a.id))
        if e.record_type == "customer"
    ]
    assert sorted(actions) == ["create", "update"]
