"""Enforcing the permission policy for one session.

Reads are filtered inside the query: :meth:`Guard.filter` turns the actor's
grants into a :mod:`~pycrm.domain.query` filter the adapter compiles into the
WHERE clause, so rows the actor may not see are never loaded. Writes are
checked against the record before and after. Hidden fields come back as None.
The system actor and side effects pycrm performs on its own (reminders,
re-scoring, receivables opened on signing) are not restricted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import attrs

from pycrm.domain.audit import AuditEntry
from pycrm.domain.ids import new_id
from pycrm.domain.org import Team, User
from pycrm.domain.permissions import Grant, Scope
from pycrm.domain.query import And, AnyKey, Eq, Filter, In, Not, Or, all_of, evaluate
from pycrm.domain.records import Stored
from pycrm.errors import PermissionDenied

if TYPE_CHECKING:
    from pycrm.session import Session

__all__ = ["Guard"]

S = TypeVar("S", bound=Stored)

_NOTHING: Filter = In("id", ())


class Guard:
    """The actor's rights in one session."""

    def __init__(self, session: Session) -> None:
        self._s = session
        actor = session.actor
        self.roles = frozenset({*actor.roles, actor.department})
        """The roles the policy sees: the user's roles and department."""
        self._bypass = actor.is_system
        self._teams: set[str] | None = None
        self._department: set[str] | None = None
        self.denials: list[AuditEntry] = []
        """Refused attempts, written to the audit trail when the session ends."""

    @property
    def unrestricted(self) -> bool:
        """True for the system actor and inside :meth:`bypass`."""
        return self._bypass

    @contextmanager
    def bypass(self) -> Iterator[None]:
        """Lift checks for side effects pycrm performs itself (not for user requests)."""
        before, self._bypass = self._bypass, True
        try:
            yield
        finally:
            self._bypass = before

    # -- who counts as "team" and "department" --------------------------------

    def _team_ids(self) -> set[str]:
        if self._teams is None:
            actor = self._s.actor
            teams = set(actor.team_ids)
            teams |= {t.id for t in self._s._uow.repo(Team).find(Eq("manager_id", actor.id))}
            members = self._s._uow.repo(User).find(AnyKey("team", sorted(teams))) if teams else []
            self._teams = {u.id for u in members} | {actor.id}
        return self._teams

    def _department_ids(self) -> set[str]:
        if self._department is None:
            actor = self._s.actor
            found = self._s._uow.repo(User).find(Eq("department", actor.department))
            self._department = {u.id for u in found} | {actor.id}
        return self._department

    def _scope_filter(self, cls: type[Stored], scope: Scope) -> Filter | None:
        owner = cls.owner_field
        if scope is Scope.ALL:
            return None
        if scope is Scope.OWN:
            return Eq(owner, self._s.actor.id)
        members = self._team_ids() if scope is Scope.TEAM else self._department_ids()
        by_owner: Filter = In(owner, sorted(members))
        if scope is Scope.DEPARTMENT and cls.department_field:
            return Or((by_owner, Eq(cls.department_field, self._s.actor.department)))
        return by_owner

    def _grant_filter(self, cls: type[Stored], grant: Grant) -> Filter | None:
        parts: list[Filter | None] = [self._scope_filter(cls, grant.scope)]
        parts += [Eq(field, value) for field, value in grant.when.items()]
        if grant.unless:
            parts.append(Not(And(tuple(Eq(f, v) for f, v in grant.unless.items()))))
        return all_of(parts)

    # -- reads ---------------------------------------------------------------

    def filter(
        self, cls: type[Stored], action: str = "read", *, quiet: bool = False
    ) -> Filter | None:
        """The records of ``cls`` the actor may ``action``, as a filter (None: all of them).

        :raises PermissionDenied: when no grant gives the actor any of them
            (with ``quiet``, a filter that matches nothing instead).
        """
        if self._bypass:
            return None
        grants = self._s.crm.policy.grants_for(self.roles, cls.resource, action)
        if not grants:
            if quiet:
                return _NOTHING
            self._deny(action, cls.resource, None, "no grant for this")
        filters = [self._grant_filter(cls, g) for g in grants]
        if any(f is None for f in filters):
            return None
        kept = [f for f in filters if f is not None]
        return kept[0] if len(kept) == 1 else Or(tuple(kept))

    def allows(self, record: Stored, action: str) -> bool:
        """True if the actor may ``action`` this record."""
        if self._bypass:
            return True
        grants = self._s.crm.policy.grants_for(self.roles, record.resource, action)
        return any(evaluate(record, self._grant_filter(type(record), g)) for g in grants)

    def redact(self, record: S) -> S:
        """The record with fields hidden from the actor set to None."""
        if self._bypass:
            return record
        hidden = self._s.crm.policy.hidden(self.roles, record.resource)
        present = [f for f in hidden if hasattr(record, f) and getattr(record, f) is not None]
        empty: dict[str, Any] = {
            f: () if isinstance(getattr(record, f), tuple) else None for f in present
        }
        custom = getattr(record, "custom", None)
        if custom:
            secret = self.hidden_custom(record.resource)
            if secret.intersection(custom):
                empty["custom"] = {k: v for k, v in custom.items() if k not in secret}
        if not empty:
            return record
        return attrs.evolve(record, **empty)

    def hidden(self, resource: str) -> frozenset[str]:
        """Fields of ``resource`` hidden from the actor."""
        return frozenset() if self._bypass else self._s.crm.policy.hidden(self.roles, resource)

    def hidden_custom(self, resource: str) -> frozenset[str]:
        """Custom field keys of ``resource`` whose ``readable_by`` leaves the actor out."""
        if self._bypass:
            return frozenset()
        return frozenset(
            key
            for key, defn in self._s._field_definitions(resource).items()
            if defn.readable_by and self.roles.isdisjoint(defn.readable_by)
        )

    # -- writes --------------------------------------------------------------

    def require(self, record: Stored, action: str, fields: Iterable[str] = ()) -> None:
        """Raise PermissionDenied unless the actor may ``action`` this record (and write ``fields``)."""
        if self._bypass:
            return
        if not self.allows(record, action):
            self._deny(action, record.resource, record.id, "outside the actor's scope")
        locked = self._s.crm.policy.read_only(self.roles, record.resource) & set(fields)
        if locked:
            self._deny(action, record.resource, record.id, f"read-only fields {sorted(locked)}")

    def require_any(self, resource: str, action: str) -> None:
        """Raise PermissionDenied unless some grant lets the actor ``action`` some ``resource``."""
        if not self._bypass and not self._s.crm.policy.grants_for(self.roles, resource, action):
            self._deny(action, resource, None, "no grant for this")

    def deny(self, action: str, resource: str, record_id: str | None, why: str) -> NoReturn:
        """Refuse: audit the attempt (it outlives a rollback) and raise PermissionDenied."""
        self._deny(action, resource, record_id, why)

    def _deny(self, action: str, resource: str, record_id: str | None, why: str) -> NoReturn:
        actor = self._s.actor
        self.denials.append(
            AuditEntry(
                id=new_id(),
                tenant_id=self._s.tenant_id,
                at=self._s._now(),
                actor_id=actor.id,
                department=actor.department,
                action=f"denied:{action}",
                record_type=resource,
                record_id=record_id or "",
                changes={"reason": [None, why]},
            )
        )
        raise PermissionDenied(
            actor.id, action, resource if record_id is None else f"{resource} {record_id}", why
        )
