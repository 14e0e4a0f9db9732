"""Who may do what to which records: a policy written as data.

A policy is a list of :class:`Grant` s — (roles, resource, actions) → scope,
optionally limited by conditions on the record — and a list of
:class:`FieldRule` s that hide fields from, or make them read-only for, every
role not named. An actor's roles are the user's roles plus their department
key, so ``"sales"`` matches everyone in sales and ``"sales_manager"`` only
those with that role. The widest scope any of the actor's grants gives wins.
"""

from __future__ import annotations

import difflib
import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from pycrm.errors import ConfigurationError

__all__ = [
    "ACTIONS",
    "DEFAULT_POLICY",
    "FieldRule",
    "Grant",
    "Policy",
    "Scope",
]

#: The actions a policy speaks of.
ACTIONS = ("create", "read", "update", "delete", "assign", "approve", "export")


class Scope(enum.IntEnum):
    """How many records of a kind a grant covers, narrowest first."""

    NONE = 0
    OWN = 1
    """Records the actor owns (the record kind's owner field is the actor)."""
    TEAM = 2
    """Records owned by anyone in the actor's teams."""
    DEPARTMENT = 3
    """Records owned by anyone in the actor's department."""
    ALL = 4


@attrs.frozen
class Grant:
    """``roles`` may do ``actions`` to ``resource`` records within ``scope``.

    ``when`` limits the grant to records whose fields have the given values;
    ``unless`` excludes records that have them (e.g. service may update
    deals ``unless={"status": "won"}``).
    """

    roles: tuple[str, ...]
    """Role names or department keys; ``"*"`` is everyone."""
    resources: tuple[str, ...]
    """Record kinds, e.g. ``("deal",)``; ``"*"`` is every kind."""
    actions: tuple[str, ...]
    """Actions, see :data:`ACTIONS`; ``"*"`` is every action."""
    scope: Scope
    """How far the grant reaches."""
    when: Mapping[str, Any] = attrs.field(factory=dict)
    """Field → value the record must have."""
    unless: Mapping[str, Any] = attrs.field(factory=dict)
    """Field → value the record must not have."""

    def covers(self, roles: Iterable[str], resource: str, action: str) -> bool:
        """True if this grant speaks for one of ``roles`` about ``resource`` and ``action``."""
        return (
            ("*" in self.roles or not set(self.roles).isdisjoint(roles))
            and ("*" in self.resources or resource in self.resources)
            and ("*" in self.actions or action in self.actions)
        )


@attrs.frozen
class FieldRule:
    """A field hidden from, or read-only for, every role except ``allowed``."""

    resource: str
    """Record kind."""
    field: str
    """Field name."""
    hidden: bool = False
    """Absent (None) in what other roles read, and not writable by them."""
    read_only: bool = False
    """Readable but not writable by other roles."""
    allowed: tuple[str, ...] = ()
    """Roles (or departments) the rule does not apply to."""


