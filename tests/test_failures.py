"""Failing calls (DESIGN §7): the documented exception, naming the field, and an untouched store.

Every failing call is made inside a session that goes on and commits. The
whole store (every table of every record type, and on SQL the match-key and
counter tables) is dumped before and after each call inside the session, and
again after the commit, and must not have changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import pycrm
from pycrm import Money
from pycrm.domain import RECORD_TYPES
from pycrm.domain.query import OrderBy
from pycrm.errors import (
    ConcurrencyError,
    ConfigurationError,
    CRMError,
    DuplicateError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pycrm.rules import hookimpl
from pycrm.serialization import to_dict
from pycrm.session import Session

NOWHERE = "0" * 32
Call = Callable[[Session, dict[str, Any]], Any]


def system(crm: pycrm.CRM) -> Session:
    return crm.session(actor=crm.system_actor)


def dump(s: Session, *, searches: bool = True) -> dict[str, Any]:
    """Everything the session can see: every row of every table, and what searches return."""
    out: dict[str, Any] = {
        cls.__name__: [to_dict(r) for r in s._uow.repo(cls).find(order_by=[OrderBy("id")])]
        for cls in RECORD_TYPES
    }
    connection = getattr(s._uow, "connection", None)
    if connection is not None:  # SQL: the index tables too
        schema = s.crm.store.schema  # type: ignore[attr-defined]
        for table in (schema.match_keys, schema.counters):
            rows = connection.execute(sa.select(table)).all()
            out[table.name] = sorted(tuple(map(str, row)) for row in rows)
    if not searches:
        return out
    out["search"] = {
        "customers": [c.id for c in s.customers.search(include_archived=True)],
        "count": s.customers.count(include_archived=True),
        "contacts": [c.id for c in s.contacts.search(include_archived=True)],
        "by email": [c.id for c in s.customers.search(email="einkauf@acme.example")],
        "by phone": [c.id for c in s.customers.search(phone="030 1234567")],
        "by tag": [c.id for c in s.customers.search(tag="vip")],
        "contact by email": [c.id for c in s.contacts.search(email="ada@acme.example")],
        "audit": len(s.audit.find(limit=1000)),
        "users": [u.id for u in s.org.users()],
    }
    return out


def committed(crm: pycrm.CRM) -> dict[str, Any]:
    session = system(crm)
    try:
        return dump(session)
    finally:
        session.rollback()


@pytest.fixture
def world(crm: pycrm.CRM) -> dict[str, Any]:
    """One of everything the failing calls aim at."""
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
        team = s.org.create_team("North", "sales")
        s.org.create_department("hr", "HR")
        acme = s.customers.create(
            "Acme GmbH",
            emails=["einkauf@acme.example"],
            phones=["030 1234567"],
            tags=["VIP"],
            annual_revenue=Money.of("1000.00", "EUR"),
        )
        s.customers.update(acme.id, industry="machinery")  # version 2
        contact = s.contacts.create(
            "Ada Lovelace", customer_id=acme.id, emails=["ada@acme.example"]
        )
        call = s.activities.log("call", "Intro", contact_id=contact.id)
    return {
        "user": ada.id,
        "team": team.id,
        "customer": acme.id,
        "contact": contact.id,
        "activity": call.id,
    }


def check_failures(
    crm: pycrm.CRM, ids: dict[str, Any], cases: list[tuple[str, Call, type[CRMError], str | None]]
) -> None:
    """Run every case in one session that then commits; nothing may change, anywhere."""
    before = committed(crm)
    tables = {k: v for k, v in before.items() if k != "search"}
    with system(crm) as s:
        for label, call, error, field in cases:
            with pytest.raises(CRMError) as raised:
                call(s, ids)
            assert type(raised.value) is error, f"{label}: {raised.value!r}"
            if field is not None:
                assert isinstance(raised.value, ValidationError)
                fields = [e.field for e in raised.value.errors]
                assert field in fields, f"{label}: {fields}"
                assert field in str(raised.value)
            assert dump(s, searches=False) == tables, f"{label} left something behind"
    assert committed(crm) == before


def test_a_failing_call_leaves_the_store_untouched_by_its_own_cleanup_first(
    crm: pycrm.CRM, world: dict[str, Any]
) -> None:
    """The dump sees a write: otherwise every check below would pass vacuously."""
    before = committed(crm)
    s = system(crm)
    try:
        s.customers.update(world["customer"], region="north")
        assert dump(s) != before
    finally:
        s.rollback()
    assert committed(crm) == before


CUSTOMER_CASES: list[tuple[str, Call, type[CRMError], str | None]] = [
    ("empty name", lambda s, i: s.customers.create(""), ValidationError, "name"),
    ("blank name", lambda s, i: s.customers.create(" \t\n\u00a0\u3000"), ValidationError, "name"),
    ("None name", lambda s, i: s.customers.create(None), ValidationError, "name"),
    ("int name", lambda s, i: s.customers.create(42), ValidationError, "name"),
    ("bytes name", lambda s, i: s.customers.create(b"Acme"), ValidationError, "name"),
    ("huge name", lambda s, i: s.customers.create("A" * 100_000), ValidationError, "name"),
    ("NUL in name", lambda s, i: s.customers.create("Acme\x00"), ValidationError, "name"),
    ("ESC in name", lambda s, i: s.customers.create("Acme \x1b[31m"), ValidationError, "name"),
    ("surrogate", lambda s, i: s.customers.create("Acme \ud800"), ValidationError, "name"),
    ("bell in industry", lambda s, i: s.customers.create("X", industry="a\x07"), ValidationError, "industry"),
    ("huge website", lambda s, i: s.customers.create("X", website="h" * 501), ValidationError, "website"),
    ("malformed phone", lambda s, i: s.customers.create("X", phones=["12"]), ValidationError, "phones[0]"),
    ("words as phone", lambda s, i: s.customers.create("X", phones=["call me"]), ValidationError, "phones[0]"),
    ("bad country code", lambda s, i: s.customers.create("X", phones=["+999 1234567"]), ValidationError, "phones[0]"),
    ("second phone bad", lambda s, i: s.customers.create("X", phones=["030 1234567", "0"]), ValidationError, "phones[1]"),
    ("huge phone", lambda s, i: s.customers.create("X", phones=["1" * 10_000]), ValidationError, "phones[0]"),
    ("phones as text", lambda s, i: s.customers.create("X", phones="030 1234567"), ValidationError, "phones"),
    ("phone as int", lambda s, i: s.customers.create("X", phones=[301234567]), ValidationError, "phones[0]"),
    ("malformed email", lambda s, i: s.customers.create("X", emails=["ada@"]), ValidationError, "emails[0]"),
    ("email no at", lambda s, i: s.customers.create("X", emails=["ada.example.com"]), ValidationError, "emails[0]"),
    ("email space", lambda s, i: s.customers.create("X", emails=["a b@example.com"]), ValidationError, "emails[0]"),
    ("huge email", lambda s, i: s.customers.create("X", emails=["a" * 400 + "@x.de"]), ValidationError, "emails[0]"),
    ("NUL email", lambda s, i: s.customers.create("X", emails=["a\x00@x.de"]), ValidationError, "emails[0]"),
    ("too many points", lambda s, i: s.customers.create("X", emails=[f"a{n}@x.de" for n in range(51)]), ValidationError, "contact_points"),
    ("float money", lambda s, i: s.customers.create("X", annual_revenue=(1.5, "EUR")), ValidationError, "annual_revenue"),
    ("bare float", lambda s, i: s.customers.create("X", annual_revenue=1.5), ValidationError, "annual_revenue"),
    ("bare Decimal", lambda s, i: s.customers.create("X", annual_revenue=Decimal("1.5")), ValidationError, "annual_revenue"),
    ("NaN money", lambda s, i: s.customers.create("X", annual_revenue=("NaN", "EUR")), ValidationError, "annual_revenue"),
    ("huge money", lambda s, i: s.customers.create("X", annual_revenue=("1e30", "EUR")), ValidationError, "annual_revenue"),
    ("negative size", lambda s, i: s.customers.create("X", size=-1), ValidationError, "size"),
    ("text size", lambda s, i: s.customers.create("X", size="12"), ValidationError, "size"),
    ("float size", lambda s, i: s.customers.create("X", size=1.0), ValidationError, "size"),
    ("bool size", lambda s, i: s.customers.create("X", size=True), ValidationError, "size"),
    ("tags as text", lambda s, i: s.customers.create("X", tags="vip"), ValidationError, "tags"),
    ("long tag", lambda s, i: s.customers.create("X", tags=["t" * 51]), ValidationError, "tags[0]"),
    ("blank tag", lambda s, i: s.customers.create("X", tags=["ok", " "]), ValidationError, "tags[1]"),
    ("too many tags", lambda s, i: s.customers.create("X", tags=[f"t{n}" for n in range(101)]), ValidationError, "tags"),
    ("address text", lambda s, i: s.customers.create("X", address="Berlin"), ValidationError, "address"),
    ("address part", lambda s, i: s.customers.create("X", address={"planet": "Mars"}), ValidationError, "address"),
    ("address country", lambda s, i: s.customers.create("X", address={"country": "Atlantis"}), ValidationError, "address.country"),
    ("unknown owner", lambda s, i: s.customers.create("X", owner_id=NOWHERE), ValidationError, "owner_id"),
    ("unknown field", lambda s, i: s.customers.create("X", colour="red"), ValidationError, "colour"),
    ("bad duplicate policy", lambda s, i: s.customers.create("X", on_duplicate="maybe"), ValidationError, "on_duplicate"),
    ("duplicate blocked", lambda s, i: s.customers.create("ACME gmbh", emails=["einkauf@acme.example"], on_duplicate="block"), DuplicateError, None),
    ("get int id", lambda s, i: s.customers.get(42), ValidationError, "id"),
    ("get unknown", lambda s, i: s.customers.get(NOWHERE), NotFound, None),
    ("get a contact's id", lambda s, i: s.customers.get(i["contact"]), NotFound, None),
    ("update unknown", lambda s, i: s.customers.update(NOWHERE, name="X"), NotFound, None),
    ("update stale", lambda s, i: s.customers.update(i["customer"], version=1, name="X"), ConcurrencyError, None),
    ("update future", lambda s, i: s.customers.update(i["customer"], version=3, name="X"), ConcurrencyError, None),
    ("update text version", lambda s, i: s.customers.update(i["customer"], version="2", name="X"), ValidationError, "version"),
    ("update blank name", lambda s, i: s.customers.update(i["customer"], name=" "), ValidationError, "name"),
    ("update bookkeeping field", lambda s, i: s.customers.update(i["customer"], created_by="evil"), ValidationError, "created_by"),
    ("update status field", lambda s, i: s.customers.update(i["customer"], status="archived"), ValidationError, "status"),
    ("update tenant field", lambda s, i: s.customers.update(i["customer"], tenant_id="other"), ValidationError, "tenant_id"),
    ("update bad phone", lambda s, i: s.customers.update(i["customer"], phones=["x"]), ValidationError, "phones[0]"),
    ("archive unknown", lambda s, i: s.customers.archive(NOWHERE), NotFound, None),
    ("archive stale", lambda s, i: s.customers.archive(i["customer"], version=1), ConcurrencyError, None),
    ("restore unknown", lambda s, i: s.customers.restore(NOWHERE), NotFound, None),
    ("search limit 0", lambda s, i: s.customers.search(limit=0), ValidationError, "limit"),
    ("search limit 1001", lambda s, i: s.customers.search(limit=1001), ValidationError, "limit"),
    ("search text limit", lambda s, i: s.customers.search(limit="10"), ValidationError, "limit"),
    ("search bool limit", lambda s, i: s.customers.search(limit=True), ValidationError, "limit"),
    ("search offset -1", lambda s, i: s.customers.search(offset=-1), ValidationError, "offset"),
    ("search float offset", lambda s, i: s.customers.search(offset=1.5), ValidationError, "offset"),
    ("search bad email", lambda s, i: s.customers.search(email="nope"), ValidationError, "email"),
    ("search bad phone", lambda s, i: s.customers.search(phone="x"), ValidationError, "phone"),
    ("search int text", lambda s, i: s.customers.search(text=5), ValidationError, "text"),
    ("search blank tag", lambda s, i: s.customers.search(tag=" "), ValidationError, "tag"),
    ("search int industry", lambda s, i: s.customers.search(industry=1), ValidationError, "industry"),
    ("timeline unknown", lambda s, i: s.customers.timeline(NOWHERE), NotFound, None),
    ("view unknown", lambda s, i: s.customers.view(NOWHERE), NotFound, None),
    ("history unknown", lambda s, i: s.customers.history(NOWHERE), NotFound, None),
    ("history bad field", lambda s, i: s.customers.history(i["customer"], field="x"), ValidationError, "field"),
    ("as_of naive", lambda s, i: s.customers.as_of(i["customer"], datetime(2026, 1, 1)), ValidationError, "when"),
    ("as_of text", lambda s, i: s.customers.as_of(i["customer"], "2026-01-01"), ValidationError, "when"),
    ("as_of unknown", lambda s, i: s.customers.as_of(NOWHERE, datetime.now().astimezone()), NotFound, None),
    ("assess unknown", lambda s, i: s.customers.assess(NOWHERE, "grade", "A"), NotFound, None),
    ("assess blank value", lambda s, i: s.customers.assess(i["customer"], "grade", ""), ValidationError, "value"),
    ("assess int value", lambda s, i: s.customers.assess(i["customer"], "grade", 1), ValidationError, "value"),
    ("assessments unknown", lambda s, i: s.customers.assessments(NOWHERE), NotFound, None),
    ("consolidated unknown", lambda s, i: s.customers.consolidated(NOWHERE, "grade"), NotFound, None),
]  # fmt: skip


def test_failing_customer_calls_raise_the_documented_error_and_change_nothing(
    crm: pycrm.CRM, world: dict[str, Any]
) -> None:
    check_failures(crm, world, CUSTOMER_CASES)


CONTACT_AND_ACTIVITY_CASES: list[tuple[str, Call, type[CRMError], str | None]] = [
    ("contact blank name", lambda s, i: s.contacts.create("  "), ValidationError, "name"),
    ("contact int name", lambda s, i: s.contacts.create(7), ValidationError, "name"),
    ("contact unknown customer", lambda s, i: s.contacts.create("X", customer_id=NOWHERE), ValidationError, "customer_id"),
    ("contact int customer", lambda s, i: s.contacts.create("X", customer_id=1), ValidationError, "customer_id"),
    ("contact bad email", lambda s, i: s.contacts.create("X", emails=["@acme.example"]), ValidationError, "emails[0]"),
    ("contact bad phone", lambda s, i: s.contacts.create("X", phones=["+49 30"]), ValidationError, "phones[0]"),
    ("contact unknown field", lambda s, i: s.contacts.create("X", industry="x"), ValidationError, "industry"),
    ("contact control title", lambda s, i: s.contacts.create("X", title="CEO\x00"), ValidationError, "title"),
    ("contact get unknown", lambda s, i: s.contacts.get(NOWHERE), NotFound, None),
    ("contact get customer id", lambda s, i: s.contacts.get(i["customer"]), NotFound, None),
    ("contact update unknown", lambda s, i: s.contacts.update(NOWHERE, title="x"), NotFound, None),
    ("contact update stale", lambda s, i: s.contacts.update(i["contact"], version=0, title="x"), ConcurrencyError, None),
    ("contact update customer", lambda s, i: s.contacts.update(i["contact"], customer_id=i["contact"]), ValidationError, "customer_id"),
    ("contact archive unknown", lambda s, i: s.contacts.archive(NOWHERE), NotFound, None),
    ("contact archive stale", lambda s, i: s.contacts.archive(i["contact"], version=5), ConcurrencyError, None),
    ("contact search email", lambda s, i: s.contacts.search(email="x@"), ValidationError, "email"),
    ("contact search company", lambda s, i: s.contacts.search(company=5), ValidationError, "company"),
    ("contact timeline unknown", lambda s, i: s.contacts.timeline(NOWHERE), NotFound, None),
    ("contact history unknown", lambda s, i: s.contacts.history(NOWHERE), NotFound, None),
    ("contact as_of naive", lambda s, i: s.contacts.as_of(i["contact"], datetime(2026, 1, 1)), ValidationError, "when"),
    ("log no target", lambda s, i: s.activities.log("call", "x"), ValidationError, "customer_id"),
    ("log unknown kind", lambda s, i: s.activities.log("fax", "x", customer_id=i["customer"]), ValidationError, "kind"),
    ("log blank subject", lambda s, i: s.activities.log("call", "", customer_id=i["customer"]), ValidationError, "subject"),
    ("log huge subject", lambda s, i: s.activities.log("call", "s" * 301, customer_id=i["customer"]), ValidationError, "subject"),
    ("log huge body", lambda s, i: s.activities.log("call", "x", body="b" * 20_001, customer_id=i["customer"]), ValidationError, "body"),
    ("log NUL body", lambda s, i: s.activities.log("call", "x", body="\x00", customer_id=i["customer"]), ValidationError, "body"),
    ("log naive time", lambda s, i: s.activities.log("call", "x", customer_id=i["customer"], occurred_at=datetime(2026, 1, 1)), ValidationError, "occurred_at"),
    ("log text private", lambda s, i: s.activities.log("call", "x", customer_id=i["customer"], private="no"), ValidationError, "private"),
    ("log unknown customer", lambda s, i: s.activities.log("call", "x", customer_id=NOWHERE), ValidationError, "customer_id"),
    ("log unknown contact", lambda s, i: s.activities.log("call", "x", contact_id=NOWHERE), ValidationError, "contact_id"),
    ("activity update unknown", lambda s, i: s.activities.update(NOWHERE, subject="x"), NotFound, None),
    ("activity update stale", lambda s, i: s.activities.update(i["activity"], version=2, subject="x"), ConcurrencyError, None),
    ("activity update blank", lambda s, i: s.activities.update(i["activity"], subject=""), ValidationError, "subject"),
    ("activity list kind", lambda s, i: s.activities.list(kind="fax"), ValidationError, "kind"),
]  # fmt: skip


def test_failing_contact_and_activity_calls_raise_the_documented_error_and_change_nothing(
    crm: pycrm.CRM, world: dict[str, Any]
) -> None:
    check_failures(crm, world, CONTACT_AND_ACTIVITY_CASES)


ORG_AND_AUDIT_CASES: list[tuple[str, Call, type[CRMError], str | None]] = [
    ("duplicate user email", lambda s, i: s.org.create_user("Ada 2", "ada@example.com", "sales"), DuplicateError, None),
    ("user bad email", lambda s, i: s.org.create_user("X", "x@", "sales"), ValidationError, "email"),
    ("user int email", lambda s, i: s.org.create_user("X", 5, "sales"), ValidationError, "email"),
    ("user blank name", lambda s, i: s.org.create_user(" ", "x@example.com", "sales"), ValidationError, "name"),
    ("user unknown department", lambda s, i: s.org.create_user("X", "x@example.com", "moon"), ValidationError, "department"),
    ("user roles as text", lambda s, i: s.org.create_user("X", "x@example.com", "sales", roles="admin"), ValidationError, "roles"),
    ("user bad role", lambda s, i: s.org.create_user("X", "x@example.com", "sales", roles=["Admin!"]), ValidationError, "roles[0]"),
    ("user unknown team", lambda s, i: s.org.create_user("X", "x@example.com", "sales", team_ids=[NOWHERE]), ValidationError, "team_ids"),
    ("user unknown manager", lambda s, i: s.org.create_user("X", "x@example.com", "sales", manager_id=NOWHERE), ValidationError, "manager_id"),
    ("user zero capacity", lambda s, i: s.org.create_user("X", "x@example.com", "sales", capacity=0), ValidationError, "capacity"),
    ("user bad hours", lambda s, i: s.org.create_user("X", "x@example.com", "sales", working_hours={"mon": "9-5"}), ValidationError, "working_hours.mon"),
    ("user unknown field", lambda s, i: s.org.create_user("X", "x@example.com", "sales", salary=1), ValidationError, "salary"),
    ("get unknown user", lambda s, i: s.org.get_user(NOWHERE), NotFound, None),
    ("find unknown user", lambda s, i: s.org.find_user("nobody@example.com"), NotFound, None),
    ("find malformed email", lambda s, i: s.org.find_user("nobody"), ValidationError, "email"),
    ("update unknown user", lambda s, i: s.org.update_user(NOWHERE, name="X"), NotFound, None),
    ("update user stale", lambda s, i: s.org.update_user(i["user"], version=7, name="X"), ConcurrencyError, None),
    ("update user self manager", lambda s, i: s.org.update_user(i["user"], manager_id=i["user"]), ValidationError, "manager_id"),
    ("deactivate unknown", lambda s, i: s.org.deactivate_user(NOWHERE), NotFound, None),
    ("deactivate stale", lambda s, i: s.org.deactivate_user(i["user"], version=9), ConcurrencyError, None),
    ("deactivate to unknown", lambda s, i: s.org.deactivate_user(i["user"], reassign_to=NOWHERE), ValidationError, "reassign_to"),
    ("reactivate unknown", lambda s, i: s.org.reactivate_user(NOWHERE), NotFound, None),
    ("duplicate department", lambda s, i: s.org.create_department("hr", "HR again"), DuplicateError, None),
    ("bad department key", lambda s, i: s.org.create_department("H R", "x"), ValidationError, "key"),
    ("duplicate team", lambda s, i: s.org.create_team("North", "sales"), DuplicateError, None),
    ("team unknown department", lambda s, i: s.org.create_team("South", "moon"), ValidationError, "department"),
    ("get unknown team", lambda s, i: s.org.get_team(NOWHERE), NotFound, None),
    ("add to unknown team", lambda s, i: s.org.add_to_team(i["user"], NOWHERE), NotFound, None),
    ("add unknown user", lambda s, i: s.org.add_to_team(NOWHERE, i["team"]), NotFound, None),
    ("users bad department", lambda s, i: s.org.users(department="Sales!"), ValidationError, "department"),
    ("audit naive since", lambda s, i: s.audit.find(since=datetime(2026, 1, 1)), ValidationError, "since"),
    ("audit bad until", lambda s, i: s.audit.find(until="tomorrow"), ValidationError, "until"),
    ("audit bad limit", lambda s, i: s.audit.find(limit=10_000), ValidationError, "limit"),
]  # fmt: skip


def test_failing_org_and_audit_calls_raise_the_documented_error_and_change_nothing(
    crm: pycrm.CRM, world: dict[str, Any]
) -> None:
    check_failures(crm, world, ORG_AND_AUDIT_CASES)


def test_a_failure_inside_a_session_keeps_the_sessions_earlier_work(
    crm: pycrm.CRM, world: dict[str, Any]
) -> None:
    with system(crm) as s:
        good = s.customers.create("Good Ltd", tags=["fine"])
        s.customers.update(world["customer"], region="north")
        before = dump(s)
        with pytest.raises(ValidationError):
            s.customers.create("Bad Ltd", phones=["nonsense"])
        with pytest.raises(ConcurrencyError):
            s.customers.update(world["customer"], version=2, region="south")
        assert dump(s) == before
    after = committed(crm)
    assert after == before
    assert good.id in after["search"]["customers"]


def test_validation_error_lists_several_bad_fields_at_once(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        with pytest.raises(ValidationError) as raised:
            s.customers.create(
                "",
                size=-5,
                annual_revenue=(0.5, "EUR"),
                emails=["good@example.com", "bad@"],
                phones=["nonsense", "030 1234567", "12"],
                tags=["ok", "\x00"],
                address={"country": "Narnia"},
            )
        error = raised.value
        fields = [e.field for e in error.errors]
        assert set(fields) == {
            "name",
            "size",
            "annual_revenue",
            "emails[1]",
            "phones[0]",
            "phones[2]",
            "tags[1]",
            "address.country",
        }
        assert error.field == fields[0]
        assert all(e.reason for e in error.errors)
        for field in fields:
            assert field in str(error)
        assert {e.value for e in error.errors if e.field.startswith("phones")} == {"nonsense", "12"}
        with pytest.raises(ValidationError) as raised:
            s.contacts.create(" ", emails="a@b.de", customer_id=NOWHERE)
        assert {e.field for e in raised.value.errors} == {"name", "emails", "customer_id"}
        assert s.customers.search() == []
        assert s.contacts.search() == []


def test_a_bad_currency_is_reported_under_the_money_fields_name(crm: pycrm.CRM) -> None:
    with system(crm) as s, pytest.raises(ValidationError) as raised:
        s.customers.create("X", annual_revenue=("10", "euro"))
    assert raised.value.field.startswith("annual_revenue")


def without_denials(state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dump without refused attempts (which are audited on purpose), and those attempts."""
    state = {**state, "search": {k: v for k, v in state["search"].items() if k != "audit"}}
    entries = state.pop("AuditEntry")
    state["AuditEntry"] = [e for e in entries if not e["action"].startswith("denied:")]
    return state, [e for e in entries if e["action"].startswith("denied:")]


