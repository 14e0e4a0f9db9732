"""The permission matrix: every persona × operation × owner relation, by real service calls.

The expected outcome of each cell comes from ``permission_matrix`` (computed
from ``DEFAULT_POLICY.to_dict()``, not from the Guard). One world per backend
holds, for every persona, records owned by the persona, a team-mate, a
department colleague and an outsider; each test acts in a session that is
rolled back, so the world stays as built.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import pycrm
from permission_matrix import (
    DENIED,
    DESIGN_STATEMENTS,
    HIDDEN,
    OK,
    OWNED,
    PERSONA,
    PERSONAS,
    Case,
    cases,
    has_grant,
    policy_allows,
)
from pycrm import Money
from pycrm.domain.contracts import Contract
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.deals import Deal
from pycrm.domain.leads import Lead
from pycrm.domain.org import User
from pycrm.domain.permissions import DEFAULT_POLICY
from pycrm.domain.receivables import Receivable
from pycrm.domain.tasks import Task
from pycrm.domain.tickets import Ticket
from pycrm.errors import NotFound, PermissionDenied
from pycrm.session import Session
from pycrm.testing import FakeClock

POLICY = DEFAULT_POLICY.to_dict()
CASES = list(cases(POLICY))


@dataclass
class Account:
    """Records of every kind owned by one user (and a customer to hang them on)."""

    owner: User
    customer: Customer
    contact: Contact
    lead: Lead
    deal: Deal
    won: Deal
    draft: Contract
    pending: Contract
    receivable: Receivable
    task: Task
    ticket: Ticket
    activity: Any = None

    def record(self, resource: str) -> Any:
        return {
            "customer": self.customer,
            "contact": self.contact,
            "activity": self.activity,
            "lead": self.lead,
            "deal": self.deal,
            "contract": self.draft,
            "receivable": self.receivable,
            "task": self.task,
            "ticket": self.ticket,
            "user": self.owner,
        }[resource]


@dataclass
class World:
    crm: pycrm.CRM
    actors: dict[str, User] = field(default_factory=dict)
    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    spare: User | None = None
    serial: Iterator[int] = field(default_factory=itertools.count)

    def next(self) -> int:
        return next(self.serial)


def _account(s: Session, owner: User, tag: str) -> Account:
    eur = Money.of("1000", "EUR")
    customer = s.customers.create(f"Account {tag}", owner_id=owner.id)
    contact = s.contacts.create(f"Person {tag}", customer_id=customer.id, owner_id=owner.id)
    lead = s.leads.capture(f"Lead {tag}", source="webform", company=f"Prospect {tag}")
    lead = s.leads.assign(lead.id, owner.id)
    deal = s.deals.create(f"Deal {tag}", customer_id=customer.id, amount=eur, owner_id=owner.id)
    won = s.deals.create(f"Won {tag}", customer_id=customer.id, amount=eur, owner_id=owner.id)
    s.deals.win(won.id)
    draft = s.contracts.draft(won.id, title=f"Draft {tag}", standard_terms=False)
    pending = s.contracts.draft(
        won.id, title=f"Pending {tag}", discount_percent=15, standard_terms=False
    )
    pending = s.contracts.submit(pending.id)
    assert [step.role for step in pending.approvals] == ["sales_manager", "legal"]
    signed = s.contracts.submit(s.contracts.draft(won.id, title=f"Signed {tag}").id)
    signed = s.contracts.sign(signed.id)
    (receivable,) = s.receivables.list(contract_id=signed.id)
    task = s.tasks.create(f"Task {tag}", assignee_id=owner.id)
    ticket = s.tickets.open(f"Ticket {tag}", channel="email", customer_id=customer.id)
    ticket = s.tickets.assign(ticket.id, owner.id)
    return Account(
        owner, customer, contact, lead, deal, won, draft, pending, receivable, task, ticket
    )


def _build(crm: pycrm.CRM) -> World:
    world = World(crm)
    owners: dict[tuple[str, str], User] = {}
    with crm.session(actor=crm.system_actor) as s:
        s.org.create_department("partners", "Partners")
        world.spare = s.org.create_user(
            name="Spare Hand", email="spare@matrix.example", department="sales"
        )
        for p in PERSONAS:
            team = s.org.create_team(f"Team {p.key}", p.department)

            def user(name: str, department: str, teams: list[str], p: Any = p) -> User:
                return s.org.create_user(
                    name=f"{name} ({p.key})",
                    email=f"{name.lower()}.{p.key}@matrix.example",
                    department=department,
                    roles=list(p.roles) if name == "Actor" else [],
                    team_ids=teams,
                )

            actor = user("Actor", p.department, [team.id])
            world.actors[p.key] = actor
            owners[p.key, "own"] = actor
            owners[p.key, "team"] = user("Mate", p.department, [team.id])
            owners[p.key, "department"] = user("Colleague", p.department, [])
            owners[p.key, "outsider"] = user("Outsider", "partners", [])
        for (key, relation), owner in owners.items():
            world.accounts[key, relation] = _account(s, owner, f"#{key}/{relation}#")
    for (key, relation), account in world.accounts.items():
        with crm.session(actor=account.owner.id) as s:
            account.activity = s.activities.log(
                "call", f"Call #{key}/{relation}#", customer_id=account.customer.id
            )
    return world


@pytest.fixture(
    scope="module",
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    settings: dict[str, Any] = {"clock": FakeClock(), "on_duplicate": "allow"}
    engine: sa.Engine | None = None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        crm = pycrm.connect("memory://", **settings)
    elif request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("matrix") / "crm.db"
        crm = pycrm.connect(f"sqlite:///{path}", **settings)
    else:
        engine = request.getfixturevalue("pg_engine")
        crm = pycrm.connect(engine, schema=schema, **settings)
    yield _build(crm)
    crm.close()
    if engine is not None:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


# -- the calls ---------------------------------------------------------------------

Perform = Callable[[Session, Account, World], Any]

GET: dict[str, Callable[[Session, str], Any]] = {
    "customer": lambda s, id: s.customers.get(id),
    "contact": lambda s, id: s.contacts.get(id),
    "activity": lambda s, id: s.activities.get(id),
    "lead": lambda s, id: s.leads.get(id),
    "deal": lambda s, id: s.deals.get(id),
    "contract": lambda s, id: s.contracts.get(id),
    "receivable": lambda s, id: s.receivables.get(id),
    "task": lambda s, id: s.tasks.get(id),
    "ticket": lambda s, id: s.tickets.get(id),
    "user": lambda s, id: s.org.get_user(id),
}

LIST: dict[str, Callable[[Session, Account], list[Any]]] = {
    "customer": lambda s, a: s.customers.search(a.customer.name),
    "contact": lambda s, a: s.contacts.search(a.contact.name),
    "activity": lambda s, a: s.activities.list(customer_id=a.customer.id),
    "lead": lambda s, a: s.leads.search(a.lead.name),
    "deal": lambda s, a: s.deals.list(customer_id=a.customer.id),
    "contract": lambda s, a: s.contracts.list(customer_id=a.customer.id),
    "receivable": lambda s, a: s.receivables.list(customer_id=a.customer.id),
    "task": lambda s, a: s.tasks.list(assignee_id=a.owner.id),
    "ticket": lambda s, a: s.tickets.list(customer_id=a.customer.id),
    "user": lambda s, a: s.org.users(department=a.owner.department),
}

EUR10 = Money.of("10", "EUR")

WRITES: dict[str, Perform] = {
    "customer.create": lambda s, a, w: s.customers.create(
        f"New customer {w.next()}", owner_id=a.owner.id
    ),
    "customer.update": lambda s, a, w: s.customers.update(a.customer.id, industry="changed"),
    "customer.archive": lambda s, a, w: s.customers.archive(a.customer.id),
    "contact.create": lambda s, a, w: s.contacts.create(
        f"New contact {w.next()}", customer_id=a.customer.id, owner_id=a.owner.id
    ),
    "contact.update": lambda s, a, w: s.contacts.update(a.contact.id, title="changed"),
    "contact.archive": lambda s, a, w: s.contacts.archive(a.contact.id),
    "activity.log": lambda s, a, w: s.activities.log("note", "New note", customer_id=a.customer.id),
    "activity.update": lambda s, a, w: s.activities.update(a.activity.id, subject="changed"),
    "lead.capture": lambda s, a, w: s.leads.capture(f"New lead {w.next()}", source="api"),
    "lead.update": lambda s, a, w: s.leads.update(a.lead.id, needs="changed"),
    "lead.assign": lambda s, a, w: s.leads.assign(a.lead.id, w.spare.id),  # type: ignore[union-attr]
    "deal.create": lambda s, a, w: s.deals.create(
        f"New deal {w.next()}", customer_id=a.customer.id, amount=EUR10, owner_id=a.owner.id
    ),
    "deal.update": lambda s, a, w: s.deals.update(a.deal.id, name=f"Renamed {w.next()}"),
    "contract.draft": lambda s, a, w: s.contracts.draft(a.won.id),
    "contract.submit": lambda s, a, w: s.contracts.submit(a.draft.id),
    "contract.approve": lambda s, a, w: s.contracts.approve(a.pending.id),
    "receivable.pay": lambda s, a, w: s.receivables.record_payment(
        a.receivable.id, EUR10, reference=f"BANK-{w.next()}"
    ),
    "receivable.write_off": lambda s, a, w: s.receivables.write_off(a.receivable.id, "bad debt"),
    "task.create": lambda s, a, w: s.tasks.create(f"New task {w.next()}", assignee_id=a.owner.id),
    "task.complete": lambda s, a, w: s.tasks.complete(a.task.id),
    "ticket.open": lambda s, a, w: s.tickets.open(f"New ticket {w.next()}", channel="phone"),
    "ticket.start": lambda s, a, w: s.tickets.start(a.ticket.id),
    "ticket.assign": lambda s, a, w: s.tickets.assign(a.ticket.id, w.spare.id),  # type: ignore[union-attr]
    "user.create": lambda s, a, w: s.org.create_user(
        name="New Hire", email=f"hire{w.next()}@matrix.example", department="sales"
    ),
    "user.update": lambda s, a, w: s.org.update_user(a.owner.id, name=f"Renamed {w.next()}"),
}


def _read(s: Session, account: Account, resource: str) -> str:
    """OK if get finds the record and the list shows it; else NOT FOUND (and both agree)."""
    record = account.record(resource)
    try:
        got = GET[resource](s, record.id)
    except NotFound:
        got = None
    try:
        listed = {r.id for r in LIST[resource](s, account)}
    except PermissionDenied:
        listed = set()
    if got is not None:
        assert got.id == record.id
    assert (got is not None) == (record.id in listed), "get and list disagree"
    return OK if got is not None else HIDDEN


def _denials(world: World, actor: User) -> int:
    with world.crm.session(actor=world.crm.system_actor) as s:
        return sum(
            1 for e in s.audit.find(actor_id=actor.id, limit=1000) if e.action.startswith("denied:")
        )


def _run(world: World, case: Case) -> str:
    relation = "own" if case.relation == "nobody" else case.relation
    account = world.accounts[case.persona.key, relation]
    s = world.crm.session(actor=world.actors[case.persona.key].id)
    try:
        if case.op.action == "read":
            return _read(s, account, case.op.resource)
        try:
            WRITES[case.op.key](s, account, world)
        except PermissionDenied:
            return DENIED
        except NotFound:
            return HIDDEN
        return OK
    finally:
        s.rollback()


@pytest.mark.parametrize("case", CASES, ids=[c.sentence for c in CASES])
def test_matrix(world: World, case: Case) -> None:
    actor = world.actors[case.persona.key]
    before = _denials(world, actor)
    assert _run(world, case) == case.outcome
    after = _denials(world, actor)
    if case.outcome == DENIED and not case.by_gate:
        # A refusal by the policy is audited, although the session rolled back.
        assert after == before + 1
        with world.crm.session(actor=world.crm.system_actor) as s:
            found = s.audit.find(
                actor_id=actor.id, action=f"denied:{case.op.action}", record_type=case.op.resource
            )
        assert found
    elif case.outcome == OK:
        assert after == before


def test_matrix_covers_every_persona_resource_and_outcome() -> None:
    resources = {c.op.resource for c in CASES}
    assert resources == {
        "customer", "contact", "activity", "lead", "deal", "contract", "receivable", "task",
        "ticket", "user",
    }  # fmt: skip
    assert {c.persona.key for c in CASES} == {p.key for p in PERSONAS}
    assert {c.outcome for c in CASES} == {OK, DENIED, HIDDEN}
    # every owned-record operation is tried for every relation
    for c in CASES:
        assert set(c.op.relations) in ({"own"}, {"nobody"}, set(OWNED))
    assert len({c.sentence for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("persona", "resource", "action", "relation", "allowed"),
    DESIGN_STATEMENTS,
    ids=[
        f"{PERSONA[p].label} {'may' if ok else 'may not'} {a} a {r} "
        f"{'of their own' if rel == 'own' else 'owned by ' + rel}"
        for p, r, a, rel, ok in DESIGN_STATEMENTS
    ],
)
def test_default_policy_says_what_the_design_says(
    persona: str, resource: str, action: str, relation: str, allowed: bool
) -> None:
    state = FRESH_STATE.get(resource, {})
    assert policy_allows(POLICY, PERSONA[persona], resource, action, relation, state) is allowed


#: The state a record starts in, which the design's sentences speak of.
FRESH_STATE = {"deal": {"status": "open"}, "lead": {"status": "new"}}


@pytest.mark.parametrize("status", ["assigned", "contacted", "qualified"])
def test_once_sales_works_a_lead_marketing_reads_it_but_no_longer_changes_it(status: str) -> None:
    marketer, state = PERSONA["marketer"], {"status": status}
    assert policy_allows(POLICY, marketer, "lead", "read", "outsider", state)
    assert not policy_allows(POLICY, marketer, "lead", "update", "outsider", state)
    assert not policy_allows(POLICY, marketer, "lead", "delete", "outsider", state)
    assert policy_allows(POLICY, marketer, "lead", "delete", "outsider", FRESH_STATE["lead"])


# -- denials are audited even when the session rolls back --------------------------


def _world_account(world: World, persona: str, relation: str = "own") -> Account:
    return world.accounts[persona, relation]


Attempt = Callable[[Session, World], Any]

ATTEMPTS: list[Any] = [
    pytest.param(
        "marketer", "update", "deal",
        lambda s, w: s.deals.update(_world_account(w, "marketer").deal.id, name="x"),
        id="a marketer updating a deal",
    ),
    pytest.param(
        "sales_rep", "create", "lead",
        lambda s, w: s.leads.capture("Sneaky Lead", source="api"),
        id="a sales rep capturing a lead",
    ),
    pytest.param(
        "marketer", "read", "receivable",
        lambda s, w: s.receivables.list(),
        id="a marketer listing receivables",
    ),
    pytest.param(
        "sales_rep", "delete", "customer",
        lambda s, w: s.customers.archive(_world_account(w, "sales_rep").customer.id),
        id="a sales rep archiving a customer",
    ),
    pytest.param(
        "sales_rep", "assign", "lead",
        lambda s, w: s.leads.assign(_world_account(w, "sales_rep").lead.id, w.spare.id),
        id="a sales rep reassigning a lead",
    ),
    pytest.param(
        "marketer", "update", "user",
        lambda s, w: s.org.update_user(w.actors["marketer"].id, name="Boss"),
        id="a marketer updating a user",
    ),
    pytest.param(
        "sales_rep", "update", "receivable",
        lambda s, w: s.receivables.record_payment(
            _world_account(w, "sales_rep").receivable.id, EUR10, reference="BANK-x"
        ),
        id="a sales rep recording a payment",
    ),
    pytest.param(
        "analyst", "approve", "contract",
        lambda s, w: s.contracts.approve(_world_account(w, "analyst").pending.id),
        id="an analyst approving a contract",
    ),
    pytest.param(
        "sales_rep", "update", "activity",
        lambda s, w: s.activities.update(_world_account(w, "sales_rep", "team").activity.id,
                                         subject="x"),
        id="a sales rep correcting a team-mate's activity",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("persona", "action", "resource", "attempt"), ATTEMPTS)
def test_every_denial_is_audited_even_when_the_session_rolls_back(
    world: World, persona: str, action: str, resource: str, attempt: Attempt
) -> None:
    actor = world.actors[persona]
    before = _denials(world, actor)
    tag = f"Rolled back {world.next()}"

    class Boom(Exception):
        pass

    def work_then_fail() -> None:
        with world.crm.session(actor=actor.id) as s:
            s.activities.log("note", tag, customer_id=_world_account(world, persona).customer.id)
            with pytest.raises(PermissionDenied):
                attempt(s, world)
            raise Boom  # the session rolls back

    with pytest.raises(Boom):
        work_then_fail()
    with world.crm.session(actor=world.crm.system_actor) as s:
        # the session's own work is gone …
        logged = s.activities.list(customer_id=_world_account(world, persona).customer.id)
        assert tag not in {a.subject for a in logged}
        # … but the refused attempt is on record, under the policy action
        found = s.audit.find(actor_id=actor.id, action=f"denied:{action}", limit=1000)
    assert any(e.record_type == resource for e in found)
    assert _denials(world, actor) == before + 1


def test_a_deactivated_user_trying_to_open_a_session_is_audited(world: World) -> None:
    with world.crm.session(actor=world.crm.system_actor) as s:
        ghost = s.org.create_user(
            name="Ghost", email=f"ghost{world.next()}@matrix.example", department="sales"
        )
        s.org.deactivate_user(ghost.id)
    with pytest.raises(PermissionDenied):
        world.crm.session(actor=ghost.id)
    assert _denials(world, ghost) == 1


def test_has_grant_helper_agrees_with_lists_raising(world: World) -> None:
    """A persona with no read grant at all gets PermissionDenied from a list call."""
    for persona in PERSONAS:
        s = world.crm.session(actor=world.actors[persona.key].id)
        try:
            granted = has_grant(POLICY, persona.policy_roles, "receivable", "read")
            if granted:
                s.receivables.list()
            else:
                with pytest.raises(PermissionDenied):
                    s.receivables.list()
        finally:
            s.rollback()