def _meant(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'customer'?`` for the known name closest to ``name`` (or nothing)."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _record_type(resource: str, where: str) -> type[Any]:
    """The record type a policy names, or ConfigurationError saying which name is unknown."""
    from pycrm.domain import RECORD_BY_RESOURCE  # the record modules import this one

    kind = RECORD_BY_RESOURCE.get(resource)
    if kind is None:
        raise ConfigurationError(
            f"{where}: no record kind is called {resource!r}" + _meant(resource, RECORD_BY_RESOURCE)
        )
    return kind


def _tuple(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigurationError(f"policy: {what} must be a string or a list of strings, not {value!r}")


@attrs.frozen
class Policy:
    """Grants and field rules; build from data with :meth:`from_dict` or :meth:`load`."""

    grants: tuple[Grant, ...] = ()
    """Every grant."""
    fields: tuple[FieldRule, ...] = ()
    """Every field rule."""

    _found: dict[tuple[frozenset[str], str, str], tuple[Grant, ...]] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    """grants_for's answers: a policy never changes, and every check asks again."""
    _hidden: dict[tuple[frozenset[str], str], frozenset[str]] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    """hidden's answers, asked for every record read."""

    def grants_for(self, roles: Iterable[str], resource: str, action: str) -> tuple[Grant, ...]:
        """The grants that speak for ``roles`` about this resource and action."""
        key = (frozenset(roles), resource, action)
        found = self._found.get(key)
        if found is None:
            found = tuple(
                g
                for g in self.grants
                if g.covers(key[0], resource, action) and g.scope > Scope.NONE
            )
            self._found[key] = found
        return found

    def scope(self, roles: Iterable[str], resource: str, action: str) -> Scope:
        """The widest unconditional scope the roles have (conditions ignored)."""
        found = [g.scope for g in self.grants_for(roles, resource, action)]
        return max(found, default=Scope.NONE)

    def hidden(self, roles: Iterable[str], resource: str) -> frozenset[str]:
        """Fields of ``resource`` hidden from these roles."""
        key = (frozenset(roles), resource)
        found = self._hidden.get(key)
        if found is None:
            found = self._hidden[key] = frozenset(
                r.field for r in self.fields
                if r.resource == resource and r.hidden and key[0].isdisjoint(r.allowed)
            )  # fmt: skip
        return found

    def read_only(self, roles: Iterable[str], resource: str) -> frozenset[str]:
        """Fields of ``resource`` these roles may not write (hidden ones included)."""
        roles = set(roles)
        return frozenset(
            r.field for r in self.fields
            if r.resource == resource and (r.hidden or r.read_only) and roles.isdisjoint(r.allowed)
        )  # fmt: skip

    def extend(self, other: Policy | Mapping[str, Any]) -> Policy:
        """A new policy: these grants and field rules plus ``other``'s."""
        more = other if isinstance(other, Policy) else Policy.from_dict(other)
        return Policy(self.grants + more.grants, self.fields + more.fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Read ``{"grants": [...], "fields": [...]}``; raises ConfigurationError saying what is wrong.

        A grant: ``{"roles": ["sales"], "resources": ["deal"], "actions": ["read", "update"],
        "scope": "own", "when": {...}, "unless": {...}}``. A field rule:
        ``{"resource": "receivable", "field": "payments", "hidden": true, "allowed": ["finance"]}``.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError("policy must be a mapping with 'grants' and 'fields'")
        unknown = set(data) - {"grants", "fields"}
        if unknown:
            raise ConfigurationError(f"policy: unknown keys {sorted(unknown)}")
        grants = []
        for i, item in enumerate(data.get("grants", ())):
            if not isinstance(item, Mapping):
                raise ConfigurationError(f"policy grant {i} must be a mapping")
            extra = set(item) - {"roles", "resources", "actions", "scope", "when", "unless"}
            if extra:
                raise ConfigurationError(f"policy grant {i}: unknown keys {sorted(extra)}")
            try:
                scope = Scope[str(item.get("scope", "")).upper()]
            except KeyError:
                raise ConfigurationError(
                    f"policy grant {i}: scope must be one of none, own, team, department, all"
                ) from None
            actions = _tuple(item.get("actions", ()), f"grant {i} actions")
            bad = [a for a in actions if a != "*" and a not in ACTIONS]
            if bad:
                raise ConfigurationError(f"policy grant {i}: unknown actions {bad}")
            resources = _tuple(item.get("resources", ()), f"grant {i} resources")
            for resource in resources:
                if resource != "*":
                    _record_type(resource, f"policy grant {i}")
            grants.append(
                Grant(
                    roles=_tuple(item.get("roles", ()), f"grant {i} roles"),
                    resources=resources,
                    actions=actions,
                    scope=scope,
                    when=dict(item.get("when", {})),
                    unless=dict(item.get("unless", {})),
                )
            )
        rules = []
        for i, item in enumerate(data.get("fields", ())):
            if not isinstance(item, Mapping) or not {"resource", "field"} <= set(item):
                raise ConfigurationError(f"policy field rule {i} needs 'resource' and 'field'")
            kind = _record_type(str(item["resource"]), f"policy field rule {i}")
            fields = attrs.fields_dict(kind)
            if str(item["field"]) not in fields:
                raise ConfigurationError(
                    f"policy field rule {i}: {kind.resource} has no field {item['field']!r}"
                    + _meant(str(item["field"]), fields)
                )
            rules.append(
                FieldRule(
                    resource=str(item["resource"]),
                    field=str(item["field"]),
                    hidden=bool(item.get("hidden", False)),
                    read_only=bool(item.get("read_only", False)),
                    allowed=_tuple(item.get("allowed", ()), f"field rule {i} allowed"),
                )
            )
        return cls(tuple(grants), tuple(rules))

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a policy from a JSON file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read policy {path}: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Return the policy as data (what :meth:`from_dict` reads)."""
        return {
            "grants": [
                {
                    "roles": list(g.roles),
                    "resources": list(g.resources),
                    "actions": list(g.actions),
                    "scope": g.scope.name.lower(),
                    **({"when": dict(g.when)} if g.when else {}),
                    **({"unless": dict(g.unless)} if g.unless else {}),
                }
                for g in self.grants
            ],
            "fields": [attrs.asdict(r) | {"allowed": list(r.allowed)} for r in self.fields],
        }


def _g(roles: str, resources: str, actions: str, scope: str, **conditions: Any) -> dict[str, Any]:
    return {
        "roles": roles.split(),
        "resources": resources.split(),
        "actions": actions.split(),
        "scope": scope,
        **conditions,
    }


#: The default policy: how departments hand work on (see the permissions guide for the table).
DEFAULT_POLICY = Policy.from_dict(
    {
        "grants": [
            # Admin runs the organisation and may do anything; HR opens and closes accounts
            # (and makes teams and departments), but never touches admins' own.
            _g("admin", "*", "*", "all"),
            _g("hr", "user", "create update", "all", unless={"department": "admin"}),
            _g("hr", "team department", "create update", "all"),
            _g("*", "user", "read", "all"),
            # The organisation and the data model are everyone's to read.
            _g("*", "team department category field_definition", "read", "all"),
            # Customers and contacts: everyone reads; the front-line departments maintain them.
            _g("*", "customer contact assessment", "read", "all"),
            _g("sales service marketing", "customer contact", "create", "all"),
            _g("sales service", "customer contact", "update", "all"),
            _g("marketing", "customer contact", "update", "own"),
            _g("sales_manager", "customer contact", "delete", "all"),
            _g("sales service marketing", "assessment", "create", "all"),
            # Activities: everyone records their own interactions; private ones stay private.
            _g("*", "activity", "read create", "all"),
            _g("*", "activity", "update", "own"),
            # Leads: marketing owns them (and alone deletes them); once sales works a lead,
            # marketing still reads it and its status but no longer changes or deletes it.
            # Sales works its own but never deletes marketing's original lead.
            _g("marketing", "lead", "create read export", "all"),
            _g("marketing", "lead", "update delete", "all", when={"status": "new"}),
            _g("sales", "lead", "read", "all"),
            _g("sales", "lead", "update", "own"),
            _g("sales_manager", "lead", "assign update", "all"),
            # Deals: sales; service may help on open deals but not touch won ones.
            _g("sales marketing service finance legal", "deal pipeline", "read", "all"),
            _g("sales", "deal", "create", "all"),
            _g("sales", "deal", "update", "own"),
            _g("sales_manager", "deal pipeline", "create update assign", "all"),
            _g("service", "deal", "update", "all", unless={"status": "won"}),
            # Contracts: sales drafts; legal and sales managers approve; finance reads.
            _g("sales legal finance service", "contract", "read", "all"),
            _g("sales", "contract", "create update", "own"),
            _g("legal sales_manager", "contract", "approve", "all"),
            _g("legal", "contract", "update", "all"),
            # Receivables: finance owns them; sales sees its own deals' receivables.
            _g("finance", "receivable", "read update delete export", "all"),
            _g("sales", "receivable", "read", "own"),
            # Tasks: your own, your department's queue; managers see their teams'.
            _g("*", "task", "create", "all"),
            _g("*", "task", "read update", "own"),
            _g("*", "task", "read update", "department"),
            _g("sales_manager", "task", "read update assign", "team"),
            # Service owns tickets and the knowledge base.
            _g("service", "ticket article", "create read update assign", "all"),
            _g("sales", "ticket", "read create", "all"),
            _g("*", "article", "read", "all"),
            # Data stewards: merges by sales managers and admins; audit by admins only.
            _g("sales_manager", "merge", "create read update", "all"),
            _g("analytics", "*", "read export", "all"),
            # Campaigns are marketing's; sales reads them; managers set quotas.
            _g("marketing", "segment campaign campaign_member", "create read update", "all"),
            _g("sales", "segment campaign campaign_member", "read", "all"),
            _g("sales_manager", "quota", "create read update", "all"),
            _g("sales", "quota", "read", "own"),
            _g("*", "audit_entry", "read", "own"),
            _g("*", "behaviour_event", "create read", "all"),
            # The catalogue and its prices: everyone reads them, sales managers keep them;
            # finance sets exchange rates.
            _g("*", "product price_list price exchange_rate", "read", "all"),
            _g("sales_manager", "product price_list price", "create update", "all"),
            _g("finance", "exchange_rate", "create update", "all"),
            # Quotes: sales drafts and sends its own; sales managers approve; legal and
            # finance read them.
            _g("sales legal finance", "quote", "read", "all"),
            _g("sales", "quote", "create update", "own"),
            _g("sales_manager", "quote", "approve update", "all"),
            # Consent: the front line records and reads it for the people it may read;
            # the privacy role reads everything (to answer for what is kept about a person).
            _g("marketing sales service", "consent", "create read", "all"),
            _g("marketing sales service", "consent_state", "read", "all"),
            _g("privacy", "*", "read", "all"),
            # Retention: the privacy role keeps the tenant's retention rules (and runs them).
            _g("privacy", "setting", "create update", "all", when={"name": "retention"}),
            # Access requests, erasure and legal holds: the privacy role (and admins) alone.
            _g("privacy", "privacy_request legal_hold", "create read update", "all"),
        ],
        "fields": [
            {"resource": "receivable", "field": "payments", "hidden": True, "allowed": ["finance", "admin"]},
            {"resource": "receivable", "field": "overpaid", "hidden": True, "allowed": ["finance", "admin"]},
            {"resource": "contract", "field": "list_amount", "hidden": True,
             "allowed": ["sales", "finance", "legal", "admin"]},
            {"resource": "user", "field": "capacity", "read_only": True, "allowed": ["admin", "sales_manager"]},
            {"resource": "product", "field": "cost", "hidden": True,
             "allowed": ["finance", "sales_manager", "admin"]},
            {"resource": "quote", "field": "costs", "hidden": True,
             "allowed": ["finance", "sales_manager", "admin"]},
            {"resource": "quote", "field": "cost", "hidden": True,
             "allowed": ["finance", "sales_manager", "admin"]},
            {"resource": "quote", "field": "margin", "hidden": True,
             "allowed": ["finance", "sales_manager", "admin"]},
        ],
    }
)  # fmt: skip
