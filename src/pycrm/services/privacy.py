"""``s.privacy``: what pycrm holds about a person, erasing it, and legal holds that forbid that.

A person is a lead or a contact together with every lead and contact that is
the same person (a lead and the contact it converted into, duplicates merged
into either); any of their ids names them. Only the ``privacy`` role and
admins (and the system actor) may call these methods: they read and rewrite
data whatever the caller's other grants, as pycrm's own operation, once the
call itself is allowed.

* :meth:`PrivacyService.access_request` gathers every record about the
  person into one JSON document with a plain-text rendering.
* :meth:`PrivacyService.erase` pseudonymises the person everywhere their
  identifying values live, in one unit of work, keeping ids, amounts, dates,
  statuses and owners, so reports keep their figures.
* :meth:`PrivacyService.erase_many` erases several people with one pass
  through the tenant, as erasing them one by one would.
* :meth:`PrivacyService.hold` and :meth:`PrivacyService.release` place and
  lift a legal hold, which blocks erasure; :meth:`PrivacyService.on_hold`
  asks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from pycrm.domain import RECORD_TYPES
from pycrm.domain.activities import Activity
from pycrm.domain.audit import AuditEntry
from pycrm.domain.campaigns import CampaignMember, Quota
from pycrm.domain.classification import Category
from pycrm.domain.consent import Consent, ConsentState, current
from pycrm.domain.custom_fields import FieldDefinition
from pycrm.domain.customers import Contact
from pycrm.domain.deals import Deal, Pipeline, StageVisit
from pycrm.domain.documents import Document
from pycrm.domain.fields import check_id, check_text
from pycrm.domain.ids import new_id
from pycrm.domain.leads import Lead
from pycrm.domain.matching import MatchModel
from pycrm.domain.merging import Merge
from pycrm.domain.org import Department, Team, User
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.privacy import (
    ERASED,
    PERSON_KINDS,
    Identity,
    LegalHold,
    PrivacyRequest,
    Scrubber,
    Scrubbers,
    empty_checksum,
    erase_json,
    pseudonym,
)
from pycrm.domain.products import ExchangeRate, Price, PriceList, Product
from pycrm.domain.query import Eq, Filter, In, Not, OrderBy, Range, all_of
from pycrm.domain.records import Record, Stored
from pycrm.domain.settings import Setting
from pycrm.domain.tasks import BehaviourEvent, Task
from pycrm.domain.tickets import Article, Ticket
from pycrm.errors import InvalidTransition, NotFound, ValidationError
from pycrm.ports import chunks
from pycrm.serialization import from_dict, to_dict
from pycrm.services.records import Service, write

__all__ = ["COMPLETED", "AccessReport", "ErasureReport", "PrivacyService"]

#: The signal an erasure sends after commit.
COMPLETED = "erasure_completed"

#: Record kinds an erasure never looks into: the organisation, the catalogue and the
#: configuration hold no customer's person (and an employee who shares a name keeps it).
UNTOUCHED: tuple[type[Stored], ...] = (
    Department, Team, User, Setting, Pipeline, StageVisit, Product, PriceList, Price,
    ExchangeRate, Category, FieldDefinition, MatchModel, Quota, Article,
)  # fmt: skip

_PAGE = 500


@attrs.frozen
class AccessReport:
    """Everything pycrm holds about one person (see :meth:`PrivacyService.access_request`)."""

    subject_id: str
    """The lead or contact the request named."""
    generated_at: datetime
    """When the report was made (UTC)."""
    document: dict[str, Any]
    """The report as JSON-able data: ``subject``, ``person_ids``, ``on_legal_hold``,
    ``consent_in_force`` and one list per record kind (``contact``, ``lead``, ``activity``,
    ``ticket``, ``deal``, ``task``, ``consent`` …, ``audit_entry``, ``outbox_message``),
    each record with every stored field in its JSON form."""

    def to_json(self) -> str:
        """The document as JSON text (letters as they are, keys sorted, indented)."""
        return json.dumps(self.document, ensure_ascii=False, indent=2, sort_keys=True)

    def text(self) -> str:
        """The document as a plain-text report a person can read."""
        doc = self.document
        subject = doc["subject"]
        lines = [
            f"What we hold about {subject['type']} {subject['id']}",
            f"Generated at {doc['generated_at']}",
            "Records of the same person: " + ", ".join(doc["person_ids"]),
            f"Legal hold: {'yes' if doc['on_legal_hold'] else 'no'}",
        ]
        for section, records in doc.items():
            if not isinstance(records, list) or section == "person_ids":
                continue
            title = section.replace("_", " ")
            lines += ["", f"== {title} ({len(records)}) =="]
            for record in records:
                lines.append(f"- {record.get('id', '')}")
                for field, value in record.items():
                    if field == "id" or value is None or value == [] or value == {}:
                        continue
                    shown = (
                        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    )
                    lines.append(f"    {field}: {shown}")
        return "\n".join(lines) + "\n"


@attrs.frozen
class ErasureReport:
    """What one erasure changed, place by place (see :meth:`PrivacyService.erase`)."""

    subject_id: str
    """The lead or contact the erasure named."""
    person_ids: tuple[str, ...]
    """Every lead and contact that is the same person."""
    erased_at: datetime
    """When (UTC)."""
    records: int = 0
    """The person's own leads and contacts rewritten."""
    match_keys: int = 0
    """Lookup keys (emails, phones, names) their records no longer hold."""
    activities: int = 0
    """Activities about them whose subject and body were erased."""
    tickets: int = 0
    """Tickets from them whose subject, description and messages were erased."""
    documents: int = 0
    """Documents on their records, activities and tickets: bytes deleted, renamed."""
    audit_entries: int = 0
    """Audit entries whose snapshot or changes held their values."""
    outbox_messages: int = 0
    """Event payloads in the outbox that held their values."""
    other_records: int = 0
    """Any other record that mentioned them (a deal named after them, consent proof, a task)."""

    @property
    def changed(self) -> int:
        """How many rows were rewritten in all (0: there was nothing left to erase)."""
        return sum(self.counts().values()) - self.match_keys

    @property
    def already_erased(self) -> bool:
        """True when nothing was left to erase (an erasure run again)."""
        return self.changed == 0

    def counts(self) -> dict[str, int]:
        """The counts by place."""
        return {
            name: getattr(self, name)
            for name in (
                "records", "match_keys", "activities", "tickets", "documents",
                "audit_entries", "outbox_messages", "other_records",
            )
        }  # fmt: skip