def test_permission_denied_changes_nothing_but_the_record_of_the_attempt(
    crm: pycrm.CRM, world: dict[str, Any]
) -> None:
    with system(crm) as s:
        marketer = s.org.create_user("Mia", "mia@example.com", "marketing").id
    before, no_denials = without_denials(committed(crm))
    assert no_denials == []
    cases: list[tuple[str, str, Callable[[Session], Any]]] = [
        (world["user"], "sales archives a customer", lambda s: s.customers.archive(world["customer"])),
        (world["user"], "sales creates a user", lambda s: s.org.create_user("E", "e@example.com", "sales")),
        (world["user"], "sales edits another's activity", lambda s: s.activities.update(world["activity"], subject="x")),
        (marketer, "marketing edits another's customer", lambda s: s.customers.update(world["customer"], name="Hijacked")),
        (marketer, "marketing archives a contact", lambda s: s.contacts.archive(world["contact"])),
    ]  # fmt: skip
    for actor, label, call in cases:
        with crm.session(actor=actor) as s:
            with pytest.raises(PermissionDenied) as raised:
                call(s)
            assert raised.value.actor == actor
            s.customers.search()  # the session goes on and commits
        assert without_denials(committed(crm))[0] == before, label
    _, denied = without_denials(committed(crm))
    assert {(e["actor_id"], e["action"], e["record_id"]) for e in denied} >= {
        (world["user"], "denied:delete", world["customer"]),
        (marketer, "denied:update", world["customer"]),
        (marketer, "denied:delete", world["contact"]),
    }


