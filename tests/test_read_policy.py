"""Property: no public method returns what the permission policy forbids.

Every public method of every service on a :class:`~pycrm.session.Session`
(and the session's own public calls, such as ``read``) is found by
introspection and must be classified in :data:`TABLE`: how to call it with
arguments drawn from a generated world and how to judge what it returns, or
why it returns nothing readable. A method missing from the table fails
:func:`test_every_public_service_method_is_classified`.

For random policies (grants with random roles, resources, actions, scopes and
``when``/``unless`` conditions; field rules hiding fields), random users in
departments and teams, and a random world of records, each user calls every
read path, and a sample of the write paths, and everything that comes back is
checked against an oracle computed here from the policy's *data*, the org
chart and the raw stored records — never by asking the Guard:

- a record of kind T comes back only if a grant for the user's roles (their
  roles plus their department) covers (T, read) with a scope that reaches it
  and conditions that hold; a private activity only for its author; a
  document only if the record it is attached to may be read, and, when it
  is shared (``readable_by``), only for its readers and its uploader; a
  deal's stage visits only with the deal; an audit entry
  only if the ``audit_entry`` grant allows it and its subject may be read;
- hidden fields (field rules, custom fields whose ``readable_by`` leaves the
  user out) are empty everywhere: records, audit snapshots and changes,
  history, ``as_of``, merge before-images, candidates' evidence, cleansing
  issues;
- a call that filters, groups or measures on a hidden field is refused;
- figures (analytics, segment counts) equal the same figure computed here
  over only the records the user may read (each calculator is first checked
  against the system actor's figures, so a wrong calculator fails loudly).

``PermissionDenied`` and ``NotFound`` are always acceptable answers. The
failure lists the leaks of every example, by method. Below the property, one
deterministic test per side path known to have leaked.
``PYCRM_POLICY_EXAMPLES`` (default 20) sets the number of examples: the memory
adapter runs twice that many, SQLite that many, PostgreSQL half (see
:data:`SHARE`).
"""

from __future__ import annotations

import collections
import csv
import functools
import inspect
import io
import itertools
import json
import os
import random
import weakref
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import pycrm
from conftest import ConnectFn
from pycrm import Money
from pycrm.domain import RECORD_BY_RESOURCE, RECORD_TYPES
from pycrm.domain.audit import AuditEntry, FieldChange
from pycrm.domain.matching import Evidence
from pycrm.domain.merging import Merge
from pycrm.domain.org import Team
from pycrm.domain.permissions import ACTIONS, DEFAULT_POLICY, Policy
from pycrm.domain.query import Filter, In
from pycrm.domain.records import Stored
from pycrm.errors import CRMError, DuplicateError, NotFound, PermissionDenied
from pycrm.rules.context import Assignment
from pycrm.services.dedupe import Candidate, CleansingIssue, Cluster, DuplicateWarning, MergeResult
from pycrm.services.leads import AssignmentExplanation
from pycrm.services.records import Service
from pycrm.services.tickets import Breach
from pycrm.session import Session
from support import staff

EXAMPLES = int(os.environ.get("PYCRM_POLICY_EXAMPLES", "20"))

DEPARTMENTS = ("sales", "marketing", "service", "finance", "legal", "analytics", "admin")
EXTRA_ROLES = ("sales_manager", "legal", "key_account", "admin")
ROLE_NAMES = ("*", *DEPARTMENTS, "sales_manager", "key_account")
SCOPES = ("none", "own", "team", "department", "all")
#: The record kinds the world holds (every kind a grant may name).
KINDS = tuple(cls.resource for cls in RECORD_TYPES if cls.resource != "outbox_message")

#: Field → values a generated grant condition may test, by kind.
CONDITIONS: dict[str, dict[str, tuple[Any, ...]]] = {
    "customer": {"status": ("active", "merged"), "industry": ("machinery", "retail")},
    "contact": {"status": ("active", "archived")},
    "activity": {"private": (True, False), "kind": ("note", "call")},
    "lead": {"status": ("new", "assigned", "qualified"), "source": ("webform", "trade_show")},
    "deal": {"status": ("open", "won", "lost")},
    "contract": {"status": ("draft", "pending_approval", "active")},
    "receivable": {"status": ("open", "partially_paid")},
    "ticket": {"status": ("assigned", "resolved"), "priority": ("normal", "high")},
    "task": {"status": ("open", "done")},
    "user": {"department": DEPARTMENTS},
    "audit_entry": {"action": ("create", "update"), "record_type": ("customer", "activity")},
    "setting": {"name": ("default_region", "routing_rules")},
    "product": {"active": (True, False), "unit": ("piece", "hour")},
    "price_list": {"active": (True, False), "customer_group": ("wholesale",)},
    "price": {"min_quantity": (1, 10)},
    "exchange_rate": {"source": ("manual", "ecb")},
    "quote": {"status": ("draft", "sent", "pending_approval")},
}

#: Fields a generated field rule may hide, by kind.
HIDEABLE: dict[str, tuple[str, ...]] = {
    "customer": ("industry", "annual_revenue", "grade", "contact_points", "address", "tags"),
    "contact": ("title", "contact_points", "address", "family_name"),
    "activity": ("body", "subject", "occurred_at"),
    "lead": ("company", "contact_points", "needs", "score", "source", "status"),
    "deal": ("amount", "probability", "expected_close", "source", "status", "lead_id"),
    "contract": ("amount", "list_amount", "terms", "discount_percent", "signed_at", "customer_id"),
    "receivable": ("payments", "overpaid", "amount", "paid", "due"),
    "ticket": ("description", "csat_score", "messages", "resolution_due", "resolved_at"),
    "task": ("notes", "due_at"),
    "user": ("email", "capacity"),
    "assessment": ("value", "note"),
    "audit_entry": ("snapshot", "changes"),
    "merge": ("changes",),
    "setting": ("config",),
    "product": ("cost", "description", "sku", "external_id"),
    "price_list": ("customer_group", "region", "valid_until"),
    "price": ("unit_price", "min_quantity"),
    "exchange_rate": ("rate", "source"),
    "quote": ("lines", "total", "cost", "margin", "notes", "valid_until"),
}

#: A policy that lets everyone do everything: the world is built with it.
ALLOW_ALL = {"grants": [{"roles": ["*"], "resources": ["*"], "actions": ["*"], "scope": "all"}]}

EUR = functools.partial(Money.of, currency="EUR")
USD = functools.partial(Money.of, currency="USD")


# -- random policies ---------------------------------------------------------------------


@st.composite
def grants(draw: st.DrawFn) -> dict[str, Any]:
    roles = draw(st.lists(st.sampled_from(ROLE_NAMES), min_size=1, max_size=2, unique=True))
    conditional = draw(st.booleans())
    if conditional:
        kind = draw(st.sampled_from(sorted(CONDITIONS)))
        resources = [kind]
    elif draw(st.integers(0, 5)) == 0:
        resources = ["*"]
    else:
        resources = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4, unique=True))
    actions = draw(
        st.just(["*"])
        | st.just(["read"])
        | st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4, unique=True)
    )
    grant: dict[str, Any] = {
        "roles": roles,
        "resources": resources,
        "actions": actions,
        "scope": draw(st.sampled_from(SCOPES)),
    }
    if conditional:
        name = draw(st.sampled_from(sorted(CONDITIONS[kind])))
        value = draw(st.sampled_from(CONDITIONS[kind][name]))
        grant[draw(st.sampled_from(["when", "unless"]))] = {name: value}
    return grant


@st.composite
def field_rules(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(HIDEABLE)))
    return {
        "resource": kind,
        "field": draw(st.sampled_from(HIDEABLE[kind])),
        "hidden": True,
        "allowed": draw(st.lists(st.sampled_from(ROLE_NAMES[1:]), max_size=2, unique=True)),
    }


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    found = draw(st.lists(grants(), min_size=3, max_size=14))
    if draw(st.booleans(), label="key accounts may do everything"):
        # The world's first user is a key account: their writes succeed, so what writes
        # hand back gets judged too (and field rules still hide fields from them).
        grant = {"roles": ["key_account"], "resources": ["*"], "actions": ["*"], "scope": "all"}
        found.append(grant)
    return {"grants": found, "fields": draw(st.lists(field_rules(), max_size=5))}


# -- the world ---------------------------------------------------------------------------


@dataclass
class World:
    """One tenant's records, built with every right, and handy values to call methods with."""

    tenant: str
    now: datetime
    users: list[str]
    ids: dict[str, list[str]] = field(default_factory=dict)
    """Kind → every stored id."""
    state: dict[str, list[str]] = field(default_factory=dict)
    """``kind:status`` → ids (to pick targets for writes)."""
    emails: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    campaigns: dict[str, str] = field(default_factory=dict)
    """Campaign name → id."""
    document_keys: list[str] = field(default_factory=list)
    payment_refs: list[str] = field(default_factory=list)
    dup_customers: tuple[str, str] | None = None
    """Two live customers that look alike (for merges)."""
    dup_contacts: tuple[str, str] | None = None
    default_pipeline: str = ""
    subscriptions: list[str] = field(default_factory=list)
    """Signed subscriptions (contracts with a billing period)."""

    def of(self, kind: str, status: str | None = None) -> list[str]:
        return self.ids.get(kind, []) if status is None else self.state.get(f"{kind}:{status}", [])


#: The segments every world has: name → rule (judged by :func:`segment_members`).
SEGMENTS: dict[str, dict[str, Any]] = {
    "buyers": {"field": "total_order_amount", "op": "gte", "value": ["1", "EUR"]},
    "recent": {"field": "last_activity", "op": "within_days", "value": 30},
    "machinery": {"field": "industry", "op": "in", "value": ["machinery"]},
    "gold": {"field": "custom.tier", "op": "eq", "value": "gold"},
}

_tenants = itertools.count()