@attrs.frozen
class _Person:
    """A person's records and the records about them."""

    subject: Lead | Contact
    people: dict[str, Lead | Contact]
    related: dict[str, list[Record]]

    @property
    def ids(self) -> list[str]:
        return sorted(self.people)


#: The places an :class:`ErasureReport` counts.
_PLACES = (
    "records", "match_keys", "activities", "tickets", "documents", "audit_entries",
    "outbox_messages", "other_records",
)  # fmt: skip

#: The kinds an erasure leaves alone, by name.
_UNTOUCHED_KINDS = frozenset(cls.resource for cls in UNTOUCHED)


def _texts(value: Any) -> str:
    """Every text in a JSON value (keys too), one a line: what a scrubber could change."""
    found: list[str] = []
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, Mapping):
            found += [str(k) for k in item]
            todo += item.values()
        elif isinstance(item, list | tuple):
            todo += item
    return "\n".join(found)


@attrs.frozen
class _Step:
    """Erasing one person: the rules that rewrite a record's JSON form."""

    person: _Person
    near_scrub: Scrubber
    far_scrub: Scrubber
    erased: dict[str, str]
    near: set[str]
    secret: Callable[[str], frozenset[str]]

    def scrub(self, record_id: str, value: Any) -> Any:
        """``value`` with the person's mentions replaced (widely in records about them)."""
        return (self.near_scrub if record_id in self.near else self.far_scrub).json(value)

    def erase(
        self, resource: str, record_id: str, data: Mapping[str, Any], pairs: bool = False
    ) -> Any:
        """The JSON form ``data`` of ``resource`` ``record_id`` with the person erased."""
        if resource in _UNTOUCHED_KINDS:
            return dict(data)
        return erase_json(
            resource, record_id, data, erased=self.erased, near=self.near,
            personal=self.secret, scrub=self.scrub, pairs=pairs,
        )  # fmt: skip


