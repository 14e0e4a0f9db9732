"""Tenants (DESIGN §3): a session sees and changes its own tenant's rows only, on every backend.

Tenants ``a`` and ``b`` hold look-alike data (same names, emails, phones,
tags, user emails), so a query that forgot the tenant would find the other's
rows by any of those keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pycrm
from pycrm.domain import RECORD_TYPES
from pycrm.domain.query import OrderBy
from pycrm.errors import ConfigurationError, NotFound, ValidationError
from pycrm.serialization import to_dict
from pycrm.session import Session
from pycrm.testing import FakeClock


def system(crm: pycrm.CRM, tenant: str | None) -> Session:
    return crm.session(actor=crm.system_actor, tenant=tenant)


def populate(crm: pycrm.CRM, tenant: str) -> dict[str, str]:
    """The same company, person, users and notes, in ``tenant``."""
    with system(crm, tenant) as s:
        boss = s.org.create_user("Bea Boss", "bea@example.com", "sales", roles=["sales_manager"])
        ada = s.org.create_user("Ada Rep", "ada@example.com", "sales", manager_id=boss.id)
        team = s.org.create_team("North", "sales", manager_id=boss.id)
        s.org.add_to_team(ada.id, team.id)
        s.org.create_department("hr", "HR")
        acme = s.customers.create(
            "Acme GmbH",
            industry="machinery",
            region="north",
            emails=["einkauf@acme.example"],
            phones=["030 1234567"],
            tags=["VIP"],
            owner_id=ada.id,
        )
        carla = s.contacts.create(
            "Carla Buyer", customer_id=acme.id, emails=["carla@acme.example"], tags=["VIP"]
        )
        s.customers.assess(acme.id, "grade", "A", source="sales")
    with crm.session(actor=ada.id, tenant=tenant) as s:
        call = s.activities.log("call", "Intro", contact_id=carla.id)
        s.customers.update(acme.id, website="https://acme.example")
    return {
        "boss": boss.id,
        "ada": ada.id,
        "team": team.id,
        "acme": acme.id,
        "carla": carla.id,
        "call": call.id,
    }


def dump(crm: pycrm.CRM, tenant: str) -> dict[str, list[dict[str, Any]]]:
    session = system(crm, tenant)
    try:
        return {
            cls.__name__: [
                to_dict(r) for r in session._uow.repo(cls).find(order_by=[OrderBy("id")])
            ]
            for cls in RECORD_TYPES
        }
    finally:
        session.rollback()


@pytest.fixture
def tenants(crm: pycrm.CRM, fake_clock: FakeClock) -> dict[str, dict[str, str]]:
    a = populate(crm, "a")
    fake_clock.advance(minutes=1)
    b = populate(crm, "b")
    return {"a": a, "b": b}


def test_look_alike_data_is_stored_once_per_tenant(
    crm: pycrm.CRM, tenants: dict[str, dict[str, str]]
) -> None:
    a, b = dump(crm, "a"), dump(crm, "b")
    assert len(a["Customer"]) == len(b["Customer"]) == 1
    assert a["Customer"][0]["name"] == b["Customer"][0]["name"] == "Acme GmbH"
    assert a["Customer"][0]["id"] != b["Customer"][0]["id"]
    assert {r["tenant_id"] for rows in a.values() for r in rows} == {"a"}
    assert {r["tenant_id"] for rows in b.values() for r in rows} == {"b"}
    assert all(dump(crm, "default")[cls.__name__] == [] for cls in RECORD_TYPES)


def test_searches_and_counts_see_only_the_sessions_tenant(
    crm: pycrm.CRM, tenants: dict[str, dict[str, str]]
) -> None:
    for mine, theirs in (("a", "b"), ("b", "a")):
        own = tenants[mine]
        with system(crm, mine) as s:
            found = [
                s.customers.search(),
                s.customers.search("acme"),
                s.customers.search(email="einkauf@acme.example"),
                s.customers.search(phone="+49 30 1234567"),
                s.customers.search(tag="vip"),
                s.customers.search(industry="machinery", region="north"),
                s.customers.search(owner_id=own["ada"]),
                s.customers.search(include_archived=True),
            ]
            assert [[c.id for c in result] for result in found] == [[own["acme"]]] * len(found)
            assert s.customers.search(owner_id=tenants[theirs]["ada"]) == []
            assert s.customers.count() == s.customers.count(include_archived=True) == 1
            contacts = [
                s.contacts.search(),
                s.contacts.search("carla"),
                s.contacts.search(email="carla@acme.example"),
                s.contacts.search(company="acme"),
                s.contacts.search(tag="VIP"),
                s.contacts.search(customer_id=own["acme"]),
            ]
            assert [[c.id for c in result] for result in contacts] == [[own["carla"]]] * 6
            assert s.contacts.search(customer_id=tenants[theirs]["acme"]) == []
            assert [a.id for a in s.activities.list()] == [own["call"]]
            view = s.customers.view(own["acme"])
            assert [c.id for c in view.contacts] == [own["carla"]]
            assert [a.id for a in view.activities] == [own["call"]]
            assert [a.tenant_id for a in view.assessments] == [mine]
            assert [a.id for a in s.customers.timeline(own["acme"])] == [own["call"]]
            assert {e.tenant_id for e in s.audit.find(limit=1000)} == {mine}
            assert s.audit.find(record_id=tenants[theirs]["acme"]) == []
            assert len(s.customers.history_of_assessments(own["acme"])) == 1


def test_the_other_tenants_ids_are_not_found_by_any_call(
    crm: pycrm.CRM, tenants: dict[str, dict[str, str]], fake_clock: FakeClock
) -> None:
    b = tenants["b"]
    before = dump(crm, "b")
    calls: dict[str, Callable[[Session], Any]] = {
        "customers.get": lambda s: s.customers.get(b["acme"]),
        "customers.view": lambda s: s.customers.view(b["acme"]),
        "customers.timeline": lambda s: s.customers.timeline(b["acme"]),
        "customers.history": lambda s: s.customers.history(b["acme"]),
        "customers.as_of": lambda s: s.customers.as_of(b["acme"], fake_clock.now()),
        "customers.assessments": lambda s: s.customers.assessments(b["acme"]),
        "customers.history_of_assessments": lambda s: s.customers.history_of_assessments(b["acme"]),
        "customers.update": lambda s: s.customers.update(b["acme"], name="Hijacked"),
        "customers.archive": lambda s: s.customers.archive(b["acme"]),
        "customers.restore": lambda s: s.customers.restore(b["acme"]),
        "customers.assess": lambda s: s.customers.assess(b["acme"], "grade", "F"),
        "contacts.get": lambda s: s.contacts.get(b["carla"]),
        "contacts.update": lambda s: s.contacts.update(b["carla"], title="Spy"),
        "contacts.archive": lambda s: s.contacts.archive(b["carla"]),
        "contacts.timeline": lambda s: s.contacts.timeline(b["carla"]),
        "contacts.history": lambda s: s.contacts.history(b["carla"]),
        "contacts.as_of": lambda s: s.contacts.as_of(b["carla"], fake_clock.now()),
        "activities.get": lambda s: s.activities.get(b["call"]),
        "activities.update": lambda s: s.activities.update(b["call"], subject="x"),
        "org.get_user": lambda s: s.org.get_user(b["ada"]),
        "org.update_user": lambda s: s.org.update_user(b["ada"], name="x"),
        "org.deactivate_user": lambda s: s.org.deactivate_user(b["ada"]),
        "org.reactivate_user": lambda s: s.org.reactivate_user(b["ada"]),
        "org.get_team": lambda s: s.org.get_team(b["team"]),
        "org.add_to_team": lambda s: s.org.add_to_team(tenants["a"]["ada"], b["team"]),
    }
    with system(crm, "a") as s:
        for name, call in calls.items():
            try:
                call(s)
            except NotFound:
                continue
            pytest.fail(f"{name} reached tenant b's record from tenant a")
        refused: dict[str, Callable[[Session], Any]] = {
            "customer_id": lambda s: s.contacts.create("Mole", customer_id=b["acme"]),
            "contact_id": lambda s: s.activities.log("call", "x", contact_id=b["carla"]),
            "owner_id": lambda s: s.customers.create("Mole Ltd", owner_id=b["ada"]),
            "manager_id": lambda s: s.org.create_team("Moles", "sales", manager_id=b["boss"]),
            "team_ids": lambda s: s.org.create_user(
                "M", "m@example.com", "sales", team_ids=[b["team"]]
            ),
        }
        for field, call in refused.items():
            with pytest.raises(ValidationError) as raised:
                call(s)
            assert raised.value.field == field
        with pytest.raises(ValidationError):
            s.activities.log("call", "x", customer_id=b["acme"])
    assert dump(crm, "b") == before


def test_writes_in_one_tenant_leave_the_other_unchanged(
    crm: pycrm.CRM, tenants: dict[str, dict[str, str]]
) -> None:
    a = tenants["a"]
    before = dump(crm, "b")
    with system(crm, "a") as s:
        s.customers.update(a["acme"], name="Acme AG", emails=["neu@acme.example"], tags=["gold"])
        s.customers.assess(a["acme"], "grade", "C", source="service")
        s.contacts.archive(a["carla"])
        s.activities.log("note", "n", customer_id=a["acme"])
        s.org.deactivate_user(a["ada"])
        s.customers.archive(a["acme"])
    assert dump(crm, "b") == before
    with system(crm, "b") as s:
        assert [c.id for c in s.customers.search(email="einkauf@acme.example")] == [
            tenants["b"]["acme"]
        ]
        assert s.customers.search(email="neu@acme.example") == []
        assert s.customers.search(tag="gold") == []


def test_users_belong_to_one_tenant(crm: pycrm.CRM, tenants: dict[str, dict[str, str]]) -> None:
    a, b = tenants["a"], tenants["b"]
    with system(crm, "a") as s:
        users = s.org.users()
        assert {u.id for u in users} == {a["ada"], a["boss"]}
        assert s.org.find_user("ada@example.com").id == a["ada"]
        assert [t.id for t in s.org.teams()] == [a["team"]]
        assert [u.id for u in s.org.users(team_id=a["team"])] == [a["ada"]]
        assert s.org.users(team_id=b["team"]) == []
        assert s.org.departments().count("hr") == 1
    with crm.session(actor=a["ada"], tenant="a") as s:
        assert s.actor.id == a["ada"]
        assert {e.actor_id for e in s.audit.find()} == {a["ada"]}
    with pytest.raises(NotFound):
        crm.session(actor=a["ada"], tenant="b")
    with pytest.raises(NotFound):
        crm.session(actor=a["ada"])  # the default tenant has no users at all
    with system(crm, "b") as s:
        s.org.deactivate_user(b["ada"])
    with crm.session(actor=a["ada"], tenant="a") as s:  # a's Ada is still active
        assert s.customers.count() == 1


def test_a_tenant_name_must_be_a_short_plain_identifier(crm: pycrm.CRM) -> None:
    for bad in ("", " a", "a b", "a/b", "x" * 65, "-a", 5, "ä"):
        with pytest.raises(ConfigurationError):
            crm.session(actor=crm.system_actor, tenant=bad)  # type: ignore[arg-type]
    with system(crm, "A-1_b.c") as s:
        assert s.tenant_id == "A-1_b.c"


def test_each_tenant_can_define_the_same_searchable_custom_field(crm: pycrm.CRM) -> None:
    # A searchable field gets an expression index on the shared table; a second
    # tenant defining the same key must reuse it, not fail to create it again.
    for tenant, tier in (("acme", "gold"), ("beta", "silver")):
        with crm.session(actor=crm.system_actor, tenant=tenant) as s:
            s.fields.define(
                "customer", "tier", "choice", choices=["gold", "silver"], searchable=True
            )
            s.customers.create(f"{tenant} customer", custom={"tier": tier})
    for tenant, tier in (("acme", "gold"), ("beta", "silver")):
        with crm.session(actor=crm.system_actor, tenant=tenant) as s:
            assert [c.name for c in s.customers.search(custom={"tier": tier})] == [
                f"{tenant} customer"
            ]
            assert (
                s.customers.search(custom={"tier": "gold" if tier == "silver" else "silver"}) == []
            )


def test_the_store_lists_the_tenants_that_hold_committed_records(crm: pycrm.CRM) -> None:
    assert crm.store.tenants() == []
    for tenant in ("zeta", "alpha", None, "alpha"):
        with system(crm, tenant) as s:
            s.customers.create("Acme GmbH")
    session = system(crm, "rolled-back")
    session.customers.create("Never Stored")
    session.rollback()
    assert crm.store.tenants() == ["alpha", "default", "zeta"]
