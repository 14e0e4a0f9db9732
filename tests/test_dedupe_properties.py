"""Properties of merge and unmerge on random small data sets (memory adapter).

For random customers and contacts with random related activities and tasks,
and a random merge (survivor, duplicates, survivorship rules):

* a dry run changes nothing;
* a merge never loses a related record: as many point at the survivor after
  as pointed at any of the merged records before;
* unmerge restores the exact prior state of every record (only version,
  updated_at and updated_by move on).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm.domain.activities import Activity
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.merging import MERGEABLE, REFERENCES, Pick, SourcePriority
from pycrm.domain.query import Eq, In
from pycrm.domain.records import Record
from pycrm.domain.tasks import Task
from pycrm.serialization import to_dict
from pycrm.session import Session
from pycrm.testing import FakeClock

VOLATILE = ("version", "updated_at", "updated_by")
KINDS: tuple[type[Record], ...] = (
    Customer,
    Contact,
    *dict.fromkeys(cls for refs in REFERENCES.values() for cls, _ in refs),
)

COMPANY_NAMES = ["ACME Ltd.", "Acme Limited", "acme inc", "Beta GmbH", "BETA", "华为技术有限公司"]
PERSON_NAMES = ["John Smith", "Smith, John", "Jon Smith", "Anna Schmidt", "王芳", "Ann Lee"]
EMAILS = ["info@acme.example", "INFO+x@acme.example", "john@acme.example", "anna@beta.example"]
PHONES = ["030 1234567", "+49 30 1234567", "0151 23456789", "+44 20 7946 0958"]
SOURCES = [None, "erp", "webshop", "import"]
TAGS = ["vip", "VIP", "erp", "export", "b2b"]

maybe = st.none() | st.just(True)


@st.composite
def customer_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": draw(st.sampled_from(COMPANY_NAMES)),
        "emails": draw(st.lists(st.sampled_from(EMAILS), max_size=2)),
        "phones": draw(st.lists(st.sampled_from(PHONES), max_size=2)),
        "tags": draw(st.lists(st.sampled_from(TAGS), max_size=3)),
        "source": draw(st.sampled_from(SOURCES)),
    }
    for name, values in (
        ("industry", ["machinery", "retail"]),
        ("website", ["acme.example", "beta.example"]),
        ("region", ["north", "south"]),
    ):
        if draw(st.booleans()):
            fields[name] = draw(st.sampled_from(values))
    if draw(st.booleans()):
        fields["size"] = draw(st.integers(1, 5000))
    return fields


@st.composite
def contact_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": draw(st.sampled_from(PERSON_NAMES)),
        "emails": draw(st.lists(st.sampled_from(EMAILS), max_size=2)),
        "phones": draw(st.lists(st.sampled_from(PHONES), max_size=2)),
        "tags": draw(st.lists(st.sampled_from(TAGS), max_size=2)),
        "source": draw(st.sampled_from(SOURCES)),
    }
    if draw(st.booleans()):
        fields["title"] = draw(st.sampled_from(["Buyer", "CEO", "Engineer"]))
    return fields


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    customers = draw(st.lists(customer_fields(), min_size=2, max_size=4))
    contacts = draw(st.lists(contact_fields(), min_size=0, max_size=4))
    # Each contact works for one of the customers, or for none.
    employers = [draw(st.none() | st.integers(0, len(customers) - 1)) for _ in contacts]
    kind = "contact" if len(contacts) >= 2 and draw(st.booleans()) else "customer"
    count = len(contacts) if kind == "contact" else len(customers)
    order = draw(st.permutations(range(count)))
    merged = order[: draw(st.integers(2, count))]
    related = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["activity", "task"]),
                st.sampled_from(["customer", "contact"]),
                st.integers(0, 3),
            ),
            max_size=8,
        )
    )
    return {
        "customers": customers,
        "contacts": contacts,
        "employers": employers,
        "kind": kind,
        "merged": merged,
        "related": related,
        "steps": draw(st.lists(st.integers(0, 120), min_size=16, max_size=16)),
        "dry_run_first": draw(st.booleans()),
    }


RULE_FIELDS = {
    "customer": [
        "name",
        "industry",
        "website",
        "region",
        "size",
        "source",
        "tags",
        "contact_points",
    ],
    "contact": ["name", "title", "customer_id", "source", "tags", "contact_points"],
}


@st.composite
def rules_for(draw: st.DrawFn, kind: str, ids: list[str]) -> dict[str, Any]:
    rule = st.one_of(
        st.sampled_from(["survivor", "most_recent", "most_complete"]),
        st.permutations(["erp", "webshop", "import"]).map(lambda p: SourcePriority(tuple(p[:2]))),
        st.sampled_from(ids).map(Pick),
    )
    fields = draw(st.lists(st.sampled_from(RULE_FIELDS[kind]), unique=True, max_size=4))
    return {field: draw(rule) for field in fields}


def build(s: Session, clock: FakeClock, scenario: dict[str, Any]) -> tuple[list[str], list[str]]:
    steps = iter(scenario["steps"] * 4)
    owner = s.org.create_user(name="Owner", email="owner@x.example", department="sales")
    customers = []
    for fields in scenario["customers"]:
        clock.advance(minutes=next(steps))
        customers.append(s.customers.create(**fields, on_duplicate="allow").id)
    contacts = []
    for fields, employer in zip(scenario["contacts"], scenario["employers"], strict=True):
        clock.advance(minutes=next(steps))
        customer_id = None if employer is None else customers[employer]
        contacts.append(
            s.contacts.create(**fields, customer_id=customer_id, on_duplicate="allow").id
        )
    for what, target_kind, index in scenario["related"]:
        targets = customers if target_kind == "customer" or not contacts else contacts
        target = targets[index % len(targets)]
        is_customer = targets is customers
        if what == "activity":
            s.activities.log(
                "call",
                f"call {index}",
                customer_id=target if is_customer else None,
                contact_id=None if is_customer else target,
            )
        else:
            s.tasks.create(
                f"task {index}",
                assignee_id=owner.id,
                related_type="customer" if is_customer else "contact",
                related_id=target,
            )
    # Touch some records so "most recent" is not just "created last".
    for i, id in enumerate(customers):
        if next(steps) % 3 == 0:
            clock.advance(minutes=1)
            s.customers.update(id, grade=f"G{i}")
    return customers, contacts


def state(s: Session) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for cls in KINDS:
        for record in s._uow.repo(cls).find():
            data = to_dict(record)
            out[(record.resource, record.id)] = {k: v for k, v in data.items() if k not in VOLATILE}
    return out


def exact(s: Session) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r.resource, r.id): to_dict(r) for cls in KINDS for r in s._uow.repo(cls).find()}


def related_ids(s: Session, kind: str, ids: list[str]) -> set[tuple[str, str, str]]:
    return {
        (cls.resource, r.id, field)
        for cls, field in REFERENCES[kind]
        for r in s._uow.repo(cls).find(In(field, ids))
    }


PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(scenarios(), st.data())
def test_merge_then_unmerge_restores_everything_and_loses_nothing(
    scenario: dict[str, Any], data: st.DataObject
) -> None:
    clock = FakeClock()
    crm = pycrm.connect("memory://", default_region="DE", clock=clock)
    with crm.session(actor=crm.system_actor) as s:
        customers, contacts = build(s, clock, scenario)
    kind = scenario["kind"]
    pool = contacts if kind == "contact" else customers
    chosen = [pool[i] for i in scenario["merged"]]
    survivor_id, duplicate_ids = chosen[0], chosen[1:]
    rules = data.draw(rules_for(kind, chosen))
    clock.advance(hours=1)

    with crm.session(actor=crm.system_actor) as s:
        before = state(s)
        untouched = exact(s)
        pointing = related_ids(s, kind, chosen)
        records = s._uow.repo(MERGEABLE[kind]).get_many(chosen)
        if scenario["dry_run_first"]:
            dry = s.dedupe.merge(
                survivor_id, duplicate_ids, record_type=kind, rules=rules, dry_run=True
            )
            assert exact(s) == untouched
            assert dry.merge_id is None
        result = s.dedupe.merge(survivor_id, duplicate_ids, record_type=kind, rules=rules)
        if scenario["dry_run_first"]:
            assert set(dry.reparented) == set(result.reparented)
            assert to_dict(dry.survivor) == to_dict(result.survivor)

    with crm.session(actor=crm.system_actor) as s:
        # Nothing lost: everything that pointed at a merged record points at the survivor.
        after = related_ids(s, kind, [survivor_id])
        assert {(k, id) for k, id, _ in after} == {(k, id) for k, id, _ in pointing}
        assert related_ids(s, kind, duplicate_ids) == set()
        moved = {(k, id) for k, id, _ in result.reparented}
        survivor_own = {(k, id) for k, id, f in pointing if before[(k, id)][f] == survivor_id}
        assert moved == {(k, id) for k, id, _ in pointing} - survivor_own
        # Total record counts do not change; the duplicates are tombstones.
        assert {cls: s._uow.repo(cls).count() for cls in KINDS} == {
            cls: sum(1 for key in before if key[0] == cls.resource) for cls in KINDS
        }
        survivor = s._uow.repo(MERGEABLE[kind]).get(survivor_id)
        assert survivor is not None
        assert survivor.status is not RecordStatus.MERGED
        for id in duplicate_ids:
            tomb = s._uow.repo(MERGEABLE[kind]).get(id)
            assert (tomb.status, tomb.merged_into) == (RecordStatus.MERGED, survivor_id)
        # Contact points and tags are unions unless a rule picked one record's.
        if "contact_points" not in rules:
            keys = {p.match_key() or p.value for r in records.values() for p in r.contact_points}
            assert {p.match_key() or p.value for p in survivor.contact_points} == keys
        if "tags" not in rules:
            tags = {t.casefold() for r in records.values() for t in r.tags}
            assert {t.casefold() for t in survivor.tags} == tags
        s.dedupe.unmerge(result.merge_id)

    with crm.session(actor=crm.system_actor) as s:
        assert state(s) == before
        for cls, field in REFERENCES[kind]:
            for id in chosen:
                was = sum(1 for (k, _), d in before.items() if k == cls.resource and d[field] == id)
                assert s._uow.repo(cls).count(Eq(field, id)) == was


@PROPERTY
@given(scenarios())
def test_merge_never_loses_a_related_activity_or_task(scenario: dict[str, Any]) -> None:
    clock = FakeClock()
    crm = pycrm.connect("memory://", default_region="DE", clock=clock)
    with crm.session(actor=crm.system_actor) as s:
        customers, contacts = build(s, clock, scenario)
    kind = scenario["kind"]
    pool = contacts if kind == "contact" else customers
    chosen = [pool[i] for i in scenario["merged"]]
    with crm.session(actor=crm.system_actor) as s:
        activities = {a.id: a for a in s._uow.repo(Activity).find()}
        tasks = {t.id: t for t in s._uow.repo(Task).find()}
        counts = {
            (cls.resource, f): s._uow.repo(cls).count(In(f, chosen)) for cls, f in REFERENCES[kind]
        }
        s.dedupe.merge(chosen[0], chosen[1:], record_type=kind)
    with crm.session(actor=crm.system_actor) as s:
        assert {
            (cls.resource, f): s._uow.repo(cls).count(Eq(f, chosen[0]))
            for cls, f in REFERENCES[kind]
        } == counts
        # Every activity and task is still there, with only its pointer changed.
        field = "customer_id" if kind == "customer" else "contact_id"
        for a in s._uow.repo(Activity).find():
            old = activities.pop(a.id)
            expected = chosen[0] if getattr(old, field) in chosen else getattr(old, field)
            assert getattr(a, field) == expected
            assert (a.subject, a.kind, a.occurred_at) == (old.subject, old.kind, old.occurred_at)
        assert activities == {}
        for t in s._uow.repo(Task).find():
            old = tasks.pop(t.id)
            expected = chosen[0] if old.related_id in chosen else old.related_id
            assert t.related_id == expected
        assert tasks == {}