def build_world(builder: pycrm.CRM, data: st.DataObject) -> World:
    """Users, teams, custom fields and records of every kind, in a tenant of their own."""
    tenant = f"policy{next(_tenants)}"
    now = builder.clock.now()
    with builder.session(builder.system_actor, tenant=tenant) as s:
        teams = [s.org.create_team("North", "sales"), s.org.create_team("South", "service")]
        s.org.create_department("partners", "Partners")
        users = []
        for i in range(data.draw(st.integers(2, 3), label="users")):
            users.append(
                s.org.create_user(
                    f"User {i}",
                    f"user{i}@policy.example",
                    data.draw(st.sampled_from(DEPARTMENTS), label=f"user {i} department"),
                    roles=sorted(
                        data.draw(st.frozensets(st.sampled_from(EXTRA_ROLES), max_size=2))
                        | ({"key_account"} if i == 0 else set())
                        # An admin passes the gates services add (org changes, payments).
                        | ({"admin"} if i == 0 and data.draw(st.booleans()) else set())
                    ),
                    team_ids=[t.id for t in teams if data.draw(st.booleans(), label="member")],
                )
            )
        ids = [u.id for u in users]
        for team in teams:
            manager = data.draw(st.none() | st.sampled_from(ids), label="manager")
            if manager is not None:
                changed = attrs.evolve(team, manager_id=manager, version=team.version + 1)
                s._uow.repo(Team).replace(changed, team.version)

        def owner(label: str) -> str | None:
            return data.draw(st.none() | st.sampled_from(ids), label=label)

        def someone(label: str) -> str:
            return data.draw(st.sampled_from(ids), label=label)

        def readers() -> list[str]:
            return sorted(data.draw(st.frozensets(st.sampled_from(ROLE_NAMES[1:]), max_size=3)))

        s.fields.define("customer", "tier", "text", readable_by=readers(), searchable=True)
        s.fields.define("lead", "fair", "text", readable_by=readers())
        s.categories.create("industry", "Industry")
        s.categories.create("machinery", "Machinery", parent="industry")
        acme = s.customers.create(
            "Acme GmbH",
            industry="machinery",
            grade="A",
            annual_revenue=EUR("2000000"),
            emails=["info@acme.example"],
            phones=["+49 30 1234567"],
            address={"line1": "Hauptstr. 1", "city": "Berlin"},
            tags=["key account"],
            custom={"tier": "gold"},
            categories=["industry/machinery"],
            owner_id=owner("acme owner"),
        )
        bolt = s.customers.create(
            "Bolt AG",
            industry="retail",
            grade="B",
            emails=["not an email"],
            lenient=True,
            custom={"tier": "silver"},
            owner_id=owner("bolt owner"),
        )
        twin = s.customers.create(
            "ACME GmbH",
            emails=["info@acme.example"],
            owner_id=owner("twin owner"),
            on_duplicate="allow",
        )
        gone = s.customers.create(
            "Acme GmbH.",
            emails=["info@acme.example"],
            owner_id=owner("gone owner"),
            on_duplicate="allow",
        )
        ann = s.contacts.create(
            "Ann Acme",
            customer_id=acme.id,
            title="CTO",
            emails=["ann@acme.example"],
            owner_id=owner("ann owner"),
        )
        bob = s.contacts.create(
            "Bob Stone",
            given_name="Bob",
            family_name="Stone",
            customer_id=acme.id,
            emails=["bob@acme.example"],
            phones=["12"],
            lenient=True,
            owner_id=owner("bob owner"),
        )
        bob2 = s.contacts.create(
            "Bob Stone",
            customer_id=bolt.id,
            emails=["bob@acme.example"],
            owner_id=owner("bob2 owner"),
            on_duplicate="allow",
        )
        s.contacts.create(
            "Gus Gone", customer_id=gone.id, emails=["gus@acme.example"], owner_id=owner("gus")
        )
        s.customers.assess(acme.id, "grade", "A", source="sales")
        s.customers.assess(acme.id, "grade", "C", source="service", note="slow payer")
        # Leads: one shares a contact's email, two share one another's, one converts.
        leads = [
            s.leads.capture(
                "Bob Stone",
                source="webform",
                email="bob@acme.example",
                company="Acme GmbH",
                needs="three machines",
                custom={"fair": "hannover"},
            ),
            s.leads.capture(
                "Cara Diaz",
                source="trade_show",
                email="cara@zeta.example",
                company="Zeta",
                campaign="Spring",
            ),
            s.leads.capture(
                "Cara Diaz",
                source="webform",
                email="cara@zeta.example",
                phones=["12"],
                lenient=True,
                on_duplicate="allow",
            ),
            s.leads.capture(
                "Dan Vogel",
                source="webform",
                email="dan@bolt.example",
                company="Bolt AG",
                campaign="Spring",
            ),
        ]
        stages = data.draw(
            st.lists(
                st.sampled_from(["new", "assigned", "contacted", "qualified"]),
                min_size=3,
                max_size=3,
            ),
            label="lead stages",
        )
        for lead, stage in zip(leads, [*stages, "qualified"], strict=True):
            if stage == "new":
                continue
            s.leads.assign(lead.id, someone("lead owner"))
            if stage in ("contacted", "qualified"):
                s.leads.mark_contacted(lead.id)
            if stage == "qualified":
                s.leads.qualify(lead.id)
        _customer, _contact, converted = s.leads.convert(leads[3].id, amount=EUR("700"))
        s.deals.win(converted.id)
        # Deals: open, lost, and won ones with contracts in every state.
        deals = []
        for c in (acme, bolt):
            deals.append(
                s.deals.create(
                    f"{c.name}: open",
                    customer_id=c.id,
                    amount=EUR("1000"),
                    expected_close=date(2026, 3, 15),
                    owner_id=owner("deal owner"),
                    source="webform",
                )
            )
        lost = s.deals.create(
            "Acme: lost", customer_id=acme.id, amount=EUR("50"), owner_id=owner("lost owner")
        )
        s.deals.lose(lost.id, "price")
        subscriptions: list[str] = []
        states = ("active", "pending", "draft", "rejected", "approved", "signed")
        for c, terms in zip(itertools.cycle((acme, bolt)), states, strict=False):
            deal = s.deals.create(
                f"{c.name}: {terms}",
                customer_id=c.id,
                amount=EUR("3000"),
                expected_close=date(2026, 2, 1),
                owner_id=owner("won owner"),
                source="trade_show",
            )
            s.deals.win(deal.id)
            special = terms in ("pending", "rejected")
            contract = s.contracts.draft(
                deal.id,
                list_amount=EUR("3500"),
                instalments=2,
                first_due=date(2025, 12, 1),
                discount_percent=15 if special else 0,
                standard_terms=not special,
                terms="net 30",
            )
            if terms != "draft":
                s.contracts.submit(contract.id)
            if terms in ("active", "signed"):
                s.contracts.sign(contract.id)
            if terms == "active":
                s.contracts.activate(contract.id)
                first = s.receivables.list(contract_id=contract.id)[0]
                s.receivables.record_payment(first.id, EUR("1000"), reference=f"REF-{tenant}")
            if terms == "rejected":
                s.contracts.reject(contract.id, comment="too cheap")
            if terms == "signed":  # and a subscription beside it, to renew
                monthly = {"billing_period": "monthly", "recurring": EUR("250")}
                sub = s.contracts.draft(deal.id, start=date(2025, 3, 1), **monthly)
                subscriptions.append(s.contracts.submit(sub.id).id)
                s.contracts.sign(sub.id)
        agent = owner("ticket agent")
        open_ticket = s.tickets.open(
            "Machine stuck",
            channel="email",
            customer_id=acme.id,
            priority="high",
            description="It stopped.",
        )
        if agent is not None:
            s.tickets.assign(open_ticket.id, agent)
        done = s.tickets.open("Invoice copy", channel="phone", customer_id=bolt.id)
        s.tickets.assign(done.id, someone("resolver"))
        s.tickets.start(done.id)
        s.tickets.reply(done.id, "Sent again.")
        s.tickets.resolve(done.id, note="resent")
        s.tickets.rate(done.id, 4, comment="quick")
        for subject, until in (("Question", "resolved"), ("Refund", "in_progress")):
            ticket = s.tickets.open(subject, channel="chat", customer_id=bolt.id)
            s.tickets.assign(ticket.id, someone("agent"))
            s.tickets.start(ticket.id)
            if until == "resolved":
                s.tickets.resolve(ticket.id)
        s.tasks.create(
            "Call Acme",
            assignee_id=owner("task assignee"),
            department="sales",
            notes="about the renewal",
            due_at=now + timedelta(days=2),
        )
        s.tasks.create("Check invoices", department=data.draw(st.sampled_from(DEPARTMENTS)))
        s.articles.create("Resetting a machine", "Hold the red button.", publish=True)
        s.products.create("PR-100", "Press 100t", cost=EUR("12000"), external_id="erp-1")
        s.products.create("SV-1", "Service hour", unit="hour", active=False)
        s.rates.set("USD", "EUR", "0.92", on=date(2026, 1, 1))
        s.rates.set("GBP", "EUR", "1.17", on=date(2026, 1, 1), source="ecb")
        press = s.products.list(text="press")[0]
        standard = s.price_lists.create("Standard EUR", "EUR")
        wholesale = s.price_lists.create("Wholesale", "EUR", customer_group="wholesale")
        s.price_lists.set_price(standard.id, press.id, EUR("100"))
        s.price_lists.set_price(standard.id, press.id, EUR("90"), min_quantity=10)
        s.price_lists.set_price(wholesale.id, press.id, EUR("80"))
        for k, deal in enumerate(deals):
            setup = {"description": "Setup", "unit_price": EUR("250"), "tax_rate": 19}
            product = {"product_id": press.id, "quantity": 2 + 10 * k, "discount_percent": 5}
            quote = s.quotes.draft(deal.id, lines=[product, setup], notes="net 30")
            if k == 0:  # the press sells below its cost: a manager approves the margin
                s.quotes.approve(s.quotes.submit(quote.id).id)
                s.quotes.send(quote.id)
        thin = {"product_id": press.id, "quantity": 1, "discount_percent": 20}
        s.quotes.submit(s.quotes.draft(deals[0].id, lines=[thin]).id)
        s.analytics.set_quota("2026-03", EUR("5000"), owner_id=someone("quota owner"))
        for name, rule in SEGMENTS.items():
            s.campaigns.create_segment(name, "customer", rule)
        spring = s.campaigns.create(
            "Spring", channel="email", segment="machinery", budget=EUR("100")
        )
        s.campaigns.snapshot(spring.id)
        s.campaigns.record_response(spring.id, response="clicked", customer_id=acme.id)
        autumn = s.campaigns.create("Autumn", channel="email", segment="buyers")
        s.documents.attach("customer", acme.id, "offer.txt", b"offer")
        s.documents.attach("deal", deals[0].id, "notes.txt", b"notes")
        s.documents.attach(
            "customer",
            acme.id,
            "scan.txt",
            b"scan",
            readable_by=data.draw(
                st.lists(
                    st.sampled_from([*DEPARTMENTS, "key_account", *ids]),
                    min_size=1,
                    max_size=3,
                    unique=True,
                ),
                label="scan readers",
            ),
        )
        s.deals.move(deals[1].id, "proposal")
        s.activities.track(ann.id, "viewed_pricing_page", lead_id=leads[1].id)
        s.consent.grant(ann.id, "marketing", method="form", proof={"form": "contact-us"})
        s.consent.withdraw(bob.id, "marketing", channel="any")
        s.consent.grant(leads[0].id, "marketing", channel="any", method="double_opt_in")
        s.settings.set("default_region", "DE")
        s.retention.set_rules(
            [{"name": "stale-leads", "record_type": "lead", "action": "erase", "after": "30 days"}]
        )
    # Activities (and a few edits) by the users themselves, so authors and audit actors vary.
    for k in range(data.draw(st.integers(2, 5), label="activities")):
        author = someone("author")
        with builder.session(author, tenant=tenant) as s:
            note = s.activities.log(
                data.draw(st.sampled_from(["note", "call"]), label="kind"),
                f"Note {k}",
                body=f"secret {k}",
                customer_id=data.draw(st.sampled_from([acme.id, bolt.id, gone.id]), label="about"),
                private=data.draw(st.booleans(), label="private"),
                occurred_at=now - timedelta(days=data.draw(st.sampled_from([1, 5, 45]))),
            )
            if data.draw(st.booleans(), label="edited"):
                s.activities.update(note.id, body=f"secret {k}, edited")
            if data.draw(st.booleans(), label="edits a customer"):
                s.customers.update(acme.id, grade=f"A{k}")
    with builder.session(builder.system_actor, tenant=tenant) as s:
        s.customers.update(bolt.id, custom={"tier": "gold"})
        s.dedupe.merge(acme.id, [gone.id])
        world = World(tenant, now, ids)
        for cls in RECORD_TYPES:
            found = s._uow.repo(cls).find()
            world.ids[cls.resource] = [r.id for r in found]
            for r in found:
                status = getattr(r, "status", None)
                if status is not None:
                    world.state.setdefault(f"{cls.resource}:{_plain(status)}", []).append(r.id)
        world.emails = [
            "info@acme.example",
            "bob@acme.example",
            "cara@zeta.example",
            "ann@acme.example",
            "nobody@nowhere.example",
        ]
        world.segments = list(SEGMENTS)
        world.campaigns = {"Spring": spring.id, "Autumn": autumn.id}
        world.document_keys = [d.document_key for d in s.documents.list("customer", acme.id)]
        world.default_pipeline = s.deals.pipeline().id
        world.subscriptions = subscriptions
        world.payment_refs = [f"REF-{tenant}", "REF-unknown"]
        world.dup_customers = (acme.id, twin.id)
        world.dup_contacts = (bob.id, bob2.id)
    return world


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def every_field(value: Any) -> str:
    """``value`` written out with every field of every record in it (a record's repr is short)."""

    def spelled(item: Any) -> Any:
        if attrs.has(type(item)):
            return {a.name: spelled(getattr(item, a.name)) for a in attrs.fields(type(item))}
        if isinstance(item, list | tuple):
            return [spelled(i) for i in item]
        if isinstance(item, dict):
            return {k: spelled(v) for k, v in item.items()}
        return item

    return repr(spelled(value))


# -- the oracle: what the policy data allows -------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: str
    department: str
    roles: frozenset[str]
    teams: frozenset[str]

    @property
    def policy_roles(self) -> frozenset[str]:
        return self.roles | {self.department}


class Truth:
    """The stored records as they are, read through a session's unit of work (no permissions)."""

    def __init__(self, session: Session) -> None:
        self._uow = session._uow
        self._all: dict[str, dict[str, Stored]] = {}
        self.now = session.crm.clock.now()

    @classmethod
    def snapshot(cls, crm: pycrm.CRM, tenant: str) -> Truth:
        """Every stored record of the tenant now (the session is closed afterwards)."""
        with crm.session(crm.system_actor, tenant=tenant) as s:
            truth = cls(s)
            for kind in RECORD_BY_RESOURCE:
                truth.all(kind)
        return truth

    def all(self, kind: str) -> dict[str, Stored]:
        if kind not in self._all:
            found = self._uow.repo(RECORD_BY_RESOURCE[kind]).find()
            self._all[kind] = {r.id: r for r in found}
        return self._all[kind]

    def get(self, kind: str, id: str) -> Stored | None:
        if kind not in RECORD_BY_RESOURCE or not id:
            return None
        return self.all(kind).get(id)


def org_chart(truth: Truth) -> tuple[list[Person], dict[str, set[str]]]:
    """The users (as the policy sees them) and the teams each one manages."""
    people = [
        Person(u.id, u.department, frozenset(u.roles), frozenset(u.team_ids))  # type: ignore[attr-defined]
        for u in truth.all("user").values()
    ]
    managed: dict[str, set[str]] = defaultdict(set)
    for team in truth.all("team").values():
        if team.manager_id is not None:  # type: ignore[attr-defined]
            managed[team.manager_id].add(team.id)  # type: ignore[attr-defined]
    return people, managed


