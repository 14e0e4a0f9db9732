"""Contract tests for activities: logging, private notes, corrections, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import pycrm
from pycrm import ActivityKind
from pycrm.errors import NotFound, PermissionDenied, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock


def system(crm: pycrm.CRM) -> Session:
    return crm.session(actor=crm.system_actor)


@pytest.fixture
def world(crm: pycrm.CRM) -> dict[str, str]:
    """Two sales users, Ada and Bob, and a customer Acme with a contact Carla."""
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
        bob = s.org.create_user("Bob", "bob@example.com", "sales")
        acme = s.customers.create("Acme")
        carla = s.contacts.create("Carla", customer_id=acme.id)
    return {"ada": ada.id, "bob": bob.id, "acme": acme.id, "carla": carla.id}


def test_an_activity_logged_on_a_contact_gets_the_contacts_customer(
    crm: pycrm.CRM, world: dict[str, str], fake_clock: FakeClock
) -> None:
    with crm.session(actor=world["ada"]) as s:
        call = s.activities.log(
            "call", "  Intro   call ", body="Talked about pumps.", contact_id=world["carla"]
        )
    assert call.kind is ActivityKind.CALL
    assert call.subject == "Intro call"
    assert call.customer_id == world["acme"]
    assert call.contact_id == world["carla"]
    assert call.author_id == call.created_by == world["ada"]
    assert call.occurred_at == fake_clock.now()
    assert call.private is False
    with system(crm) as s:
        assert s.activities.get(call.id) == call
        assert s.customers.timeline(world["acme"]) == [call]
        assert s.contacts.timeline(world["carla"]) == [call]


def test_an_activity_takes_its_kind_as_enum_or_text_and_a_past_time(
    crm: pycrm.CRM, world: dict[str, str], fake_clock: FakeClock
) -> None:
    earlier = fake_clock.now() - timedelta(days=3)
    with system(crm) as s:
        meeting = s.activities.log(
            ActivityKind.MEETING, "Visit", customer_id=world["acme"], occurred_at=earlier
        )
        email = s.activities.log("email", "Offer", customer_id=world["acme"])
    assert meeting.kind is ActivityKind.MEETING
    assert meeting.occurred_at == earlier
    with system(crm) as s:
        assert s.activities.list(customer_id=world["acme"], kind="meeting") == [meeting]
        assert s.activities.list(customer_id=world["acme"], kind=ActivityKind.EMAIL) == [email]
        assert s.activities.list(customer_id=world["acme"]) == [email, meeting]
        assert s.activities.list(contact_id=world["carla"]) == []


def test_logging_refuses_a_missing_or_unknown_target_and_a_contact_of_another_customer(
    crm: pycrm.CRM, world: dict[str, str]
) -> None:
    with system(crm) as s:
        other = s.customers.create("Other")
    cases = [
        ({}, "customer_id"),
        ({"customer_id": "0" * 32}, "customer_id"),
        ({"contact_id": "0" * 32}, "contact_id"),
        ({"contact_id": world["carla"], "customer_id": other.id}, "contact_id"),
        ({"customer_id": world["acme"], "occurred_at": datetime(2026, 1, 1)}, "occurred_at"),
    ]
    with system(crm) as s:
        for kwargs, field in cases:
            with pytest.raises(ValidationError) as raised:
                s.activities.log("call", "x", **kwargs)  # type: ignore[arg-type]
            assert raised.value.field == field, kwargs
        with pytest.raises(ValidationError) as raised:
            s.activities.log("fax", "", customer_id=world["acme"], private="yes")  # type: ignore[arg-type]
        assert {e.field for e in raised.value.errors} == {"kind", "subject", "private"}
        assert s.activities.list(customer_id=world["acme"]) == []
        assert s.activities.list(customer_id=other.id) == []


def test_a_private_note_is_seen_by_its_author_only_in_every_read_path(
    crm: pycrm.CRM, world: dict[str, str]
) -> None:
    with crm.session(actor=world["ada"]) as s:
        secret = s.activities.log(
            "note", "Thinks about leaving", contact_id=world["carla"], private=True
        )
        public = s.activities.log("call", "Follow-up", contact_id=world["carla"])
    with crm.session(actor=world["bob"]) as s:
        assert s.activities.list(customer_id=world["acme"]) == [public]
        assert s.activities.list(contact_id=world["carla"]) == [public]
        assert s.customers.timeline(world["acme"]) == [public]
        assert s.contacts.timeline(world["carla"]) == [public]
        assert list(s.customers.view(world["acme"]).activities) == [public]
        with pytest.raises(NotFound):
            s.activities.get(secret.id)
        with pytest.raises(NotFound):
            s.activities.update(secret.id, subject="peek")
    with crm.session(actor=world["ada"]) as s:
        assert s.activities.get(secret.id) == secret
        assert s.customers.timeline(world["acme"]) == [public, secret]
        assert s.contacts.timeline(world["carla"]) == [public, secret]
        assert list(s.customers.view(world["acme"]).activities) == [public, secret]


def test_only_the_author_may_correct_an_activity(
    crm: pycrm.CRM, world: dict[str, str], fake_clock: FakeClock
) -> None:
    with crm.session(actor=world["ada"]) as s:
        call = s.activities.log("call", "Intro", body="notes", customer_id=world["acme"])
    fake_clock.advance(minutes=10)
    with crm.session(actor=world["bob"]) as s:
        with pytest.raises(PermissionDenied):
            s.activities.update(call.id, subject="Bob was here")
        assert s.activities.get(call.id) == call
    with crm.session(actor=world["ada"]) as s:
        fixed = s.activities.update(call.id, version=1, subject="Intro call", body=None)
        assert s.activities.update(call.id, subject="Intro call") == fixed  # no change
    assert (fixed.subject, fixed.body, fixed.version) == ("Intro call", None, 2)
    assert fixed.updated_at == fake_clock.now()
    assert fixed.updated_by == world["ada"]
    with system(crm) as s:
        assert s.activities.get(call.id) == fixed
        assert [(c.old, c.new) for c in s.activities.history(call.id, field="subject")] == [
            (None, "Intro"),
            ("Intro", "Intro call"),
        ]


def test_activity_list_pages_by_time_with_before_and_limit(
    crm: pycrm.CRM, world: dict[str, str]
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with system(crm) as s:
        for day in range(5):
            s.activities.log(
                "call", f"day {day}", customer_id=world["acme"], occurred_at=start + timedelta(day)
            )
    with system(crm) as s:
        newest = s.activities.list(customer_id=world["acme"], limit=2)
        older = s.activities.list(customer_id=world["acme"], limit=2, before=newest[-1].occurred_at)
        with pytest.raises(ValidationError):
            s.activities.list(customer_id=world["acme"], limit=0)
    assert [a.subject for a in newest] == ["day 4", "day 3"]
    assert [a.subject for a in older] == ["day 2", "day 1"]


def test_a_multi_line_body_keeps_its_line_breaks(crm: pycrm.CRM, world: dict[str, str]) -> None:
    body = "Agenda:\n  1. pumps\n  2. prices\n\nNext call in May."
    with system(crm) as s:
        note = s.activities.log("note", "Meeting notes", body=body, customer_id=world["acme"])
    with system(crm) as s:
        assert s.activities.get(note.id).body == body
