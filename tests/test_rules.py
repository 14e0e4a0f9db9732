"""Contract tests for rules (DESIGN §6): built-in routing, scoring and the pluggy hooks.

Every test that takes ``connect_crm`` runs on memory, SQLite and PostgreSQL.
Routing rules are data handed to the CRM (``routing_rules=[...]``), so most
tests create the users first on a plain CRM and then connect a second CRM,
with the rules, on the same data.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
from pycrm.domain.audit import AuditEntry
from pycrm.domain.contracts import ApprovalStep, Contract, ContractStatus
from pycrm.domain.events import Event
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.money import Money
from pycrm.domain.org import User
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.tasks import BehaviourEvent, Task, TaskPriority
from pycrm.errors import ConcurrencyError, ConfigurationError, InvalidTransition, ValidationError
from pycrm.rules import (
    Assignment,
    RoutingRule,
    RuleBook,
    RuleContext,
    Scorer,
    TaskSpec,
    engine,
    hookimpl,
)
from pycrm.rules.scoring import DEFAULT_SOURCE_POINTS, ScoringRules
from pycrm.session import Session
from pycrm.testing import FakeClock

ConnectFn = Callable[..., pycrm.CRM]

# -- helpers -------------------------------------------------------------------


def add_user(s: Session, name: str, department: str = "sales", **fields: Any) -> User:
    email = f"{name.lower().replace(' ', '.')}@example.com"
    return s.org.create_user(name, email, department, **fields)


def capture(crm: pycrm.CRM, name: str = "Lead", *, source: str = "webform", **fields: Any) -> Lead:
    """Capture one lead in its own session (so round-robin state must live in the database)."""
    with crm.session(crm.system_actor) as s:
        return s.leads.capture(name, source=source, **fields)


def get_lead(crm: pycrm.CRM, lead_id: str) -> Lead:
    with crm.session(crm.system_actor) as s:
        return s.leads.get(lead_id)


def counts(s: Session) -> dict[str, int]:
    """How many rows of each kind a write could leave behind."""
    return {
        cls.__name__: s._uow.repo(cls).count()
        for cls in (Lead, Task, AuditEntry, OutboxMessage, BehaviourEvent)
    }


def stored_counts(crm: pycrm.CRM) -> dict[str, int]:
    with crm.session(crm.system_actor) as s:
        return counts(s)


def assign_by_hand(crm: pycrm.CRM, owner: User, n: int, *, disqualify: bool = False) -> None:
    """Give ``owner`` n leads by hand (optionally disqualifying them at once)."""
    with crm.session(crm.system_actor) as s:
        for i in range(n):
            lead = s.leads.capture(f"Hand {owner.name} {i}", source="import")
            assert lead.owner_id is None  # the CRM used here has no routing rules
            s.leads.assign(lead.id, owner.id)
            if disqualify:
                s.leads.disqualify(lead.id, "no budget")


# -- territory / region --------------------------------------------------------


def test_territory_rule_routes_by_region_to_the_team(connect_crm: ConnectFn) -> None:
    crm = connect_crm(
        routing_rules=[
            {
                "name": "dach",
                "when": {"region": ["DACH", "DE"]},
                "team": "Sales DACH",
                "pick": "first",
            },
            {"name": "world", "team": "Sales World", "pick": "first"},
        ]
    )
    with crm.session(crm.system_actor) as s:
        dach = s.org.create_team("Sales DACH", "sales")
        world = s.org.create_team("Sales World", "sales")
        add_user(s, "Aaron Teamless")  # first by name: only team narrowing keeps him out
        anna = add_user(s, "Anna", team_ids=[dach.id])
        bert = add_user(s, "Bert", team_ids=[world.id])

    assert capture(crm, region="DACH").owner_id == anna.id
    assert capture(crm, region="dach").owner_id == anna.id  # case-insensitive
    assert capture(crm, region="DE").owner_id == anna.id  # one of a list
    us = capture(crm, region="US")
    assert us.owner_id == bert.id
    assert us.assigned_by == "pycrm.routing:world"
    no_region = capture(crm)
    assert no_region.owner_id == bert.id  # a rule on region needs a region
    dach_lead = capture(crm, region="DACH")
    assert dach_lead.assigned_by == "pycrm.routing:dach"
    assert "region=" in (dach_lead.assignment_reason or "")
    assert "team Sales DACH" in (dach_lead.assignment_reason or "")


def test_team_rule_accepts_the_team_id(connect_crm: ConnectFn) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        team = s.org.create_team("North", "sales")
        add_user(s, "Aaron")
        nora = add_user(s, "Nora", team_ids=[team.id])
    crm = connect_crm(routing_rules=[{"name": "north", "team": team.id, "pick": "first"}])
    assert capture(crm).owner_id == nora.id


# -- industry ------------------------------------------------------------------


def test_industry_rule_routes_matching_leads_to_its_users(connect_crm: ConnectFn) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        add_user(s, "Alma")
        ida = add_user(s, "Ida Industrial")
    crm = connect_crm(
        routing_rules=[
            {
                "name": "industrial",
                "when": {"industry": ["machinery", "automotive"]},
                "users": [ida.id],
                "pick": "first",
            },
            {"name": "everyone", "pick": "first"},
        ]
    )
    machinery = capture(crm, industry="Machinery")
    assert machinery.owner_id == ida.id
    assert machinery.assigned_by == "pycrm.routing:industrial"
    assert capture(crm, industry="automotive").owner_id == ida.id
    food = capture(crm, industry="food")
    assert food.assigned_by == "pycrm.routing:everyone"
    assert food.owner_id != ida.id


# -- skills --------------------------------------------------------------------


def test_skills_rule_keeps_only_users_with_every_skill(connect_crm: ConnectFn) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        add_user(s, "Abe")  # no skills
        add_user(s, "Bo", skills=["aviation"])  # only one of the two
        cy = add_user(s, "Cy", skills=["Aviation", "GERMAN", "sailing"])
        add_user(s, "Di", skills=["aviation", "german"])
    crm = connect_crm(
        routing_rules=[
            {
                "name": "aviation de",
                "when": {"industry": "aviation"},
                "skills": ["aviation", "german"],
                "pick": "first",
            },
            {"name": "rest", "pick": "first"},
        ]
    )
    lead = capture(crm, industry="aviation")
    assert lead.owner_id == cy.id  # Cy and Di qualify; Cy is first by name
    assert lead.assigned_by == "pycrm.routing:aviation de"
    assert "skills aviation, german" in (lead.assignment_reason or "")
    other = capture(crm, industry="banking")
    assert other.assigned_by == "pycrm.routing:rest"


def test_region_and_language_rules_keep_users_covering_one_of_each(connect_crm: ConnectFn) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        abe = add_user(s, "Abe")  # covers nothing
        bo = add_user(s, "Bo", regions=["dach"], languages=["English"], skills=["Aviation"])
        add_user(s, "Cy", regions=["Benelux"], languages=["German"], skills=["aviation", "x"])
        di = add_user(s, "Di", regions=["Nordics", "CH"], languages=["english", "GERMAN"])
        add_user(s, "Eve", regions=["DACH"], languages=["german"])
    crm = connect_crm(
        routing_rules=[
            # exactly the skills wanted is enough: Bo (first by name) is kept
            {"name": "pilots", "when": {"industry": "aviation"}, "skills": ["aviation"],
             "pick": "first"},
            {"name": "dach de", "regions": ["DACH", "CH"], "languages": ["german"],
             "pick": "first"},
            {"name": "rest", "users": [abe.id], "pick": "first"},
        ]
    )  # fmt: skip
    lead = capture(crm)
    assert (lead.owner_id, lead.assigned_by) == (di.id, "pycrm.routing:dach de")
    assert (lead.assignment_reason or "").startswith("dach de (regions DACH, CH; languages german)")
    assert capture(crm, industry="aviation").owner_id == bo.id


def test_a_min_score_criterion_is_checked_with_the_others_and_a_ticket_has_no_score(
    connect_crm: ConnectFn,
) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        ann = add_user(s, "Ann")
        bob = add_user(s, "Bob")
        sue = add_user(s, "Sue", department="service")
        tom = add_user(s, "Tom", department="service")
    crm = connect_crm(
        routing_rules=[
            {"name": "hot dach", "when": {"min_score": 0, "region": "DACH"},
             "users": [ann.id, sue.id], "pick": "first"},
            {"name": "rest", "users": [bob.id, tom.id], "pick": "first"},
        ]
    )  # fmt: skip
    assert capture(crm, region="DACH").owner_id == ann.id
    assert capture(crm, region="US").owner_id == bob.id  # the region is checked too
    with crm.session(crm.system_actor) as s:
        ticket = s.tickets.open("Broken", channel="email")
    assert ticket.assignee_id == tom.id  # no score: a min_score rule never applies


def test_a_criterion_on_a_number_matches_that_number_and_never_a_value_of_another_type(
    connect_crm: ConnectFn,
) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        ann, bob, cy = add_user(s, "Ann"), add_user(s, "Bob"), add_user(s, "Cy")
    crm = connect_crm(
        routing_rules=[
            {"name": "numbered", "when": {"region": 7}, "users": [ann.id], "pick": "first"},
            {"name": "exactly", "when": {"score": 45}, "users": [bob.id], "pick": "first"},
            {"name": "rest", "users": [cy.id], "pick": "first"},
        ]
    )
    exactly = capture(crm, email="e@example.com", company="Exact", region="DACH")
    other = capture(crm, email="o@example.com", region="DACH")
    assert (exactly.score, exactly.owner_id) == (45, bob.id)
    assert (other.score, other.owner_id) == (35, cy.id)


def test_a_match_rule_keeps_the_users_whose_list_holds_every_value_of_the_record(
    connect_crm: ConnectFn,
) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        s.fields.define("lead", "speaks", "multi_choice", choices=["de", "en", "es"])
        ana = add_user(s, "Ana", regions=["Iberia"], languages=["ES", "en"])
        dirk = add_user(s, "Dirk", regions=["DACH"], languages=["de", "en"])
        add_user(s, "Zoe")
        tom = add_user(s, "Tom", department="service")
    crm = connect_crm(
        routing_rules=[
            {"name": "by language", "when": {"source": "phone"},
             "match": {"languages": "custom.speaks"}, "pick": "first"},
            {"name": "by territory", "match": {"regions": "region"}, "pick": "first"},
        ]
    )  # fmt: skip
    both = capture(crm, source="phone", custom={"speaks": ["de", "en"]})
    assert (both.owner_id, both.assigned_by) == (dirk.id, "pycrm.routing:by language")
    assert "languages match custom.speaks" in (both.assignment_reason or "")
    assert capture(crm, source="phone", custom={"speaks": ["en"]}).owner_id == ana.id
    dach = capture(crm, region="dach")
    assert (dach.owner_id, dach.assigned_by) == (dirk.id, "pycrm.routing:by territory")
    assert capture(crm, region="Iberia").owner_id == ana.id
    assert capture(crm).owner_id == ana.id  # no region to match: the pool stays whole
    with crm.session(crm.system_actor) as s:  # nor has a ticket a region
        assert s.tickets.open("Broken", channel="email").assignee_id == tom.id


def test_load_balanced_ticket_routing_counts_each_users_open_tickets(
    connect_crm: ConnectFn,
) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        sue = add_user(s, "Sue", department="service")
        tom = add_user(s, "Tom", department="service", capacity=1)
    crm = connect_crm(routing_rules=[{"name": "desk", "pick": "load_balanced"}])
    assignees = []
    for title in ("One", "Two", "Three", "Four"):
        with crm.session(crm.system_actor) as s:
            assignees.append(s.tickets.open(title, channel="email").assignee_id)
    # Sue first by name, then Tom with fewer open tickets; then Tom is at capacity
    assert assignees == [sue.id, tom.id, sue.id, sue.id]


def test_the_rules_stored_in_the_routing_rules_setting_replace_the_connect_time_ones(
    connect_crm: ConnectFn,
) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        ann, bob = add_user(s, "Ann"), add_user(s, "Bob")
    crm = connect_crm(routing_rules=[{"name": "ann", "users": [ann.id], "pick": "first"}])
    assert capture(crm).owner_id == ann.id
    with crm.session(crm.system_actor) as s:
        s.settings.set("routing_rules", [{"name": "bob", "users": [bob.id], "pick": "first"}])
    lead = capture(crm)
    assert (lead.owner_id, lead.assigned_by) == (bob.id, "pycrm.routing:bob")


# -- round-robin ---------------------------------------------------------------


def test_round_robin_alternates_exactly_within_the_team_across_sessions_and_crms(
    connect_crm: ConnectFn,
) -> None:
    rules = [{"name": "inside", "team": "Inside Sales", "pick": "round_robin"}]
    crm = connect_crm(routing_rules=rules)
    with crm.session(crm.system_actor) as s:
        team = s.org.create_team("Inside Sales", "sales")
        members = {add_user(s, n, team_ids=[team.id]).id for n in ("Ina", "Ivo", "Isa")}
        add_user(s, "Aaron Outside")
        add_user(s, "Zora Outside")

    owners = [capture(crm, f"L{i}").owner_id for i in range(6)]  # one session each
    assert set(owners[:3]) == members
    assert owners[3:] == owners[:3]  # exact alternation: A B C A B C

    # A second CRM on the same database continues where the first stopped.
    second = connect_crm(routing_rules=rules)
    assert [capture(second, f"M{i}").owner_id for i in range(3)] == owners[:3]
    tenth = capture(crm, "L10")
    assert tenth.owner_id == owners[0]
    assert (tenth.assignment_reason or "").endswith("round-robin turn 10 of 3")


def test_round_robin_is_fair_for_concurrent_sessions_in_memory(fake_clock: FakeClock) -> None:
    crm = pycrm.connect(
        "memory://", clock=fake_clock, routing_rules=[{"name": "rr", "pick": "round_robin"}]
    )
    with crm.session(crm.system_actor) as s:
        add_user(s, "Ann")
        add_user(s, "Bob")
    first, second = crm.session(crm.system_actor), crm.session(crm.system_actor)
    a = first.leads.capture("A", source="api")
    b = second.leads.capture("B", source="api")
    first.commit()
    try:
        second.commit()
    except ConcurrencyError:
        return  # refusing the second commit (so it is retried) is fair too
    assert a.owner_id != b.owner_id


def test_round_robin_skips_unavailable_members_without_losing_fairness(
    connect_crm: ConnectFn,
) -> None:
    rules = [{"name": "rr", "pick": "round_robin"}]
    crm = connect_crm(routing_rules=rules)
    with crm.session(crm.system_actor) as s:
        a, b = add_user(s, "Ann"), add_user(s, "Bob")
        c = add_user(s, "Cid", on_leave=True)
    owners = [capture(crm).owner_id for _ in range(4)]
    assert set(owners) == {a.id, b.id}
    assert owners[0] != owners[1]
    assert owners[2:] == owners[:2]
    assert c.id not in owners


def test_each_round_robin_rule_takes_its_own_turns_through_the_users_in_id_order(
    connect_crm: ConnectFn,
) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        ids = sorted(add_user(s, name).id for name in ("Ann", "Bob", "Cy"))
    crm = connect_crm(
        routing_rules=[
            {"name": "austria", "when": {"region": "AT"}, "pick": "round_robin"},
            {"name": "rest", "pick": "round_robin"},
        ]
    )
    rest = [capture(crm, f"Lead {i}") for i in range(4)]
    assert [lead.owner_id for lead in rest] == [ids[0], ids[1], ids[2], ids[0]]
    assert (rest[1].assignment_reason or "").endswith("round-robin turn 2 of 3")
    alpine = capture(crm, "Alpine", region="AT")
    assert alpine.owner_id == ids[0]  # the rule's own first turn
    assert (alpine.assignment_reason or "").endswith("round-robin turn 1 of 3")


# -- load-balanced -------------------------------------------------------------


def test_load_balanced_picks_fewest_open_leads(connect_crm: ConnectFn) -> None:
    plain = connect_crm()
    with plain.session(plain.system_actor) as s:
        ann, bea, cem = add_user(s, "Ann"), add_user(s, "Bea"), add_user(s, "Cem")
    assign_by_hand(plain, ann, 2)
    assign_by_hand(plain, bea, 1)
    assign_by_hand(plain, cem, 3, disqualify=True)  # closed leads are not open work
    crm = connect_crm(routing_rules=[{"name": "lb", "pick": "load_balanced"}])

    first = capture(crm)
    assert first.owner_id == cem.id
    assert first.assignment_reason == "lb (any): fewest open items (0) of 3"
    assert capture(crm).owner_id == bea.id  # Bea 1, Cem 1: tie broken by name
    assert capture(crm).owner_id == cem.id  # Ann 2, Bea 2, Cem 1
    with crm.session(crm.system_actor) as s:  # contacted leads are still open work
        for lead in s.leads.search(owner_id=ann.id, status="assigned"):
            s.leads.mark_contacted(lead.id)
    assert capture(crm).owner_id == ann.id  # all at 2: Ann by name


# -- order and fallthrough -----------------------------------------------------


def test_a_narrowing_rule_hands_its_pool_to_the_next_picking_rule(connect_crm: ConnectFn) -> None:
    crm = connect_crm(
        routing_rules=[
            {"name": "dach", "when": {"region": "DACH"}, "team": "DACH"},  # narrows only
            {"name": "balance", "pick": "load_balanced"},
        ]
    )
    with crm.session(crm.system_actor) as s:
        team = s.org.create_team("DACH", "sales")
        aaron = add_user(s, "Aaron")
        dora = add_user(s, "Dora", team_ids=[team.id])
        emil = add_user(s, "Emil", team_ids=[team.id])

    first = capture(crm, region="DACH")
    assert first.owner_id == dora.id
    assert first.assigned_by == "pycrm.routing:balance"
    assert first.assignment_reason == (
        "dach (region=DACH; team DACH) → balance (any): fewest open items (0) of 2"
    )
    assert capture(crm, region="DACH").owner_id == emil.id
    assert capture(crm, region="US").owner_id == aaron.id


def test_rules_are_tried_in_order(connect_crm: ConnectFn) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        uma, ute = add_user(s, "Uma"), add_user(s, "Ute")
    a = {"name": "a", "users": [uma.id], "pick": "first"}
    b = {"name": "b", "users": [ute.id], "pick": "first"}
    assert capture(connect_crm(routing_rules=[a, b])).owner_id == uma.id
    assert capture(connect_crm(routing_rules=[b, a])).owner_id == ute.id


@pytest.mark.parametrize("fallthrough", [True, False])
def test_an_empty_pool_falls_through_or_stops(connect_crm: ConnectFn, fallthrough: bool) -> None:
    crm = connect_crm(
        routing_rules=[
            {
                "name": "banking",
                "when": {"industry": "banking"},
                "skills": ["banking"],
                "pick": "first",
                "fallthrough": fallthrough,
            },
            {"name": "anyone", "pick": "first"},
        ]
    )
    with crm.session(crm.system_actor) as s:
        add_user(s, "Bianca Banker", skills=["banking"], on_leave=True)  # the only one: away
        anyone = add_user(s, "Olaf")

    lead = capture(crm, industry="banking")
    if fallthrough:
        assert lead.owner_id == anyone.id
        assert lead.status is LeadStatus.ASSIGNED
        assert lead.assigned_by == "pycrm.routing:anyone"
    else:
        assert lead.owner_id is None
        assert lead.status is LeadStatus.NEW
        assert lead.assigned_by is None
        with crm.session(crm.system_actor) as s:
            assert s.tasks.list(related_id=lead.id) == []
            assert s.audit.find(record_id=lead.id, action="assign") == []
    # other leads are not affected by the banking rule
    assert capture(crm, industry="retail").owner_id == anyone.id


def test_when_no_rule_picks_the_lead_stays_new(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "only narrows", "team": "Nobody"}])
    with crm.session(crm.system_actor) as s:
        add_user(s, "Ann")
    lead = capture(crm)
    assert (lead.status, lead.owner_id) == (LeadStatus.NEW, None)


# -- availability ----------------------------------------------------------------


def test_inactive_and_on_leave_users_are_never_chosen(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "first", "pick": "first"}])
    with crm.session(crm.system_actor) as s:
        ada = add_user(s, "Ada Inactive")
        s.org.deactivate_user(ada.id)
        add_user(s, "Bea Away", on_leave=True)
        add_user(s, "Cleo Finance", department="finance")  # not a lead department
        zoe = add_user(s, "Zoe")
        assert [u.id for u in s.leads.candidates()] == [zoe.id]
    assert {capture(crm).owner_id for _ in range(3)} == {zoe.id}

    with crm.session(crm.system_actor) as s:
        s.org.update_user(zoe.id, on_leave=True)
        assert s.leads.candidates() == []
    lead = capture(crm)
    assert (lead.status, lead.owner_id) == (LeadStatus.NEW, None)


def test_working_hours_are_stored_and_read_back(
    connect_crm: ConnectFn, backend: str, request: pytest.FixtureRequest
) -> None:
    crm = connect_crm()
    hours = {"timezone": "Europe/Berlin", "mon": ["08:00-12:00", "13:00-17:30"]}
    with crm.session(crm.system_actor) as s:
        user = add_user(s, "Hanna", working_hours=hours)
    with crm.session(crm.system_actor) as s:
        stored = s.org.get_user(user.id)
    assert stored.working_hours == user.working_hours
    assert stored.working_hours is not None
    assert stored.working_hours.is_open(datetime(2026, 1, 5, 15, 0, tzinfo=UTC))  # 16:00 local
    assert not stored.working_hours.is_open(datetime(2026, 1, 5, 11, 30, tzinfo=UTC))  # lunch


def test_users_outside_their_working_hours_are_never_chosen(
    connect_crm: ConnectFn, fake_clock: FakeClock, backend: str, request: pytest.FixtureRequest
) -> None:
    crm = connect_crm(routing_rules=[{"name": "first", "pick": "first"}])
    office = {
        "timezone": "Europe/Berlin",
        **dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "09:00-17:00"),
    }
    with crm.session(crm.system_actor) as s:
        hanna = add_user(s, "Hanna Hours", working_hours=office)
        zoe = add_user(s, "Zoe Always")

    # Monday 09:00 UTC is 10:00 in Berlin: Hanna is at work and first by name.
    assert capture(crm).owner_id == hanna.id
    fake_clock.set(datetime(2026, 1, 5, 16, 30, tzinfo=UTC))  # 17:30 Berlin: evening
    assert capture(crm).owner_id == zoe.id
    fake_clock.set(datetime(2026, 1, 10, 10, 0, tzinfo=UTC))  # Saturday
    assert capture(crm).owner_id == zoe.id
    with crm.session(crm.system_actor) as s:
        assert hanna.id not in {u.id for u in s.leads.candidates()}
        assert s.leads.preview_assignment().owner_id == zoe.id  # type: ignore[union-attr]
    fake_clock.set(datetime(2026, 1, 12, 7, 59, tzinfo=UTC))  # Monday 08:59 Berlin
    assert capture(crm).owner_id == zoe.id
    fake_clock.set(datetime(2026, 1, 12, 8, 0, tzinfo=UTC))  # Monday 09:00 Berlin
    assert capture(crm).owner_id == hanna.id


def test_users_at_capacity_are_never_chosen(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "first", "pick": "first"}])
    with crm.session(crm.system_actor) as s:
        carl = add_user(s, "Carl Capacity", capacity=2)
        zoe = add_user(s, "Zoe")
    first, second = capture(crm), capture(crm)
    assert first.owner_id == second.owner_id == carl.id
    with crm.session(crm.system_actor) as s:
        s.leads.mark_contacted(first.id)  # contacted is still open work
    assert capture(crm).owner_id == zoe.id
    with crm.session(crm.system_actor) as s:
        s.leads.disqualify(second.id, "duplicate")  # frees one slot
    assert capture(crm).owner_id == carl.id
    assert capture(crm).owner_id == zoe.id


# -- explaining ----------------------------------------------------------------


def test_explain_assignment_and_audit_name_the_rule_and_reason(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    crm = connect_crm(routing_rules=[{"name": "rr", "pick": "round_robin"}])
    with crm.session(crm.system_actor) as s:
        ann = add_user(s, "Ann")
    lead = capture(crm, email="lena@example.com", company="Lena GmbH")

    with crm.session(crm.system_actor) as s:
        why = s.leads.explain_assignment(lead.id)
        assert why.lead_id == lead.id
        assert why.owner_id == ann.id
        assert why.decided_by == "pycrm.routing:rr"
        assert why.reason == "rr (any): round-robin turn 1 of 1"
        assert why.assigned_at == fake_clock.now()
        assert why.score == lead.score
        entries = s.audit.find(record_id=lead.id, action="assign")
        assert len(entries) == 1
        changes = entries[0].changes
        assert changes["owner_id"] == [None, ann.id]
        assert changes["status"] == ["new", "assigned"]
        assert changes["assigned_by"] == [None, "pycrm.routing:rr"]
        assert changes["assignment_reason"] == [None, "rr (any): round-robin turn 1 of 1"]

        bob = add_user(s, "Bob")
        s.leads.assign(lead.id, bob.id, reason="speaks the customer's language")
        why = s.leads.explain_assignment(lead.id)
        assert (why.owner_id, why.decided_by) == (bob.id, "user:system")
        assert why.reason == "speaks the customer's language"
        assert len(s.audit.find(record_id=lead.id, action="assign")) == 2


def test_an_unassigned_lead_explains_nothing(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    lead = capture(crm)
    with crm.session(crm.system_actor) as s:
        why = s.leads.explain_assignment(lead.id)
    assert (why.owner_id, why.decided_by, why.reason, why.assigned_at) == (None, None, None, None)


# -- preview ---------------------------------------------------------------------


def test_preview_writes_nothing_and_uses_up_no_round_robin_turn(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "rr", "pick": "round_robin"}])
    with crm.session(crm.system_actor) as s:
        for name in ("Ann", "Bob", "Cid"):
            add_user(s, name)
    capture(crm, "Before")
    before = stored_counts(crm)

    with crm.session(crm.system_actor) as s:
        preview = s.leads.preview_assignment(
            name="Pia", email="pia@example.com", company="Pia AG", region="DE"
        )
        again = s.leads.preview_assignment(name="Pia")
        assert counts(s) == before  # nothing written, not even inside the session
    assert preview is not None
    assert again is not None
    assert preview.owner_id == again.owner_id
    assert preview.rule == "pycrm.routing:rr"
    assert preview.reason == "rr (any): round-robin turn 2 of 3"
    assert stored_counts(crm) == before

    real = capture(crm, "Pia", email="pia@example.com")
    assert real.owner_id == preview.owner_id
    assert real.assignment_reason == preview.reason


def test_preview_with_nobody_available_is_none(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "rr", "pick": "round_robin"}])
    with crm.session(crm.system_actor) as s:
        assert s.leads.preview_assignment(name="Pia") is None


# -- status ------------------------------------------------------------------------


def test_assigning_never_moves_a_lead_beyond_assigned(connect_crm: ConnectFn) -> None:
    plain = connect_crm()
    with plain.session(plain.system_actor) as s:
        ann, bob = add_user(s, "Ann"), add_user(s, "Bob")
    waiting = capture(plain)
    assert waiting.status is LeadStatus.NEW

    crm = connect_crm(routing_rules=[{"name": "first", "pick": "first"}])
    routed = capture(crm)
    assert routed.status is LeadStatus.ASSIGNED
    with crm.session(crm.system_actor) as s:
        assert s.leads.route(waiting.id).status is LeadStatus.ASSIGNED
        with pytest.raises(InvalidTransition):
            s.leads.route(waiting.id)  # only new leads are routed
        s.leads.mark_contacted(routed.id)
        moved = s.leads.assign(routed.id, bob.id)
        assert (moved.status, moved.owner_id) == (LeadStatus.CONTACTED, bob.id)
        qualified = s.leads.qualify(routed.id)
        assert s.leads.assign(qualified.id, ann.id).status is LeadStatus.QUALIFIED


def test_routing_gives_the_owner_one_first_contact_task(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "first", "pick": "first"}])
    with crm.session(crm.system_actor) as s:
        ann = add_user(s, "Ann")
    lead = capture(crm, company="Acme")
    with crm.session(crm.system_actor) as s:
        tasks = s.tasks.list(related_id=lead.id)
    assert [(t.kind, t.assignee_id, t.title) for t in tasks] == [
        ("first_contact", ann.id, "First contact: Lead (Acme)")
    ]


# -- scoring -------------------------------------------------------------------------


def test_built_in_scorer_counts_completeness_source_and_behaviour(connect_crm: ConnectFn) -> None:
    crm = connect_crm(default_region="DE")
    full = capture(
        crm,
        "Fiona Full",
        source="webform",
        email="fiona@example.com",
        phone="030 1234567",
        company="Full GmbH",
        needs="a new CRM",
        industry="software",
        region="DE",
    )
    assert full.score == 10 + 10 + 10 + 10 + 5 + 5 + 20
    bare = capture(crm, "Bert Bare", source="import")
    assert bare.score == 5
    assert capture(crm, "Ria Referral", source="Referral").score == 30
    assert capture(crm, "Una Unknown", source="carrier pigeon").score == 0

    with crm.session(crm.system_actor) as s:
        s.activities.track(None, "viewed_pricing_page", lead_id=full.id)
        assert s.leads.get(full.id).score == 80
        for _ in range(4):  # behaviour counts 10 each, at most 30
            s.activities.track(None, "opened_newsletter", lead_id=full.id)
        assert s.leads.get(full.id).score == 100
        s.activities.track(None, "viewed_pricing_page", lead_id=bare.id)
        assert s.leads.get(bare.id).score == 15


def test_updating_a_lead_rescores_it(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    bare = capture(crm, source="import")
    assert bare.score == 5
    with crm.session(crm.system_actor) as s:
        updated = s.leads.update(bare.id, company="Acme", needs="a CRM")
    assert updated.score == 25


def test_a_min_score_rule_routes_hot_leads(connect_crm: ConnectFn) -> None:
    setup = connect_crm()
    with setup.session(setup.system_actor) as s:
        senior = add_user(s, "Senna Senior")
        add_user(s, "Juno Junior")
    crm = connect_crm(
        routing_rules=[
            {"name": "hot", "when": {"min_score": 60}, "users": [senior.id], "pick": "first"}
        ]
    )
    hot = capture(crm, email="h@example.com", company="Hot", needs="x", industry="y", region="z")
    assert hot.score == 60  # exactly the threshold: at least 60 matches
    assert (hot.owner_id, hot.assigned_by) == (senior.id, "pycrm.routing:hot")
    warm = capture(crm, email="w@example.com", company="Warm", needs="x")
    assert warm.score == 50
    assert (warm.status, warm.owner_id) == (LeadStatus.NEW, None)

    with crm.session(crm.system_actor) as s:
        s.activities.track(None, "viewed_pricing_page", lead_id=warm.id)
        assert s.leads.get(warm.id).score == 60
        routed = s.leads.route(warm.id)
    assert (routed.owner_id, routed.status) == (senior.id, LeadStatus.ASSIGNED)
    assert "min_score=60" in (routed.assignment_reason or "")


def test_a_scorer_plugin_scores_by_the_weights_it_was_given(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    crm.plugins.unregister(name="pycrm.scoring")
    crm.plugins.register(Scorer({"fair": 7}, per_event=2, max_behaviour=5), name="fair")
    lead = capture(crm, source="fair", company="Fair Co")
    assert lead.score == 7 + 10
    assert capture(crm, source="webform").score == 0  # not in the table: no points
    with crm.session(crm.system_actor) as s:
        s.activities.track(None, "opened_newsletter", lead_id=lead.id)
        assert s.leads.get(lead.id).score == 17 + 2
        for _ in range(2):
            s.activities.track(None, "opened_newsletter", lead_id=lead.id)
        assert s.leads.get(lead.id).score == 17 + 5  # at most max_behaviour
    default = Scorer()
    assert (default.source_points, default.per_event, default.max_behaviour) == (
        DEFAULT_SOURCE_POINTS,
        10,
        30,
    )
    assert default.score(lead, 2) == 10 + 20  # "fair" is no default source
    assert Scorer({}, per_event=1, max_behaviour=3).score(lead, 9) == 10 + 3


def test_the_scoring_weights_stored_in_the_scoring_setting_replace_the_connect_time_ones(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(scoring={"source_points": {"api": 1}})
    assert capture(crm, source="api").score == 1
    with crm.session(crm.system_actor) as s:
        s.settings.set("scoring", {"source_points": {"api": 60}})
    assert capture(crm, source="api").score == 60


def test_the_scoring_weights_read_back_from_their_json_form() -> None:
    rules = ScoringRules.parse(
        {
            "source_points": {"fair": -5, "api": 1000, "import": 0},
            "per_event": 3,
            "max_behaviour": 12,
        }
    )
    points = {"fair": -5, "api": 1000, "import": 0}
    assert rules == ScoringRules(points, per_event=3, max_behaviour=12)
    data = json.loads(json.dumps(rules.to_json()))
    assert data == {"source_points": points, "per_event": 3, "max_behaviour": 12}
    assert ScoringRules.parse(data) == rules
    assert ScoringRules.parse(rules) is rules
    assert ScoringRules.parse({"per_event": 0}) == ScoringRules(per_event=0)  # the rest: defaults
    assert ScoringRules.parse({"max_behaviour": 0}) == ScoringRules(max_behaviour=0)
    assert ScoringRules.parse({"source_points": {}}) == ScoringRules({})


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"per_event": -1}, "weights.per_event"),
        ({"per_event": None}, "weights.per_event"),
        ({"per_event": 2.5}, "weights.per_event"),
        ({"max_behaviour": 1001}, "weights.max_behaviour"),
        ({"max_behaviour": True}, "weights.max_behaviour"),
        ({"max_behaviour": None}, "weights.max_behaviour"),
    ],
    ids=["negative", "per-event-none", "float", "too-many", "bool", "max-none"],
)
def test_a_bad_scoring_weight_is_refused_naming_it(value: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ScoringRules.parse(value, "weights")
    assert (caught.value.field, caught.value.value) == (field, next(iter(value.values())))
    assert caught.value.reason


@pytest.mark.parametrize(
    ("value", "field", "bad"),
    [
        (None, "scoring", None),
        (["api", 10], "scoring", ["api", 10]),
        ({"zeta": 2, "bonus": 1}, "scoring.bonus", 1),
        ({"source_points": ["api"]}, "scoring.source_points", ["api"]),
        ({"source_points": None}, "scoring.source_points", None),
        ({"source_points": {"api": 1001}}, "scoring.source_points.api", 1001),
        ({"source_points": {"api": "ten"}}, "scoring.source_points.api", "ten"),
        ({"source_points": {"x" * 61: 1}}, "scoring.source_points." + "x" * 61, "x" * 61),
    ],
    ids=["none", "not-a-mapping", "unknown-key", "points-not-a-mapping", "points-none",
         "too-many-points",
         "points-text", "long-source"],
)  # fmt: skip
def test_bad_scoring_weights_are_refused_naming_the_bad_part(
    value: Any, field: str, bad: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        ScoringRules.parse(value)
    assert (caught.value.field, caught.value.value) == (field, bad)
    assert caught.value.reason


# -- plugins registered at runtime ------------------------------------------------------


class PickByName:
    """A routing plugin choosing the candidate with a given name."""

    def __init__(self, name: str, *, rule: str | None = None, only_company: str | None = None):
        self.name, self.rule, self.only_company = name, rule, only_company

    def choose(self, lead: Lead, candidates: Sequence[User]) -> Assignment | None:
        if self.only_company is not None and lead.company != self.only_company:
            return None
        for user in candidates:
            if user.name == self.name:
                return Assignment(user.id, f"{self.name} handles these", rule=self.rule)
        return None


class PlainPicker(PickByName):
    @hookimpl
    def pycrm_assign_lead(
        self, lead: Lead, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        return self.choose(lead, candidates)


class FirstPicker(PickByName):
    @hookimpl(tryfirst=True)
    def pycrm_assign_lead(
        self, lead: Lead, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        return self.choose(lead, candidates)


def test_hook_pycrm_assign_lead(connect_crm: ConnectFn) -> None:
    """A runtime plugin outranks the built-in rules; None hands over to them."""
    crm = connect_crm(routing_rules=[{"name": "rr", "pick": "round_robin"}])
    with crm.session(crm.system_actor) as s:
        add_user(s, "Ann")
        vera = add_user(s, "Vera")
    crm.plugins.register(
        FirstPicker("Vera", rule="big accounts", only_company="Big Co"), name="vip"
    )

    big = capture(crm, company="Big Co")
    assert big.owner_id == vera.id
    assert big.assigned_by == "vip:big accounts"
    assert big.assignment_reason == "Vera handles these"
    small = capture(crm, company="Small Co")  # the plugin abstains: built-in rules decide
    assert small.assigned_by == "pycrm.routing:rr"
    with crm.session(crm.system_actor) as s:
        why = s.leads.explain_assignment(big.id)
        assert (why.decided_by, why.reason) == ("vip:big accounts", "Vera handles these")
        preview = s.leads.preview_assignment(company="Big Co")
        assert preview == Assignment(vera.id, "Vera handles these", rule="vip:big accounts")

    # Without a rule name, decided_by is the plugin's name.
    crm.plugins.unregister(name="vip")
    crm.plugins.register(PlainPicker("Vera"), name="vera-fan")
    assert capture(crm).assigned_by == "vera-fan"


def test_tryfirst_outranks_later_plugins_and_the_latest_plain_plugin_goes_first(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm()
    with crm.session(crm.system_actor) as s:
        ann, bob, cid = add_user(s, "Ann"), add_user(s, "Bob"), add_user(s, "Cid")
    crm.plugins.register(PlainPicker("Ann"), name="ann-fan")
    crm.plugins.register(PlainPicker("Bob"), name="bob-fan")
    assert capture(crm).owner_id == bob.id  # most recently registered is asked first
    crm.plugins.register(FirstPicker("Cid"), name="cid-fan")
    crm.plugins.register(PlainPicker("Ann"), name="ann-fan-2")
    lead = capture(crm)
    assert (lead.owner_id, lead.assigned_by) == (cid.id, "cid-fan")
    assert ann.id != lead.owner_id


def test_unregistering_the_built_in_routing(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "rr", "pick": "round_robin"}])
    with crm.session(crm.system_actor) as s:
        add_user(s, "Ann")
        bob = add_user(s, "Bob")
    assert crm.plugins.get_plugin("pycrm.routing") is not None
    crm.plugins.unregister(name="pycrm.routing")
    lead = capture(crm)
    assert (lead.status, lead.owner_id) == (LeadStatus.NEW, None)

    crm.plugins.register(
        RuleBook([{"name": "bob only", "users": [bob.id], "pick": "first"}]), name="pycrm.routing"
    )
    replaced = capture(crm)
    assert (replaced.owner_id, replaced.assigned_by) == (bob.id, "pycrm.routing:bob only")


class TeamLooker:
    """A routing plugin that only looks at who is in a team (and decides nothing)."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    @hookimpl(tryfirst=True)
    def pycrm_assign_lead(
        self, lead: Lead, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        self.seen.append(sorted(u.name for u in ctx.team_members(lead.company or "")))
        return None


def test_a_plugin_sees_the_active_members_of_a_team_by_name_or_id(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    with crm.session(crm.system_actor) as s:
        north = s.org.create_team("North", "sales")
        add_user(s, "Nora", team_ids=[north.id])
        add_user(s, "Ned", team_ids=[north.id])
        gone = add_user(s, "Gil", team_ids=[north.id])
        add_user(s, "Otto")
        s.org.deactivate_user(gone.id)
    looker = TeamLooker()
    crm.plugins.register(looker, name="looker")
    capture(crm, company="North")
    capture(crm, company=north.id)
    capture(crm, company="South")
    assert looker.seen == [["Ned", "Nora"], ["Ned", "Nora"], []]


# -- misbehaving plugins ------------------------------------------------------------


class Raises:
    @hookimpl(tryfirst=True)
    def pycrm_assign_lead(self, lead: Lead, candidates: Sequence[User], ctx: RuleContext) -> Any:
        raise KeyError("territory table missing")


class ReturnsTuple:
    @hookimpl(tryfirst=True)
    def pycrm_assign_lead(self, lead: Lead, candidates: Sequence[User], ctx: RuleContext) -> Any:
        return (candidates[0].id, "a tuple is not an Assignment")


class ReturnsUser:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    @hookimpl(tryfirst=True)
    def pycrm_assign_lead(self, lead: Lead, candidates: Sequence[User], ctx: RuleContext) -> Any:
        return Assignment(self.user_id, "I like them")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("raises", "failed in pycrm_assign_lead: KeyError"),
        ("returns a tuple", "expected an Assignment or None"),
        ("returns a user on leave", "not an available candidate"),
        ("returns an inactive user", "not an available candidate"),
        ("returns an unknown id", "not an available candidate"),
    ],
)
def test_a_misbehaving_routing_plugin_is_a_configuration_error_and_writes_nothing(
    connect_crm: ConnectFn, kind: str, message: str
) -> None:
    crm = connect_crm(routing_rules=[{"name": "rr", "pick": "round_robin"}])
    with crm.session(crm.system_actor) as s:
        add_user(s, "Ann")
        away = add_user(s, "Ali Away", on_leave=True)
        gone = add_user(s, "Gus Gone")
        s.org.deactivate_user(gone.id)
    plugin: object = {
        "raises": Raises(),
        "returns a tuple": ReturnsTuple(),
        "returns a user on leave": ReturnsUser(away.id),
        "returns an inactive user": ReturnsUser(gone.id),
        "returns an unknown id": ReturnsUser("no-such-user"),
    }[kind]
    crm.plugins.register(plugin, name="broken_rules")
    before = stored_counts(crm)

    with crm.session(crm.system_actor) as s:
        with pytest.raises(ConfigurationError, match="broken_rules") as caught:
            s.leads.capture("Lena", source="webform", email="lena@example.com")
        assert message in str(caught.value)
        assert counts(s) == before
        assert s.leads.search("Lena") == []
    assert stored_counts(crm) == before
    # The built-in round-robin counter was not touched either.
    crm.plugins.unregister(name="broken_rules")
    assert (capture(crm).assignment_reason or "").endswith("turn 1 of 1")


