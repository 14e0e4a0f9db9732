"""Property: no read path returns a row or a field the policy forbids.

For random organisations (departments, roles, teams, team managers) and random
records with random owners, every list, search, count, 360 view and get of
every user is compared with what the policy's *data* allows, computed here
from ``Policy.to_dict()`` and the owner fields — independently of the Guard.
Each example lives in a tenant of its own, on the memory adapter and SQLite.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycrm
from permission_matrix import SCOPES, hidden_fields
from pycrm import Money
from pycrm.domain.activities import Activity
from pycrm.domain.contracts import Contract
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.deals import Deal
from pycrm.domain.leads import Lead
from pycrm.domain.org import Team, User
from pycrm.domain.permissions import DEFAULT_POLICY, Policy
from pycrm.domain.receivables import Receivable
from pycrm.domain.tasks import Task
from pycrm.domain.tickets import Ticket
from pycrm.errors import NotFound, PermissionDenied
from pycrm.serialization import to_dict
from pycrm.session import Session
from pycrm.testing import FakeClock


def _team_customers() -> dict[str, Any]:
    data = DEFAULT_POLICY.to_dict()
    data["grants"] = [
        g
        for g in data["grants"]
        if not (g["roles"] == ["*"] and "customer" in g["resources"] and "read" in g["actions"])
    ]
    data["grants"] += [
        {"roles": ["*"], "resources": ["assessment"], "actions": ["read"], "scope": "all"},
        {"roles": ["sales"], "resources": ["customer"], "actions": ["read"], "scope": "team"},
        {"roles": ["service"], "resources": ["customer", "contact"], "actions": ["read"],
         "scope": "department"},
        {"roles": ["marketing"], "resources": ["contact"], "actions": ["read"], "scope": "own"},
    ]  # fmt: skip
    return data


POLICIES: dict[str, Mapping[str, Any]] = {
    "default": DEFAULT_POLICY.to_dict(),
    "team customers": _team_customers(),
}

#: Who owns a record of each kind (what own/team/department scopes measure), by resource.
OWNER = {
    "customer": "owner_id",
    "contact": "owner_id",
    "activity": "author_id",
    "lead": "owner_id",
    "deal": "owner_id",
    "contract": "owner_id",
    "receivable": "owner_id",
    "task": "assignee_id",
    "ticket": "assignee_id",
    "user": "id",
}
KINDS: dict[str, type[Any]] = {
    "customer": Customer,
    "contact": Contact,
    "activity": Activity,
    "lead": Lead,
    "deal": Deal,
    "contract": Contract,
    "receivable": Receivable,
    "task": Task,
    "ticket": Ticket,
    "user": User,
}

DEPARTMENTS = ["sales", "sales", "marketing", "service", "finance", "legal", "analytics", "admin"]
ROLES = ["sales_manager", "legal", "sales_rep", "admin", "finance_manager"]


# -- the model: what the policy data allows ----------------------------------------------


@dataclass(frozen=True)
class Person:
    id: str
    department: str
    roles: frozenset[str]
    teams: frozenset[str]

    @property
    def policy_roles(self) -> frozenset[str]:
        return self.roles | {self.department}


class Model:
    """The expected view of one actor, from the policy data and the org chart."""

    def __init__(
        self, policy: Mapping[str, Any], actor: Person, people: list[Person], managed: set[str]
    ) -> None:
        self.policy = policy
        self.actor = actor
        teams = set(actor.teams) | managed
        self.team = {p.id for p in people if p.teams & teams} | {actor.id}
        self.department = {p.id for p in people if p.department == actor.department} | {actor.id}

    def _reaches(self, grant: Mapping[str, Any], resource: str, record: Any) -> bool:
        scope = grant["scope"]
        owner = getattr(record, OWNER[resource])
        if scope == "none":
            return False
        if scope == "own" and owner != self.actor.id:
            return False
        if scope == "team" and owner not in self.team:
            return False
        if scope == "department" and owner not in self.department:
            queue = getattr(record, "department", None) if resource == "task" else None
            if queue is None or queue != self.actor.department:
                return False
        for field, value in grant.get("when", {}).items():
            if _plain(getattr(record, field)) != value:
                return False
        unless = grant.get("unless", {})
        return not (unless and all(_plain(getattr(record, f)) == v for f, v in unless.items()))

    def _grants(self, resource: str) -> Iterator[Mapping[str, Any]]:
        roles = self.actor.policy_roles
        for g in self.policy["grants"]:
            if (
                ("*" in g["roles"] or roles & set(g["roles"]))
                and ("*" in g["resources"] or resource in g["resources"])
                and ("*" in g["actions"] or "read" in g["actions"])
                and SCOPES.index(g["scope"]) > 0
            ):
                yield g

    def may_list(self, resource: str) -> bool:
        return any(True for _ in self._grants(resource))

    def sees(self, resource: str, record: Any) -> bool:
        if resource == "activity" and record.private and record.author_id != self.actor.id:
            return False
        return any(self._reaches(g, resource, record) for g in self._grants(resource))

    def hidden(self, resource: str) -> set[str]:
        return hidden_fields(self.policy, self.actor.policy_roles, resource)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


# -- building a random world -------------------------------------------------------------


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def engines(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, pycrm.CRM]]:
    """One CRM per policy variant on the backend; every example uses a fresh tenant."""
    crms: dict[str, pycrm.CRM] = {}
    for i, (name, policy) in enumerate(POLICIES.items()):
        settings_: dict[str, Any] = {
            "clock": FakeClock(),
            "on_duplicate": "allow",
            "policy": Policy.from_dict(policy),
        }
        if request.param == "memory":
            crms[name] = pycrm.connect("memory://", **settings_)
        else:
            path: Path = tmp_path_factory.mktemp(f"props{i}") / "crm.db"
            crms[name] = pycrm.connect(f"sqlite:///{path}", **settings_)
    yield crms
    for crm in crms.values():
        crm.close()


_tenants = itertools.count()


def _owner(data: st.DataObject, people: list[User], label: str) -> str | None:
    pick = data.draw(st.none() | st.sampled_from(people), label=label)
    return None if pick is None else pick.id


def _build(
    crm: pycrm.CRM, tenant: str, data: st.DataObject
) -> tuple[list[Person], dict[str, set[str]]]:
    eur = Money.of("300", "EUR")
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        teams = [s.org.create_team(f"Team {i}", "sales") for i in range(2)]
        n = data.draw(st.integers(2, 5), label="users")
        users: list[User] = []
        for i in range(n):
            users.append(
                s.org.create_user(
                    name=f"User {i}",
                    email=f"user{i}@props.example",
                    department=data.draw(st.sampled_from(DEPARTMENTS), label=f"dept{i}"),
                    roles=sorted(
                        data.draw(st.frozensets(st.sampled_from(ROLES), max_size=2), label="roles")
                    ),
                    team_ids=[
                        t.id
                        for t in teams
                        if data.draw(st.booleans(), label=f"user{i} in {t.name}")
                    ],
                )
            )
        managed: dict[str, set[str]] = {u.id: set() for u in users}
        for team in teams:
            manager = _owner(data, users, f"manager of {team.name}")
            if manager is not None:
                s._uow.repo(Team).replace(
                    attrs.evolve(team, manager_id=manager, version=team.version + 1), team.version
                )
                managed[manager].add(team.id)
        for c in range(data.draw(st.integers(1, 3), label="customers")):
            customer = s.customers.create(
                f"Customer {c}", owner_id=_owner(data, users, f"customer{c} owner")
            )
            for k in range(data.draw(st.integers(0, 2), label="contacts")):
                s.contacts.create(
                    f"Contact {c}.{k}",
                    customer_id=customer.id,
                    owner_id=_owner(data, users, "contact owner"),
                )
            for k in range(data.draw(st.integers(0, 2), label="deals")):
                deal = s.deals.create(
                    f"Deal {c}.{k}",
                    customer_id=customer.id,
                    amount=eur,
                    owner_id=_owner(data, users, "deal owner"),
                )
                if data.draw(st.booleans(), label="won"):
                    s.deals.win(deal.id)
                    if data.draw(st.booleans(), label="signed"):
                        contract = s.contracts.draft(
                            deal.id, instalments=2, first_due=date(2026, 2, 1),
                            list_amount=Money.of("400", "EUR"),
                        )  # fmt: skip
                        s.contracts.submit(contract.id)
                        s.contracts.sign(contract.id)
                        first = s.receivables.list(contract_id=contract.id)[0]
                        s.receivables.record_payment(
                            first.id, Money.of("200", "EUR"), reference=f"REF-{tenant}-{c}-{k}",
                            allow_overpayment=True,
                        )  # fmt: skip
            if data.draw(st.booleans(), label="ticket"):
                ticket = s.tickets.open(f"Ticket {c}", channel="email", customer_id=customer.id)
                agent = _owner(data, users, "ticket agent")
                if agent is not None:
                    s.tickets.assign(ticket.id, agent)
        for k in range(data.draw(st.integers(0, 2), label="leads")):
            lead = s.leads.capture(f"Lead {k}", source="webform")
            owner = _owner(data, users, "lead owner")
            if owner is not None:
                s.leads.assign(lead.id, owner)
        for k in range(data.draw(st.integers(0, 2), label="tasks")):
            assignee = _owner(data, users, "task assignee")
            queue = data.draw(st.sampled_from(DEPARTMENTS), label="task queue")
            s.tasks.create(
                f"Task {k}", assignee_id=assignee, department=queue if assignee is None else None
            )
        customers = s._uow.repo(Customer).find()
    for k in range(data.draw(st.integers(0, 3), label="activities")):
        author = data.draw(st.sampled_from(users), label="author")
        with crm.session(actor=author.id, tenant=tenant) as s:
            s.activities.log(
                "note",
                f"Note {k}",
                customer_id=data.draw(st.sampled_from(customers), label="about").id,
                private=data.draw(st.booleans(), label="private"),
            )
    people = [Person(u.id, u.department, frozenset(u.roles), frozenset(u.team_ids)) for u in users]
    return people, managed


# -- the read paths ----------------------------------------------------------------------

Lister = Callable[[Session], list[Any]]

LISTS: dict[str, list[tuple[str, Lister]]] = {
    "customer": [("customers.search", lambda s: s.customers.search(limit=1000))],
    "contact": [("contacts.search", lambda s: s.contacts.search(limit=1000))],
    "activity": [("activities.list", lambda s: s.activities.list(limit=1000))],
    "lead": [("leads.search", lambda s: s.leads.search(limit=1000))],
    "deal": [("deals.list", lambda s: s.deals.list(limit=1000))],
    "contract": [("contracts.list", lambda s: s.contracts.list(limit=1000))],
    "receivable": [("receivables.list", lambda s: s.receivables.list(limit=1000))],
    "task": [("tasks.list", lambda s: s.tasks.list(status=None, limit=1000))],
    "ticket": [("tickets.list", lambda s: s.tickets.list(limit=1000))],
    "user": [("org.users", lambda s: s.org.users())],
}

GETTERS: dict[str, Callable[[Session, str], Any]] = {
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

VIEW_SECTIONS = {
    "contacts": "contact",
    "activities": "activity",
    "leads": "lead",
    "deals": "deal",
    "contracts": "contract",
    "receivables": "receivable",
    "tickets": "ticket",
}


def _check_fields(model: Model, resource: str, got: Any, truth: Any, where: str) -> None:
    """Hidden fields are empty; every other field is exactly what is stored."""
    hidden = model.hidden(resource)
    for field in hidden:
        assert getattr(got, field) in (None, ()), f"{where}: hidden {resource}.{field} returned"
    shown, stored = to_dict(got), to_dict(truth)
    for field in hidden:
        shown.pop(field, None)
        stored.pop(field, None)
    assert shown == stored, f"{where}: {resource} {got.id} differs from the stored record"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_read_path_returns_a_row_or_field_the_policy_forbids(
    engines: dict[str, pycrm.CRM], data: st.DataObject
) -> None:
    variant = data.draw(st.sampled_from(sorted(POLICIES)), label="policy")
    crm, policy = engines[variant], POLICIES[variant]
    tenant = f"p{next(_tenants)}"
    people, managed = _build(crm, tenant, data)
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        truth = {kind: {r.id: r for r in s._uow.repo(cls).find()} for kind, cls in KINDS.items()}
    for person in people:
        model = Model(policy, person, people, managed[person.id])
        expected = {
            kind: {id for id, r in rows.items() if model.sees(kind, r)}
            for kind, rows in truth.items()
        }
        with crm.session(actor=person.id, tenant=tenant) as s:
            for kind, listers in LISTS.items():
                for name, lister in listers:
                    if not model.may_list(kind):
                        with pytest.raises(PermissionDenied):
                            lister(s)
                        continue
                    rows = lister(s)
                    assert {r.id for r in rows} == expected[kind], (name, person)
                    for row in rows:
                        _check_fields(model, kind, row, truth[kind][row.id], name)
            if model.may_list("customer"):
                assert s.customers.count() == len(expected["customer"])
            for kind, rows in truth.items():
                for id, record in rows.items():
                    if id in expected[kind]:
                        _check_fields(model, kind, GETTERS[kind](s, id), record, "get")
                    else:
                        with pytest.raises(NotFound):
                            GETTERS[kind](s, id)
            for customer_id in expected["customer"]:
                view = s.customers.view(customer_id)
                _check_fields(model, "customer", view.customer, truth["customer"][customer_id],
                              "360 view")  # fmt: skip
                for section, kind in VIEW_SECTIONS.items():
                    shown = getattr(view, section)
                    want = {
                        id
                        for id in expected[kind]
                        if truth[kind][id].customer_id == customer_id
                        and _plain(getattr(truth[kind][id], "status", "active")) != "archived"
                    }
                    assert {r.id for r in shown} == want, (section, person)
                    for row in shown:
                        _check_fields(model, kind, row, truth[kind][row.id], f"360 {section}")
            for customer_id in set(truth["customer"]) - expected["customer"]:
                with pytest.raises(NotFound):
                    s.customers.view(customer_id)
