"""Contract tests for the organisation: users, departments and teams, on every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pycrm
from pycrm.errors import DuplicateError, NotFound, PermissionDenied, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import refused


def system(crm: pycrm.CRM) -> Session:
    return crm.session(actor=crm.system_actor)


def test_a_created_user_is_found_by_id_and_by_email_in_any_case_of_the_domain(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        boss = s.org.create_user("Bea Boss", "bea@example.com", "sales", roles=["sales_manager"])
        ada = s.org.create_user(
            "  Ada   Lovelace ",
            "ada@EXAMPLE.com",
            "sales",
            roles=["sales_rep", "sales_rep"],
            manager_id=boss.id,
            skills=["German", "pumps"],
            capacity=10,
        )
    assert ada.name == "Ada Lovelace"
    assert ada.email == "ada@example.com"
    assert (ada.department, ada.roles, ada.manager_id) == ("sales", ("sales_rep",), boss.id)
    assert (ada.skills, ada.capacity, ada.active, ada.on_leave) == (
        ("German", "pumps"),
        10,
        True,
        False,
    )
    assert (ada.version, ada.created_at, ada.created_by) == (1, fake_clock.now(), "system")
    with system(crm) as s:
        assert s.org.get_user(ada.id) == ada
        assert s.org.find_user("ada@example.com") == ada
        assert s.org.find_user(" ada@Example.COM ") == ada
        with pytest.raises(NotFound):
            s.org.find_user("nobody@example.com")
        with pytest.raises(NotFound):
            s.org.get_user("0" * 32)


def test_a_user_email_is_unique_and_found_whatever_the_case_of_its_local_part(
    crm: pycrm.CRM,
) -> None:
    with system(crm) as s:
        ada = s.org.create_user("Ada", "Ada.Lovelace@example.com", "sales")
    with system(crm) as s:
        assert s.org.find_user("ada.lovelace@example.com").id == ada.id
        with pytest.raises(DuplicateError):
            s.org.create_user("Ada again", "ADA.LOVELACE@example.com", "sales")


def test_a_taken_email_is_refused_with_the_existing_user_as_candidate(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
    with system(crm) as s:
        with pytest.raises(DuplicateError) as raised:
            s.org.create_user("Other Ada", "ada@EXAMPLE.com", "service")
        assert ada.id in raised.value.candidates
        assert "email" in str(raised.value)
        assert [u.id for u in s.org.users()] == [ada.id]


def test_changing_a_users_email_to_a_taken_one_names_the_existing_user(
    crm: pycrm.CRM, request: pytest.FixtureRequest
) -> None:
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
        bob = s.org.create_user("Bob", "bob@example.com", "sales")
    with system(crm) as s:
        with pytest.raises(DuplicateError) as raised:
            s.org.update_user(bob.id, email="ada@example.com")
        assert s.org.get_user(bob.id) == bob
    assert raised.value.candidates == (ada.id,)


def test_users_are_listed_by_name_and_filtered_by_department_team_and_state(
    crm: pycrm.CRM,
) -> None:
    with system(crm) as s:
        team = s.org.create_team("Hunters", "sales")
        zed = s.org.create_user("Zed", "zed@example.com", "sales", team_ids=[team.id])
        amy = s.org.create_user("Amy", "amy@example.com", "service")
        max_ = s.org.create_user("Max", "max@example.com", "sales")
        s.org.deactivate_user(max_.id)
    with system(crm) as s:
        assert [u.name for u in s.org.users()] == ["Amy", "Max", "Zed"]
        assert [u.name for u in s.org.users(department="sales")] == ["Max", "Zed"]
        assert [u.id for u in s.org.users(team_id=team.id)] == [zed.id]
        assert [u.name for u in s.org.users(active=True)] == ["Amy", "Zed"]
        assert [u.name for u in s.org.users(active=False)] == ["Max"]
        assert [u.id for u in s.org.users(department="service", active=True)] == [amy.id]
        assert s.org.users(department="legal") == []


def test_update_user_changes_fields_checks_versions_and_refuses_self_management(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        boss = s.org.create_user("Boss", "boss@example.com", "sales")
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
    fake_clock.advance(hours=1)
    with system(crm) as s:
        moved = s.org.update_user(
            ada.id, version=1, department="service", roles=["agent"], manager_id=boss.id
        )
        with pytest.raises(ValidationError) as raised:
            s.org.update_user(ada.id, manager_id=ada.id)
        assert raised.value.field == "manager_id"
        with pytest.raises(ValidationError) as raised:
            s.org.update_user(ada.id, department="nowhere")
        assert raised.value.field == "department"
        with pytest.raises(ValidationError) as raised:
            s.org.update_user(ada.id, shoe_size=42)
        assert raised.value.field == "shoe_size"
    assert (moved.department, moved.roles, moved.manager_id, moved.version) == (
        "service",
        ("agent",),
        boss.id,
        2,
    )
    assert moved.updated_at == fake_clock.now()
    with system(crm) as s:
        assert s.org.get_user(ada.id) == moved


def test_an_inactive_user_cannot_open_a_session_until_reactivated(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
    with crm.session(actor=ada.id) as s:
        assert s.actor.id == ada.id
    with system(crm) as s:
        gone = s.org.deactivate_user(ada.id, version=1)
        assert s.org.deactivate_user(ada.id) == gone  # twice is a no-op
    assert (gone.active, gone.version) == (False, 2)
    with pytest.raises(PermissionDenied) as raised:
        crm.session(actor=ada.id)
    assert raised.value.actor == ada.id
    with pytest.raises(PermissionDenied):
        crm.session(actor=gone)  # a User object is resolved the same way
    with system(crm) as s:
        back = s.org.reactivate_user(ada.id, version=2)
    assert (back.active, back.version) == (True, 3)
    with crm.session(actor=ada.id) as s:
        assert s.customers.search() == []
    with pytest.raises(NotFound):
        crm.session(actor="0" * 32)


def test_deactivating_a_user_hands_their_open_work_to_their_manager(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        boss = s.org.create_user("Boss", "boss@example.com", "sales")
        ada = s.org.create_user("Ada", "ada@example.com", "sales", manager_id=boss.id)
        task = s.tasks.create("Call Acme", assignee_id=ada.id)
    with system(crm) as s:
        s.org.deactivate_user(ada.id)
        assert s.tasks.get(task.id).assignee_id == boss.id
        with pytest.raises(ValidationError) as raised:
            s.org.deactivate_user(boss.id, reassign_to=boss.id)
        assert raised.value.field == "reassign_to"


def test_departments_start_with_the_built_in_ones_and_grow(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        built_in = s.org.departments()
        hr = s.org.create_department("hr", " Human  Resources ")
        with pytest.raises(ValidationError) as raised:
            s.org.create_department("Bad Key!", "x")
        assert raised.value.field == "key"
        with pytest.raises(DuplicateError):
            s.org.create_department("hr", "Again")
    assert built_in == ["admin", "marketing", "sales", "service", "finance", "legal", "analytics"]
    assert (hr.key, hr.name) == ("hr", "Human Resources")
    with system(crm) as s:
        assert s.org.departments() == [*built_in, "hr"]
        helper = s.org.create_user("Hal", "hal@example.com", "hr")
    assert helper.department == "hr"


def test_teams_are_created_listed_fetched_and_joined(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        boss = s.org.create_user("Boss", "boss@example.com", "sales")
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
        north = s.org.create_team("North", "sales", manager_id=boss.id)
        desk = s.org.create_team("Desk", "service")
        with pytest.raises(DuplicateError):
            s.org.create_team("North", "sales")
        with pytest.raises(ValidationError) as raised:
            s.org.create_team("", "nowhere", manager_id="0" * 32)
        assert {e.field for e in raised.value.errors} == {"name", "department", "manager_id"}
    assert (north.name, north.department, north.manager_id) == ("North", "sales", boss.id)
    with system(crm) as s:
        assert [t.name for t in s.org.teams()] == ["Desk", "North"]
        assert s.org.teams(department="sales") == [north]
        assert s.org.get_team(desk.id) == desk
        with pytest.raises(NotFound):
            s.org.get_team("0" * 32)
        joined = s.org.add_to_team(ada.id, north.id)
        assert s.org.add_to_team(ada.id, north.id) == joined  # idempotent
        with pytest.raises(NotFound):
            s.org.add_to_team(ada.id, "0" * 32)
    assert joined.team_ids == (north.id,)
    assert joined.version == 2
    with system(crm) as s:
        assert [u.id for u in s.org.users(team_id=north.id)] == [ada.id]


ADMIN_CALLS: dict[str, Callable[[Session, dict[str, str]], Any]] = {
    "create_user": lambda s, ids: s.org.create_user("Eve", "eve@example.com", "sales"),
    "update_user": lambda s, ids: s.org.update_user(ids["other"], name="Evil"),
    "deactivate_user": lambda s, ids: s.org.deactivate_user(ids["other"]),
    "reactivate_user": lambda s, ids: s.org.reactivate_user(ids["other"]),
    "create_department": lambda s, ids: s.org.create_department("evil", "Evil"),
    "create_team": lambda s, ids: s.org.create_team("Evil", "sales"),
    "add_to_team": lambda s, ids: s.org.add_to_team(ids["actor"], ids["team"]),
}


def test_only_admins_change_the_organisation(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        rep = s.org.create_user("Rep", "rep@example.com", "sales", roles=["sales_manager"])
        other = s.org.create_user("Other", "other@example.com", "sales")
        admin = s.org.create_user("Root", "root@example.com", "sales", roles=["admin"])
        team = s.org.create_team("Team", "sales")
    ids = {"actor": rep.id, "other": other.id, "team": team.id}
    with system(crm) as s:
        before = (s.org.users(), s.org.teams(), s.org.departments())
    with crm.session(actor=rep.id) as s:
        assert {u.id for u in s.org.users()} == {rep.id, other.id, admin.id}  # reading is fine
        assert s.org.get_team(team.id) == team
        for name, call in ADMIN_CALLS.items():
            with pytest.raises(PermissionDenied) as raised:
                call(s, ids)
            assert raised.value.actor == rep.id, name
    with system(crm) as s:
        assert (s.org.users(), s.org.teams(), s.org.departments()) == before
    with crm.session(actor=admin.id) as s:  # the admin role suffices outside the admin department
        created = s.org.create_user("New", "new@example.com", "service")
        s.org.add_to_team(created.id, team.id)
    with system(crm) as s:
        assert s.org.get_user(created.id).created_by == admin.id


def test_create_user_lists_every_bad_field_at_once(crm: pycrm.CRM) -> None:
    with system(crm) as s, pytest.raises(ValidationError) as raised:
        s.org.create_user("", "not an email", "nowhere", roles="admin")  # type: ignore[arg-type]
    assert {e.field for e in raised.value.errors} == {"name", "email", "department", "roles"}


def test_a_user_with_working_hours_is_stored_and_read_back(crm: pycrm.CRM) -> None:
    hours = {
        "timezone": "Europe/Berlin",
        "mon": "09:00-17:00",
        "tue": ["08:00-12:00", "13:00-17:00"],
    }
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales", working_hours=hours)
    with system(crm) as s:
        assert s.org.get_user(ada.id) == ada
    assert ada.working_hours is not None
    assert len(ada.working_hours.hours) == 3


# -- HR: the organisation by policy, without the admin role ------------------------------


def test_hr_opens_and_closes_accounts_by_policy_without_the_admin_role(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.org.create_department("hr", "Human resources")
        hana = s.org.create_user("Hana", "hana@corp.example", "hr")
        boss = s.org.create_user("Ada", "ada@corp.example", "admin", roles=["admin"])
        sam = s.org.create_user("Sam", "sam@corp.example", "sales")
    with crm.session(actor=hana.id) as s:
        team = s.org.create_team("North", "sales")
        kim = s.org.create_user("Kim", "kim@corp.example", "sales", team_ids=[team.id])
        s.org.update_user(kim.id, name="Kim Berg", roles=["sales_rep"])
        s.org.add_to_team(sam.id, team.id)
        closed = s.org.deactivate_user(sam.id)
        s.org.create_department("legal_ops", "Legal operations")
    assert closed.active is False
    with system(crm) as s:
        assert s.org.get_user(kim.id).roles == ("sales_rep",)
    refused(
        crm,
        hana.id,
        # only admins make admins, and nobody changes their own access
        (PermissionDenied, lambda s: s.org.create_user("Eve", "eve@corp.example", "admin")),
        (
            PermissionDenied,
            lambda s: s.org.create_user("Eve", "eve@corp.example", "sales", roles=["admin"]),
        ),
        (PermissionDenied, lambda s: s.org.update_user(kim.id, roles=["admin"])),
        (PermissionDenied, lambda s: s.org.update_user(kim.id, department="admin")),
        (PermissionDenied, lambda s: s.org.update_user(hana.id, roles=["sales_manager"])),
        (PermissionDenied, lambda s: s.org.update_user(hana.id, department="sales")),
        # the admins' own accounts are the admins'
        (PermissionDenied, lambda s: s.org.deactivate_user(boss.id)),
        (PermissionDenied, lambda s: s.org.update_user(boss.id, name="Eve")),
        # and the data model too
        (PermissionDenied, lambda s: s.fields.define("customer", "tier", "text")),
    )
    # a user without the grant still may not
    with crm.session(actor=kim.id) as s, pytest.raises(PermissionDenied):
        s.org.create_user("Zed", "zed@corp.example", "sales")


def test_a_policy_grants_the_data_model_to_a_role_without_admin(connect_crm: Any) -> None:
    from pycrm.domain.permissions import DEFAULT_POLICY

    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "grants": [
                    {
                        "roles": ["data_steward"],
                        "resources": ["field_definition"],
                        "actions": ["create", "update"],
                        "scope": "all",
                    }
                ]
            }
        )
    )
    with system(crm) as s:
        ola = s.org.create_user("Ola", "ola@corp.example", "sales", roles=["data_steward"])
    with crm.session(actor=ola.id) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver"])
        s.fields.redefine("customer", "tier", label="Tier level")
        retired = s.fields.retire("customer", "tier")
        with pytest.raises(PermissionDenied):
            s.org.create_user("Zed", "zed@corp.example", "sales")
    assert retired.retired