def test_every_refused_attempt_is_audited(crm: pycrm.CRM, world: dict[str, Any]) -> None:
    with crm.session(actor=world["user"]) as s:
        with pytest.raises(PermissionDenied):
            s.org.create_user("E", "e@example.com", "sales")
        with pytest.raises(PermissionDenied):
            s.activities.update(world["activity"], subject="x")
    with system(crm) as s:
        denied = [e for e in s.audit.find(actor_id=world["user"]) if e.action.startswith("denied:")]
    assert [(e.action, e.record_type) for e in denied] == [
        ("denied:create", "user"),
        ("denied:update", "activity"),
    ]


def test_a_session_that_raises_rolls_back_everything(crm: pycrm.CRM, world: dict[str, Any]) -> None:
    received: list[Any] = []

    def listener(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    before = committed(crm)
    from pycrm import signals

    signals.customer_created.connect(listener)  # type: ignore[attr-defined]

    def work() -> None:
        with system(crm) as s:
            s.customers.create("New Ltd", phones=["089 123456"])
            s.customers.update(world["customer"], name="Renamed")
            s.customers.archive(world["customer"])
            s.contacts.create("Someone", customer_id=world["customer"])
            s.activities.log("note", "n", customer_id=world["customer"])
            s.org.create_user("Zed", "zed@example.com", "sales")
            s.customers.assess(world["customer"], "grade", "A")
            assert dump(s) != before
            raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError, match="boom"):
            work()
    finally:
        signals.customer_created.disconnect(listener)  # type: ignore[attr-defined]
    assert committed(crm) == before
    assert received == []


