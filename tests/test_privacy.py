"""Access requests, erasure and legal holds (``s.privacy``), on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import date
from types import SimpleNamespace
from typing import Any

import phonenumbers
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm import signals
from pycrm.adapters.sqlalchemy.store import SqlStore
from pycrm.domain import RECORD_TYPES
from pycrm.domain.events import Event
from pycrm.domain.privacy import (
    ERASED,
    Identity,
    Scrubber,
    Scrubbers,
    is_pseudonym,
    pseudonym,
)
from pycrm.errors import InvalidTransition, NotFound, PermissionDenied, ValidationError
from pycrm.services.privacy import PrivacyService
from pycrm.session import Session
from support import eur, snapshot, staff

_tenants = itertools.count()
_refs = itertools.count()

# -- a person and the world around them ---------------------------------------------------------

_LATIN = "bdfgkmnprstvz"
_MARK = "åøæ"  # no fixed text of the world holds these, so a generated name is never in one
SCRIPTS: dict[str, st.SearchStrategy[str]] = {
    "latin": st.builds(
        lambda a, m, b: (a + m + b).capitalize(),
        st.text(_LATIN, min_size=1, max_size=4),
        st.sampled_from(_MARK),
        st.text(_LATIN + "aeiou", min_size=2, max_size=5),
    ),
    "cyrillic": st.text("бвгджзклмнпрстфхцчшэюя", min_size=4, max_size=8).map(str.capitalize),
    "arabic": st.text("بتثجحخدذرزسشصضطظعغفقكلمنهي", min_size=4, max_size=8),
    "cjk": st.text(
        "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞刚桂欧阳司马诸葛", min_size=2, max_size=3
    ),
}
REGIONS = ("DE", "US", "GB", "FR", "JP", "RU", "EG", "CN", "BR", "IN")


@st.composite
def people(draw: st.DrawFn) -> SimpleNamespace:
    """A person: names in one script, emails, a phone valid in its region, an address."""
    script = draw(st.sampled_from(sorted(SCRIPTS)), label="script")
    given, family = draw(SCRIPTS[script], label="given"), draw(SCRIPTS[script], label="family")
    local = draw(st.text("abcdefghijkmnpqrstuvwxyz", min_size=3, max_size=10), label="local")
    emails = [
        f"{local}.{n}@{d}"
        for n, d in zip(range(2), ("mail.example", "post.example.org"), strict=True)
    ]
    region = draw(st.sampled_from(REGIONS), label="region")
    example = phonenumbers.example_number_for_type(
        region, phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number(region)
    assert example is not None
    tail = draw(st.integers(0, 99), label="tail")
    varied = phonenumbers.parse(
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[:-2]
        + f"{tail:02d}"
    )
    number = varied if phonenumbers.is_valid_number(varied) else example
    street = draw(SCRIPTS[script], label="street")
    return SimpleNamespace(
        script=script,
        given=unicodedata.normalize("NFKC", given),
        family=unicodedata.normalize("NFKC", family),
        emails=emails,
        phone=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        national=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
        international=phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
        line1=f"{street} {draw(st.integers(1, 200), label='house')}",
    )


def build(s: Session, person: SimpleNamespace, owner: str, agent: str) -> SimpleNamespace:
    """The person's life in the CRM: a lead that converts, a deal won, a contract with
    receivables, a ticket with messages, notes, consent, a document; and a bystander."""
    w = SimpleNamespace()
    if not s.fields.definitions("contact"):
        s.fields.define("contact", "birthday", "date", personal=True)
        s.fields.define("contact", "shoe_size", "text")
    acme = s.customers.create("Acme GmbH", on_duplicate="allow")
    lead = s.leads.capture(
        given_name=person.given, family_name=person.family, source="webform",
        email=person.emails[0], phone=person.phone, company="Acme GmbH", region="north",
        needs="quote for the team",
    )  # fmt: skip
    s.consent.grant(lead.id, "marketing", method="form", proof={"email": person.emails[0]})
    s.leads.assign(lead.id, owner)
    s.leads.mark_contacted(lead.id)
    s.leads.qualify(lead.id)
    customer, contact, deal = s.leads.convert(
        lead.id, customer_id=acme.id, amount=eur("1200"), expected_close=date(2026, 3, 1)
    )
    name = contact.name
    s.contacts.update(
        contact.id,
        emails=person.emails,
        phones=[person.phone],
        address={"line1": person.line1, "city": "Springfield", "postcode": "4711", "country": "DE"},
        title="Head of purchasing",
        custom={"birthday": "1990-02-03", "shoe_size": "44"},
    )
    s.activities.log(
        "note", f"Call with {name}", contact_id=contact.id,
        body=f"{name} asked to be called on {person.national} or mailed at {person.emails[1]}.",
    )  # fmt: skip
    s.activities.log(
        "meeting", "Lunch at Acme", customer_id=customer.id,
        body=f"Met {name} ({person.emails[0]}, {person.international}); liked the demo.",
    )  # fmt: skip
    renewal = s.deals.create(
        f"Renewal for {name}", customer_id=customer.id, contact_id=contact.id,
        amount=eur("300"), expected_close=date(2026, 4, 1), owner_id=owner,
    )  # fmt: skip
    s.deals.win(deal.id)
    draft = s.contracts.draft(deal.id, instalments=2, first_due=date(2026, 1, 10))
    contract = s.contracts.sign(s.contracts.submit(draft.id).id)
    first = s.receivables.list(contract_id=contract.id)[0]
    s.receivables.record_payment(first.id, eur("100"), reference=f"TX-{next(_refs)}")
    ticket = s.tickets.open(
        f"Invoice question from {name}", channel="email", contact_id=contact.id,
        description=f"{name} ({person.emails[0]}) asks about the invoice.",
    )  # fmt: skip
    s.tickets.assign(ticket.id, agent)
    s.tickets.reply(ticket.id, f"Dear {name}, we sent it again.")
    s.tickets.open(
        "Printer jam", channel="phone", customer_id=customer.id,
        description=f"Reported by {name}, call back on {person.phone}.",
    )  # fmt: skip
    doc = s.documents.attach("contact", contact.id, "id-card.txt", f"{name}\n".encode())
    bystander = s.contacts.create(
        "Zed Quill", customer_id=customer.id, emails=["zed@acme.example"], on_duplicate="allow"
    )
    s.activities.log("call", "Zed called", contact_id=bystander.id, body="About the renewal.")
    w.__dict__.update(
        lead=lead.id, contact=contact.id, deal=deal.id, renewal=renewal.id, name=name,
        customer=customer.id, bystander=bystander.id, blob=doc.checksum, document=doc.id,
    )  # fmt: skip
    return w


def needles(person: SimpleNamespace, name: str) -> list[str]:
    """The person's identifying values, and their normalised forms, case-folded."""
    values = [
        name, person.given, person.family, *person.emails, person.phone, person.national,
        person.international, person.line1,
    ]  # fmt: skip
    return sorted({unicodedata.normalize("NFKC", v).casefold() for v in values if v})


