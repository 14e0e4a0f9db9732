"""Contract tests for the audit trail (DESIGN §4 Audit): every write is recorded and queryable."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

import pycrm
from conftest import ConnectFn
from pycrm.domain.audit import CHECKPOINT, AuditEntry, diff
from pycrm.domain.permissions import DEFAULT_POLICY
from pycrm.domain.query import Eq, OrderBy
from pycrm.errors import PermissionDenied, ValidationError
from pycrm.serialization import to_dict
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
    # A creation holds the record once, in its snapshot; an update only what it changed.
    assert entries[0].changes == {}
    assert entries[0].snapshot is not None
    assert (entries[0].snapshot["name"], entries[0].snapshot["version"]) == ("Acme", 1)
    assert entries[0].field_changes()["name"] == [None, "Acme"]
    assert entries[1].changes == {"industry": [None, "machinery"]}
    assert entries[2].changes == {"region": [None, "north"]}
    assert entries[2].snapshot is None


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


def test_as_of_and_history_replay_changes_across_checkpoints(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    moments = []
    with system(crm) as s:
        acme = s.customers.create("Acme", size=0)
        for size in range(1, 2 * CHECKPOINT + 5):
            moments.append(fake_clock.advance(minutes=1))
            s.customers.update(acme.id, size=size, grade="A" if size % 2 else None)
        entries = s.audit.find(record_id=acme.id, limit=1000)
        # The record is written once, then only the changes (and a checkpoint now and then).
        assert [e.snapshot is not None for e in entries].count(True) == 3
        for size, moment in enumerate(moments, start=1):
            then = s.customers.as_of(acme.id, moment)
            assert (then.size, then.grade, then.version) == (
                size,
                "A" if size % 2 else None,
                size + 1,
            )
            assert then.updated_at == moment
        sizes = [c.new for c in s.customers.history(acme.id, "size")]
    assert sizes == list(range(0, 2 * CHECKPOINT + 5))


def test_history_and_as_of_read_entries_written_in_the_old_form(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    """Entries from before compact audit (every field in changes, a snapshot on every write)."""
    with system(crm) as s:
        acme = s.customers.create("Acme", size=1)
        t1 = fake_clock.advance(hours=1)
        s.customers.update(acme.id, size=2, industry="machinery")
        t2 = fake_clock.advance(hours=1)
        s.customers.update(acme.id, size=3)
        expected = {
            "history": [(c.field, c.old, c.new) for c in s.customers.history(acme.id)],
            "as_of": [s.customers.as_of(acme.id, t) for t in (t1, t2)],
        }
        repo = s._uow.repo(AuditEntry)
        stored = repo.find(Eq("record_id", acme.id), order_by=[OrderBy("at"), OrderBy("id")])
        states = [to_dict(s.customers.as_of(acme.id, e.at)) for e in stored]
    # Rewrite them as the old form had them, then read again.
    old_form = [
        attrs.evolve(e, changes=diff(None if i == 0 else states[i - 1], state), snapshot=state)
        for i, (e, state) in enumerate(zip(stored, states, strict=True))
    ]
    uow = crm.store.begin("default")  # entries are append-only: rewrite them below the API
    try:
        table = getattr(uow, "connection", None)
        if table is None:  # memory: swap the stored objects
            base = crm.store._base(AuditEntry, "default")  # type: ignore[attr-defined]
            for entry in old_form:
                base[entry.id] = entry
        else:
            schema = crm.store.schema  # type: ignore[attr-defined]
            codec = schema.codec(AuditEntry)
            for entry in old_form:
                row = codec.to_row(entry)
                uow.connection.execute(  # type: ignore[attr-defined]
                    codec.table.update().where(codec.table.c.id == entry.id).values(row)
                )
        uow.commit()
    except BaseException:
        uow.rollback()
        raise
    with system(crm) as s:
        assert [(c.field, c.old, c.new) for c in s.customers.history(acme.id)] == expected[
            "history"
        ]
        assert [s.customers.as_of(acme.id, t) for t in (t1, t2)] == expected["as_of"]
        assert s._uow.repo(AuditEntry).get(stored[-1].id).snapshot is not None  # the old form


def test_a_reader_with_nothing_hidden_sees_their_entries_as_they_are_stored(
    crm: pycrm.CRM,
) -> None:
    # Redaction touches only what the policy hides: lists of values and of contact points,
    # and a merge's ids, come back as written.
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales", roles=["sales_manager"])
    with crm.session(actor=ada.id) as s:
        acme = s.customers.create("Acme", tags=["vip"], emails=["info@acme.example"])
        s.customers.update(acme.id, tags=["vip", "b2b"], phones=["+49 30 1234567"])
        twin = s.customers.create("ACME", emails=["info@acme.example"], on_duplicate="allow")
        s.dedupe.merge(acme.id, [twin.id])
    with system(crm) as s:
        stored = s.audit.find(actor_id=ada.id)
    with crm.session(actor=ada.id) as s:
        seen = s.audit.find(actor_id=ada.id)
    assert {e.record_type for e in stored} >= {"customer", "merge"}
    assert any("tags" in e.changes for e in stored)
    assert seen == stored


def test_an_entry_loses_only_the_hidden_fields_and_custom_keys_of_a_change(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "grants": [{"roles": ["sales"], "resources": ["audit_entry"], "actions": ["read"],
                            "scope": "all"}],
                "fields": [{"resource": "customer", "field": "industry", "hidden": True,
                            "allowed": ["admin"]}],
            }
        )
    )  # fmt: skip
    with system(crm) as s:
        ada = s.org.create_user("Ada", "ada@example.com", "sales")
        s.fields.define("customer", "margin", "decimal", readable_by=["finance"])
        s.fields.define("customer", "tier", "text")
        acme = s.customers.create("Acme")
        # industry (hidden) changes first, before fields the reader may see
        s.customers.update(
            acme.id, industry="machinery", grade="A", region="north",
            custom={"tier": "gold", "margin": "5"},
        )  # fmt: skip
        s.customers.update(acme.id, custom={"tier": "gold", "margin": "6"})
    with crm.session(actor=ada.id) as s:
        updates = s.audit.find(record_id=acme.id, action="update")
    assert [e.changes for e in updates] == [
        {
            "grade": [None, "A"],
            "region": [None, "north"],
            "custom": [{}, {"tier": "gold"}],
        },
        {},  # a change to the margin alone is none the reader can see
    ]


def test_a_refused_read_of_the_audit_trail_is_seen_by_those_who_read_the_trail(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(
        policy={
            "grants": [
                {"roles": ["admin"], "resources": ["*"], "actions": ["*"], "scope": "all"},
                {"roles": ["*"], "resources": ["user"], "actions": ["read"], "scope": "all"},
            ]
        }
    )
    with crm.session(actor=crm.system_actor) as s:
        mia = s.org.create_user(name="Mia", email="mia@acme.example", department="marketing")
        ada = s.org.create_user(name="Ada", email="ada@acme.example", department="admin")
    with crm.session(actor=mia.id) as s, pytest.raises(PermissionDenied):
        s.audit.find()
    for reader in (ada.id, crm.system_actor):
        with crm.session(actor=reader) as s:
            refused = s.audit.find(actor_id=mia.id, action="denied:read")
            assert [e.record_type for e in refused] == ["audit_entry"]
            assert s.read(AuditEntry).count(Eq("actor_id", mia.id)) == 1