class PrivacyService(Service):
    """``s.privacy``: access requests, erasure and legal holds (the ``privacy`` role, admins)."""

    # -- who and what ---------------------------------------------------------

    def _allow(self, resource: str, action: str) -> None:
        """Refuse (audited) unless the actor may ``action`` ``resource`` at all."""
        self._s._guard.require_any(resource, action)

    def _subject(self, subject_id: Any) -> Lead | Contact:
        """The lead or contact ``subject_id``, if the actor may read it; NotFound otherwise."""
        check_id("subject_id", subject_id)
        contact = self._s.read(Contact, quiet=True).get(subject_id)
        if contact is not None:
            return contact
        lead = self._s.read(Lead, quiet=True).get(subject_id)
        if lead is not None:
            return lead
        raise NotFound("lead or contact", subject_id)

    def _people(self, subject: Lead | Contact) -> dict[str, Lead | Contact]:
        """Every lead and contact that is the same person as ``subject`` (by id)."""
        leads, contacts = self._s._uow.repo(Lead), self._s._uow.repo(Contact)
        subject = self._s._uow.repo(type(subject)).get(subject.id) or subject  # unredacted
        people: dict[str, Lead | Contact] = {subject.id: subject}
        todo: list[Lead | Contact] = [subject]
        while todo:
            found: list[Lead | Contact] = []
            for record in todo:
                if isinstance(record, Lead):
                    found += leads.find(Eq("merged_into", record.id))
                    found += [leads.get(record.merged_into or "")]  # type: ignore[list-item]
                    found += [contacts.get(record.contact_id or "")]  # type: ignore[list-item]
                else:
                    found += leads.find(Eq("contact_id", record.id))
                    found += contacts.find(Eq("merged_into", record.id))
                    found += [contacts.get(record.merged_into or "")]  # type: ignore[list-item]
            todo = [r for r in found if r is not None and r.id not in people]
            people.update((r.id, r) for r in todo)
        return people

    def _find(self, cls: type[Any], where: Filter | None) -> list[Any]:
        return self._s._uow.repo(cls).find(where, order_by=[OrderBy("id")])

    def _by_ids(self, cls: type[Any], field: str, ids: Sequence[str]) -> list[Any]:
        found: list[Any] = []
        for part in chunks(sorted(set(ids))):
            found += self._find(cls, In(field, list(part)))
        return sorted(found, key=lambda r: r.id)

    def _person(self, subject: Lead | Contact) -> _Person:
        """The person ``subject`` is and every record about them (read unrestricted)."""
        people = self._people(subject)
        subject = people[subject.id]
        ids = sorted(people)
        contacts = [i for i, r in people.items() if isinstance(r, Contact)]
        leads = [i for i, r in people.items() if isinstance(r, Lead)]
        related: dict[str, list[Record]] = {
            "contact": [r for r in people.values() if isinstance(r, Contact)],
            "lead": [r for r in people.values() if isinstance(r, Lead)],
            "activity": self._by_ids(Activity, "contact_id", contacts),
            "ticket": self._by_ids(Ticket, "contact_id", contacts),
            "deal": sorted(
                {
                    d.id: d
                    for d in self._by_ids(Deal, "contact_id", contacts)
                    + self._by_ids(Deal, "lead_id", leads)
                }.values(),
                key=lambda d: d.id,
            ),
            "task": self._by_ids(Task, "related_id", ids),
            "consent": self._by_ids(Consent, "subject_id", ids),
            "consent_state": self._by_ids(ConsentState, "subject_id", ids),
            "behaviour_event": sorted(
                {
                    e.id: e
                    for e in self._by_ids(BehaviourEvent, "contact_id", contacts)
                    + self._by_ids(BehaviourEvent, "lead_id", leads)
                }.values(),
                key=lambda e: e.id,
            ),
            "campaign_member": self._by_ids(CampaignMember, "contact_id", contacts),
            "merge": [
                m
                for m in self._find(Merge, In("record_type", list(PERSON_KINDS)))
                if m.survivor_id in people or set(m.merged_ids) & set(people)
            ],
            "legal_hold": self._by_ids(LegalHold, "subject_id", ids),
            "privacy_request": self._by_ids(PrivacyRequest, "subject_id", ids),
        }
        attached = [r.id for kind in related.values() for r in kind]
        related["document"] = self._by_ids(Document, "record_id", attached)
        return _Person(subject, people, related)

    def _held(self, ids: Sequence[str]) -> list[LegalHold]:
        """The active legal holds on any of ``ids``."""
        return [h for h in self._by_ids(LegalHold, "subject_id", ids) if h.active]

    # -- access requests ------------------------------------------------------

    @write
    def access_request(self, subject_id: str) -> AccessReport:
        """Everything pycrm holds about the person ``subject_id`` names, as one document.

        ``subject_id`` is a lead's or a contact's id; the leads and contacts
        that are the same person (a lead converted into a contact, a contact
        with leads converted into it, duplicates merged into either) are
        included. The document holds, per record kind, every record about
        them with every stored field (hidden fields and private activities
        included): their leads and contacts, the activities, tickets, deals,
        tasks, consents, tracked behaviour, campaign responses and merges
        about them, the documents attached to any of those (names and sizes;
        read the bytes with ``s.documents.read``), legal holds and earlier
        requests, and the audit entries and outbox events about each of
        those records. The request is audited (action ``access_request``,
        naming the records by id only).

        :raises ValidationError: naming ``subject_id`` when it is no id.
        :raises NotFound: when it names no lead or contact the actor may read.
        :raises PermissionDenied: unless the actor has the ``privacy`` role
            (a ``create`` grant on ``privacy_request``) or is an admin.
        """
        self._allow(PrivacyRequest.resource, "create")
        subject = self._subject(subject_id)
        with self._s._guard.bypass():
            person = self._person(subject)
            records = {k: v for k, v in person.related.items() if v}
            ids = [r.id for kind in records.values() for r in kind]
            audit = self._by_ids(AuditEntry, "record_id", ids)
            events = self._by_ids(OutboxMessage, "record_id", ids)
            now = self._s._now()
            document: dict[str, Any] = {
                "subject": {"type": person.subject.resource, "id": person.subject.id},
                "generated_at": now.isoformat(),
                "person_ids": person.ids,
                "on_legal_hold": bool(self._held(person.ids)),
                "consent_in_force": [
                    to_dict(c)
                    for c in current(records.get("consent", ()))  # type: ignore[arg-type]
                ],
            }
            for kind, found in records.items():
                document[kind] = [to_dict(r) for r in found]
            document["audit_entry"] = [to_dict(e) for e in sorted(audit, key=lambda e: e.at)]
            document["outbox_message"] = [to_dict(m) for m in events]
            counts = {k: len(v) for k, v in document.items() if isinstance(v, list)}
            self._register("access", person, None, counts)
        return AccessReport(person.subject.id, now, document)

    def _register(
        self, kind: str, person: _Person, reason: str | None, counts: Mapping[str, int]
    ) -> PrivacyRequest:
        request = PrivacyRequest(
            **self._s._stamp(
                kind=kind,
                subject_type=person.subject.resource,
                subject_id=person.subject.id,
                person_ids=tuple(person.ids),
                reason=reason,
                counts=dict(counts),
            )
        )
        self._s._uow.repo(PrivacyRequest).add(request)
        self._s._record("access_request" if kind == "access" else "erasure", None, request)
        return request

    # -- erasure ----------------------------------------------------------------

    @write
    def erase(self, subject_id: str, *, reason: str) -> ErasureReport:
        """Pseudonymise the person ``subject_id`` names, everywhere their values live.

        Their leads and contacts keep their ids, statuses, owners, dates and
        links; their names become a token (``erased:`` and 12 hex digits),
        and their given and family names, title, emails, phones, street
        address (the country stays), a lead's needs and custom fields marked
        ``personal`` are emptied; so are the match keys made from them. The
        activities and tickets about them lose their subjects, bodies and
        messages; tasks about them their notes; their consents their proof;
        their tracked behaviour its properties; the documents on their
        records, activities and tickets their bytes (deleted from the blob
        store) and names. Anywhere else — deals, customers, contracts,
        quotes, notes about others, every audit entry's snapshot and changes,
        merges' before-images and the outbox's event payloads — their full
        names, emails, phone numbers (however written), address lines and
        other values copied verbatim are replaced by the token; in the
        records about them, their given and family names too. Amounts,
        dates, stages and statuses are never changed, so funnel, forecast
        and aging give the same figures.

        It runs in the caller's unit of work: all of it commits, or none of
        it (a crash rolls it back; running it again completes it). Running
        it again after it committed changes nothing and reports zeros
        (:attr:`ErasureReport.already_erased`). Each rewritten record is
        audited (action ``pseudonymise``) with its old values written as
        ``[erased]``; the erasure itself is audited (action ``erasure``)
        with its ``reason`` (the person's values taken out of it) and the
        counts, and ``erasure_completed`` is sent after commit.

        :raises ValidationError: naming ``subject_id`` or ``reason`` (required text).
        :raises NotFound: when ``subject_id`` names no lead or contact the actor may read.
        :raises InvalidTransition: when a legal hold is on any record of the
            person (release it first with :meth:`release`); nothing changes.
        :raises PermissionDenied: unless the actor has the ``privacy`` role
            (a ``create`` grant on ``privacy_request``) or is an admin.
        """
        why = check_text("reason", reason, required=True, limit=2000)
        self._allow(PrivacyRequest.resource, "create")
        subject = self._subject(subject_id)
        with self._s._guard.bypass():
            return self._erase_all([subject], why or "")[0]

    @write
    def erase_many(self, subject_ids: Sequence[str], *, reason: str) -> list[ErasureReport]:
        """Pseudonymise several people at once, as :meth:`erase` does each of them.

        The tenant is read through once for all of them (erasing them one by
        one reads it once per person), in one unit of work: all of it
        commits, or none of it. The result is what erasing them one by one,
        in the order given, leaves. Ids naming a person named before (the
        same id twice, a lead and the contact it converted into) are that
        person once. One report per person, in the order they were first
        named, each as :meth:`erase` reports; each erasure is audited (action
        ``erasure``) and announced (``erasure_completed``, after commit) on
        its own. When any of the people is under a legal hold, the whole
        call is refused and nothing changes: leave held people out (see
        :meth:`on_hold`).

        :raises ValidationError: naming ``subject_ids`` unless it is a non-empty
            list (or tuple) of ids; naming ``reason`` (required text).
        :raises NotFound: when an id names no lead or contact the actor may read.
        :raises InvalidTransition: when a legal hold is on any record of any
            of the people (release it first with :meth:`release`); nothing changes.
        :raises PermissionDenied: unless the actor has the ``privacy`` role
            (a ``create`` grant on ``privacy_request``) or is an admin.
        """
        if not isinstance(subject_ids, list | tuple):
            raise ValidationError(
                "subject_ids", subject_ids, "must be a list of lead or contact ids"
            )
        if not subject_ids:
            raise ValidationError("subject_ids", subject_ids, "must name at least one person")
        for one in subject_ids:
            check_id("subject_ids", one)
        why = check_text("reason", reason, required=True, limit=2000)
        self._allow(PrivacyRequest.resource, "create")
        subjects = [self._subject(i) for i in subject_ids]
        with self._s._guard.bypass():
            return self._erase_all(subjects, why or "")

    def _erase_all(self, subjects: Sequence[Lead | Contact], reason: str) -> list[ErasureReport]:
        """Erase the people ``subjects`` are (each once), unless one of them is on hold."""
        persons: list[_Person] = []
        seen: set[str] = set()
        for subject in subjects:
            if subject.id in seen:
                continue
            person = self._person(subject)
            seen.update(person.people)
            persons.append(person)
        for person in persons:
            held = self._held(person.ids)
            if held:
                raise InvalidTransition(
                    person.subject.resource,
                    "on_legal_hold",
                    "erased",
                    f"{held[0].subject_type} {held[0].subject_id} is under a legal hold placed "
                    f"{held[0].placed_at:%Y-%m-%d}; release it with s.privacy.release first",
                )
        return self._erase(persons, reason)

    def _identity(self, person: _Person) -> Identity:
        """The person's values: in their records now and in every earlier form of them."""
        forms: list[Mapping[str, Any]] = [to_dict(r) for r in person.people.values()]
        for entry in self._by_ids(AuditEntry, "record_id", person.ids):
            forms.append(entry.snapshot or {})
            forms.append({k: v[0] for k, v in entry.changes.items() if isinstance(v, list) and v})
            forms.append({k: v[-1] for k, v in entry.changes.items() if isinstance(v, list) and v})
        for message in self._by_ids(OutboxMessage, "record_id", person.ids):
            for side in ("before", "after"):
                if isinstance(message.payload.get(side), Mapping):
                    forms.append(message.payload[side])
        for merge in person.related["merge"]:
            assert isinstance(merge, Merge)
            forms += [c.before for c in merge.changes if c.record_id in person.people]
        return Identity.gather(forms)

    def _step(self, person: _Person, secret: Callable[[str], frozenset[str]]) -> _Step:
        """How erasing ``person`` rewrites a record's JSON form."""
        identity = self._identity(person)
        token = pseudonym(person.ids[0])
        related = person.related
        erased: dict[str, str] = {r.id: r.resource for r in person.people.values()}
        for kind in ("activity", "ticket", "task", "consent", "behaviour_event"):
            erased.update((r.id, kind) for r in related[kind])
        cleared = {i for i, k in erased.items() if k in ("contact", "lead", "activity", "ticket")}
        erased.update((d.id, "document") for d in related["document"] if d.record_id in cleared)  # type: ignore[attr-defined]
        near: set[str] = {r.id for kind in related.values() for r in kind}
        return _Step(
            person,
            near_scrub=Scrubber(identity, token, wide=True),
            far_scrub=Scrubber(identity, token),
            erased=erased,
            near=near,
            secret=secret,
        )

    def _erase(self, persons: Sequence[_Person], reason: str) -> list[ErasureReport]:
        s = self._s
        personal: dict[str, frozenset[str]] = {}

        def secret(resource: str) -> frozenset[str]:
            if resource not in personal:
                found = s._uow.repo(FieldDefinition).find(Eq("entity", resource))
                personal[resource] = frozenset(d.key for d in found if d.personal)
            return personal[resource]

        steps = [self._step(person, secret) for person in persons]
        anyone = Scrubbers([step.far_scrub for step in steps])

        def involved(record_id: str, value: Any) -> list[int]:
            """The steps that may change a record (by its id) or its JSON ``value``.

            Those left out would change nothing: no rule of theirs applies to the
            record and no text in it may mention their person.
            """
            mentioned = set(anyone.concerned(_texts(value)))
            return [i for i, step in enumerate(steps) if i in mentioned or record_id in step.near]

        counts = [dict.fromkeys(_PLACES, 0) for _ in steps]
        place = {"contact": "records", "lead": "records", "activity": "activities",
                 "ticket": "tickets", "document": "documents"}  # fmt: skip
        blobs: set[str] = set()
        for cls in RECORD_TYPES:
            if (
                cls in UNTOUCHED
                or cls in (AuditEntry, OutboxMessage)
                or not issubclass(cls, Record)
            ):
                continue
            for record in self._each(cls):
                data = to_dict(record)
                active = involved(record.id, data)
                if not active:
                    continue
                forms = [data]
                for i in active:
                    forms.append(steps[i].erase(cls.resource, record.id, forms[-1]))
                new = forms[-1]
                if new == data:
                    continue
                if isinstance(record, Document) and record.blob_key != empty_checksum():
                    blobs.add(record.blob_key)
                lost = self._rewrite(record, data, new)
                changers = [n for n in range(len(active)) if forms[n + 1] != forms[n]]
                for n in changers:
                    mine = counts[active[n]]
                    mine[place.get(cls.resource, "other_records")] += 1
                    if len(changers) == 1:
                        mine["match_keys"] += lost
                    else:
                        mine["match_keys"] += len(
                            set(from_dict(cls, forms[n]).match_keys())
                            - set(from_dict(cls, forms[n + 1]).match_keys())
                        )
        for entry in self._each(AuditEntry):
            if entry.record_type in _UNTOUCHED_KINDS:
                continue
            kind, id = entry.record_type, entry.record_id
            snapshot, changes = entry.snapshot, entry.changes
            for i in involved(id, [snapshot, changes]):
                step = steps[i]
                erased_snapshot = None if snapshot is None else step.erase(kind, id, snapshot)
                erased_changes = step.erase(kind, id, changes, pairs=True)
                if erased_snapshot != snapshot or erased_changes != changes:
                    counts[i]["audit_entries"] += 1
                snapshot, changes = erased_snapshot, erased_changes
            if snapshot != entry.snapshot or changes != entry.changes:
                s._uow.repo(AuditEntry).replace(
                    attrs.evolve(entry, snapshot=snapshot, changes=changes), 0
                )
        for message in self._each(OutboxMessage):
            if message.payload.get("record_type") in _UNTOUCHED_KINDS:
                continue
            payload: dict[str, Any] = dict(message.payload)
            error = message.last_error
            for i in involved(str(payload.get("record_id")), [payload, error]):
                step = steps[i]
                erased_payload = self._erase_payload(payload, step.erase, step.scrub)
                erased_error = None if error is None else step.far_scrub.text(error)
                if erased_payload != payload or erased_error != error:
                    counts[i]["outbox_messages"] += 1
                payload, error = erased_payload, erased_error
            if payload != message.payload or error != message.last_error:
                s._uow.repo(OutboxMessage).replace(
                    attrs.evolve(
                        message,
                        payload=payload,
                        last_error=error,
                        version=message.version + 1,
                        updated_at=s._now(),
                    ),
                    message.version,
                )
        self._drop_blobs(blobs)
        reports: list[ErasureReport] = []
        for i, step in enumerate(steps):
            person = step.person
            why = step.far_scrub.text(step.near_scrub.text(reason))
            # Every other person's values go too (erased one by one, a later erasure
            # would take them out of this one's reason, an earlier one would not).
            for other in steps:
                why = why if other is step else other.far_scrub.text(why)
            report = ErasureReport(person.subject.id, tuple(person.ids), s._now(), **counts[i])
            self._register("erasure", person, why, report.counts())
            subject = s._uow.repo(type(person.subject)).get(person.subject.id) or person.subject
            s._emit(
                COMPLETED,
                subject,
                after={"person_ids": list(person.ids), "counts": report.counts()},
            )
            reports.append(report)
        return reports

    @staticmethod
    def _erase_payload(
        payload: Mapping[str, Any],
        erase: Callable[..., Any],
        scrub: Callable[[str, Any], Any],
    ) -> dict[str, Any]:
        """An event's JSON form with the person erased from the record it carries."""
        kind, id = str(payload.get("record_type")), str(payload.get("record_id"))
        out: dict[str, Any] = scrub(
            id, {k: v for k, v in payload.items() if k not in ("before", "after")}
        )
        for side in ("before", "after"):
            if side in payload:
                value = payload[side]
                out[side] = erase(kind, id, value) if isinstance(value, Mapping) else value
        return out

    def _each(self, cls: type[Any]) -> Iterator[Any]:
        """Every record of ``cls`` in this tenant, page by page in id order."""
        repo = self._s._uow.repo(cls)
        after: str | None = None
        while True:
            where = (
                None if after is None else all_of([Range("id", after, None), Not(Eq("id", after))])
            )
            page = repo.find(where, order_by=[OrderBy("id")], limit=_PAGE)
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].id

    def _rewrite(self, record: Record, old: Mapping[str, Any], new: Mapping[str, Any]) -> int:
        """Store ``new`` as the next version of ``record``, audited without the old values.

        Returns how many match keys the record no longer holds.
        """
        s = self._s
        changed = {k: [ERASED, v] for k, v in new.items() if old.get(k) != v}
        updated = attrs.evolve(
            from_dict(type(record), dict(new)),
            version=record.version + 1,
            updated_at=s._now(),
            updated_by=s.actor.id,
        )
        s._replace(updated, record)
        s._uow.repo(AuditEntry).add(
            AuditEntry(
                id=new_id(),
                tenant_id=s.tenant_id,
                at=updated.updated_at,
                actor_id=s.actor.id,
                department=s.actor.department,
                action="pseudonymise",
                record_type=record.resource,
                record_id=record.id,
                changes=changed,
            )
        )
        return len(set(record.match_keys()) - set(updated.match_keys()))

    def _drop_blobs(self, keys: set[str]) -> None:
        """Delete erased documents' bytes no other document shares; store the empty blob."""
        store = self._s.crm.blob_store
        if not keys:
            return
        shared = {d.blob_key for d in self._by_ids(Document, "blob_key", sorted(keys))}
        store.put(empty_checksum(), b"")
        for key in sorted(keys - shared):
            store.delete(key)

    # -- legal holds --------------------------------------------------------------

    @write
    def hold(self, subject_id: str, *, reason: str) -> LegalHold:
        """Place a legal hold on the person ``subject_id`` names: their data may not be erased.

        The hold covers every lead and contact of the person. Placing it
        again after a release reactivates the same record. Audited (action
        ``hold``).

        :raises ValidationError: naming ``subject_id`` or ``reason`` (required text).
        :raises NotFound: when ``subject_id`` names no lead or contact the actor may read.
        :raises InvalidTransition: when that record is on hold already.
        :raises PermissionDenied: unless the actor has the ``privacy`` role
            (a ``create`` grant on ``legal_hold``) or is an admin.
        """
        why = check_text("reason", reason, required=True, limit=2000)
        self._allow(LegalHold.resource, "create")
        subject = self._subject(subject_id)
        with self._s._guard.bypass():
            found = self._find(LegalHold, Eq("subject_id", subject.id))
            now = self._s._now()
            if not found:
                hold = LegalHold(
                    **self._s._stamp(
                        subject_type=subject.resource,
                        subject_id=subject.id,
                        reason=why,
                        placed_at=now,
                        placed_by=self._s.actor.id,
                    )
                )
                self._s._uow.repo(LegalHold).add(hold)
                self._s._record("hold", None, hold)
                return hold
            if found[0].active:
                raise InvalidTransition(
                    "legal_hold",
                    "active",
                    "active",
                    f"{subject.resource} {subject.id} is on a legal hold already",
                )
            hold = self._s._revise(
                found[0],
                "hold",
                active=True,
                reason=why,
                placed_at=now,
                placed_by=self._s.actor.id,
                released_at=None,
                released_by=None,
                release_reason=None,
            )
            assert isinstance(hold, LegalHold)
            return hold

    @write
    def release(self, subject_id: str, *, reason: str) -> LegalHold:
        """Lift the legal hold on the person ``subject_id`` names.

        The hold placed on that record, or, when the person's only hold is on
        another of their records (the lead they converted from), that one.
        Audited (action ``release``).

        :raises ValidationError: naming ``subject_id`` or ``reason`` (required text).
        :raises NotFound: when ``subject_id`` names no lead or contact the actor may read.
        :raises InvalidTransition: when no hold holds the person, or several
            do and none is on this record (name the record it is on).
        :raises PermissionDenied: unless the actor has the ``privacy`` role
            (an ``update`` grant on ``legal_hold``) or is an admin.
        """
        why = check_text("reason", reason, required=True, limit=2000)
        self._allow(LegalHold.resource, "update")
        subject = self._subject(subject_id)
        with self._s._guard.bypass():
            held = self._held(sorted(self._people(subject)))
            mine = [h for h in held if h.subject_id == subject.id] or (
                held if len(held) == 1 else []
            )
            if not mine:
                detail = (
                    f"{subject.resource} {subject.id} is not on hold"
                    if not held
                    else "the holds are on " + ", ".join(h.subject_id for h in held)
                )
                raise InvalidTransition("legal_hold", "released", "released", detail)
            released = self._s._revise(
                mine[0],
                "release",
                active=False,
                released_at=self._s._now(),
                released_by=self._s.actor.id,
                release_reason=why,
            )
            assert isinstance(released, LegalHold)
            return released

    def on_hold(self, subject_id: str) -> bool:
        """Whether a legal hold is on any lead or contact of the person ``subject_id`` names.

        :raises ValidationError: naming ``subject_id`` when it is no id.
        :raises NotFound: when it names no lead or contact the actor may read.
        :raises PermissionDenied: without a ``read`` grant on ``legal_hold``
            (the ``privacy`` role, admins; the ``analytics`` department reads everything).
        """
        self._allow(LegalHold.resource, "read")
        subject = self._subject(subject_id)
        with self._s._guard.bypass():
            return bool(self._held(sorted(self._people(subject))))