class Oracle:
    """One actor's rights, from the policy's data and the org chart (independent of the Guard)."""

    def __init__(
        self,
        policy: Mapping[str, Any],
        actor: Person | None,
        people: Sequence[Person],
        managed: Mapping[str, set[str]],
    ) -> None:
        self.policy = policy
        self.actor = actor
        """None: the system actor, who reads everything but other users' private activities."""
        if actor is not None:
            teams = set(actor.teams) | set(managed.get(actor.id, ()))
            self.team = {p.id for p in people if p.teams & teams} | {actor.id}
            self.department = {p.id for p in people if p.department == actor.department}
            self.department.add(actor.id)

    def grants(self, kind: str, action: str = "read") -> list[Mapping[str, Any]]:
        if self.actor is None:
            return [{"scope": "all"}]
        roles = self.actor.policy_roles
        return [
            g
            for g in self.policy["grants"]
            if ("*" in g["roles"] or roles & set(g["roles"]))
            and ("*" in g["resources"] or kind in g["resources"])
            and ("*" in g["actions"] or action in g["actions"])
            and g["scope"] != "none"
        ]

    def reaches(self, grant: Mapping[str, Any], kind: str, record: Any) -> bool:
        assert self.actor is not None
        cls = RECORD_BY_RESOURCE[kind]
        owner = getattr(record, cls.owner_field)
        scope = grant["scope"]
        if scope == "own" and owner != self.actor.id:
            return False
        if scope == "team" and (owner is None or owner not in self.team):
            return False
        if scope == "department" and (owner is None or owner not in self.department):
            queue = getattr(record, cls.department_field) if cls.department_field else None
            if queue is None or queue != self.actor.department:
                return False
        missing = object()
        for name, value in grant.get("when", {}).items():
            if _plain(getattr(record, name, missing)) != value:
                return False
        unless = grant.get("unless", {})
        return not (
            unless and all(_plain(getattr(record, n, missing)) == v for n, v in unless.items())
        )

    def why_not(self, kind: str, record: Any, truth: Truth) -> str | None:
        """None if the actor may read ``record``; otherwise the rule it breaks."""
        if (
            kind == "activity"
            and record.private
            and (self.actor is None or record.author_id != self.actor.id)
        ):
            return "another user's private activity (author only, whatever the grants)"
        if kind == "document" and record.readable_by is not None and self.actor is not None:
            readers = {self.actor.id, self.actor.department, *self.actor.roles}
            if record.created_by != self.actor.id and not readers & set(record.readable_by):
                return f"a document shared with {list(record.readable_by)} only"
        if kind == "stage_visit":
            deal = truth.get("deal", record.deal_id)
            why = None if deal is None else self.why_not("deal", deal, truth)
            return None if why is None else f"a stay of a deal that is {why}"
        if kind == "document":
            parent = truth.get(record.record_type, record.record_id)
            if parent is None:
                return None
            why = self.why_not(record.record_type, parent, truth)
            return None if why is None else f"a document on a {record.record_type} that is {why}"
        if kind in ("consent", "consent_state", "legal_hold", "privacy_request"):
            subject = truth.get(record.subject_type, record.subject_id)
            why = None if subject is None else self.why_not(record.subject_type, subject, truth)
            if why is not None:
                return f"consent of a {record.subject_type} that is {why}"
        if self.actor is None:
            return None
        if kind == "audit_entry":
            subject = truth.get(record.record_type, record.record_id)
            if subject is not None:
                why = self.why_not(record.record_type, subject, truth)
                if why is not None:
                    return f"about a {record.record_type} {record.record_id}: {why}"
        grants = self.grants(kind)
        if not grants:
            return f"no read grant for {kind}"
        if any(self.reaches(g, kind, record) for g in grants):
            return None
        return f"outside every read grant's scope or conditions for {kind}"

    def why_not_export(self, kind: str, record: Any, truth: Truth) -> str | None:
        """None if the actor may read *and* export ``record`` (an export needs both grants)."""
        why = self.why_not(kind, record, truth)
        if why is not None or self.actor is None:
            return why
        if not any(self.reaches(g, kind, record) for g in self.grants(kind, "export")):
            return f"outside every export grant for {kind}"
        return None

    def hidden(self, kind: str) -> set[str]:
        if self.actor is None:
            return set()
        roles = self.actor.policy_roles
        return {
            rule["field"]
            for rule in self.policy.get("fields", ())
            if rule["resource"] == kind and rule.get("hidden") and not roles & set(rule["allowed"])
        }

    def hidden_custom(self, kind: str, truth: Truth) -> set[str]:
        if self.actor is None:
            return set()
        roles = self.actor.policy_roles
        return {
            d.key  # type: ignore[attr-defined]
            for d in truth.all("field_definition").values()
            if d.entity == kind  # type: ignore[attr-defined]
            and d.readable_by  # type: ignore[attr-defined]
            and not roles & set(d.readable_by)  # type: ignore[attr-defined]
        }

    def is_hidden(self, kind: str, name: str, truth: Truth) -> bool:
        base, _, key = name.partition(".")
        if base == "custom" and key:
            return key in self.hidden_custom(kind, truth)
        return base in self.hidden(kind)

    def readable(self, kind: str, truth: Truth) -> list[Any]:
        """Every stored record of ``kind`` the actor may read."""
        return [r for r in truth.all(kind).values() if self.why_not(kind, r, truth) is None]


# -- judging what comes back ------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == () or value == [] or value == {}


#: Evidence and cleansing-issue field → the record field it shows.
SHOWS = {
    "email": "contact_points",
    "phone": "contact_points",
    "contact_points": "contact_points",
    "address": "address",
    "name": "name",
    "company": "company",
}

#: AssignmentExplanation attribute → the lead field it shows.
EXPLAINS = {
    "owner_id": "owner_id",
    "decided_by": "assigned_by",
    "reason": "assignment_reason",
    "assigned_at": "assigned_at",
    "score": "score",
}


class Judge:
    """Checks what one call returned against the oracle; collects what it breaks."""

    def __init__(
        self, oracle: Oracle, truth: Truth, violations: list[str], before: Truth | None = None
    ) -> None:
        self.o = oracle
        self.truth = truth
        self.violations = violations
        self.before = before
        """For a write: the records before it. A record it created, or one the actor could
        read before it (and then changed), may come back; any other must be readable now."""

    def fail(self, where: str, message: str) -> None:
        self.violations.append(f"{where}: {message}")

    def why_not(self, kind: str, id: str) -> str | None:
        """None if the actor may see the stored record ``kind`` ``id`` (or there is none)."""
        record = self.truth.get(kind, id)
        if record is None:
            return None
        if self.before is not None:
            old = self.before.get(kind, id)
            if old is None or self.o.why_not(kind, old, self.before) is None:
                return None
        return self.o.why_not(kind, record, self.truth)

    def ref(self, where: str, kind: str, id: str, what: str) -> None:
        """``what`` names a stored record: it must be one the actor may read."""
        why = self.why_not(kind, id)
        if why is not None:
            self.fail(where, f"{what} names {kind} {id}, which is {why}")

    def shown(self, where: str, kind: str, name: str, value: Any, what: str) -> None:
        """A value of field ``name`` of a ``kind`` record came back: it must not be hidden."""
        if not _empty(value) and self.o.is_hidden(kind, name, self.truth):
            self.fail(where, f"{what} shows hidden field {kind}.{name} ({value!r:.60})")

    def document(self, where: str, kind: str, data: Mapping[str, Any] | None, what: str) -> None:
        """A record's JSON form (audit snapshot, merge before-image): no hidden field in it."""
        if not data:
            return
        for name in self.o.hidden(kind):
            self.shown(where, kind, name, data.get(name), what)
        custom = data.get("custom")
        if isinstance(custom, Mapping):
            for key in set(custom) & self.o.hidden_custom(kind, self.truth):
                self.fail(where, f"{what} shows hidden custom field {kind}.custom.{key}")

    def record(self, where: str, item: Stored) -> None:
        kind = item.resource
        why = self.why_not(kind, item.id)
        if why is not None:
            self.fail(where, f"returned {kind} {item.id}, which is {why}")
        for name in self.o.hidden(kind):
            self.shown(where, kind, name, getattr(item, name, None), f"a {kind}")
        custom = getattr(item, "custom", None)
        if isinstance(custom, Mapping):
            for key in set(custom) & self.o.hidden_custom(kind, self.truth):
                self.fail(where, f"a {kind} shows hidden custom field custom.{key}")
        if isinstance(item, AuditEntry):
            subject = f"the audit entry {item.id} ({item.action} {item.record_type})"
            self.document(where, item.record_type, item.snapshot, f"{subject}'s snapshot")
            changes = item.changes if isinstance(item.changes, Mapping) else {}
            for name, pair in changes.items():
                if name == "custom":
                    for side in pair or ():
                        if isinstance(side, Mapping):
                            for key in set(side) & self.o.hidden_custom(
                                item.record_type, self.truth
                            ):
                                self.fail(where, f"{subject}'s changes show custom.{key}")
                elif any(not _empty(v) for v in pair or ()):
                    self.shown(where, item.record_type, name, pair, f"{subject}'s changes")
            if item.record_type == "merge" and item.snapshot:
                self.before_images(where, item.snapshot.get("changes") or (), subject)
        if isinstance(item, Merge):
            self.before_images(where, [attrs.asdict(c) for c in item.changes], f"merge {item.id}")

    def before_images(self, where: str, changes: Sequence[Mapping[str, Any]], what: str) -> None:
        """A merge's before-images: each of a record the actor may read, without hidden fields."""
        for change in changes:
            kind, id = change["record_type"], change["record_id"]
            label = f"{what}'s before-image of {kind} {id}"
            self.ref(where, kind, id, label)
            self.document(where, kind, change.get("before"), label)

    def walk(self, where: str, value: Any) -> None:
        """Judge everything in a returned value: records, references, evidence, nested results."""
        if isinstance(value, Stored):
            self.record(where, value)
        elif isinstance(value, list | tuple):
            for item in value:
                self.walk(where, item)
        elif isinstance(value, Candidate):
            self.candidate(where, value.record_type, value.record_id, value.evidence, "a candidate")
        elif isinstance(value, Cluster):
            for id in value.record_ids:
                self.ref(where, value.record_type, id, "a cluster")
            for a, b, _score, evidence in value.pairs:
                self.candidate(where, value.record_type, a, evidence, "a cluster pair")
                self.candidate(where, value.record_type, b, (), "a cluster pair")
        elif isinstance(value, DuplicateWarning):
            self.walk(where, value.candidates)
        elif isinstance(value, CleansingIssue):
            self.ref(where, value.record_type, value.record_id, "a cleansing issue")
            shows = SHOWS.get(value.field, value.field)
            self.shown(where, value.record_type, shows, value.value, "a cleansing issue")
        elif isinstance(value, MergeResult):
            self.walk(where, value.survivor)
            for kind, id, _field in value.reparented:
                self.ref(where, kind, id, "the merge's reparented list")
        elif isinstance(value, Breach):
            self.ref(where, "ticket", value.ticket_id, "a breach")
            self.shown(where, "ticket", f"{value.kind}_due", value.due, "a breach")
        elif isinstance(value, AssignmentExplanation):
            self.ref(where, "lead", value.lead_id, "an assignment explanation")
            for attr, name in EXPLAINS.items():
                self.shown(where, "lead", name, getattr(value, attr), "an assignment explanation")
        elif isinstance(value, Assignment):
            self.ref(where, "user", value.owner_id, "an assignment")
        elif attrs.has(type(value)):
            for a in attrs.fields(type(value)):
                self.walk(where, getattr(value, a.name))

    def candidate(
        self, where: str, kind: str, id: str, evidence: Sequence[Evidence], what: str
    ) -> None:
        self.ref(where, kind, id, what)
        for e in evidence:
            name = SHOWS.get(e.field, e.field)
            if kind == "customer" and name == "company":
                name = "name"
            self.shown(where, kind, name, e.detail, f"{what}'s evidence")


# -- the table: every public method, how to call it, how to judge it --------------------------


