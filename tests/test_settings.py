"""Runtime settings: stored per tenant, permission-checked, audited, announced, seen by every process.

Contract tests run on memory, SQLite and PostgreSQL. The two-process test runs
a real second process (``settings_worker.py``) against one SQLite file or
PostgreSQL schema: it routes by a rule changed in this process, without a
restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import pycrm
from conftest import ConnectFn
from pycrm import signals
from pycrm.domain.events import Event
from pycrm.domain.settings import Setting
from pycrm.domain.tickets import Priority, SlaPolicy, SlaTarget
from pycrm.errors import ConcurrencyError, PermissionDenied, ValidationError
from pycrm.rules.routing import RoutingRule
from pycrm.rules.scoring import ScoringRules
from support import refused, snapshot, staff

WORKER = Path(__file__).with_name("settings_worker.py")

TO_FIRST = [{"name": "first by name", "pick": "first"}]


def rule_to(user_id: str, name: str = "to one") -> list[dict[str, Any]]:
    return [{"name": name, "users": [user_id], "pick": "first"}]


def capture(crm: pycrm.CRM, name: str = "Lead", actor: Any = None) -> pycrm.domain.Lead:
    with crm.session(actor or crm.system_actor) as s:
        return s.leads.capture(name, source="api")


# -- connect-time values are the defaults -------------------------------------------------


def test_a_tenant_without_stored_settings_uses_the_connect_time_values(
    connect_crm: ConnectFn,
) -> None:
    policy = SlaPolicy(
        tuple(SlaTarget(p, timedelta(hours=2), timedelta(hours=8)) for p in Priority)
    )
    crm = connect_crm(
        routing_rules=TO_FIRST,
        default_region="FR",
        sla_policy=policy,
        scoring={"source_points": {"api": 42}},
    )
    with crm.session(crm.system_actor) as s:
        assert s.settings.get("routing_rules") == (RoutingRule.parse(TO_FIRST[0]),)
        assert s.settings.get("default_region") == "FR"
        assert s.settings.get("sla_policy") == policy
        assert s.settings.get("scoring") == ScoringRules({"api": 42})
        assert s.settings.list() == []


def test_a_stored_routing_rule_decides_from_the_next_session_and_a_reset_restores_the_default(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(routing_rules=TO_FIRST)
    team = staff(crm, ann="sales", bob="sales")
    assert capture(crm).owner_id == team.ann.id
    with crm.session(crm.system_actor) as s:
        stored = s.settings.set("routing_rules", rule_to(team.bob.id, "to bob"))
        assert stored.name == "routing_rules"
        assert stored.config == {"value": rule_to(team.bob.id, "to bob")}
        # The session that changed the rule routes by it at once.
        assert s.leads.capture("Same session", source="api").owner_id == team.bob.id
    lead = capture(crm)
    assert (lead.owner_id, lead.assigned_by) == (team.bob.id, "pycrm.routing:to bob")
    with crm.session(crm.system_actor) as s:
        reset = s.settings.reset("routing_rules")
        assert reset.config is None
        assert reset.version == 2
        assert s.settings.get("routing_rules") == (RoutingRule.parse(TO_FIRST[0]),)
    assert capture(crm).owner_id == team.ann.id


def test_another_crm_on_the_same_database_sees_a_change_without_reconnecting(
    connect_crm: ConnectFn,
) -> None:
    first = connect_crm(routing_rules=TO_FIRST)
    second = connect_crm(routing_rules=TO_FIRST)
    team = staff(first, ann="sales", bob="sales")
    assert capture(second).owner_id == team.ann.id  # the second has read the settings once
    with first.session(first.system_actor) as s:
        s.settings.set("routing_rules", rule_to(team.bob.id))
    assert capture(second).owner_id == team.bob.id
    with first.session(first.system_actor) as s:
        s.settings.set("routing_rules", rule_to(team.ann.id))
    assert capture(second).owner_id == team.ann.id


def test_a_session_keeps_the_settings_it_started_with(connect_crm: ConnectFn, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("a SQLite session holds the write lock from its start: one session at a time")
    crm = connect_crm(routing_rules=TO_FIRST)
    team = staff(crm, ann="sales", bob="sales")
    with crm.session(crm.system_actor) as working:
        preview = working.leads.preview_assignment
        assert preview(name="One").owner_id == team.ann.id  # type: ignore[union-attr]
        with crm.session(crm.system_actor) as admin:
            admin.settings.set("routing_rules", rule_to(team.bob.id))
        # One session, one set of rules: the change applies from the next session.
        assert preview(name="Two").owner_id == team.ann.id  # type: ignore[union-attr]
    assert capture(crm).owner_id == team.bob.id


def test_a_change_rolled_back_is_never_seen_even_when_a_later_one_reaches_the_same_version(
    crm: pycrm.CRM,
) -> None:
    def set_then_fail(region: str) -> None:
        with crm.session(crm.system_actor) as s:
            s.settings.set("default_region", region)
            assert s.settings.get("default_region") == region  # its own session sees it
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        set_then_fail("FR")
    with crm.session(crm.system_actor) as s:  # the fake clock stands still: same version, same time
        assert s.settings.get("default_region") == "DE"
        s.settings.set("default_region", "AT")
    with crm.session(crm.system_actor) as s:
        assert s.settings.get("default_region") == "AT"


def test_an_unchanged_tenant_costs_a_session_one_small_query(
    connect_crm: ConnectFn, backend: str
) -> None:
    if backend == "memory":
        pytest.skip("the memory adapter runs no SQL")
    crm = connect_crm(routing_rules=TO_FIRST)
    with crm.session(crm.system_actor) as s:
        s.settings.set("routing_rules", [{"name": "all", "pick": "round_robin"}])
        s.settings.set("default_region", "AT")
    with crm.session(crm.system_actor) as s:
        s.settings.get("routing_rules")  # this process has read them once
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with crm.session(crm.system_actor) as s:
        sa.event.listen(crm.engine, "before_cursor_execute", count)
        try:
            for name in ("routing_rules", "scoring", "sla_policy", "default_region"):
                s.settings._value(name)
        finally:
            sa.event.remove(crm.engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements
    assert "sum(" in statements[0].lower()


def test_settings_belong_to_one_tenant(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor, tenant="north") as s:
        s.settings.set("default_region", "fr")
    with crm.session(crm.system_actor, tenant="north") as s:
        assert s.settings.get("default_region") == "FR"
        assert s.contacts.create("Zoé", phones=["01 23 45 67 89"]).primary_phone == "+33123456789"
    with crm.session(crm.system_actor) as s:
        assert s.settings.get("default_region") == "DE"
        assert s.settings.list() == []


# -- each setting does what it says --------------------------------------------------------


def test_the_scoring_setting_weights_new_leads(crm: pycrm.CRM) -> None:
    assert capture(crm).score == 10  # the default: 10 points for an api lead
    with crm.session(crm.system_actor) as s:
        s.settings.set("scoring", {"source_points": {"api": 60}, "per_event": 1})
        assert s.settings.get("scoring") == ScoringRules({"api": 60}, per_event=1)
    assert capture(crm).score == 60


def test_the_sla_policy_setting_sets_the_due_times_of_new_tickets(crm: pycrm.CRM) -> None:
    hours = {"low": 10, "normal": 5, "high": 2, "urgent": 1}
    with crm.session(crm.system_actor) as s:
        s.settings.set(
            "sla_policy",
            {
                "targets": [
                    {"priority": p, "first_response": h, "resolution": 3 * h}
                    for p, h in hours.items()
                ]
            },
        )
        ticket = s.tickets.open("Broken", channel="email", priority="high")
    assert ticket.first_response_due == ticket.opened_at + timedelta(hours=2)
    assert ticket.resolution_due == ticket.opened_at + timedelta(hours=6)


def test_the_default_region_setting_reads_national_numbers(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        assert s.contacts.create("Dora", phones=["030 1234567"]).primary_phone == "+49301234567"
        s.settings.set("default_region", "FR")
    with crm.session(crm.system_actor) as s:
        assert s.contacts.create("Elle", phones=["01 23 45 67 89"]).primary_phone == "+33123456789"
        assert [c.name for c in s.contacts.search(phone="01 23 45 67 89")] == ["Elle"]


def test_the_sla_policy_round_trips_through_its_json_form() -> None:
    policy = SlaPolicy.parse(
        {
            "targets": [
                {"priority": "urgent", "first_response": 0.5, "resolution": 4, "grade": "A"},
                *(
                    {"priority": p.value, "first_response": 8, "resolution": timedelta(days=2)}
                    for p in Priority
                ),
            ],
            "calendar": {
                "timezone": "Europe/Berlin",
                "mon": "09:00-17:30",
                "holidays": ["2026-12-25"],
            },
        }
    )
    assert policy.targets[0] == SlaTarget(
        Priority.URGENT, timedelta(minutes=30), timedelta(hours=4), "A"
    )
    assert SlaPolicy.parse(json.loads(json.dumps(policy.to_json()))) == policy


# -- permissions, audit, signals ------------------------------------------------------------


def test_only_admins_read_or_change_settings_by_default_but_routing_runs_for_everyone(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(routing_rules=TO_FIRST)
    team = staff(crm, ada=("admin", ["admin"]), mia="marketing", sam="sales")
    with crm.session(team.ada.id) as s:
        s.settings.set("routing_rules", rule_to(team.sam.id))
        assert [row.name for row in s.settings.list()] == ["routing_rules"]
    refused(
        crm,
        team.mia.id,
        (PermissionDenied, lambda s: s.settings.get("routing_rules")),
        (PermissionDenied, lambda s: s.settings.list()),
        (PermissionDenied, lambda s: s.settings.set("default_region", "FR")),
        (PermissionDenied, lambda s: s.settings.reset("routing_rules")),
    )
    # Marketing captures; the rule it may not read still routes the lead.
    assert capture(crm, actor=team.mia.id).owner_id == team.sam.id


def test_every_change_is_audited_and_announced_after_commit(crm: pycrm.CRM) -> None:
    heard: list[Event] = []

    def hear(sender: Any, event: Event) -> None:
        heard.append(event)

    signals.settings_changed.connect(hear)
    try:

        def set_then_fail() -> None:
            with crm.session(crm.system_actor) as s:
                s.settings.set("default_region", "FR")
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            set_then_fail()
        assert heard == []
        with crm.session(crm.system_actor) as s:
            first = s.settings.set("default_region", "FR")
            assert heard == []  # not before the commit
        with crm.session(crm.system_actor) as s:
            s.settings.set("default_region", "AT")
            s.settings.reset("default_region")
            trail = s.audit.find(record_id=first.id)
    finally:
        signals.settings_changed.disconnect(hear)
    assert [e.name for e in heard] == ["settings_changed"] * 3
    assert heard[0].after is not None
    assert heard[0].after["config"] == {"value": "FR"}
    assert [e.action for e in trail] == ["set", "set", "reset"]
    assert trail[1].changes["config"] == [{"value": "FR"}, {"value": "AT"}]


def test_a_change_based_on_a_stale_version_is_refused(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        stored = s.settings.set("default_region", "FR")
    with crm.session(crm.system_actor) as s:
        s.settings.set("default_region", "AT", version=stored.version)
    with pytest.raises(ConcurrencyError), crm.session(crm.system_actor) as s:
        s.settings.set("default_region", "BE", version=stored.version)
    with crm.session(crm.system_actor) as s:
        assert s.settings.get("default_region") == "AT"


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("routing_rules", [{"pick": "first"}], "value"),
        ("routing_rules", [{"name": "a", "pick": "sometimes"}], "value"),
        ("routing_rules", [{"name": "a"}, {"name": "a"}], "value"),
        ("routing_rules", [{"name": "a", "when": {"region": object()}}], "value[0].when.region"),
        ("routing_rules", "first", "value"),
        ("scoring", {"per_event": -1}, "value.per_event"),
        ("scoring", {"source_points": {"api": "ten"}}, "value.source_points.api"),
        ("scoring", {"bonus": 1}, "value.bonus"),
        ("sla_policy", {"targets": []}, "value.targets"),
        (
            "sla_policy",
            {"targets": [{"priority": "urgent", "first_response": 1}]},
            "value.targets[0].resolution",
        ),
        (
            "sla_policy",
            {"targets": [{"priority": "urgent", "first_response": 1, "resolution": 2}]},
            "value.targets",
        ),
        ("default_region", "Germany", "value"),
        ("default_region", 49, "value"),
    ],
)
def test_a_bad_value_is_refused_naming_the_bad_part_and_nothing_is_stored(
    crm: pycrm.CRM, name: str, value: Any, field: str
) -> None:
    (error,) = refused(
        crm, crm.system_actor, (ValidationError, lambda s: s.settings.set(name, value))
    )
    assert isinstance(error, ValidationError)
    assert error.field == field


def test_an_unknown_setting_name_is_refused_with_the_closest_name(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s, pytest.raises(ValidationError) as info:
        s.settings.get("routing_rule")
    assert info.value.field == "name"
    assert "did you mean 'routing_rules'?" in str(info.value)


def test_setting_the_value_in_effect_again_writes_nothing(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        s.settings.set("default_region", "FR")
    before = snapshot(crm)
    with crm.session(crm.system_actor) as s:
        s.settings.set("default_region", "fr")
    assert snapshot(crm) == before


def test_the_setting_record_is_stored_like_every_other(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        s.settings.set("routing_rules", [{"name": "all", "when": {"region": ["DACH", "CH"]}}])
    with crm.session(crm.system_actor) as s:
        (row,) = s.read(Setting).find()
    assert row.config == {"value": [{"name": "all", "when": {"region": ["DACH", "CH"]}}]}


# -- two processes -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, Any]:
    """(URL, schema, connect target) of a database two processes open."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        return url, "", url
    request.node.add_marker(pytest.mark.postgres)
    engine = request.getfixturevalue("pg_engine")
    schema: str = request.getfixturevalue("pg_schema")
    return os.environ["PYCRM_TEST_POSTGRES_URL"], schema, engine


