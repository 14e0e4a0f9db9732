"""Contract tests for the audit trail (DESIGN §4 Audit): every write is recorded and queryable."""

from __future__ import annotations

from datetime import timedelta

import pytest

import pycrm
from pycrm.errors import PermissionDenied, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock


def system(crm: pycrm.CRM) -> Session:
    return crm.session(actor=crm.system_actor)


@pytest.fixture
def history(crm: pycrm.CRM, fake_clock: FakeClock) -> dict[str, object]:
    """A day of work: the system sets up, Ada (sales) and Sam (service) change things an hour apart."""
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
        sam = s.org.create_user("Sam", "sam@example.com", "service")
        root = s.org.create_user("Root", "root@example.com", "admin", roles=["admin"])
    t0 = fake_clock.advance(hours=1)
    with crm.session(actor=ada.id) as s:
        acme = s.customers.create("Acme")
        s.customers.update(acme.id, industry="machinery")
    t1 = fake_clock.advance(hours=1)
    with crm.session(actor=sam.id) as s:
        carla = s.contacts.create("Carla", customer_id=acme.id)
        s.customers.update(acme.id, region="north")
    t2 = fake_clock.advance(hours=1)
    with crm.session(actor=ada.id) as s:
        s.activities.log("call", "Intro", contact_id=carla.id)
    return {
        "ada": ada.id,
        "sam": sam.id,
        "root": root.id,
        "acme": acme.id,
        "carla": carla.id,
        "t0": t0,
        "t1": t1,
        "t2": t2,
    }


def test_every_write_is_recorded_oldest_first_with_actor_department_and_time(
    crm: pycrm.CRM, history: dict[str, object]
) -> None:
    with system(crm) as s:
        entries = s.audit.find(record_id=history["acme"])  # type: ignore[arg-type]
    assert [(e.action, e.actor_id, e.department, e.at) for e in entries] == [
        ("create", history["ada"], "sales", history["t0"]),
        ("update", history["ada"], "sales", history["t0"]),
        ("update", history["sam"], "service", history["t1"]),
    ]
    assert all(e.record_type == "customer" for e in entries)
    assert entries[1].changes == {"industry": [None, "machinery"]}
    assert entries[2].changes == {"region": [None, "north"]}
    assert entries[2].snapshot is not None
    assert entries[2].snapshot["region"] == "north"
    assert entries[2].snapshot["version"] == 3


def test_audit_find_filters_by_actor_type_action_and_period(
    crm: pycrm.CRM, history: dict[str, object]
) -> None:
    with system(crm) as s:
        by_sam = s.audit.find(actor_id=history["sam"])  # type: ignore[arg-type]
        contacts = s.audit.find(record_type="contact")
        updates = s.audit.find(action="update", record_type="customer")
        by_system = s.audit.find(actor_id="system")
        since_t1 = s.audit.find(since=history["t1"])  # type: ignore[arg-type]
        until_t1 = s.audit.find(until=history["t1"])  # type: ignore[arg-type]
        window = s.audit.find(since=history["t1"], until=history["t2"])  # type: ignore[arg-type]
        everything = s.audit.find()
    assert [(e.record_type, e.action) for e in by_sam] == [
        ("contact", "create"),
        ("customer", "update"),
    ]
    assert [e.record_id for e in contacts] == [history["carla"]]
    assert [e.actor_id for e in updates] == [history["ada"], history["sam"]]
    assert [(e.record_type, e.action) for e in by_system] == [("user", "create")] * 3
    # since is inclusive, until exclusive
    assert {e.at for e in since_t1} == {history["t1"], history["t2"]}
    assert {e.at for e in until_t1} <= {history["t0"], by_system[0].at}
    assert history["t1"] not in {e.at for e in until_t1}
    assert {e.at for e in window} == {history["t1"]}
    assert len(since_t1) + len(until_t1) == len(everything)
    assert [e.at for e in everything] == sorted(e.at for e in everything)
    assert len({e.id for e in everything}) == len(everything)


def test_audit_find_pages_with_limit_and_offset(crm: pycrm.CRM, history: dict[str, object]) -> None:
    with system(crm) as s:
        everything = s.audit.find()
        first = s.audit.find(limit=2)
        rest = s.audit.find(limit=1000, offset=2)
        with pytest.raises(ValidationError):
            s.audit.find(limit=0)
        with pytest.raises(ValidationError) as raised:
            s.audit.find(since=history["t0"].replace(tzinfo=None))  # type: ignore[attr-defined]
        assert raised.value.field == "since"
    assert first + rest == everything
    assert len(first) == 2


def test_users_read_only_their_own_entries_and_admins_read_all(
    crm: pycrm.CRM, history: dict[str, object]
) -> None:
    with crm.session(actor=history["ada"]) as s:  # type: ignore[arg-type]
        mine = s.audit.find()
        about_acme = s.audit.find(record_id=history["acme"])  # type: ignore[arg-type]
    with crm.session(actor=history["root"]) as s:  # type: ignore[arg-type]
        all_entries = s.audit.find()
    with system(crm) as s:
        assert all_entries == s.audit.find()
    assert mine
    assert {e.actor_id for e in mine} == {history["ada"]}
    assert [e.actor_id for e in about_acme] == [history["ada"], history["ada"]]
    assert {e.actor_id for e in all_entries} == {"system", history["ada"], history["sam"]}


def test_a_refused_attempt_is_audited_even_though_its_session_rolls_back(
    crm: pycrm.CRM, history: dict[str, object], fake_clock: FakeClock
) -> None:
    fake_clock.advance(minutes=5)
    with (
        pytest.raises(PermissionDenied),
        crm.session(actor=history["ada"]) as s,  # type: ignore[arg-type]
    ):
        s.customers.archive(history["acme"])  # type: ignore[arg-type]
    with system(crm) as s:
        denied = s.audit.find(action="denied:delete")
        assert s.customers.get(history["acme"]).status is pycrm.RecordStatus.ACTIVE  # type: ignore[arg-type]
    assert [(e.actor_id, e.record_type, e.record_id, e.at) for e in denied] == [
        (history["ada"], "customer", history["acme"], fake_clock.now())
    ]


def test_audit_entries_carry_time_from_the_crm_clock(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    fake_clock.advance(timedelta(days=400))
    with system(crm) as s:
        acme = s.customers.create("Acme")
    with system(crm) as s:
        (entry,) = s.audit.find(record_id=acme.id)
    assert entry.at == fake_clock.now() == acme.created_at