class BadScore:
    @hookimpl
    def pycrm_score_lead(self, lead: Lead, ctx: RuleContext) -> Any:
        return "high"


class BadFollowups:
    @hookimpl
    def pycrm_followups(self, event: Any, ctx: RuleContext) -> Any:
        return "call them"


class BadApprovals:
    @hookimpl
    def pycrm_approvals(self, contract: Contract, ctx: RuleContext) -> Any:
        return ApprovalStep("legal", "a single step, not a list")


class RaisingScore:
    @hookimpl
    def pycrm_score_lead(self, lead: Lead, ctx: RuleContext) -> Any:
        raise ZeroDivisionError("no leads yet")


def test_a_plugin_that_raises_is_named_with_the_hook_it_failed_in(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    crm.plugins.register(RaisingScore(), name="divider")
    with pytest.raises(ConfigurationError) as caught:
        capture(crm)
    assert "plugin 'divider' failed in pycrm_score_lead: ZeroDivisionError" in str(caught.value)


class SingleFollowup:
    @hookimpl
    def pycrm_followups(self, event: Any, ctx: RuleContext) -> Any:
        return TaskSpec("one task, not a list", department="sales")


class FollowupsGenerator:
    @hookimpl
    def pycrm_followups(self, event: Any, ctx: RuleContext) -> Any:
        return (TaskSpec("lazily", department="sales") for _ in range(1))


@pytest.mark.parametrize(
    "plugin",
    [BadScore(), BadFollowups(), SingleFollowup(), FollowupsGenerator()],
    ids=["score", "followups", "followups-one", "followups-generator"],
)
def test_a_misbehaving_scoring_or_followups_plugin_stops_the_capture(
    connect_crm: ConnectFn, plugin: object
) -> None:
    crm = connect_crm()
    crm.plugins.register(plugin, name="sloppy")
    before = stored_counts(crm)
    with crm.session(crm.system_actor) as s:
        with pytest.raises(ConfigurationError, match="sloppy"):
            s.leads.capture("Lena", source="webform")
        assert counts(s) == before
    assert stored_counts(crm) == before


class FollowsUpEverything:
    """A plugin that wants a task for every event, task_created included."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl
    def pycrm_followups(self, event: Any, ctx: RuleContext) -> list[TaskSpec]:
        self.asked.append(event.name)
        return [TaskSpec(f"Follow up {event.name}", department="sales", kind="chase")]


def test_tasks_made_by_followups_do_not_beget_more_tasks(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    plugin = FollowsUpEverything()
    crm.plugins.register(plugin, name="chaser")
    with crm.session(crm.system_actor) as s:
        s.customers.create("Acme GmbH")
        chases = s.tasks.list(kind="chase")
    # One task for the customer_created event; its own task_created event asks for none.
    assert [t.title for t in chases] == ["Follow up customer_created"]
    assert plugin.asked == ["customer_created"]
    with crm.session(crm.system_actor) as s:
        assert [t.title for t in s.tasks.list(kind="chase")] == ["Follow up customer_created"]


# -- the other hooks ---------------------------------------------------------------


class Fixed:
    def __init__(self, points: int | None) -> None:
        self.points = points

    @hookimpl
    def pycrm_score_lead(self, lead: Lead, ctx: RuleContext) -> int | None:
        return self.points


def test_hook_pycrm_score_lead(connect_crm: ConnectFn) -> None:
    """Every plugin's points are added up; None abstains; no score at all leaves None."""
    crm = connect_crm()
    assert capture(crm, source="import").score == 5  # the built-in scorer alone
    crm.plugins.register(Fixed(7), name="plus_seven")
    crm.plugins.register(Fixed(-2), name="minus_two")
    crm.plugins.register(Fixed(None), name="abstains")
    assert capture(crm, source="import").score == 5 + 7 - 2

    crm.plugins.unregister(name="pycrm.scoring")
    assert capture(crm, source="import").score == 5  # 7 - 2
    crm.plugins.unregister(name="plus_seven")
    crm.plugins.unregister(name="minus_two")
    assert capture(crm, source="import").score is None

    crm.plugins.register(Fixed(40), name="forty")
    with crm.session(crm.system_actor) as s:  # the engine reports each plugin's part
        assert crm.rules.score_lead(s.leads.capture("X", source="api"), RuleContext(s)) == (
            40,
            [("forty", 40)],
        )


class TimingWrapper:
    """A pluggy new-style wrapper around the routing hook (e.g. to time or log decisions)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(wrapper=True)
    def pycrm_assign_lead(self, lead: Lead, candidates: Sequence[User], ctx: RuleContext) -> Any:
        result = yield
        self.seen.append(result)
        return result


class OldStyleWrapper:
    """A pluggy old-style hookwrapper around the routing hook."""

    @hookimpl(hookwrapper=True)
    def pycrm_assign_lead(self, lead: Lead, candidates: Sequence[User], ctx: RuleContext) -> Any:
        yield


@pytest.mark.parametrize("wrapper", [TimingWrapper, OldStyleWrapper], ids=["new", "old"])
def test_a_wrapper_hookimpl_is_refused_with_a_configuration_error_naming_it(
    connect_crm: ConnectFn, wrapper: type
) -> None:
    crm = connect_crm(routing_rules=[{"name": "first", "pick": "first"}])
    with crm.session(crm.system_actor) as s:
        add_user(s, "Ann")
    crm.plugins.register(wrapper(), name="timing")
    with pytest.raises(ConfigurationError, match="'timing': wrapper implementations"):
        capture(crm)


class SettingReader:
    """A plugin that reads settings through its context (and decides nothing)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(tryfirst=True)
    def pycrm_assign_lead(
        self, lead: Lead, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        self.seen += [
            [rule.name for rule in ctx.setting("routing_rules")],
            ctx.setting("first_contact_within"),
            ctx.setting("no_such_setting", "fallback"),
            (ctx.kind, ctx.dry_run, ctx.bulk),
        ]
        return None

    @hookimpl
    def pycrm_score_lead(self, lead: Lead, ctx: RuleContext) -> int | None:
        self.seen.append(("scoring", ctx.dry_run, ctx.bulk))
        return None


def test_a_plugin_reads_the_tenants_settings_and_the_crms_own_through_its_context(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(routing_rules=[{"name": "given"}])
    with crm.session(crm.system_actor) as s:
        s.settings.set("routing_rules", [{"name": "stored"}])
    reader = SettingReader()
    crm.plugins.register(reader, name="reader")
    capture(crm)
    assert reader.seen == [
        ("scoring", False, False),
        ["stored"],
        crm.first_contact_within,
        "fallback",
        ("lead", False, False),
    ]
    with crm.session(crm.system_actor) as s:
        s.leads.preview_assignment(company="Preview Co")
    assert reader.seen[-1] == ("lead", True, False)  # a preview is a dry run


class Desk:
    """A service-desk routing plugin: the ticket's product must be one of the user's skills."""

    @hookimpl
    def pycrm_assign_ticket(
        self, ticket: Any, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        assert ctx.kind == "ticket"
        for user in candidates:
            if ticket.product in user.skills:
                return Assignment(user.id, f"knows {ticket.product}", rule="product")
        return None


class RogueDesk:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    @hookimpl(tryfirst=True)
    def pycrm_assign_ticket(
        self, ticket: Any, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        return Assignment(self.user_id, "always them")


def test_hook_pycrm_assign_ticket(connect_crm: ConnectFn) -> None:
    crm = connect_crm(
        routing_rules=[{"name": "urgent", "when": {"priority": "high"}, "pick": "round_robin"}]
    )
    with crm.session(crm.system_actor) as s:
        sam = add_user(s, "Sam", department="service", skills=["router"])
        sue = add_user(s, "Sue", department="service", skills=["switch"])
    router = SimpleNamespace(id="T-1", product="router", priority="low")
    fridge = SimpleNamespace(id="T-2", product="fridge", priority="low")
    urgent = SimpleNamespace(id="T-3", product="fridge", priority="high")

    with crm.session(crm.system_actor) as s:
        desk = s.org.users(department="service", active=True)
        ctx = RuleContext(s, kind="ticket")
        # The built-in RuleBook routes tickets too, with its own counters.
        first = crm.rules.assign("pycrm_assign_ticket", urgent, desk, ctx)
        second = crm.rules.assign("pycrm_assign_ticket", urgent, desk, ctx)
        assert first is not None
        assert second is not None
        assert {first.assignment.owner_id, second.assignment.owner_id} == {sam.id, sue.id}
        assert first.decided_by == "pycrm.routing:urgent"
        assert crm.rules.assign("pycrm_assign_ticket", router, desk, ctx) is None

        crm.plugins.register(Desk(), name="desk")
        decision = crm.rules.assign("pycrm_assign_ticket", router, desk, ctx)
        assert decision is not None
        assert decision.assignment == Assignment(sam.id, "knows router", rule="product")
        assert decision.decided_by == "desk:product"
        assert crm.rules.assign("pycrm_assign_ticket", fridge, desk, ctx) is None
        # Lead routing is untouched by a ticket plugin.
        assert s.leads.preview_assignment() is None
        assert crm.rules.assign("pycrm_assign_ticket", router, [sue], ctx) is None
        # A ticket plugin must choose among the candidates too.
        crm.plugins.register(RogueDesk(sam.id), name="rogue_desk")
        with pytest.raises(ConfigurationError, match="rogue_desk"):
            crm.rules.assign("pycrm_assign_ticket", router, [sue], ctx)


class Handoff:
    """Creates a legal task when a deal is won, and a task for a tracked webinar visit."""

    @hookimpl
    def pycrm_followups(
        self, event: Event | BehaviourEvent, ctx: RuleContext
    ) -> list[TaskSpec] | None:
        if isinstance(event, Event) and event.name == "deal_won":
            return [
                TaskSpec(
                    f"Draft the contract for {event.after['name']}",  # type: ignore[index]
                    department="legal",
                    due_at=event.occurred_at,
                    priority=TaskPriority.HIGH,
                    kind="contract_draft",
                    related_type="deal",
                    related_id=event.record_id,
                )
            ]
        if isinstance(event, BehaviourEvent) and event.event == "attended_webinar":
            return [TaskSpec("Invite to a demo", department="sales", related_id=event.lead_id)]
        return None


def won_deal(s: Session, amount: str = "12000", name: str = "Acme rollout") -> str:
    """An open deal (the caller wins it) on a new customer."""
    customer = s.customers.create(f"{name} customer")
    deal = s.deals.create(name, customer_id=customer.id, amount=Money.of(amount, "EUR"))
    return deal.id


def test_hook_pycrm_followups(connect_crm: ConnectFn, fake_clock: FakeClock) -> None:
    crm = connect_crm()
    crm.plugins.register(Handoff(), name="handoff")
    with crm.session(crm.system_actor) as s:
        deal_id = won_deal(s)
        assert s.tasks.list(kind="contract_draft") == []
        s.deals.win(deal_id)
        tasks = s.tasks.list(kind="contract_draft")  # created in the same unit of work
        assert [(t.title, t.department, t.related_id, t.due_at) for t in tasks] == [
            ("Draft the contract for Acme rollout", "legal", deal_id, fake_clock.now())
        ]

    # Rolled back with the event that asked for it.
    with crm.session(crm.system_actor) as s:
        other = won_deal(s, name="Other rollout")
    rolled_back = crm.session(crm.system_actor)
    rolled_back.deals.win(other)
    assert len(rolled_back.tasks.list(kind="contract_draft")) == 2
    rolled_back.rollback()
    with crm.session(crm.system_actor) as s:
        assert len(s.tasks.list(kind="contract_draft")) == 1
        lead = s.leads.capture("Webby", source="webform")
        s.activities.track(None, "attended_webinar", lead_id=lead.id)
        assert [t.title for t in s.tasks.list(related_id=lead.id)] == ["Invite to a demo"]


def test_the_built_in_reminders_tell_the_deal_owner_of_each_payment(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    with crm.session(crm.system_actor) as s:
        sam = add_user(s, "Sam")
        customer = s.customers.create("Payer GmbH")
        deal = s.deals.create(
            "Payer line", customer_id=customer.id, amount=Money.of("1500", "EUR"), owner_id=sam.id
        )
        s.deals.win(deal.id)
        contract = s.contracts.sign(s.contracts.submit(s.contracts.draft(deal.id).id).id)
        receivable = s.receivables.list(contract_id=contract.id)[0]
        s.receivables.record_payment(receivable.id, Money.of("1234.5", "EUR"), reference="BANK-7")
        tasks = s.tasks.list(kind="payment_received")
    assert [(t.title, t.assignee_id, t.priority, t.related_id) for t in tasks] == [
        ("Payment received: 1,234.50 EUR (BANK-7)", sam.id, TaskPriority.LOW, receivable.id)
    ]


class Compliance:
    @hookimpl
    def pycrm_approvals(self, contract: Contract, ctx: RuleContext) -> list[ApprovalStep] | None:
        if contract.amount >= Money.of("10000", "EUR"):
            return [
                ApprovalStep("compliance", "export check above 10,000 EUR"),
                ApprovalStep("sales_manager", "large contract"),
            ]
        return None


def test_hook_pycrm_approvals(connect_crm: ConnectFn) -> None:
    crm = connect_crm()
    with crm.session(crm.system_actor) as s:
        small_deal, big_deal = won_deal(s, "5000", "Small"), won_deal(s, "12000", "Big")
        s.deals.win(small_deal)
        s.deals.win(big_deal)
        plain = s.contracts.submit(s.contracts.draft(big_deal).id)
        assert (plain.status, plain.approvals) == (ContractStatus.APPROVED, ())

    crm.plugins.register(Compliance(), name="compliance")
    with crm.session(crm.system_actor) as s:
        small = s.contracts.submit(s.contracts.draft(small_deal).id)
        assert small.status is ContractStatus.APPROVED  # the plugin abstained
        big = s.contracts.submit(s.contracts.draft(big_deal).id)
        assert big.status is ContractStatus.PENDING_APPROVAL
        assert [(a.role, a.reason) for a in big.approvals] == [
            ("compliance", "export check above 10,000 EUR"),
            ("sales_manager", "large contract"),
        ]
        # The built-in policy's steps are kept; a role asked twice is asked once.
        discounted = s.contracts.submit(s.contracts.draft(big_deal, discount_percent=15).id)
        roles = [a.role for a in discounted.approvals]
        assert sorted(roles) == ["compliance", "sales_manager"]
        assert len(roles) == len(set(roles))

    crm.plugins.register(BadApprovals(), name="bad_approvals")
    with crm.session(crm.system_actor) as s:
        draft = s.contracts.draft(big_deal)
        with pytest.raises(ConfigurationError, match="bad_approvals"):
            s.contracts.submit(draft.id)
        assert s.contracts.get(draft.id).status is ContractStatus.DRAFT


# -- RoutingRule.parse ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "x", "pick": "random"}, "pick must be one of round_robin, load_balanced, first"),
        ({"name": "x", "teams": "Sales"}, "unknown keys ['teams']"),
        ({"name": "x", "when": "region=DE"}, "'when' must be a mapping"),
        ({"pick": "first"}, "needs a 'name'"),
        ({"name": 7}, "needs a 'name'"),
        ("round_robin", "needs a 'name'"),
        (
            {"name": "x", "match": {"hobbies": "region"}},
            "match must map skills, regions, languages to record fields",
        ),
        ({"name": "x", "match": {"regions": ""}}, "match must map"),
        ({"name": "x", "match": {"regions": 5}}, "match must map"),
        ({"name": "x", "match": "region"}, "match must map"),
    ],
)
def test_routing_rule_parse_errors(rule: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RoutingRule.parse(rule)
    assert message in str(caught.value)


def test_routing_rule_parse_names_the_rule_and_round_trips() -> None:
    with pytest.raises(ConfigurationError, match="'vip'"):
        RoutingRule.parse({"name": "vip", "pick": "best"})
    rule = RoutingRule.parse(
        {"name": "dach", "when": {"region": "DACH"}, "team": "DACH", "skills": ["german"]}
    )
    assert rule == RoutingRule(
        "dach", when={"region": "DACH"}, team="DACH", skills=("german",), pick=None
    )
    assert RoutingRule.parse(rule) is rule
    assert rule.fallthrough is True


def test_a_routing_rule_reads_back_from_its_json_form_with_every_field() -> None:
    full = RoutingRule.parse(
        {
            "name": "full",
            "when": {"region": {"DACH", "CH"}, "min_score": 10},
            "team": "North",
            "users": ["u-1", "u-2"],
            "skills": ["aviation"],
            "regions": ["DACH"],
            "languages": ["de"],
            "match": {"regions": "region"},
            "pick": "load_balanced",
            "fallthrough": False,
        }
    )
    data = json.loads(json.dumps(full.to_json()))
    assert data == {
        "name": "full",
        "when": {"region": ["CH", "DACH"], "min_score": 10},
        "team": "North",
        "users": ["u-1", "u-2"],
        "skills": ["aviation"],
        "regions": ["DACH"],
        "languages": ["de"],
        "match": {"regions": "region"},
        "pick": "load_balanced",
        "fallthrough": False,
    }
    assert RoutingRule.parse(data).to_json() == data
    assert RoutingRule.parse({"name": "bare"}).to_json() == {"name": "bare"}
    mixed = RoutingRule("mixed", when={"code": frozenset({1, "1"})})  # sorted by repr
    assert mixed.to_json() == {"name": "mixed", "when": {"code": ["1", 1]}}


@pytest.mark.parametrize(
    "rule",
    [
        {"name": "x", "skills": "german", "pick": "first"},
        {"name": "x", "users": "u-1", "pick": "first"},
        {"name": "x", "fallthrough": "no"},
        {"name": "x", "team": 5},
        {"name": "x", "when": {"min_score": "60"}, "pick": "first"},
    ],
    ids=["skills-str", "users-str", "fallthrough-str", "team-int", "min_score-str"],
)
def test_routing_rule_parse_checks_value_types(rule: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="'x'"):
        RoutingRule.parse(rule)


@pytest.mark.parametrize("rules", ["first", b"first", {"name": "x"}], ids=["str", "bytes", "dict"])
def test_routing_rules_must_be_a_list_of_rules(rules: Any) -> None:
    with pytest.raises(ConfigurationError, match="routing rules must be a list of rules"):
        RuleBook(rules)


def test_bad_routing_rules_are_refused_when_the_crm_is_built(connect_crm: ConnectFn) -> None:
    with pytest.raises(ConfigurationError, match="unknown keys"):
        connect_crm(routing_rules=[{"name": "x", "pick": "first", "order": 1}])
    with pytest.raises(ConfigurationError, match="unique"):
        connect_crm(routing_rules=[{"name": "x"}, {"name": "x", "pick": "first"}])


# -- plugins installed as packages -------------------------------------------------------


class InstalledScorer:
    @hookimpl
    def pycrm_score_lead(self, lead: Lead, ctx: RuleContext) -> int:
        return 1


INSTALLED = InstalledScorer()
ANOTHER_INSTALLED = InstalledScorer()


def test_plugins_installed_under_the_pycrm_entry_point_group_are_registered_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    groups: list[str] = []
    installed = [
        EntryPoint("installed", "test_rules:INSTALLED", "pycrm"),
        # the same name twice (two distributions): the first one found stays
        EntryPoint("installed", "test_rules:ANOTHER_INSTALLED", "pycrm"),
    ]

    def entry_points(*, group: str) -> list[EntryPoint]:
        groups.append(group)
        return installed

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)  # what engine reads
    manager = engine.make_plugin_manager()
    assert groups == ["pycrm"]
    assert manager.get_plugin("installed") is INSTALLED
    assert manager.get_plugin("installed") is not ANOTHER_INSTALLED
    assert engine.make_plugin_manager(load_entry_points=False).get_plugin("installed") is None
    assert groups == ["pycrm"]

    installed.append(EntryPoint("broken", "no_such_module_of_pycrm:rules", "pycrm"))
    with pytest.raises(ConfigurationError) as caught:
        engine.make_plugin_manager()
    assert "plugin 'broken' (no_such_module_of_pycrm:rules) could not be loaded" in str(
        caught.value
    )