@dataclass(frozen=True)
class Call:
    """One way to call a method: arguments, the record it is about, the fields it filters on."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    subject: tuple[str, str] | None = None
    """(kind, id): the call succeeds only if the actor may read this record."""
    reads: tuple[str, ...] = ()
    """``kind.field`` it filters, groups or measures on: if one is hidden, it must be refused."""
    sampled: bool = False
    """One of many alike: each user tries a random few of them (see :data:`SAMPLE`)."""

    def describe(self) -> str:
        parts = [repr(a) if not isinstance(a, datetime) else "now" for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


def call(
    *args: Any,
    subject: tuple[str, str] | None = None,
    reads: Sequence[str] = (),
    sampled: bool = False,
    **kwargs: Any,
) -> Call:
    sampled = sampled or subject is not None or "record_id" in kwargs
    return Call(args, kwargs, subject, tuple(reads), sampled)


Args = Callable[[World], list[Call]]
Check = Callable[[Judge, str, Any, Call], None]


def walked(judge: Judge, where: str, result: Any, how: Call) -> None:
    judge.walk(where, result)


@dataclass(frozen=True)
class Read:
    """A method that returns data: called by every user on every example."""

    args: Args
    check: Check = walked


@dataclass(frozen=True)
class Write:
    """A method that changes data and returns some: called on a sample, then rolled back."""

    args: Args
    check: Check = walked


@dataclass(frozen=True)
class Import:
    """A bulk import: it commits chunk by chunk, so it runs last, once per example."""

    kind: str


def converted(judge: Judge, where: str, result: Any, how: Call) -> None:
    """A conversion used a stored rate the actor may read, and may see the rate of."""
    if result.rate_date is None:
        return  # the same currency: no rate
    pair = (result.original.currency, result.amount.currency)
    base, quote = pair[::-1] if result.inverted else pair
    if judge.o.is_hidden("exchange_rate", "rate", judge.truth):
        judge.fail(where, "converted with an exchange rate hidden from the actor")
    for stored in judge.truth.all("exchange_rate").values():
        if (stored.base, stored.quote, stored.valid_on) == (base, quote, result.rate_date):  # type: ignore[attr-defined]
            why = judge.o.why_not("exchange_rate", stored, judge.truth)
            if why is not None:
                judge.fail(where, f"converted at the {base}/{quote} rate, which is {why}")
            return
    judge.fail(where, f"converted at a {base}/{quote} rate of {result.rate_date} not stored")


def priced_line(judge: Judge, where: str, result: Any, how: Call) -> None:
    """A price came from a list and a price the actor may read (and see the price of)."""
    if result.price_list_id is None:
        judge.fail(where, f"priced by {result.decided_by}, not by the price lists")
        return
    for kind, id in (("product", result.product_id), ("price_list", result.price_list_id)):
        stored = judge.truth.all(kind).get(id)
        why = None if stored is None else judge.o.why_not(kind, stored, judge.truth)
        if why is not None:
            judge.fail(where, f"priced from {kind} {id}, which is {why}")
    if judge.o.is_hidden("price", "unit_price", judge.truth):
        judge.fail(where, "gave a unit price hidden from the actor")
    for stored in judge.truth.all("price").values():
        if (stored.price_list_id, stored.product_id, stored.unit_price) == (  # type: ignore[attr-defined]
            result.price_list_id,
            result.product_id,
            result.unit_price,
        ):
            why = judge.o.why_not("price", stored, judge.truth)
            if why is None:
                return
    judge.fail(where, f"gave {result.unit_price}, which no price the actor may read holds")


class FixedRates:
    """A rate source with one rate."""

    name = "fixed"

    def rates(self, on: date) -> dict[tuple[str, str], str]:
        return {("CHF", "EUR"): "1.05"}


def iterated(judge: Judge, where: str, result: Any, how: Call) -> None:
    """An ``iter``: everything it yields, page after page."""
    judge.walk(where, list(result))


@dataclass(frozen=True)
class Nothing:
    """A method that returns nothing the actor could not already see."""

    why: str


def once(*calls: Call) -> Args:
    return lambda w: list(calls)


def each(kind: str, status: str | None = None) -> Args:
    return lambda w: [call(id, subject=(kind, id)) for id in w.of(kind, status)]


def pick(kind: str, status: str | None = None, **kwargs: Any) -> Args:
    """Write targets: each stored ``kind`` record (in ``status``), with ``kwargs``."""
    return lambda w: [call(id, **kwargs) for id in w.of(kind, status)]


def history_of(kind: str) -> Check:
    def check(judge: Judge, where: str, result: Any, how: Call) -> None:
        for change in result:
            assert isinstance(change, FieldChange)
            if change.field == "custom":
                for side in (change.old, change.new):
                    if isinstance(side, Mapping):
                        for key in set(side) & judge.o.hidden_custom(kind, judge.truth):
                            judge.fail(where, f"history shows hidden custom field custom.{key}")
            else:
                judge.shown(where, kind, change.field, [change.old, change.new], "history")

    return check


def documents_read(judge: Judge, where: str, result: Any, how: Call) -> None:
    judge.ref(where, "document", how.args[0], "documents.read")


#: What ``s.export`` exports: plural name → kind.
EXPORTS = {
    "customers": "customer",
    "contacts": "contact",
    "leads": "lead",
    "deals": "deal",
    "tickets": "ticket",
    "receivables": "receivable",
    "activities": "activity",
    "documents": "document",
}
#: Export calls that name a field the policy may hide (refused when it is hidden).
EXPORT_PROBES = (
    ("customers", "industry"),
    ("contacts", "contact_points"),
    ("leads", "needs"),
    ("deals", "amount"),
    ("receivables", "payments"),
    ("activities", "body"),
)


def exported(form: str) -> Check:
    """Judge the rows of an export: each one a record the actor may read and export, redacted."""

    def check(judge: Judge, where: str, result: Any, how: Call) -> None:
        kind = EXPORTS[how.args[0]]
        if form == "rows":
            rows = list(result)
        elif form == "jsonl":
            rows = [json.loads(line) for line in how.args[1].getvalue().splitlines()]
        else:
            rows = list(csv.DictReader(io.StringIO(how.args[1].getvalue())))
            for row in rows:
                custom = row.get("custom")
                row["custom"] = json.loads(custom) if custom else None
        for row in rows:
            record = judge.truth.get(kind, row.get("id") or "")
            if record is not None:
                why = judge.o.why_not_export(kind, record, judge.truth)
                if why is not None:
                    judge.fail(where, f"exported {kind} {record.id}, which is {why}")
            judge.document(where, kind, row, f"an exported {kind} row")

    return check


def reader(judge: Judge, where: str, result: Any, how: Call) -> None:
    """``session.read(cls)``, the read path plugins use: find, count and get through it."""
    kind = how.args[0].resource
    judge.walk(where + ".find()", result.find())
    readable = judge.o.readable(kind, judge.truth)
    if result.count() != len(readable):
        judge.fail(where, f".count() is {result.count()}, the actor may read {len(readable)}")
    for id in judge.truth.all(kind):
        found = result.get(id)
        if found is not None:
            judge.walk(where + f".get({id!r})", found)


def departments(judge: Judge, where: str, result: Any, how: Call) -> None:
    created = {d.key: d for d in judge.truth.all("department").values()}  # type: ignore[attr-defined]
    for key in result:
        if key in created:
            judge.ref(where, "department", created[key].id, f"department key {key!r}")


# -- figures: the same aggregate over only the records the actor may read -----------------------

_PURCHASES = {"signed", "active", "completed"}
_REACHED = {
    "assigned": {"assigned", "contacted", "qualified", "converted"},
    "contacted": {"contacted", "qualified", "converted"},
    "qualified": {"qualified", "converted"},
    "converted": {"converted"},
    "disqualified": {"disqualified"},
}


def _status(record: Any) -> str:
    return str(_plain(record.status))


def expect_funnel(o: Oracle, t: Truth, by_owner: bool) -> dict[Any, tuple[int, ...]]:
    won = {d.lead_id for d in o.readable("deal", t) if _status(d) == "won"}
    rows: dict[Any, list[int]] = defaultdict(lambda: [0] * 7)
    for lead in o.readable("lead", t):
        row = rows[lead.owner_id if by_owner else None]
        row[0] += 1
        for i, stage in enumerate(_REACHED.values(), start=1):
            row[i] += _status(lead) in stage
        row[6] += lead.id in won
    return {k: tuple(v) for k, v in rows.items()}


def got_funnel(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {
        r.group: (
            r.captured,
            r.assigned,
            r.contacted,
            r.qualified,
            r.converted,
            r.disqualified,
            r.won,
        )
        for r in rows
    }


def expect_win_rate(o: Oracle, t: Truth) -> dict[Any, tuple[int, ...]]:
    closed = [d for d in o.readable("deal", t) if _status(d) in ("won", "lost")]
    if not closed:
        return {}
    return {
        None: (sum(_status(d) == "won" for d in closed), sum(_status(d) == "lost" for d in closed))
    }


def got_win_rate(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {r.group: (r.won, r.lost) for r in rows}


def expect_forecast(o: Oracle, t: Truth) -> dict[Any, tuple[int, ...]]:
    rows: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for d in o.readable("deal", t):
        if d.expected_close is None:
            continue
        row = rows[(f"{d.expected_close:%Y-%m}", d.owner_id)]
        if _status(d) == "open":
            row[0] += d.amount.minor
        elif _status(d) == "won":
            row[1] += d.amount.minor
    return {k: tuple(v) for k, v in rows.items()}


def got_forecast(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {(r.period, r.owner_id): (r.pipeline.minor, r.won.minor) for r in rows}


def expect_sources(o: Oracle, t: Truth) -> dict[Any, tuple[int, ...]]:
    won: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for d in o.readable("deal", t):
        if _status(d) == "won":
            won[d.source][0] += 1
            won[d.source][1] += d.amount.minor
    rows: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for lead in o.readable("lead", t):
        rows[lead.source][0] += 1
        rows[lead.source][1] += _status(lead) == "converted"
    return {k: (*rows.get(k, [0, 0]), *won.get(k, [0, 0])) for k in rows.keys() | won.keys()}


def got_sources(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {
        r.source: (r.leads, r.converted, r.won_deals, r.revenue.minor if r.revenue else 0)
        for r in rows
    }


def expect_rfm(o: Oracle, t: Truth) -> dict[Any, tuple[int, ...]]:
    rows: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for c in o.readable("contract", t):
        if _status(c) in _PURCHASES:
            rows[c.customer_id][0] += 1
            rows[c.customer_id][1] += c.amount.minor
    return {k: tuple(v) for k, v in rows.items()}


def got_rfm(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {r.customer_id: (r.frequency, r.monetary.minor) for r in rows}


def expect_aging(o: Oracle, t: Truth) -> dict[Any, tuple[int, ...]]:
    unpaid = [
        r
        for r in o.readable("receivable", t)
        if _status(r) in ("open", "partially_paid", "overdue")
    ]
    if not unpaid:
        return {}
    return {None: (len(unpaid), sum(r.amount.minor - r.paid.minor for r in unpaid))}


def got_aging(rows: Any) -> dict[Any, tuple[int, ...]]:
    if not rows:
        return {}
    return {None: (sum(r.count for r in rows), sum(r.outstanding.minor for r in rows))}


_RUNS_ON = date(2026, 1, 5)  # the world's subscriptions run from March 2025 to February 2026


def expect_subscriptions(o: Oracle, t: Truth) -> dict[Any, tuple[int, ...]]:
    """Running subscriptions and their MRR in minor units, per currency, on ``_RUNS_ON``."""
    rows: dict[Any, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for c in o.readable("contract", t):
        if c.billing_period is None or _status(c) not in ("signed", "active", "completed"):
            continue
        if c.start <= _RUNS_ON <= c.end:
            row = rows[c.recurring.currency]
            row[0] += 1
            months = {"monthly": 1, "quarterly": 3, "yearly": 12}[str(_plain(c.billing_period))]
            row[1] += Decimal(c.recurring.minor) / months
    return {k: (n, int(mrr.to_integral_value(ROUND_HALF_EVEN))) for k, (n, mrr) in rows.items()}


def got_subscriptions(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {r.currency: (r.subscriptions, r.mrr.minor) for r in rows}


def expect_service(o: Oracle, t: Truth, by_agent: bool) -> dict[Any, tuple[int, ...]]:
    rows: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0])
    for ticket in o.readable("ticket", t):
        row = rows[ticket.assignee_id if by_agent else None]
        row[0] += 1
        row[1] += ticket.resolved_at is not None
        row[2] += ticket.csat_score is not None
    return {k: tuple(v) for k, v in rows.items()}


def got_service(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {r.group: (r.tickets, r.resolved, r.rated) for r in rows}


_STAGES = ("qualification", "needs_analysis", "proposal", "negotiation")


def expect_stage_funnel(o: Oracle, t: Truth) -> dict[Any, tuple[int, ...]]:
    """Deals that reached each stage of the default pipeline, from their stage histories."""
    default = next(p.id for p in t.all("pipeline").values() if p.key == "default")  # type: ignore[attr-defined]
    reached = [0] * (len(_STAGES) + 1)
    for deal in o.readable("deal", t):
        if deal.pipeline_id != default:
            continue
        best = -1
        for change in deal.stage_history:
            if change.stage == "won":
                best = max(best, len(_STAGES))
            elif change.stage in _STAGES:
                best = max(best, _STAGES.index(change.stage))
        for k in range(best + 1):
            reached[k] += 1
    return {None: tuple(reached)}


def got_stage_funnel(rows: Any) -> dict[Any, tuple[int, ...]]:
    return {None: tuple(r.reached for r in sorted(rows, key=lambda r: r.position))} if rows else {}


def figure(
    expect: Callable[[Oracle, Truth], dict[Any, tuple[int, ...]]],
    got: Callable[[Any], dict[Any, tuple[int, ...]]],
) -> Check:
    def check(judge: Judge, where: str, result: Any, how: Call) -> None:
        want, have = expect(judge.o, judge.truth), got(result)
        want = {k: v for k, v in want.items() if any(v)}  # no rows and a row of zeros agree
        have = {k: v for k, v in have.items() if any(v)}
        if want != have:
            judge.fail(where, f"figures {have} differ from {want} over the readable records")

    return check


def customer_count(judge: Judge, where: str, result: Any, how: Call) -> None:
    want = sum(_status(c) == "active" for c in judge.o.readable("customer", judge.truth))
    if result != want:
        judge.fail(where, f"counted {result} customers, the actor may read {want} active ones")


def segment_members(o: Oracle, t: Truth, name: str) -> set[str]:
    """The readable customers in segment ``name``, judged over readable related records only."""
    rule = SEGMENTS[name]
    rows = o.readable("customer", t)
    if rule["field"] == "total_order_amount":
        total: dict[str, int] = defaultdict(int)
        for c in o.readable("contract", t):
            if _status(c) in _PURCHASES:
                total[c.customer_id] += c.amount.minor
        return {c.id for c in rows if total[c.id] >= 100}
    if rule["field"] == "last_activity":
        edge = t.now - timedelta(days=rule["value"])
        recent = {a.customer_id for a in o.readable("activity", t) if a.occurred_at >= edge}
        return {c.id for c in rows if c.id in recent}
    if rule["field"] == "industry":
        return {c.id for c in rows if c.industry in rule["value"]}
    return {c.id for c in rows if c.custom.get("tier") == rule["value"]}


SEGMENT_READS = {
    "buyers": ("contract.amount", "contract.customer_id", "contract.status"),
    "recent": ("activity.occurred_at", "activity.customer_id"),
    "machinery": ("customer.industry",),
    "gold": ("customer.custom.tier",),
}


def members(judge: Judge, where: str, result: Any, how: Call) -> None:
    judge.walk(where, result)
    want = segment_members(judge.o, judge.truth, how.args[0])
    for c in result:
        if c.id not in want:
            judge.fail(
                where,
                f"customer {c.id} is in the segment only through records the "
                "actor may not read (or is not readable)",
            )


def segment_count(judge: Judge, where: str, result: Any, how: Call) -> None:
    want = segment_members(judge.o, judge.truth, how.args[0])
    if result != len(want):
        judge.fail(where, f"counted {result}, the readable records give {len(want)}")


def compiled_ids(judge: Judge, where: str, result: Any, how: Call) -> None:
    """``rfm_class`` compiles to the customers with purchases: only readable ones may show."""
    buyers = {
        c.customer_id for c in judge.o.readable("contract", judge.truth) if _status(c) in _PURCHASES
    }
    ids: list[str] = []

    def collect(f: Any) -> None:
        if isinstance(f, In) and f.field == "id":
            ids.extend(f.values)
        elif attrs.has(type(f)):
            for a in attrs.fields(type(f)):
                value = getattr(f, a.name)
                for part in value if isinstance(value, tuple) else (value,):
                    if isinstance(part, Filter):
                        collect(part)

    collect(result)
    for id in set(ids) - buyers:
        judge.fail(
            where, f"the compiled rule names customer {id} for purchases the actor may not read"
        )


def snapshot_count(judge: Judge, where: str, result: Any, how: Call) -> None:
    """A campaign snapshot returns how many members it took: count over readable records."""
    want = {  # the world's campaign "Autumn" targets the segment "buyers"
        c
        for c in segment_members(judge.o, judge.truth, "buyers")
        if _status(judge.truth.get("customer", c)) != "merged"
    }
    if result != len(want):
        judge.fail(where, f"snapshot took {result} members, the readable records give {len(want)}")


#: The kinds of record consent is kept for.
PEOPLE = ("lead", "contact")


def consent_allowed(judge: Judge, where: str, result: Any, how: Call) -> None:
    """A yes is read from a grant the actor may read (a no tells nothing)."""
    subject, purpose = how.args[:2]
    if result is True and not any(
        c.subject_id == subject and c.purpose == purpose and c.granted  # type: ignore[attr-defined]
        for c in judge.o.readable("consent", judge.truth)
    ):
        judge.fail(where, f"said {subject} consents from a grant the actor may not read")


def granted(kind: str, action: str) -> Check:
    """An answer only for an actor with a grant of ``action`` on ``kind`` (privacy calls)."""

    def check(judge: Judge, where: str, result: Any, how: Call) -> None:
        if not judge.o.grants(kind, action):
            judge.fail(where, f"answered without a {action} grant on {kind}")
        judge.walk(where, result)

    return check


def import_report(judge: Judge, where: str, result: Any, how: Call) -> None:
    """Skipping a row as a duplicate reveals a stored record: it must be one the actor may read."""
    kind, email = how.args
    compared = {"lead": ("lead", "contact"), "contact": ("contact",), "customer": ("customer",)}
    visible = [
        r
        for k in compared[kind]
        for r in judge.o.readable(k, judge.truth)
        if any(p.value == email for p in r.contact_points)
        and not (k == "lead" and _status(r) in ("converted", "disqualified"))
    ]
    if result.skipped and not visible:
        judge.fail(
            where,
            f"skipped the row as a duplicate of {email}, though the actor may "
            f"read no {kind} with it: {dict(result.reasons)}",
        )


def setting_value(judge: Judge, where: str, result: Any, how: Call) -> None:
    """A setting's value comes back only with a read grant reaching its stored record, if any,
    and only when the policy does not hide the stored value (``config``)."""
    name = how.args[0]
    if not judge.o.grants("setting"):
        judge.fail(where, f"returned setting {name!r} without a read grant on setting")
    if judge.o.is_hidden("setting", "config", judge.truth):
        judge.fail(where, f"returned setting {name!r}, whose config is hidden from the actor")
    for stored in judge.truth.all("setting").values():
        if stored.name == name:  # type: ignore[attr-defined]
            why = judge.o.why_not("setting", stored, judge.truth)
            if why is not None:
                judge.fail(where, f"returned the stored setting {name!r}, which is {why}")


NOW_PLUS = timedelta(days=30)

#: Record services: session attribute → record kind (their get, as_of and history).
RECORD_SERVICES = {
    "activities": "activity",
    "articles": "article",
    "campaigns": "campaign",
    "categories": "category",
    "contacts": "contact",
    "contracts": "contract",
    "customers": "customer",
    "deals": "deal",
    "documents": "document",
    "fields": "field_definition",
    "leads": "lead",
    "org": "user",
    "price_lists": "price_list",
    "quotes": "quote",
    "products": "product",
    "rates": "exchange_rate",
    "receivables": "receivable",
    "tasks": "task",
    "tickets": "ticket",
}


def _record_methods() -> dict[str, Read]:
    table: dict[str, Read] = {}
    for service, kind in RECORD_SERVICES.items():
        table[f"{service}.get"] = Read(each(kind))
        table[f"{service}.as_of"] = Read(
            lambda w, kind=kind: [call(i, w.now, subject=(kind, i)) for i in w.of(kind)]
        )
        table[f"{service}.history"] = Read(each(kind), history_of(kind))
    return table


def _per_customer(w: World) -> list[Call]:
    return [call(customer_id=c) for c in w.of("customer")]


TABLE: dict[str, Read | Write | Import | Nothing] = {
    **_record_methods(),
    # -- activities
    "activities.iter": Read(
        lambda w: [
            call(page_size=3),
            *(call(customer_id=c, page_size=2) for c in w.of("customer")),
        ],
        iterated,
    ),
    "activities.list": Read(lambda w: [call(limit=1000), *_per_customer(w)]),
    "activities.log": Write(
        lambda w: [
            call("note", "Probe", customer_id=c, private=p)
            for c in w.of("customer")
            for p in (True, False)
        ]
    ),
    "activities.track": Write(
        lambda w: [
            call(c, "viewed_pricing_page", lead_id=lead)
            for c in w.of("contact")[:2]
            for lead in w.of("lead")
        ]
    ),
    "activities.update": Write(pick("activity", body="corrected")),
    # -- analytics
    "analytics.funnel": Read(
        lambda w: [
            call(reads=("lead.status", "deal.lead_id", "deal.status")),
        ],
        figure(lambda o, t: expect_funnel(o, t, False), got_funnel),
    ),
    "analytics.forecast": Read(
        once(
            call(
                reads=(
                    "deal.expected_close",
                    "deal.owner_id",
                    "deal.amount",
                    "deal.probability",
                    "deal.status",
                )
            )
        ),
        figure(expect_forecast, got_forecast),
    ),
    "analytics.win_rate": Read(
        once(call(reads=("deal.status", "deal.closed_at"))), figure(expect_win_rate, got_win_rate)
    ),
    "analytics.sources": Read(
        once(
            call(
                reads=(
                    "lead.source",
                    "lead.status",
                    "deal.source",
                    "deal.status",
                    "deal.amount",
                )
            )
        ),
        figure(expect_sources, got_sources),
    ),
    "analytics.rfm": Read(
        once(
            call(
                reads=(
                    "contract.status",
                    "contract.customer_id",
                    "contract.signed_at",
                    "contract.amount",
                )
            )
        ),
        figure(expect_rfm, got_rfm),
    ),
    "analytics.aging": Read(
        once(
            call(
                as_of=date(2026, 1, 5),
                reads=(
                    "receivable.status",
                    "receivable.due",
                    "receivable.amount",
                    "receivable.paid",
                ),
            )
        ),
        figure(expect_aging, got_aging),
    ),
    "analytics.service": Read(
        once(
            call(
                by="agent",
                reads=(
                    "ticket.assignee_id",
                    "ticket.opened_at",
                    "ticket.resolved_at",
                    "ticket.csat_score",
                    "ticket.first_response_at",
                ),
            )
        ),
        figure(lambda o, t: expect_service(o, t, True), got_service),
    ),
    "analytics.subscriptions": Read(
        once(
            call(
                as_of=_RUNS_ON,
                reads=(
                    "contract.billing_period",
                    "contract.status",
                    "contract.start",
                    "contract.end",
                    "contract.recurring",
                    "contract.ended_at",
                    "contract.renewed_by",
                    "contract.renewal_of",
                ),
            )
        ),
        figure(expect_subscriptions, got_subscriptions),
    ),
    "analytics.stage_funnel": Read(
        once(call(reads=("deal.stage", "deal.stage_history"))),
        figure(expect_stage_funnel, got_stage_funnel),
    ),
    "analytics.set_quota": Write(
        lambda w: [call("2026-04", EUR("10"), owner_id=u) for u in w.users]
    ),
    # -- articles
    "articles.create": Write(once(call("Probe", "Body"))),
    "articles.faq": Read(once(call("machine"))),
    "articles.publish": Write(pick("article")),
    "articles.search": Read(once(call(), call("red button"))),
    "articles.unpublish": Write(pick("article")),
    "articles.update": Write(pick("article", title="Renamed")),
    # -- products
    "products.activate": Write(pick("product")),
    "products.by_external_id": Read(once(call("erp-1"))),
    "products.by_sku": Read(once(call("PR-100"), call("SV-1"))),
    "products.create": Write(once(call("PR-9", "Probe", cost=EUR("5")))),
    "products.deactivate": Write(pick("product")),
    "products.list": Read(once(call(), call(text="press"), call(active=None))),
    "products.update": Write(pick("product", name="Renamed")),
    "products.upsert": Write(once(call("PR-100", description="Again"), call("PR-10", name="New"))),
    # -- price lists
    "price_lists.activate": Write(pick("price_list")),
    "price_lists.create": Write(once(call("Probe", "EUR", customer_group="probe"))),
    "price_lists.deactivate": Write(pick("price_list")),
    "price_lists.list": Read(once(call(), call(active=None))),
    "price_lists.price": Read(
        lambda w: [
            call(p, quantity=q, customer_id=c, currency="EUR")
            for p in w.of("product")
            for q in (1, 12)
            for c in (None, *w.of("customer")[:2])
        ],
        priced_line,
    ),
    "price_lists.prices": Read(each("price_list")),
    "price_lists.set_price": Write(
        lambda w: [
            call(pl, p, EUR("70"), min_quantity=5)
            for pl in w.of("price_list")
            for p in w.of("product")
        ]
    ),
    "price_lists.update": Write(pick("price_list", name="Renamed")),
    # -- quotes
    "quotes.accept": Write(pick("quote", "sent")),
    "quotes.add_line": Write(pick("quote", "draft", description="Extra", unit_price=EUR("10"))),
    "quotes.approve": Write(pick("quote", "pending_approval")),
    "quotes.deny": Write(pick("quote", "pending_approval", comment="no")),
    "quotes.draft": Write(
        lambda w: [
            call(d, lines=[{"description": "Probe", "unit_price": EUR("10")}])
            for d in w.of("deal", "open")
        ]
    ),
    "quotes.iter": Read(lambda w: [call(page_size=2), *_per_customer(w)], iterated),
    "quotes.list": Read(lambda w: [call(), call(status="sent"), *_per_customer(w)]),
    "quotes.reject": Write(pick("quote", "sent", reason="too dear")),
    "quotes.remove_line": Write(pick("quote", "draft", line=1)),
    "quotes.revise": Write(pick("quote", "sent")),
    "quotes.scan_expired": Write(once(call())),
    "quotes.send": Write(pick("quote", "draft")),
    "quotes.submit": Write(pick("quote", "draft")),
    "quotes.update": Write(pick("quote", "draft", title="Renamed")),
    "quotes.update_line": Write(pick("quote", "draft", line=1, quantity=12)),
    "quotes.versions": Read(each("quote")),
    # -- rates
    "rates.convert": Read(
        once(
            call(USD("100"), "EUR", on=date(2026, 3, 1)),
            call(EUR("100"), "USD", on=date(2026, 3, 1)),
            call(EUR("100"), "GBP", on=date(2026, 3, 1)),
        ),
        converted,
    ),
    "rates.fetch": Write(once(call(FixedRates(), on=date(2026, 3, 1)))),
    "rates.list": Read(once(call(), call("USD", "EUR"))),
    "rates.reporting_currency": Nothing(
        "the tenant's reporting currency: a currency code pycrm's reports run by, as the "
        "default phone region is for parsing"
    ),
    "rates.set": Write(once(call("USD", "EUR", "0.9", on=date(2026, 2, 1)))),
    "rates.to_reporting": Read(once(call(USD("100"), on=date(2026, 3, 1))), converted),
    # -- audit
    "audit.iter": Read(
        lambda w: [
            call(page_size=7),
            *(call(actor_id=u, page_size=5, sampled=True) for u in w.users),
        ],
        iterated,
    ),
    "audit.find": Read(
        lambda w: [
            call(limit=1000),
            *(call(actor_id=u, limit=1000, sampled=True) for u in w.users),
            *(
                call(record_id=i, limit=1000)
                for k in ("activity", "customer", "contract", "receivable", "lead", "merge", "deal")
                for i in w.of(k)
            ),
        ]
    ),
    # -- campaigns and segments
    "campaigns.by_name": Read(lambda w: [call(n) for n in w.campaigns]),
    "campaigns.campaign_members": Read(
        lambda w: [call(i, subject=("campaign", i)) for i in w.campaigns.values()]
    ),
    "campaigns.compile": Read(
        once(
            call(
                "customer",
                {
                    "field": "rfm_class",
                    "op": "in",
                    "value": ["champions", "loyal", "new", "at_risk", "hibernating", "potential"],
                },
                reads=(
                    "contract.status",
                    "contract.customer_id",
                    "contract.signed_at",
                    "contract.amount",
                ),
            )
        ),
        compiled_ids,
    ),
    "campaigns.count": Read(
        lambda w: [call(n, reads=SEGMENT_READS[n]) for n in w.segments], segment_count
    ),
    "campaigns.create": Write(
        lambda w: [call("Probe", channel="email", segment=n) for n in w.segments]
    ),
    "campaigns.create_segment": Write(
        lambda w: [call(f"probe {n}", "customer", r) for n, r in SEGMENTS.items()]
    ),
    "campaigns.finish": Write(lambda w: [call(i) for i in w.campaigns.values()]),
    "campaigns.members": Read(
        lambda w: [call(n, reads=SEGMENT_READS[n]) for n in w.segments], members
    ),
    "campaigns.record_response": Write(
        lambda w: [
            call(w.campaigns["Spring"], response="opened", customer_id=c) for c in w.of("customer")
        ]
    ),
    "campaigns.segments": Read(once(call())),
    "campaigns.snapshot": Write(lambda w: [call(w.campaigns["Autumn"])], snapshot_count),
    # -- consent
    "consent.allows": Read(
        lambda w: [call(i, "marketing", "sms", subject=(k, i)) for k in PEOPLE for i in w.of(k)],
        consent_allowed,
    ),
    "consent.current": Read(lambda w: [call(i, subject=(k, i)) for k in PEOPLE for i in w.of(k)]),
    "consent.grant": Write(
        lambda w: [call(i, "profiling", subject=(k, i)) for k in PEOPLE for i in w.of(k)]
    ),
    "consent.history": Read(lambda w: [call(i, subject=(k, i)) for k in PEOPLE for i in w.of(k)]),
    "consent.withdraw": Write(
        lambda w: [
            call(i, "marketing", channel="any", subject=(k, i)) for k in PEOPLE for i in w.of(k)
        ]
    ),
    # -- privacy
    "privacy.access_request": Write(
        lambda w: [call(i, subject=(k, i)) for k in PEOPLE for i in w.of(k)[:1]],
        granted("privacy_request", "create"),
    ),
    "privacy.erase": Write(
        lambda w: [call(i, reason="asked", subject=(k, i)) for k in PEOPLE for i in w.of(k)[:1]],
        granted("privacy_request", "create"),
    ),
    "privacy.erase_many": Write(
        lambda w: [call([i], reason="asked", subject=(k, i)) for k in PEOPLE for i in w.of(k)[:1]],
        granted("privacy_request", "create"),
    ),
    "privacy.hold": Write(
        lambda w: [call(i, reason="case 7", subject=(k, i)) for k in PEOPLE for i in w.of(k)[:1]],
        granted("legal_hold", "create"),
    ),
    "privacy.on_hold": Read(
        lambda w: [call(i, subject=(k, i)) for k in PEOPLE for i in w.of(k)],
        granted("legal_hold", "read"),
    ),
    "privacy.release": Write(
        lambda w: [call(i, reason="closed", subject=(k, i)) for k in PEOPLE for i in w.of(k)[:1]],
        granted("legal_hold", "update"),
    ),
    # -- categories
    "categories.by_path": Read(once(call("industry"), call("industry/machinery"))),
    "categories.check_paths": Nothing("returns the paths it was given, once they exist"),
    "categories.create": Write(once(call("probe", "Probe", parent="industry"))),
    "categories.tree": Read(once(call("industry"))),
    # -- contacts
    "contacts.archive": Write(pick("contact")),
    "contacts.create": Write(
        lambda w: [
            call("Probe", emails=[e], on_duplicate=p) for e in w.emails for p in ("block", "merge")
        ]
    ),
    "contacts.iter": Read(
        once(call(page_size=2), call(include_archived=True, page_size=3)), iterated
    ),
    "contacts.search": Read(
        lambda w: [
            call(limit=1000),
            call(include_archived=True, limit=1000),
            *(call(email=e, reads=("contact.contact_points",), sampled=True) for e in w.emails),
            call(company="acme"),
            call(family_name="stone", reads=("contact.family_name",)),
        ]
    ),
    "contacts.timeline": Read(each("contact")),
    "contacts.update": Write(pick("contact", title="Boss")),
    # -- contracts
    "contracts.activate": Write(pick("contract", "signed")),
    "contracts.approve": Write(pick("contract", "pending_approval")),
    "contracts.awaiting": Read(once(call(), call("legal"))),
    "contracts.complete": Write(pick("contract", "active")),
    "contracts.draft": Write(lambda w: [call(d) for d in w.of("deal", "won")]),
    "contracts.iter": Read(lambda w: [call(page_size=3), *_per_customer(w)], iterated),
    "contracts.list": Read(lambda w: [call(limit=100), *_per_customer(w)]),
    "contracts.reject": Write(pick("contract", "pending_approval", comment="no")),
    "contracts.recall": Write(
        lambda w: [call(c) for st in ("pending_approval", "approved") for c in w.of("contract", st)]
    ),
    "contracts.delegate": Write(
        lambda w: [call(c, u) for c in w.of("contract", "pending_approval") for u in w.users]
    ),
    "contracts.renew": Write(lambda w: [call(id) for id in w.subscriptions]),
    "contracts.scan_renewals": Write(once(call())),
    "contracts.revise": Write(pick("contract", "rejected", discount_percent=5)),
    "contracts.sign": Write(pick("contract", "approved")),
    "contracts.submit": Write(pick("contract", "draft")),
    "contracts.terminate": Write(pick("contract", "active", reason="ended")),
    # -- customers
    "customers.archive": Write(pick("customer")),
    "customers.assess": Write(lambda w: [call(c, "grade", "B") for c in w.of("customer")]),
    "customers.assessments": Read(each("customer")),
    "customers.consolidated": Read(
        lambda w: [call(c, "grade", subject=("customer", c)) for c in w.of("customer")], walked
    ),
    "customers.count": Read(once(call(reads=("customer.status",))), customer_count),
    "customers.create": Write(
        lambda w: [
            call("Acme GmbH", emails=["info@acme.example"], on_duplicate=p)
            for p in ("block", "merge", "warn")
        ]
    ),
    "customers.history_of_assessments": Read(each("customer")),
    "customers.restore": Write(pick("customer")),
    "customers.rule_for": Nothing("returns the CRM's configured consolidation function"),
    "customers.iter": Read(
        once(
            call(page_size=2),
            call(include_archived=True, page_size=3),
            call(industry="machinery", reads=("customer.industry",), page_size=1),
        ),
        iterated,
    ),
    "customers.search": Read(
        lambda w: [
            call(limit=1000),
            call(include_archived=True, limit=1000),
            call("acme"),
            call(industry="machinery", reads=("customer.industry",)),
            call(tag="key account", reads=("customer.tags",)),
            call(custom={"tier": "gold"}, reads=("customer.custom.tier",)),
            call(category="industry", reads=("customer.categories",)),
            *(call(email=e, reads=("customer.contact_points",), sampled=True) for e in w.emails),
        ]
    ),
    "customers.timeline": Read(each("customer")),
    "customers.update": Write(pick("customer", grade="Z", custom={"tier": "bronze"})),
    "customers.view": Read(each("customer")),
    # -- deals
    "deals.create": Write(
        lambda w: [call("Probe", customer_id=c, amount=EUR("1")) for c in w.of("customer")]
    ),
    "deals.create_pipeline": Write(once(call("probe", "Probe", [("a", "A", 10)]))),
    "deals.iter": Read(lambda w: [call(page_size=3), *_per_customer(w)], iterated),
    "deals.list": Read(lambda w: [call(limit=1000), *_per_customer(w)]),
    "deals.lose": Write(pick("deal", "open", reason="price")),
    "deals.move": Write(pick("deal", "open", stage="proposal")),
    "deals.pipeline": Read(once(call())),
    "deals.pipelines": Read(once(call())),
    "deals.update": Write(pick("deal", "open", name="Renamed")),
    "deals.win": Write(pick("deal", "open")),
    # -- dedupe
    "dedupe.check": Read(
        lambda w: [
            *(
                call(k, name="Bob Stone", email=e, reads=(f"{k}.contact_points",), sampled=True)
                for k in ("lead", "contact")
                for e in w.emails
            ),
            call("customer", name="Acme GmbH"),
            call(
                "customer",
                name="Acme",
                emails=["info@acme.example"],
                reads=("customer.contact_points",),
            ),
        ]
    ),
    "dedupe.cleansing_report": Read(once(call(), call("lead"), call("contact"), call("customer"))),
    "dedupe.fit": Write(once(call("contact"), call("lead"), call("customer"))),
    "dedupe.link": Read(
        once(
            call("contact", "lead"),
            call("lead", [{"name": "Bob Stone", "emails": ["bob@stone.example"]}]),
            call("customer", [{"name": "Acme GmbH"}], one_to_one=True),
        )
    ),
    "dedupe.models": Read(once(call("contact"), call("lead"), call("customer"))),
    "dedupe.merge": Write(
        lambda w: (
            [
                call(*_merge_args(w.dup_customers), record_type="customer", dry_run=d)
                for d in (False, True)
            ]
            + [call(*_merge_args(w.dup_contacts), record_type="contact")]
        )
    ),
    "dedupe.scan": Read(
        once(call("lead"), call("contact"), call("customer"), call("lead", threshold=0.5))
    ),
    "dedupe.unmerge": Write(pick("merge")),
    # -- documents
    "documents.attach": Write(
        lambda w: [call("customer", c, "probe.txt", b"probe") for c in w.of("customer")]
    ),
    "documents.list": Read(
        lambda w: [call(k, i, subject=(k, i)) for k in ("customer", "deal") for i in w.of(k)]
    ),
    "documents.new_version": Write(lambda w: [call(k, b"v2") for k in w.document_keys]),
    "documents.orphans": Read(once(call())),
    "documents.read": Read(each("document"), documents_read),
    "documents.share": Write(
        lambda w: [call(k, r) for k in w.document_keys for r in (None, ["legal", "sales"])]
    ),
    "documents.versions": Read(lambda w: [call(k) for k in w.document_keys]),
    # -- custom fields
    "fields.define": Write(once(call("customer", "probe", "text"))),
    "fields.definitions": Read(once(call("customer"), call("lead"))),
    "fields.get_definition": Read(once(call("customer", "tier"), call("lead", "fair"))),
    "fields.redefine": Write(once(call("customer", "tier", label="Level"))),
    "fields.retire": Write(once(call("lead", "fair"))),
    "fields.typed": Nothing("converts the custom values of a record the caller hands it"),
    # -- exports
    "export.csv": Read(
        lambda w: [call(k, io.StringIO(), sampled=True) for k in EXPORTS], exported("csv")
    ),
    "export.jsonl": Read(
        lambda w: [call(k, io.StringIO(), sampled=True) for k in EXPORTS], exported("jsonl")
    ),
    "export.rows": Read(
        lambda w: [
            *(call(k) for k in EXPORTS),
            *(
                call(k, fields=["id", f], reads=(f"{EXPORTS[k]}.{f}",), sampled=True)
                for k, f in EXPORT_PROBES
            ),
        ],
        exported("rows"),
    ),
    # -- imports
    "importer.contacts": Import("contact"),
    "importer.customers": Import("customer"),
    "importer.leads": Import("lead"),
    # -- leads
    "leads.archive": Write(pick("lead")),
    "leads.assign": Write(lambda w: [call(lead, u) for lead in w.of("lead") for u in w.users]),
    "leads.candidates": Read(once(call())),
    "mail.receive": Write(
        once(
            call(b"From: anna@acme.example\nSubject: Help\nMessage-ID: <m2@x>\n\nHi\n"),
            call(
                b"From: Lou <lou@x.example>\nSubject: Offer?\nMessage-ID: <q2@x>\n\nHi\n", to="lead"
            ),
        )
    ),
    "leads.receive_mail": Write(
        lambda w: [
            call(f"From: Lou <{e}>\nSubject: Offer?\nMessage-ID: <q@x>\n\nPrices?\n".encode())
            for e in w.emails
        ]
    ),
    "leads.capture": Write(
        lambda w: [
            call("Probe", source="webform", email=e, on_duplicate=p)
            for e in w.emails
            for p in ("block", "merge")
        ]
    ),
    "leads.convert": Write(pick("lead", "qualified")),
    "leads.delete": Write(pick("lead")),
    "leads.disqualify": Write(pick("lead", reason="spam")),
    "leads.explain_assignment": Read(each("lead")),
    "leads.mark_contacted": Write(pick("lead", "assigned")),
    "leads.preview_assignment": Read(once(call(name="Eve", email="eve@example.com"))),
    "leads.qualify": Write(pick("lead", "contacted")),
    "leads.restore": Write(pick("lead")),
    "leads.route": Write(pick("lead", "new")),
    "leads.iter": Read(
        once(call(page_size=2), call(status="qualified", reads=("lead.status",), page_size=1)),
        iterated,
    ),
    "leads.search": Read(
        lambda w: [
            call(limit=1000),
            call("cara"),
            call(source="webform", reads=("lead.source",)),
            call(status="qualified", reads=("lead.status",)),
            call(custom={"fair": "hannover"}, reads=("lead.custom.fair",)),
            call(include_archived=True, limit=1000),
        ]
    ),
    "leads.update": Write(pick("lead", needs="more")),
    # -- the organisation
    "org.add_to_team": Write(lambda w: [call(u, t) for u in w.users for t in w.of("team")]),
    "org.create_department": Write(once(call("probes", "Probes"))),
    "org.create_team": Write(once(call("Probe team", "sales"))),
    "org.create_user": Write(once(call("Probe", "probe@policy.example", "sales"))),
    "org.deactivate_user": Write(lambda w: [call(u) for u in w.users]),
    "org.departments": Read(once(call()), departments),
    "org.find_user": Read(
        lambda w: [
            call(f"user{i}@policy.example", subject=("user", u)) for i, u in enumerate(w.users)
        ]
    ),
    "org.get_team": Read(each("team")),
    "org.get_user": Read(each("user")),
    "org.reactivate_user": Write(lambda w: [call(u) for u in w.users]),
    "org.teams": Read(once(call())),
    "org.update_user": Write(lambda w: [call(u, name="Renamed") for u in w.users]),
    "org.users": Read(once(call(), call(department="sales", reads=("user.department",)))),
    # -- receivables
    "receivables.find_payment": Read(
        lambda w: [call(r, reads=("receivable.payments",)) for r in w.payment_refs]
    ),
    "receivables.iter": Read(lambda w: [call(page_size=2), *_per_customer(w)], iterated),
    "receivables.list": Read(lambda w: [call(limit=100), *_per_customer(w)]),
    "receivables.record_payment": Write(
        pick("receivable", "open", amount=EUR("1"), reference="PROBE")
    ),
    "receivables.scan_overdue": Write(once(call())),
    "receivables.write_off": Write(pick("receivable", reason="bad debt")),
    # -- the session's own calls
    "session.commit": Nothing("ends the unit of work; returns nothing"),
    "session.read": Read(
        lambda w: [call(cls, sampled=True) for cls in RECORD_TYPES if cls.resource in KINDS],
        reader,
    ),
    "session.rollback": Nothing("ends the unit of work; returns nothing"),
    # -- runtime settings
    # A dry run only: a real run commits batch by batch, outside the session a write rolls back.
    "retention.preview": Read(once(call(), call("stale-leads", limit=5))),
    "retention.rules": Read(once(call())),
    "retention.run": Read(once(call(dry_run=True), call("stale-leads", batch=2, dry_run=True))),
    "retention.set_rules": Write(once(call([]))),
    "settings.get": Read(once(call("default_region"), call("routing_rules")), setting_value),
    "settings.list": Read(once(call())),
    "settings.reset": Write(once(call("default_region"))),
    "settings.set": Write(once(call("default_region", "AT"), call("scoring", {"per_event": 5}))),
    # -- tasks
    "tasks.agenda": Read(lambda w: [call(u, sampled=True) for u in w.users]),
    "tasks.cancel": Write(pick("task", "open")),
    "tasks.complete": Write(pick("task", "open")),
    "tasks.create": Write(lambda w: [call("Probe", assignee_id=u) for u in w.users]),
    "tasks.iter": Read(once(call(status=None, page_size=2), call(page_size=1)), iterated),
    "tasks.list": Read(once(call(status=None), call())),
    "tasks.scan_overdue": Write(once(call(at="later"))),
    # -- tickets
    "tickets.assign": Write(lambda w: [call(t, u) for t in w.of("ticket") for u in w.users]),
    "tickets.breaches": Read(once(call("later"))),
    "tickets.candidates": Read(once(call())),
    "tickets.close": Write(pick("ticket", "resolved")),
    "tickets.customer_reply": Write(pick("ticket", body="thanks")),
    "tickets.escalate": Write(once(call("later"))),
    "tickets.link_article": Write(
        lambda w: [call(t, a) for t in w.of("ticket") for a in w.of("article")]
    ),
    "tickets.iter": Read(lambda w: [call(page_size=2), *_per_customer(w)], iterated),
    "tickets.list": Read(lambda w: [call(limit=100), *_per_customer(w)]),
    "tickets.note": Write(pick("ticket", body="internal")),
    "tickets.open": Write(
        lambda w: [call("Probe", channel="email", customer_id=c) for c in w.of("customer")]
    ),
    "tickets.rate": Write(pick("ticket", "resolved", score=5)),
    "tickets.reopen": Write(pick("ticket", "resolved")),
    "tickets.receive_mail": Write(
        once(
            call(b"From: anna@acme.example\nSubject: Help\nMessage-ID: <m1@x>\n\nHi\n"),
            call(b"From: anna@acme.example\nSubject: Re: Help\nIn-Reply-To: <m1@x>\n\nMore\n"),
        )
    ),
    "tickets.reply": Write(pick("ticket", body="hello")),
    "tickets.resolve": Write(pick("ticket", "in_progress")),
    "tickets.route": Write(pick("ticket", "new")),
    "tickets.start": Write(pick("ticket", "assigned")),
    "tickets.update": Write(
        lambda w: [
            call(t, **change)
            for t in w.of("ticket")
            for change in ({"subject": "Renamed"}, {"priority": "urgent"})
        ]
    ),
    "tickets.wait_on_customer": Write(pick("ticket", "in_progress")),
}


def _merge_args(pair: tuple[str, str] | None) -> tuple[str, list[str]]:
    assert pair is not None
    return pair[0], [pair[1]]


def _resolve(value: Any, w: World) -> Any:
    """Placeholders in the table that depend on the example's clock."""
    return w.now + NOW_PLUS if value == "later" else value


