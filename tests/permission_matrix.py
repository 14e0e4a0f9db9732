"""The permission matrix as data: who may do what to whose records under a policy.

The expectations here are computed from the policy's *data*
(:meth:`Policy.to_dict`), with their own small interpreter of grants and
scopes, never by asking :class:`pycrm.services.guard.Guard`. The tests then
perform the real service calls and compare. A few service calls add gates of
their own on top of the policy (org changes are admin-only, payments are
finance's, approving needs the role of a pending step, only an activity's
author may correct it); those are listed in :data:`GATES`.

``test_permission_matrix.py`` turns every (persona, operation, relation)
triple into one test whose id reads as a sentence, e.g.
``a sales rep may not update a deal owned by a team-mate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Scope names, narrowest first (the order pycrm documents; not imported from pycrm).
SCOPES = ("none", "own", "team", "department", "all")


@dataclass(frozen=True)
class Persona:
    """A kind of user: a department and roles."""

    key: str
    label: str
    department: str
    roles: tuple[str, ...] = ()

    @property
    def policy_roles(self) -> frozenset[str]:
        """What the policy matches: the roles plus the department key."""
        return frozenset({*self.roles, self.department})

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles or self.department == "admin"


PERSONAS: tuple[Persona, ...] = (
    Persona("admin", "an admin", "admin", ("admin",)),
    Persona("marketer", "a marketer", "marketing"),
    Persona("sales_rep", "a sales rep", "sales", ("sales_rep",)),
    Persona("sales_manager", "a sales manager", "sales", ("sales_manager",)),
    Persona("agent", "a service agent", "service"),
    Persona("accountant", "a finance clerk", "finance"),
    Persona("lawyer", "a lawyer", "legal", ("legal",)),
    Persona("analyst", "an analyst", "analytics"),
)
PERSONA = {p.key: p for p in PERSONAS}

#: How the record's owner stands to the actor → the narrowest scope that reaches it.
RELATIONS: dict[str, str] = {
    "own": "own",
    "team": "team",
    "department": "department",
    "outsider": "all",
    "nobody": "all",
}
RELATION_PHRASE = {
    "own": "owned by them",
    "team": "owned by a team-mate",
    "department": "owned by someone else in their department",
    "outsider": "owned by an outsider",
    "nobody": "owned by nobody yet",
}
OWNED = ("own", "team", "department", "outsider")

# -- gates services add on top of the policy ------------------------------------


def _admin_only(p: Persona, relation: str) -> bool:
    return p.is_admin


def _finance_only(p: Persona, relation: str) -> bool:
    return p.is_admin or p.department == "finance"


def _approver(p: Persona, relation: str) -> bool:
    # The pending contract in the matrix needs a sales_manager and a legal step.
    return p.is_admin or bool({"sales_manager", "legal"} & set(p.roles))


def _author_only(p: Persona, relation: str) -> bool:
    return relation == "own"


#: name → (check, whether the service checks it before loading the record, why).
GATES: dict[str, tuple[Callable[[Persona, str], bool], bool, str]] = {
    "admin_only": (_admin_only, True, "OrgService: users are managed by admins"),
    "finance_only": (_finance_only, True, "ReceivableService: finance owns payments"),
    "approver": (_approver, False, "ContractService: approving needs a pending step's role"),
    "author_only": (_author_only, False, "ActivityService: only the author corrects it"),
}


@dataclass(frozen=True)
class Operation:
    """One service call the matrix exercises."""

    key: str
    resource: str
    action: str
    """The policy action the call needs."""
    verb: str
    """How the sentence says it: ``update``, ``archive (delete)`` …"""
    relations: tuple[str, ...] = OWNED
    loads: bool = True
    """The call loads an existing record first (so unreadable records are NotFound)."""
    state: Mapping[str, Any] = field(default_factory=dict)
    """Field values of the record the call acts on (for grant conditions)."""
    gate: str | None = None


_OPEN_DEAL = {"status": "open"}

OPERATIONS: tuple[Operation, ...] = (
    Operation("customer.create", "customer", "create", "create", loads=False),
    Operation("customer.read", "customer", "read", "read"),
    Operation("customer.update", "customer", "update", "update"),
    Operation("customer.archive", "customer", "delete", "archive (delete)"),
    Operation("contact.create", "contact", "create", "create", loads=False),
    Operation("contact.read", "contact", "read", "read"),
    Operation("contact.update", "contact", "update", "update"),
    Operation("contact.archive", "contact", "delete", "archive (delete)"),
    Operation("activity.log", "activity", "create", "log", relations=("own",), loads=False),
    Operation("activity.read", "activity", "read", "read"),
    Operation("activity.update", "activity", "update", "correct", gate="author_only"),
    Operation("lead.capture", "lead", "create", "capture", relations=("nobody",), loads=False),
    Operation("lead.read", "lead", "read", "read"),
    Operation("lead.update", "lead", "update", "update"),
    Operation("lead.assign", "lead", "assign", "reassign"),
    Operation("deal.create", "deal", "create", "open", loads=False),
    Operation("deal.read", "deal", "read", "read", state=_OPEN_DEAL),
    Operation("deal.update", "deal", "update", "update", state=_OPEN_DEAL),
    Operation("contract.draft", "contract", "create", "draft", loads=False),
    Operation("contract.read", "contract", "read", "read"),
    Operation("contract.submit", "contract", "update", "submit (update)"),
    Operation("contract.approve", "contract", "approve", "approve", gate="approver"),
    Operation("receivable.read", "receivable", "read", "read"),
    Operation(
        "receivable.pay", "receivable", "update", "record a payment on", gate="finance_only"
    ),
    Operation(
        "receivable.write_off", "receivable", "update", "write off", gate="finance_only"
    ),
    Operation("task.create", "task", "create", "create", loads=False),
    Operation("task.read", "task", "read", "read"),
    Operation("task.complete", "task", "update", "complete (update)"),
    Operation("ticket.open", "ticket", "create", "open", relations=("nobody",), loads=False),
    Operation("ticket.read", "ticket", "read", "read"),
    Operation("ticket.start", "ticket", "update", "start work on (update)"),
    Operation("ticket.assign", "ticket", "assign", "reassign"),
    Operation(
        "user.create", "user", "create", "create", relations=("nobody",), loads=False,
        gate="admin_only",
    ),
    Operation("user.read", "user", "read", "read"),
    Operation("user.update", "user", "update", "update", gate="admin_only"),
)  # fmt: skip

# -- the interpreter ---------------------------------------------------------------


def _covers(grant: Mapping[str, Any], roles: frozenset[str], resource: str, action: str) -> bool:
    return (
        ("*" in grant["roles"] or bool(roles & set(grant["roles"])))
        and ("*" in grant["resources"] or resource in grant["resources"])
        and ("*" in grant["actions"] or action in grant["actions"])
    )


def _conditions_hold(grant: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    when = grant.get("when", {})
    unless = grant.get("unless", {})
    if any(state.get(k) != v for k, v in when.items()):
        return False
    return not (unless and all(state.get(k) == v for k, v in unless.items()))


def widest_scope(
    policy: Mapping[str, Any],
    roles: frozenset[str],
    resource: str,
    action: str,
    state: Mapping[str, Any] | None = None,
) -> str:
    """The widest scope any grant for ``roles`` gives (only grants whose conditions hold)."""
    best = 0
    for grant in policy["grants"]:
        if _covers(grant, roles, resource, action) and _conditions_hold(grant, state or {}):
            best = max(best, SCOPES.index(grant["scope"]))
    return SCOPES[best]


def has_grant(policy: Mapping[str, Any], roles: frozenset[str], resource: str, action: str) -> bool:
    """Whether any grant (conditions aside) gives ``roles`` the action on some record."""
    return any(
        _covers(g, roles, resource, action) and g["scope"] != "none" for g in policy["grants"]
    )


def reaches(scope: str, relation: str) -> bool:
    """Whether ``scope`` covers a record standing in ``relation`` to the actor."""
    return SCOPES.index(scope) >= SCOPES.index(RELATIONS[relation])


def policy_allows(
    policy: Mapping[str, Any],
    persona: Persona,
    resource: str,
    action: str,
    relation: str,
    state: Mapping[str, Any] | None = None,
) -> bool:
    """What the policy data says, with no service gates."""
    scope = widest_scope(policy, persona.policy_roles, resource, action, state)
    return reaches(scope, relation)


def hidden_fields(policy: Mapping[str, Any], roles: frozenset[str], resource: str) -> set[str]:
    """Fields of ``resource`` hidden from ``roles``."""
    return {
        rule["field"]
        for rule in policy["fields"]
        if rule["resource"] == resource and rule["hidden"] and not roles & set(rule["allowed"])
    }


def read_only_fields(policy: Mapping[str, Any], roles: frozenset[str], resource: str) -> set[str]:
    """Fields of ``resource`` ``roles`` may not write (hidden ones included)."""
    return {
        rule["field"]
        for rule in policy["fields"]
        if rule["resource"] == resource
        and (rule["hidden"] or rule["read_only"])
        and not roles & set(rule["allowed"])
    }


# -- the cases ---------------------------------------------------------------------

OK, DENIED, HIDDEN = "ok", "denied", "not found"


@dataclass(frozen=True)
class Case:
    """One cell of the matrix."""

    persona: Persona
    op: Operation
    relation: str
    outcome: str
    """``ok``, ``denied`` (PermissionDenied) or ``not found`` (NotFound / absent)."""
    by_gate: bool
    """The refusal comes from a service gate rather than the policy."""

    @property
    def sentence(self) -> str:
        may = "may" if self.outcome == OK else "may not"
        article = "an" if self.op.resource[0] in "aeiou" else "a"
        tail = " (not even see it)" if self.outcome == HIDDEN and self.op.action != "read" else ""
        return (
            f"{self.persona.label} {may} {self.op.verb} {article} {self.op.resource}"
            f" {RELATION_PHRASE[self.relation]}{tail}"
        )


def expected(policy: Mapping[str, Any], persona: Persona, op: Operation, relation: str) -> Case:
    """The outcome the policy data (and the service's gate) predict."""
    gate_ok, gate_first = True, False
    if op.gate is not None:
        check, gate_first, _ = GATES[op.gate]
        gate_ok = check(persona, relation)
    readable = policy_allows(policy, persona, op.resource, "read", relation, op.state)
    allowed = policy_allows(policy, persona, op.resource, op.action, relation, op.state)
    if op.action == "read":
        return Case(persona, op, relation, OK if readable else HIDDEN, False)
    if gate_first and not gate_ok:
        return Case(persona, op, relation, DENIED, True)
    if op.loads and not readable:
        return Case(persona, op, relation, HIDDEN, False)
    if not gate_ok:
        return Case(persona, op, relation, DENIED, True)
    return Case(persona, op, relation, OK if allowed else DENIED, False)


def cases(policy: Mapping[str, Any]) -> Iterator[Case]:
    """Every cell of the matrix under ``policy``."""
    for persona in PERSONAS:
        for op in OPERATIONS:
            for relation in op.relations:
                yield expected(policy, persona, op, relation)


#: What DESIGN.md §4 says in words, to check the default policy against:
#: (persona, resource, action, relation, allowed).
DESIGN_STATEMENTS: tuple[tuple[str, str, str, str, bool], ...] = (
    ("marketer", "lead", "create", "nobody", True),
    ("marketer", "lead", "update", "outsider", True),
    ("marketer", "deal", "update", "own", False),
    ("marketer", "ticket", "update", "own", False),
    ("sales_rep", "lead", "update", "own", True),
    ("sales_rep", "lead", "delete", "own", False),
    ("sales_manager", "lead", "delete", "own", False),
    ("sales_rep", "deal", "update", "own", True),
    ("sales_rep", "deal", "update", "team", False),
    ("agent", "ticket", "update", "outsider", True),
    ("agent", "ticket", "assign", "outsider", True),
    ("sales_rep", "ticket", "update", "own", False),
    ("accountant", "receivable", "update", "outsider", True),
    ("sales_rep", "receivable", "read", "own", True),
    ("sales_rep", "receivable", "read", "team", False),
    ("sales_rep", "receivable", "update", "own", False),
    ("lawyer", "contract", "approve", "outsider", True),
    ("sales_manager", "contract", "approve", "outsider", True),
    ("sales_rep", "contract", "approve", "own", False),
    ("admin", "user", "update", "outsider", True),
    ("sales_manager", "user", "update", "team", False),
    ("analyst", "deal", "read", "outsider", True),
    ("analyst", "deal", "update", "own", False),
)