def test_a_crm_error_escaping_the_block_rolls_back_too(
    crm: pycrm.CRM, world: dict[str, Any]
) -> None:
    before = committed(crm)

    def work() -> None:
        with system(crm) as s:
            s.customers.create("New Ltd")
            s.customers.get(NOWHERE)

    with pytest.raises(NotFound):
        work()
    assert committed(crm) == before


def test_a_call_that_fails_after_it_has_written_leaves_nothing_behind(
    connect_crm: Callable[..., pycrm.CRM],
) -> None:
    class Broken:
        @hookimpl
        def pycrm_followups(self, event: Any, ctx: Any) -> Any:
            if getattr(event, "name", None) == "activity_logged":
                raise RuntimeError("rule crashed")
            return None

    crm = connect_crm(default_region="DE")
    crm.plugins.register(Broken(), name="broken")
    with system(crm) as s:
        acme = s.customers.create("Acme")
    before = committed(crm)
    with system(crm) as s:
        with pytest.raises(ConfigurationError, match="rule crashed"):
            s.activities.log("call", "x", customer_id=acme.id)  # written, then the rule fails
        assert dump(s) == before
        s.activities.log("note", "private", customer_id=acme.id, private=True)  # no event: fine
    after = committed(crm)
    assert len(after["Activity"]) == 1
    assert after["Activity"][0]["subject"] == "private"