# -- enumerating the public surface ----------------------------------------------------------------


def public_methods() -> dict[str, Any]:
    """``service.method`` → the method, for every service a Session offers (found by introspection).

    The session's own public calls are named ``session.<name>``.
    """
    crm = pycrm.connect("memory://")
    found: dict[str, Any] = {}
    with crm.session(crm.system_actor) as s:
        for attr, value in inspect.getmembers(type(s)):
            if attr.startswith("_"):
                continue
            if not isinstance(value, functools.cached_property):
                if callable(value) or isinstance(value, property):
                    found[f"session.{attr}"] = value  # the session's own calls
                continue
            service = getattr(s, attr)
            if not isinstance(service, Service):
                continue
            for name, member in inspect.getmembers(type(service)):
                if name.startswith("_") or inspect.isclass(member):
                    continue
                if callable(member) or isinstance(member, property):
                    found[f"{attr}.{name}"] = member
    return found


def test_every_public_service_method_is_classified() -> None:
    methods = set(public_methods())
    missing = sorted(methods - set(TABLE))
    stale = sorted(set(TABLE) - methods)
    assert not missing, (
        f"classify these public methods in TABLE of {__name__}: how to call them and judge what "
        f"they return (Read/Write/Import), or why they return nothing readable (Nothing): "
        f"{missing}"
    )
    assert not stale, f"TABLE names methods that no longer exist: {stale}"