def test_a_process_routes_by_a_rule_another_process_changed_without_a_restart(
    database: tuple[str, str, Any], tmp_path: Path
) -> None:
    url, schema, target = database
    crm = pycrm.connect(target, schema=schema or None, load_plugins=False)
    try:
        team = staff(crm, ann="sales", bob="sales")
        with crm.session(crm.system_actor) as s:
            s.settings.set("routing_rules", rule_to(team.ann.id, "to ann"))
        ready, go = tmp_path / "ready", tmp_path / "go"
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), url, schema, str(ready), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert worker.poll() is None, worker.communicate()[1]
                assert time.monotonic() < deadline, "the worker did not get ready"
                time.sleep(0.01)
            with crm.session(crm.system_actor) as s:  # this process changes the rule
                s.settings.set("routing_rules", rule_to(team.bob.id, "to bob"))
            go.touch()
            out, err = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, err
        result = json.loads(out)
    finally:
        crm.close()
    assert result["before"] == [team.ann.id, "pycrm.routing:to ann"]
    assert result["after"] == [team.bob.id, "pycrm.routing:to bob"]


def test_a_connect_time_value_changed_on_the_crm_applies_where_nothing_is_stored(
    crm: pycrm.CRM,
) -> None:
    with crm.session(crm.system_actor) as s:
        assert s.settings.get("default_region") == "DE"
    crm.default_region = "FR"
    with crm.session(crm.system_actor) as s:
        assert s.settings.get("default_region") == "FR"