def test_a_session_used_after_it_ended_refuses_writes_and_commits(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
    for call in (
        lambda: s.customers.create("Late Ltd"),
        lambda: s.customers.update(acme.id, name="Late"),
        lambda: s.activities.log("call", "late", customer_id=acme.id),
        lambda: s.org.create_user("Late", "late@example.com", "sales"),
        s.commit,
    ):
        with pytest.raises(ConfigurationError):
            call()
    s.rollback()  # a no-op once ended
    ended = crm.session(actor=crm.system_actor)
    ended.rollback()
    with pytest.raises(ConfigurationError):
        ended.customers.create("Late Ltd")
    with system(crm) as check:
        assert [c.name for c in check.customers.search()] == ["Acme"]


def test_a_session_used_after_it_ended_refuses_reads_too(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
    reads: list[Callable[[], Any]] = [
        lambda: s.customers.get(acme.id),
        lambda: s.customers.search(),
        lambda: s.customers.count(),
        lambda: s.customers.view(acme.id),
        lambda: s.audit.find(),
    ]
    for read in reads:
        with pytest.raises(ConfigurationError):
            read()


# -- concurrency ------------------------------------------------------------------------


@pytest.fixture
def two_sessions(crm: pycrm.CRM) -> tuple[pycrm.CRM, str]:
    with system(crm) as s:
        acme = s.customers.create("Acme", industry="machinery")
    return crm, acme.id


def test_of_two_sessions_that_read_version_1_only_the_first_update_wins(
    two_sessions: tuple[pycrm.CRM, str],
) -> None:
    crm, acme = two_sessions
    first = system(crm)
    second = system(crm)
    try:
        mine = first.customers.get(acme)
        theirs = second.customers.get(acme)
        assert mine.version == theirs.version == 1
        first.customers.update(acme, version=mine.version, name="Acme (first)")
        first.commit()
        with pytest.raises(ConcurrencyError):
            second.customers.update(acme, version=theirs.version, name="Acme (second)")
        second.commit()
    finally:
        first.rollback()
        second.rollback()
    with system(crm) as s:
        final = s.customers.get(acme)
        changes = [(c.old, c.new) for c in s.customers.history(acme, field="name")]
    assert (final.name, final.version) == ("Acme (first)", 2)
    assert changes == [(None, "Acme"), ("Acme", "Acme (first)")]


def test_a_concurrency_error_names_the_record_and_versions(
    two_sessions: tuple[pycrm.CRM, str],
) -> None:
    crm, acme = two_sessions
    first = system(crm)
    second = system(crm)
    try:
        version = first.customers.get(acme).version
        second.customers.get(acme)
        first.customers.update(acme, version=version, industry="robotics")
        first.commit()
        with pytest.raises(ConcurrencyError) as raised:
            second.customers.archive(acme, version=version)
    finally:
        first.rollback()
        second.rollback()
    assert (raised.value.resource, raised.value.id) == ("customer", acme)
    # Every backend reads the newer version before refusing (SQLite included:
    # its transaction begins at the first write, not at the first read).
    assert (raised.value.expected, raised.value.actual) == (1, 2)