def test_the_table_covers_the_documented_read_paths() -> None:
    for name in (
        "audit.find",
        "campaigns.members",
        "campaigns.count",
        "dedupe.check",
        "dedupe.scan",
        "dedupe.cleansing_report",
        "leads.convert",
        "dedupe.merge",
    ):
        assert isinstance(TABLE[name], Read | Write), name


# -- the property --------------------------------------------------------------------------------

_READS = {name: entry for name, entry in TABLE.items() if isinstance(entry, Read)}
_WRITES = sorted(name for name, entry in TABLE.items() if isinstance(entry, Write))
_IMPORTS = sorted(name for name, entry in TABLE.items() if isinstance(entry, Import))
#: How often each method answered (was not refused), over the examples run in this process.
ANSWERED: collections.Counter[str] = collections.Counter()
#: Per-record reads try this many records per user (a random sample).
SAMPLE = 2
#: Writes tried per example (each by a random user, then rolled back).
WRITES = 30


def _method(s: Session, name: str) -> Callable[..., Any]:
    service, method = name.split(".")
    return getattr(s if service == "session" else getattr(s, service), method)  # type: ignore[no-any-return]


def _invoke(fn: Callable[..., Any], how: Call, w: World) -> Any:
    args = [_resolve(a, w) for a in how.args]
    kwargs = {k: _resolve(v, w) for k, v in how.kwargs.items()}
    return fn(*args, **kwargs)