def _texts(value: Any) -> Iterator[str]:
    """A stored value as the texts it could leak through (JSON decoded and re-encoded)."""
    if value is None:
        return
    if isinstance(value, dict | list):
        yield json.dumps(value, ensure_ascii=False)
        return
    text = str(value)
    yield text
    if text[:1] in "[{":
        with contextlib.suppress(ValueError):
            yield json.dumps(json.loads(text), ensure_ascii=False)


def stored_rows(crm: pycrm.CRM, tenant: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of the tenant, as (table, column → value): reflected tables on SQL, records on memory."""
    store = crm.store
    if isinstance(store, SqlStore):
        metadata = sa.MetaData()
        schema = store.schema.metadata.schema
        metadata.reflect(store.engine, schema=schema)
        with store.engine.connect() as connection:
            for table in metadata.sorted_tables:
                query = sa.select(table)
                if "tenant_id" in table.c:
                    query = query.where(table.c.tenant_id == tenant)
                for row in connection.execute(query).mappings():
                    yield table.name, dict(row)
        return
    uow = store.begin(tenant)
    try:
        for cls in RECORD_TYPES:
            for record in uow.repo(cls).find():
                yield cls.resource, {"id": record.id, "record": pycrm.serialization.to_dict(record)}
                for kind, key in record.match_keys():
                    yield "match_keys", {"record_id": record.id, "kind": kind, "key": key}
    finally:
        uow.rollback()


def leaks(crm: pycrm.CRM, tenant: str, wanted: list[str]) -> list[str]:
    found = []
    for table, row in stored_rows(crm, tenant):
        for column, value in row.items():
            for text in _texts(value):
                folded = unicodedata.normalize("NFKC", text).casefold()
                found += [f"{table}.{column}: {n!r}" for n in wanted if n in folded]
    return sorted(set(found))


def reports(s: Session) -> tuple[Any, ...]:
    return (s.analytics.funnel(by="source"), s.analytics.forecast(), s.analytics.aging())


#: Examples per backend of the property tests (each builds a world and reads every table).
EXAMPLES = 8
_PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- erasure: nothing identifying is left, figures stay ----------------------------------------


@_PROPERTY
@given(data=st.data())
def test_after_an_erasure_no_table_holds_the_persons_values_and_reports_agree(
    crm: pycrm.CRM, data: st.DataObject
) -> None:
    """Property: every table and JSON column is free of the person; funnel, forecast, aging agree."""
    person = data.draw(people(), label="person")
    tenant = f"privacy{next(_tenants)}"
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        owner = s.org.create_user("Sam", "sam@corp.example", "sales").id
        agent = s.org.create_user("Sue", "sue@corp.example", "service").id
        s.fields.define("contact", "birthday", "date", personal=True)
        s.fields.define("contact", "shoe_size", "text")
        w = build(s, person, owner, agent)
    wanted = needles(person, w.name)
    assert leaks(crm, tenant, wanted), "the world holds the person before the erasure"
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        before = reports(s)
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        report = s.privacy.erase(w.contact, reason=f"{w.name} asked by letter")
    assert leaks(crm, tenant, wanted) == []
    assert not crm.blob_store.exists(w.blob)
    assert (report.records, report.activities, report.tickets, report.documents) == (2, 2, 2, 1)
    assert report.match_keys > 0
    assert report.audit_entries > 0
    assert report.outbox_messages > 0
    assert report.other_records > 0  # the renewal deal, the lunch note, the customer's ticket …
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        assert reports(s) == before
        contact = s.contacts.get(w.contact)
        assert is_pseudonym(contact.name)
        assert contact.contact_points == ()
        assert contact.custom == {"shoe_size": "44"}  # only the personal field goes
        assert contact.address is not None
        assert contact.address.country == "DE"
        assert s.contacts.get(w.bystander).name == "Zed Quill"
        assert s.deals.get(w.renewal).amount == eur("300")
        assert s.contacts.search(email=person.emails[0]) == []
        again = s.privacy.erase(w.lead, reason="asked again")
    assert again.already_erased
    assert again.changed == 0


def test_an_erasure_interrupted_midway_leaves_everything_as_it_was_and_a_rerun_completes(
    crm: pycrm.CRM, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = _ann()
    with crm.session(actor=crm.system_actor) as s:
        owner = s.org.create_user("Sam", "sam@corp.example", "sales").id
        agent = s.org.create_user("Sue", "sue@corp.example", "service").id
        w = build(s, person, owner, agent)
    wanted = needles(person, w.name)
    stored = snapshot(crm)
    real = PrivacyService._rewrite
    calls = itertools.count()

    def crashing(self: PrivacyService, *args: Any) -> int:
        if next(calls) == 5:
            raise RuntimeError("the process died")
        return real(self, *args)

    monkeypatch.setattr(PrivacyService, "_rewrite", crashing)
    with pytest.raises(RuntimeError), crm.session(actor=crm.system_actor) as s:
        s.privacy.erase(w.contact, reason="asked")
    assert snapshot(crm) == stored  # rolled back: not half erased
    monkeypatch.setattr(PrivacyService, "_rewrite", real)
    with crm.session(actor=crm.system_actor) as s:
        report = s.privacy.erase(w.contact, reason="asked")
    assert report.records == 2
    assert not report.already_erased
    assert leaks(crm, "default", wanted) == []


def _ann() -> SimpleNamespace:
    return SimpleNamespace(
        script="latin", given="Ånn", family="Lee", emails=["ann.lee@mail.example", "al@post.example.org"],
        phone="+4915112345678", national="01511 2345678", international="+49 1511 2345678",
        line1="Hauptstraße 5",
    )  # fmt: skip


def _world(crm: pycrm.CRM) -> tuple[SimpleNamespace, SimpleNamespace]:
    person = _ann()
    with crm.session(actor=crm.system_actor) as s:
        owner = s.org.create_user("Sam", "sam@corp.example", "sales").id
        agent = s.org.create_user("Sue", "sue@corp.example", "service").id
        return person, build(s, person, owner, agent)


# -- erasure: audit, signal, holds, permissions ------------------------------------------------


def test_an_erasure_is_audited_and_announced_without_the_erased_values(crm: pycrm.CRM) -> None:
    person, w = _world(crm)
    heard: list[Event] = []

    def receiver(sender: Any, event: Event) -> None:
        heard.append(event)

    signals.erasure_completed.connect(receiver)
    try:
        with crm.session(actor=crm.system_actor) as s:
            s.privacy.erase(w.lead, reason=f"{w.name} wrote to us")
            assert heard == []  # not before commit
    finally:
        signals.erasure_completed.disconnect(receiver)
    assert [(e.record_type, e.record_id) for e in heard] == [("lead", w.lead)]
    payload = json.dumps(pycrm.serialization.to_dict(heard[0]), ensure_ascii=False).casefold()
    assert not [n for n in needles(person, w.name) if n in payload]
    assert sorted(heard[0].after["person_ids"]) == sorted([w.lead, w.contact])  # type: ignore[index]
    with crm.session(actor=crm.system_actor) as s:
        entries = s.audit.find(record_id=w.contact)
        erasure = s.audit.find(action="erasure")
        rewritten = [e for e in entries if e.action == "pseudonymise"]
    assert len(erasure) == 1
    assert erasure[0].snapshot is not None
    assert erasure[0].snapshot["reason"].startswith("erased:")
    assert erasure[0].snapshot["counts"]["records"] == 2
    assert rewritten
    assert all(old == ERASED for e in rewritten for old, _ in e.changes.values())


def test_a_legal_hold_blocks_erasure_until_it_is_released(crm: pycrm.CRM) -> None:
    _, w = _world(crm)
    with crm.session(actor=crm.system_actor) as s:
        hold = s.privacy.hold(w.lead, reason="case 2026-17")
        assert (hold.subject_id, hold.active, hold.reason) == (w.lead, True, "case 2026-17")
        assert s.privacy.on_hold(w.contact)  # the same person
        with pytest.raises(InvalidTransition, match="legal hold"):
            s.privacy.hold(w.lead, reason="twice")
    stored = snapshot(crm)
    with (
        crm.session(actor=crm.system_actor) as s,
        pytest.raises(InvalidTransition, match=f"lead {w.lead} is under a legal hold"),
    ):
        s.privacy.erase(w.contact, reason="asked")
    assert snapshot(crm) == stored
    with crm.session(actor=crm.system_actor) as s:
        released = s.privacy.release(w.contact, reason="case closed")  # the person's one hold
        assert (released.active, released.release_reason) == (False, "case closed")
        assert not s.privacy.on_hold(w.lead)
        with pytest.raises(InvalidTransition, match="not on hold"):
            s.privacy.release(w.lead, reason="again")
        assert s.privacy.hold(w.lead, reason="case 18").version == 3  # placed again: same row
        s.privacy.release(w.lead, reason="case 18 closed")
        assert s.privacy.erase(w.contact, reason="asked").records == 2
        assert [e.action for e in s.audit.find(record_id=hold.id)] == [
            "hold", "release", "hold", "release",
        ]  # fmt: skip


def test_only_the_privacy_role_and_admins_may_ask_erase_or_hold(crm: pycrm.CRM) -> None:
    _, w = _world(crm)
    p = staff(crm, sal="sales", ana="analytics", pat=("legal", ["privacy"]), ada="admin")
    for who in (p.sal, p.ana):
        with crm.session(actor=who.id) as s:
            for call in (
                lambda: s.privacy.access_request(w.contact),
                lambda: s.privacy.erase(w.contact, reason="x"),
                lambda: s.privacy.hold(w.contact, reason="x"),
                lambda: s.privacy.release(w.contact, reason="x"),
            ):
                with pytest.raises(PermissionDenied):
                    call()
    with crm.session(actor=p.sal.id) as s, pytest.raises(PermissionDenied):
        s.privacy.on_hold(w.contact)
    with crm.session(actor=crm.system_actor) as s:
        denied = [e for e in s.audit.find(actor_id=p.sal.id) if e.action.startswith("denied:")]
    assert len(denied) == 5
    with crm.session(actor=p.pat.id) as s:
        assert s.privacy.access_request(w.contact).document["contact"][0]["id"] == w.contact
        s.privacy.hold(w.contact, reason="audit")
        assert s.privacy.on_hold(w.contact)
        s.privacy.release(w.contact, reason="done")
    with crm.session(actor=p.ada.id) as s:
        assert s.privacy.erase(w.contact, reason="asked").records == 2


def test_bad_arguments_are_refused_by_name(crm: pycrm.CRM) -> None:
    _, w = _world(crm)
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ValidationError) as bad:
            s.privacy.erase(w.contact, reason="  ")
        assert bad.value.field == "reason"
        with pytest.raises(ValidationError) as bad:
            s.privacy.access_request(42)  # type: ignore[arg-type]
        assert bad.value.field == "subject_id"
        with pytest.raises(NotFound):
            s.privacy.erase(w.customer, reason="a company is no person")
        with pytest.raises(NotFound):
            s.privacy.on_hold("nobody")


# -- erasing several people at once -------------------------------------------------------------


def _someone(given: str, family: str, local: str, phone: str, street: str) -> SimpleNamespace:
    number = phonenumbers.parse(phone)
    return SimpleNamespace(
        script="latin", given=given, family=family,
        emails=[f"{local}@mail.example", f"{local[:2]}@post.example.org"],
        phone=phone,
        national=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
        international=phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
        line1=street,
    )  # fmt: skip


def _four() -> list[SimpleNamespace]:
    return [
        _ann(),
        _someone("Børk", "Vanto", "bork.vanto", "+4915198765432", "Lindenweg 12"),
        _someone("Дарья", "Белова", "daria.b", "+4917012121212", "Gartenstraße 77"),
        _someone("Kåre", "Moss", "kare.moss", "+4916055566677", "Am Markt 3"),
    ]


def _many_world(crm: pycrm.CRM, tenant: str, persons: list[SimpleNamespace]) -> list[Any]:
    """The persons' lives in one tenant, and a note that mentions two of them at once."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        owner = s.org.create_user("Sam", "sam@corp.example", "sales").id
        agent = s.org.create_user("Sue", "sue@corp.example", "service").id
        worlds = [build(s, person, owner, agent) for person in persons]
        first, second = worlds[0], worlds[1]
        s.activities.log(
            "note", "Joint call", customer_id=first.customer,
            body=f"{first.name} and {second.name} agreed; call {persons[1].phone}.",
        )  # fmt: skip
    return worlds


def _normalised(crm: pycrm.CRM, tenant: str) -> str:
    """The tenant's records (the audit trail, outbox and requests aside) as JSON text, every
    id replaced by its kind and rank (ids are time-ordered), versions and the random
    document keys left out."""
    skipped = {"audit_entry", "outbox_message", "privacy_request"}
    uow = crm.store.begin(tenant)
    try:
        rows = {
            cls.resource: sorted(uow.repo(cls).find(), key=lambda r: r.id)
            for cls in RECORD_TYPES
            if cls.resource not in skipped
        }
    finally:
        uow.rollback()
    labels = {r.id: f"{kind}#{n}" for kind, found in rows.items() for n, r in enumerate(found)}
    dump = {
        kind: [
            {
                k: v
                for k, v in pycrm.serialization.to_dict(r).items()
                if k not in ("version", "document_key")
            }
            for r in found
        ]
        for kind, found in rows.items()
    }
    text = json.dumps(dump, ensure_ascii=False, sort_keys=True)
    for id, label in labels.items():
        text = text.replace(pseudonym(id), f"erased:{label}").replace(id, label)
    return re.sub(r"TX-\d+", "TX-#", text.replace(f'"{tenant}"', '"tenant"'))


def test_erasing_several_at_once_leaves_what_erasing_them_one_by_one_leaves(
    crm: pycrm.CRM,
) -> None:
    persons = _four()
    one, many = f"one{next(_tenants)}", f"many{next(_tenants)}"
    worlds = _many_world(crm, one, persons)
    wanted = [n for p, w in zip(persons, worlds, strict=True) for n in needles(p, w.name)]
    with crm.session(actor=crm.system_actor, tenant=one) as s:
        singly = [s.privacy.erase(w.contact, reason="asked by letter") for w in worlds]
    again = _many_world(crm, many, persons)
    ids = [again[0].contact, again[0].lead, again[1].contact, again[2].contact, again[1].lead]
    ids.append(again[3].contact)
    assert leaks(crm, many, wanted)
    with crm.session(actor=crm.system_actor, tenant=many) as s:
        together = s.privacy.erase_many(ids, reason="asked by letter")
    assert leaks(crm, one, wanted) == []
    assert leaks(crm, many, wanted) == []
    assert [r.subject_id for r in together] == [w.contact for w in again]  # each person once
    assert [len(r.person_ids) for r in together] == [2, 2, 2, 2]
    places = ("records", "match_keys", "activities", "tickets", "documents", "other_records")
    assert [[r.counts()[k] for k in places] for r in together] == [
        [r.counts()[k] for k in places] for r in singly
    ]
    assert all(r.audit_entries and r.outbox_messages for r in together)
    assert _normalised(crm, many) == _normalised(crm, one)
    with crm.session(actor=crm.system_actor, tenant=many) as s:
        assert len(s.audit.find(action="erasure")) == 4
        assert s.privacy.erase_many(ids, reason="asked again")[0].already_erased


@settings(max_examples=200, deadline=None)
@given(
    person=people(),
    mention=st.sampled_from(["name", "reversed", "email", "phone", "line1", "none"]),
    around=st.text(max_size=20),
    upper=st.booleans(),
)
def test_the_quick_literal_test_never_misses_a_mention(
    person: SimpleNamespace, mention: str, around: str, upper: bool
) -> None:
    """Property: a text the patterns find the person in always passes the literal test."""
    name = f"{person.given} {person.family}"
    identity = Identity.gather(
        [
            {"name": name, "given_name": person.given, "family_name": person.family},
            {"contact_points": [{"kind": "email", "value": e} for e in person.emails]},
            {"contact_points": [{"kind": "phone", "value": person.phone}]},
            {"address": {"line1": person.line1}},
        ]
    )
    said = {
        "name": name, "reversed": f"{person.family}, {person.given}", "email": person.emails[1],
        "phone": person.national, "line1": person.line1, "none": "",
    }[mention]  # fmt: skip
    text = f"{around} {said.upper() if upper else said} {around[::-1]}"
    for wide in (False, True):
        scrubber = Scrubber(identity, pseudonym("x"), wide=wide)
        if scrubber.mentions(text):
            assert scrubber.may_mention(Scrubber.prepare(text))
    far = Scrubber(identity, pseudonym("x"))
    if far.mentions(text):
        assert Scrubbers([Scrubber(Identity(), pseudonym("y")), far]).concerned(text) == [1]


def test_erasing_several_refuses_them_all_when_one_is_on_hold(crm: pycrm.CRM) -> None:
    persons = _four()[:2]
    worlds = _many_world(crm, "default", persons)
    with crm.session(actor=crm.system_actor) as s:
        s.privacy.hold(worlds[1].lead, reason="case 2026-17")
    stored = snapshot(crm)
    with (
        crm.session(actor=crm.system_actor) as s,
        pytest.raises(InvalidTransition, match=f"lead {worlds[1].lead} is under a legal hold"),
    ):
        s.privacy.erase_many([worlds[0].contact, worlds[1].contact], reason="asked")
    assert snapshot(crm) == stored  # nothing changed, not even the person not on hold


def test_erasing_several_announces_and_audits_each_person_once_after_commit(
    crm: pycrm.CRM,
) -> None:
    persons = _four()[:2]
    worlds = _many_world(crm, "default", persons)
    heard: list[Event] = []

    def receiver(sender: Any, event: Event) -> None:
        heard.append(event)

    signals.erasure_completed.connect(receiver)
    try:
        with crm.session(actor=crm.system_actor) as s:
            reports = s.privacy.erase_many(
                [worlds[1].lead, worlds[0].contact, worlds[1].contact, worlds[1].lead],
                reason=f"{worlds[0].name} and {worlds[1].name} wrote to us",
            )
            assert heard == []  # not before commit
    finally:
        signals.erasure_completed.disconnect(receiver)
    assert [r.subject_id for r in reports] == [worlds[1].lead, worlds[0].contact]
    assert [(e.record_type, e.record_id) for e in heard] == [
        ("lead", worlds[1].lead),
        ("contact", worlds[0].contact),
    ]
    with crm.session(actor=crm.system_actor) as s:
        erasures = s.audit.find(action="erasure")
    assert len(erasures) == 2
    for entry in erasures:
        assert entry.snapshot is not None
        text = json.dumps(entry.snapshot, ensure_ascii=False).casefold()
        for person, w in zip(persons, worlds, strict=True):
            assert not [n for n in needles(person, w.name) if n in text]
    assert [e.snapshot["counts"]["records"] >= 2 for e in erasures if e.snapshot] == [True, True]


def test_erasing_several_refuses_bad_lists_by_name_and_needs_the_privacy_role(
    crm: pycrm.CRM,
) -> None:
    _, w = _world(crm)
    with crm.session(actor=crm.system_actor) as s:
        for bad in ([], (), w.contact, None, {w.contact}, [w.contact, 42]):
            with pytest.raises(ValidationError) as refused:
                s.privacy.erase_many(bad, reason="asked")  # type: ignore[arg-type]
            assert refused.value.field == "subject_ids"
        with pytest.raises(ValidationError) as refused:
            s.privacy.erase_many([w.contact], reason=" ")
        assert refused.value.field == "reason"
        with pytest.raises(NotFound):
            s.privacy.erase_many([w.contact, w.customer], reason="a company is no person")
    p = staff(crm, sal="sales", pat=("legal", ["privacy"]))
    with crm.session(actor=p.sal.id) as s, pytest.raises(PermissionDenied):
        s.privacy.erase_many([w.contact], reason="x")
    with crm.session(actor=p.pat.id) as s:
        (report,) = s.privacy.erase_many([w.lead, w.contact], reason="asked")
    assert (report.subject_id, report.records) == (w.lead, 2)


# -- access requests -----------------------------------------------------------------------------


def test_an_access_request_is_one_document_and_a_readable_report(crm: pycrm.CRM) -> None:
    person, w = _world(crm)
    with crm.session(actor=crm.system_actor) as s:
        report = s.privacy.access_request(w.lead)
    doc = report.document
    assert doc["subject"] == {"type": "lead", "id": w.lead}
    assert sorted(doc["person_ids"]) == sorted([w.contact, w.lead])
    assert {d["id"] for d in doc["deal"]} == {w.deal, w.renewal}
    assert [c["purpose"] for c in doc["consent_in_force"]] == ["marketing"]
    assert {r["contact_id"] for r in doc["activity"]} == {w.contact}  # not the lunch note
    assert json.loads(report.to_json()) == doc
    text = report.text()
    assert w.name in text
    assert person.emails[1] in text
    assert "== ticket (1) ==" in text
    with crm.session(actor=crm.system_actor) as s:
        entries = s.audit.find(action="access_request")
    assert len(entries) == 1
    assert entries[0].snapshot is not None
    assert entries[0].snapshot["kind"] == "access"
    recorded = json.dumps(entries[0].snapshot, ensure_ascii=False)
    assert w.name not in recorded
    assert person.emails[0] not in recorded


@_PROPERTY
@given(data=st.data())
def test_an_access_request_holds_every_record_that_refers_to_the_person_and_no_other(
    crm: pycrm.CRM, data: st.DataObject
) -> None:
    """Property: the records naming the person's ids (found by reading every table) are in it."""
    crowd = data.draw(
        st.lists(people(), min_size=2, max_size=3, unique_by=lambda p: p.phone), label="people"
    )
    chosen = data.draw(st.integers(0, len(crowd) - 1), label="chosen")
    tenant = f"access{next(_tenants)}"
    worlds = []
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        owner = s.org.create_user("Sam", "sam@corp.example", "sales").id
        agent = s.org.create_user("Sue", "sue@corp.example", "service").id
        for i, person in enumerate(crowd):
            person.emails = [e.replace("@", f"{i}@") for e in person.emails]
            worlds.append(build(s, person, owner, agent))
    w = worlds[chosen]
    mine = {w.contact, w.lead}
    others = {i for o in worlds if o is not w for i in (o.contact, o.lead, o.bystander)}
    others |= {w.bystander}
    referring: set[str] = set()
    where: dict[str, str] = {}
    for table, row in stored_rows(crm, tenant):
        if table.endswith(("match_keys", "counters", "alembic_version")):
            continue
        texts = " ".join(t for v in row.values() for t in _texts(v))
        if any(i in texts for i in mine):
            referring.add(str(row["id"]))
            where[str(row["id"])] = f"{table}: {texts[:300]}"
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        doc = s.privacy.access_request(w.contact).document
    held = {r["id"] for v in doc.values() if isinstance(v, list) for r in v if isinstance(r, dict)}
    assert [where[i] for i in referring - held] == []
    for section, records in doc.items():
        if isinstance(records, list) and section != "person_ids":
            for record in records:
                text = json.dumps(record)
                assert not [o for o in others if o in text], (section, record["id"])


def test_a_document_on_the_person_is_emptied_and_its_bytes_deleted_unless_shared(
    crm: pycrm.CRM,
) -> None:
    _, w = _world(crm)
    with crm.session(actor=crm.system_actor) as s:
        mine = s.documents.attach("contact", w.contact, "cv.pdf", b"shared bytes")
        theirs = s.documents.attach("customer", w.customer, "brochure.pdf", b"shared bytes")
        s.privacy.erase(w.contact, reason="asked")
    with crm.session(actor=crm.system_actor) as s:
        erased = s.documents.get(mine.id)
        assert is_pseudonym(erased.name)
        assert erased.size == 0
        assert erased.checksum == hashlib.sha256(b"").hexdigest()
        assert s.documents.get(theirs.id).name == "brochure.pdf"
    assert crm.blob_store.exists(theirs.blob_key)  # another document holds the same bytes
    assert not crm.blob_store.exists(w.blob)