def _expected_refusal(o: Oracle, t: Truth, how: Call) -> str | None:
    if how.subject is not None:
        kind, id = how.subject
        record = t.get(kind, id)
        why = None if record is None else o.why_not(kind, record, t)
        if why is not None:
            return f"answered about {kind} {id}, which is {why}"
    for name in how.reads:
        kind, _, rest = name.partition(".")
        if o.is_hidden(kind, rest, t):
            return f"filtered, grouped or measured on hidden field {name}"
    return None


def run_reads(
    crm: pycrm.CRM,
    w: World,
    policy: Mapping[str, Any],
    person: Person,
    rnd: random.Random,
    violations: list[str],
) -> None:
    with crm.session(person.id, tenant=w.tenant) as s:
        truth = Truth(s)
        people, managed = org_chart(truth)
        judge = Judge(Oracle(policy, person, people, managed), truth, violations)
        for name, entry in _READS.items():
            calls = entry.args(w)
            alike = [c for c in calls if c.sampled]
            calls = [c for c in calls if not c.sampled]
            calls += rnd.sample(alike, min(SAMPLE, len(alike)))
            for how in calls:
                where = f"{name}({how.describe()}) as {_label(person)}"
                try:
                    result = _invoke(_method(s, name), how, w)
                except (PermissionDenied, NotFound):
                    continue
                except Exception as exc:
                    judge.fail(where, f"raised {type(exc).__name__}: {exc}")
                    continue
                ANSWERED[name] += 1
                refusal = _expected_refusal(judge.o, truth, how)
                if refusal is not None:
                    judge.fail(where, refusal)
                try:
                    entry.check(judge, where, result, how)
                except (PermissionDenied, NotFound):
                    continue  # a lazy result (export rows) refused while being read
                except Exception as exc:
                    judge.fail(where, f"raised {type(exc).__name__} while read: {exc}")


def run_write(
    crm: pycrm.CRM,
    w: World,
    policy: Mapping[str, Any],
    person: Person,
    name: str,
    how: Call,
    before: Truth,
    violations: list[str],
) -> bool:
    """Make one write as ``person``, judge what it returned, and roll it back."""
    entry = TABLE[name]
    assert isinstance(entry, Write)
    s = crm.session(person.id, tenant=w.tenant)
    where = f"{name}({how.describe()}) as {_label(person)}"
    try:
        try:
            result: Any = _invoke(_method(s, name), how, w)
        except DuplicateError as exc:
            result = list(exc.candidates)
        except CRMError:
            return False
        except Exception as exc:
            violations.append(f"{where}: raised {type(exc).__name__}: {exc}")
            return False
        ANSWERED[name] += 1
        people, managed = org_chart(before)
        judge = Judge(Oracle(policy, person, people, managed), Truth(s), violations, before)
        entry.check(judge, where, result, how)
        # Duplicates let through under policy "warn" are listed on the session, candidates too.
        judge.walk(f"{where} → dedupe.warnings", s.dedupe.warnings)
        return True
    finally:
        s.rollback()


def run_import(
    crm: pycrm.CRM,
    w: World,
    policy: Mapping[str, Any],
    person: Person,
    name: str,
    email: str,
    violations: list[str],
) -> None:
    entry = TABLE[name]
    assert isinstance(entry, Import)
    where = f"{name}([{{'name': 'Probe', 'email': {email!r}}}]) as {_label(person)}"
    with crm.session(person.id, tenant=w.tenant) as s:
        truth = Truth(s)
        people, managed = org_chart(truth)
        judge = Judge(Oracle(policy, person, people, managed), truth, violations)
        rows = [{"name": "Probe Person", "email": email}]
        try:
            report = _method(s, name)(rows, on_duplicate="skip")
        except (PermissionDenied, NotFound):
            return
        import_report(judge, where, report, call(entry.kind, email))


def _label(person: Person) -> str:
    roles = ",".join(sorted(person.roles))
    return f"<{person.id[-6:]} {person.department}{'+' + roles if roles else ''}>"


def calibrate(crm: pycrm.CRM, w: World, policy: Mapping[str, Any]) -> None:
    """The figures' calculators agree with the system actor, who reads everything."""
    mistakes: list[str] = []
    with crm.session(crm.system_actor, tenant=w.tenant) as s:
        truth = Truth(s)
        judge = Judge(Oracle(policy, None, [], {}), truth, mistakes)
        for name, entry in _READS.items():
            if name.startswith("analytics.") or name == "customers.count":
                for how in entry.args(w):
                    entry.check(judge, f"system {name}", _invoke(_method(s, name), how, w), how)
        for segment in ("buyers", "machinery", "gold"):
            how = call(segment)
            segment_count(judge, f"system count {segment}", s.campaigns.count(segment), how)
    assert not mistakes, f"the test's own calculators are wrong: {mistakes}"


#: One world builder per backend under test (every example builds in a tenant of its own).
_BUILDERS: weakref.WeakKeyDictionary[ConnectFn, pycrm.CRM] = weakref.WeakKeyDictionary()


def check_example(connect_crm: ConnectFn, data: st.DataObject) -> tuple[dict[str, Any], list[str]]:
    """Build a world under a random policy, call every method as every user; return the leaks."""
    policy = data.draw(policies(), label="policy")
    builder = _BUILDERS.get(connect_crm)
    if builder is None:
        builder = _BUILDERS[connect_crm] = connect_crm(policy=ALLOW_ALL, on_duplicate="allow")
    world = build_world(builder, data)
    crm = connect_crm(policy=Policy.from_dict(policy), blob_store=builder.blob_store)
    calibrate(crm, world, policy)
    rnd = data.draw(st.randoms(use_true_random=False), label="sample")
    violations: list[str] = []
    with crm.session(crm.system_actor, tenant=world.tenant) as s:
        people, _ = org_chart(Truth(s))
    for person in people:
        run_reads(crm, world, policy, person, rnd, violations)
    before = Truth.snapshot(crm, world.tenant)
    writes = st.lists(st.sampled_from(_WRITES), min_size=WRITES, max_size=WRITES, unique=True)
    for name in data.draw(writes, label="writes"):
        calls = TABLE[name].args(world)  # type: ignore[union-attr]
        if calls:
            # The world's first user (a key account) writes more often: see policies().
            key_account = [p for p in people if p.id == world.users[0]]
            person = data.draw(st.sampled_from(key_account * len(people) + people), label="writer")
            how = data.draw(st.sampled_from(calls), label=name)
            run_write(crm, world, policy, person, name, how, before, violations)
    importer = data.draw(st.sampled_from(people), label="importer")
    kind = data.draw(st.sampled_from(_IMPORTS), label="import")
    email = data.draw(st.sampled_from(world.emails), label="import email")
    run_import(crm, world, policy, importer, kind, email, violations)
    return policy, list(dict.fromkeys(violations))


def summary(found: Sequence[tuple[dict[str, Any], list[str]]]) -> str:
    """The leaks of every failing example, by method: how many, two of each, and their policies."""
    by_method: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for n, (_policy, violations) in enumerate(found, start=1):
        for v in violations:
            by_method[v.partition("(")[0]].append((n, v))
    lines = [f"leaks in {len(found)} examples, by method:"]
    cited: set[int] = set()
    for method, leaks in sorted(by_method.items()):
        lines.append(f"{method}: {len(leaks)}")
        for n, v in leaks[:2]:
            lines.append(f"    [example {n}] {v}")
            cited.add(n)
    lines.append("the policies of the examples cited:")
    lines += [f"    [example {n}] {found[n - 1][0]}" for n in sorted(cited)]
    return "\n".join(lines)


#: Examples per backend, as a share of ``PYCRM_POLICY_EXAMPLES``: an example costs about
#: 0.5 s in memory, 1.5 s on SQLite and 3 s on PostgreSQL (on an idle machine).
SHARE = {"memory": 2.0, "sqlite": 1.0, "postgresql": 0.5}


def test_no_public_method_returns_what_the_policy_forbids(
    connect_crm: ConnectFn, backend: str
) -> None:
    @settings(
        max_examples=max(1, round(EXAMPLES * SHARE[backend])),
        deadline=None,
        # No shrinking: each example builds a whole world, shrinking one would take minutes,
        # and the failure lists every leak with the method, the actor and the record.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def example(data: st.DataObject) -> None:
        policy, violations = check_example(connect_crm, data)
        if violations:
            found.append((policy, violations))

    # Every example runs, and the failure lists the leaks of them all: fixing one path at a
    # time, one wants to see every other path that still leaks, not only the first.
    found: list[tuple[dict[str, Any], list[str]]] = []
    example()
    assert not found, summary(found)


# -- the known side paths, one by one --------------------------------------------------------------


def answer(ask: Callable[[], Any]) -> Any:
    """What a read returns, or None when it is refused (PermissionDenied or NotFound)."""
    try:
        return ask()
    except (PermissionDenied, NotFound):
        return None


def _signed_contract(s: Session, customer_id: str, amount: str, owner_id: str | None = None) -> Any:
    deal = s.deals.create("Order", customer_id=customer_id, amount=EUR(amount), owner_id=owner_id)
    s.deals.win(deal.id)
    contract = s.contracts.draft(deal.id, list_amount=EUR("9999"))
    s.contracts.submit(contract.id)
    return s.contracts.sign(contract.id)


def test_an_admins_audit_find_does_not_show_another_users_private_note(crm: pycrm.CRM) -> None:
    people = staff(crm, ada=("admin", ["admin"]), sam="sales")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
    with crm.session(people.sam.id) as s:
        note = s.activities.log(
            "note", "Call", body="they will switch supplier", customer_id=acme.id, private=True
        )
        s.activities.update(note.id, body="they will switch supplier in May")
    with crm.session(people.ada.id) as s:
        with pytest.raises(NotFound):
            s.activities.get(note.id)  # the main path hides it from the admin
        about_note = answer(lambda: s.audit.find(record_id=note.id))
        everything = s.audit.find(limit=1000)
    assert not about_note
    assert note.id not in {e.record_id for e in everything}
    assert "switch supplier" not in every_field(everything)
    with crm.session(people.sam.id) as s:
        assert {e.action for e in s.audit.find(record_id=note.id)} == {"create", "update"}


def test_audit_find_leaves_fields_hidden_by_the_policy_out_of_snapshots_and_changes(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "grants": [
                    {
                        "roles": ["service"],
                        "resources": ["audit_entry"],
                        "actions": ["read"],
                        "scope": "all",
                    }
                ]
            }
        )
    )
    people = staff(crm, sue="service")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
        contract = _signed_contract(s, acme.id, "3000")
    with crm.session(people.sue.id) as s:
        assert s.contracts.get(contract.id).list_amount is None  # hidden from service
        entries = s.audit.find(record_id=contract.id)
    assert entries, "service may read the contract and every audit entry"
    for entry in entries:
        assert (entry.snapshot or {}).get("list_amount") is None, entry.action
        assert "list_amount" not in entry.changes, entry.action
    assert "9999" not in every_field(entries)


def test_audit_find_leaves_custom_fields_the_user_may_not_read_out(crm: pycrm.CRM) -> None:
    people = staff(crm, ada=("admin", ["admin"]), sam="sales")
    with crm.session(crm.system_actor) as s:
        s.fields.define("customer", "margin", "text", readable_by=["finance"])
        acme = s.customers.create("Acme GmbH", custom={"margin": "41%"})
        s.customers.update(acme.id, custom={"margin": "43%"})
    with crm.session(people.ada.id) as s:
        assert "margin" not in s.customers.get(acme.id).custom  # admin is not in finance
        entries = s.audit.find(record_id=acme.id)
        history = s.customers.history(acme.id)
        then = s.customers.as_of(acme.id, crm.clock.now())
    assert entries
    assert "41%" not in every_field(entries)
    assert "43%" not in every_field(entries)
    assert "41%" not in every_field(history)
    assert "43%" not in every_field(history)
    assert "margin" not in then.custom


def test_a_total_order_amount_segment_reveals_no_contract_totals_to_a_user_who_may_not_read_contracts(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm, mia="marketing")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
        s.customers.create("Bolt AG")
        _signed_contract(s, acme.id, "3000")
    with crm.session(people.mia.id) as s:
        with pytest.raises(PermissionDenied):
            s.contracts.list()  # marketing may not read contracts
        s.campaigns.create_segment(
            "big buyers",
            "customer",
            {"field": "total_order_amount", "op": "gte", "value": ["1000", "EUR"]},
        )
        members = answer(lambda: s.campaigns.members("big buyers"))
        count = answer(lambda: s.campaigns.count("big buyers"))
    assert not members, "a member of this segment is a customer with contracts worth ≥ 1000 EUR"
    assert not count


def test_a_last_activity_segment_ignores_other_users_private_notes(crm: pycrm.CRM) -> None:
    people = staff(crm, sam="sales", mia="marketing")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
        s.campaigns.create_segment(
            "active", "customer", {"field": "last_activity", "op": "within_days", "value": 30}
        )
    with crm.session(people.sam.id) as s:
        s.activities.log("note", "Visit", customer_id=acme.id, private=True)
        assert [c.id for c in s.campaigns.members("active")] == [acme.id]  # the author sees it
    with crm.session(people.mia.id) as s:
        assert not answer(lambda: s.campaigns.members("active"))
        assert not answer(lambda: s.campaigns.count("active"))


def test_dedupe_check_scan_and_cleansing_report_return_no_lead_to_a_user_without_a_lead_grant(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm, fay="finance")
    with crm.session(crm.system_actor) as s:
        first = s.leads.capture("Cara Diaz", source="webform", email="cara@zeta.example")
        s.leads.capture(
            "Cara Diaz",
            source="webform",
            email="cara@zeta.example",
            phones=["12"],
            lenient=True,
            on_duplicate="allow",
        )
    with crm.session(people.fay.id) as s:
        with pytest.raises(PermissionDenied):
            s.leads.search()  # finance has no lead grant
        candidates = answer(
            lambda: s.dedupe.check("lead", name="Cara Diaz", email="cara@zeta.example")
        )
        clusters = answer(lambda: s.dedupe.scan("lead"))
        issues = answer(lambda: s.dedupe.cleansing_report("lead"))
        every_issue = s.dedupe.cleansing_report()
        as_contact = answer(
            lambda: s.dedupe.check("contact", name="Cara Diaz", email="cara@zeta.example")
        )
    assert not candidates
    assert not clusters
    assert not issues
    assert not [i for i in every_issue if i.record_type == "lead"]
    assert first.id not in every_field(as_contact)


def test_leads_convert_hands_back_customer_contact_and_deal_with_hidden_fields_empty(
    connect_crm: ConnectFn,
) -> None:
    # Hidden fields are not writable either, so these are fields convert does not write:
    # the existing customer's grade, the existing contact's title, the new deal's status.
    hidden = [("customer", "grade"), ("contact", "title"), ("deal", "status")]
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "fields": [
                    {"resource": r, "field": f, "hidden": True, "allowed": ["admin"]}
                    for r, f in hidden
                ]
            }
        )
    )
    people = staff(crm, sam="sales")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH", grade="A")
        bob = s.contacts.create(
            "Bob Stone", customer_id=acme.id, title="CFO", emails=["bob@acme.example"]
        )
        lead = s.leads.capture(
            "Bob Stone", source="webform", email="bob@acme.example", company="Acme GmbH"
        )
        s.leads.assign(lead.id, people.sam.id)
        s.leads.mark_contacted(lead.id)
        s.leads.qualify(lead.id)
    with crm.session(people.sam.id) as s:
        customer, contact, deal = s.leads.convert(lead.id)
        assert s.customers.get(acme.id).grade is None  # the main path hides it
    assert (customer.id, contact.id) == (acme.id, bob.id)
    assert customer.grade is None
    assert contact.title is None
    assert deal.status is None


def test_leads_convert_hands_back_no_existing_customer_the_user_may_not_read(
    connect_crm: ConnectFn,
) -> None:
    data = DEFAULT_POLICY.to_dict()
    data["grants"] = [
        g
        for g in data["grants"]
        if not (g["roles"] == ["*"] and "customer" in g["resources"] and "read" in g["actions"])
    ]
    data["grants"] += [
        {
            "roles": ["*"],
            "resources": ["contact", "assessment"],
            "actions": ["read"],
            "scope": "all",
        },
        {"roles": ["sales"], "resources": ["customer"], "actions": ["read"], "scope": "own"},
    ]
    crm = connect_crm(policy=Policy.from_dict(data))
    people = staff(crm, sam="sales", sid="sales")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH", owner_id=people.sid.id, industry="machinery")
        lead = s.leads.capture("Bob Stone", source="webform", company="Acme GmbH")
        s.leads.assign(lead.id, people.sam.id)
        s.leads.mark_contacted(lead.id)
        s.leads.qualify(lead.id)
    with crm.session(people.sam.id) as s:
        with pytest.raises(NotFound):
            s.customers.get(acme.id)  # Sid's customer, out of Sam's reach
        converted = answer(lambda: s.leads.convert(lead.id))
    assert converted is None or converted[0].id != acme.id, (
        "convert returned a customer the user may not read"
    )


def test_dedupe_merge_and_unmerge_hand_back_the_survivor_with_hidden_fields_empty(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "fields": [
                    {"resource": "customer", "field": "grade", "hidden": True, "allowed": ["admin"]}
                ]
            }
        )
    )
    people = staff(crm, max=("sales", ["sales_manager"]))
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH", grade="A", emails=["info@acme.example"])
        twin = s.customers.create(
            "ACME GmbH", grade="B", emails=["info@acme.example"], on_duplicate="allow"
        )
    with crm.session(people.max.id) as s:
        assert s.customers.get(acme.id).grade is None  # hidden from sales managers
        preview = s.dedupe.merge(acme.id, [twin.id], dry_run=True)
        merged = s.dedupe.merge(acme.id, [twin.id])
        assert merged.merge_id is not None
        undone = s.dedupe.unmerge(merged.merge_id)
    for result in (preview, merged, undone):
        assert result.survivor.grade is None


# -- side paths the property found -------------------------------------------------------------


def test_audit_find_on_a_merge_shows_no_before_image_of_another_users_private_note(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm, ada=("admin", ["admin"]), sam="sales")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
        twin = s.customers.create("ACME GmbH", on_duplicate="allow")
    with crm.session(people.sam.id) as s:
        note = s.activities.log(
            "note", "Call", body="they will switch supplier", customer_id=twin.id, private=True
        )
    with crm.session(crm.system_actor) as s:
        s.dedupe.merge(acme.id, [twin.id])
    with crm.session(people.ada.id) as s:
        entries = s.audit.find(record_type="merge")
    assert entries, "admins read the audit trail of merges"
    assert note.id not in repr(entries)
    assert "switch supplier" not in repr(entries)


def test_find_payment_does_not_probe_payments_hidden_from_the_user(crm: pycrm.CRM) -> None:
    people = staff(crm, sam="sales")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
        contract = _signed_contract(s, acme.id, "3000", owner_id=people.sam.id)
        receivable = s.receivables.list(contract_id=contract.id)[0]
        s.receivables.record_payment(receivable.id, EUR("100"), reference="BANK-42")
    with crm.session(people.sam.id) as s:
        assert s.receivables.get(receivable.id).payments == ()  # hidden from sales
        found = answer(lambda: s.receivables.find_payment("BANK-42"))
    assert found is None, "find_payment told sales which receivable the payment BANK-42 paid"


def test_a_field_rule_hiding_audit_snapshots_and_changes_is_applied(connect_crm: ConnectFn) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "fields": [
                    {"resource": "audit_entry", "field": f, "hidden": True, "allowed": ["legal"]}
                    for f in ("snapshot", "changes")
                ]
            }
        )
    )
    people = staff(crm, ada=("admin", ["admin"]))
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH", grade="A")
    with crm.session(people.ada.id) as s:
        entries = s.audit.find(record_id=acme.id)
    assert entries
    for entry in entries:
        assert entry.snapshot is None
        assert entry.changes == {}


def test_a_merge_shows_no_before_image_of_a_duplicate_the_user_may_no_longer_read(
    connect_crm: ConnectFn,
) -> None:
    # Before the merge the duplicate was active, and readable; now it is a tombstone, which
    # this grant does not reach: its before-image must go the way of the record itself.
    crm = connect_crm(
        policy={
            "grants": [
                {
                    "roles": ["*"],
                    "resources": ["customer"],
                    "actions": ["read"],
                    "scope": "all",
                    "unless": {"status": "merged"},
                },
                {
                    "roles": ["*"],
                    "resources": ["merge", "audit_entry"],
                    "actions": ["read"],
                    "scope": "all",
                },
            ]
        }
    )
    people = staff(crm, sam="sales")
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH", emails=["info@acme.example"])
        gone = s.customers.create("Acme GmbH.", emails=["info@acme.example"], on_duplicate="allow")
        s.dedupe.merge(acme.id, [gone.id])
    with crm.session(people.sam.id) as s:
        with pytest.raises(NotFound):
            s.customers.get(gone.id)
        merges = s.read(Merge).find()
        entries = s.audit.find(record_type="merge")
    assert merges, "everyone reads merges"
    assert entries, "everyone reads the audit trail"
    for merge in merges:
        assert [c.record_id for c in merge.changes] == [acme.id]  # the survivor's is kept
    for entry in entries:
        assert [c["record_id"] for c in (entry.snapshot or {})["changes"]] == [acme.id]


def test_dedupe_merge_refuses_records_the_user_may_update_or_delete_but_not_read(
    connect_crm: ConnectFn,
) -> None:
    crm = connect_crm(
        policy={
            "grants": [
                {
                    "roles": ["*"],
                    "resources": ["customer"],
                    "actions": ["update", "delete"],
                    "scope": "all",
                },
                {"roles": ["*"], "resources": ["customer"], "actions": ["read"], "scope": "own"},
                {"roles": ["*"], "resources": ["merge"], "actions": ["*"], "scope": "all"},
            ]
        }
    )
    people = staff(crm, sam="sales")
    with crm.session(crm.system_actor) as s:
        mine = s.customers.create("Acme GmbH", owner_id=people.sam.id)
        theirs = s.customers.create("ACME GmbH", on_duplicate="allow")
    with crm.session(people.sam.id) as s:
        with pytest.raises(NotFound):
            s.customers.get(theirs.id)
        for survivor, duplicate in ((theirs, mine), (mine, theirs)):
            for dry_run in (True, False):
                with pytest.raises(NotFound):
                    s.dedupe.merge(survivor.id, [duplicate.id], dry_run=dry_run)
