"""Enforcing the permission policy for one session: the one gate every read passes.

Reads are filtered inside the query: :meth:`Guard.filter` turns the actor's
grants (and each record kind's :meth:`~pycrm.domain.records.Stored.read_rule`,
such as "a private activity exists for its author alone") into a
:mod:`~pycrm.domain.query` filter the adapter compiles into the WHERE clause,
so rows the actor may not see are never loaded. :meth:`Guard.confine` makes a
caller's own filter safe: conditions over related records (a segment's
"contracts worth at least X") see only the related records the actor may
read, and a filter on a field hidden from the actor is refused.
:meth:`Guard.redact` hides fields in whatever comes back, audit snapshots and
changes and merge before-images included. Writes are checked against the
record before and after. The system actor and side effects pycrm performs on
its own (reminders, re-scoring, receivables opened on signing) are not
restricted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import attrs

from pycrm.domain import RECORD_BY_RESOURCE, RECORD_TYPES
from pycrm.domain.audit import AuditEntry
from pycrm.domain.ids import new_id
from pycrm.domain.merging import Merge
from pycrm.domain.org import Team, User
from pycrm.domain.permissions import Grant, Scope
from pycrm.domain.query import (
    And,
    AnyKey,
    Eq,
    Filter,
    In,
    Not,
    Or,
    RefersTo,
    Related,
    all_of,
    evaluate,
    fields_of,
    map_related,
)
from pycrm.domain.records import Stored
from pycrm.errors import CRMError, PermissionDenied
from pycrm.serialization import from_dict

if TYPE_CHECKING:
    from pycrm.session import Session

__all__ = ["Guard"]

S = TypeVar("S", bound=Stored)
T = TypeVar("T")

_NOTHING: Filter = In("id", ())


def _empty(record: Stored, name: str) -> Any:
    """What a hidden field reads as: an empty list or mapping where its default is one, else None."""
    default: Any = attrs.fields_dict(type(record))[name].default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    return default if isinstance(default, tuple | dict | list) and not default else None


class Guard:
    """The actor's rights in one session."""

    def __init__(self, session: Session) -> None:
        self._s = session
        actor = session.actor
        self.roles = frozenset({*actor.roles, actor.department})
        """The roles the policy sees: the user's roles and department."""
        self._system = actor.is_system
        self._bypass = False
        self._teams: set[str] | None = None
        self._department: set[str] | None = None
        self._subjects: dict[str, Filter] = {}
        self._filters: dict[tuple[type[Stored], str, bool], Filter | None] = {}
        self._hidden: dict[str, frozenset[str]] = {}

    @property
    def unrestricted(self) -> bool:
        """True for the system actor and inside :meth:`bypass`."""
        return self._bypass or self._system

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

        Besides the grants, the kind's read rule applies (other users' private
        activities are never included), and audit entries are limited to
        those about records the actor may read.

        :raises PermissionDenied: when no grant gives the actor any of them
            (with ``quiet``, a filter that matches nothing instead).
        """
        if self._bypass:
            return None
        key = (cls, action, quiet)
        if key not in self._filters:  # built once per session, as the teams it names
            self._filters[key] = self._build_filter(cls, action, quiet)
        return self._filters[key]

    def _build_filter(self, cls: type[Stored], action: str, quiet: bool) -> Filter | None:
        granted: Filter | None = None
        if not self._system and not (action == "read" and cls.read_follows_about):
            grants = self._s.crm.policy.grants_for(self.roles, cls.resource, action)
            if not grants:
                if quiet:
                    return _NOTHING
                self._deny(action, cls.resource, None, "no grant for this")
            filters = [self._grant_filter(cls, g) for g in grants]
            if all(f is not None for f in filters):
                kept = [f for f in filters if f is not None]
                granted = kept[0] if len(kept) == 1 else Or(tuple(kept))
        about = None if cls.about is None else self._about(cls)
        return all_of([granted, cls.read_rule(self._s.actor), about])

    def _about(self, owner: type[Stored]) -> Filter:
        """``owner`` records (audit entries, documents) about a record the actor may read.

        ``owner.about`` names the fields holding that record's kind and id.
        Every kind's read filter is built once per session. An audit entry
        about no stored record (a refused create) has nothing to hide: the
        audit grant alone decides.
        """
        assert owner.about is not None
        kind, id = owner.about
        if owner.resource not in self._subjects:
            # An entry about the audit trail itself (a refused audit read) names no
            # record to hide: the audit grant alone decides, as for a refused create.
            whole: list[str] = [AuditEntry.resource] if owner is AuditEntry else []
            parts: list[Filter] = []
            for cls in RECORD_TYPES:
                if cls is owner or cls is AuditEntry:
                    continue
                if owner.about_kinds and cls.resource not in owner.about_kinds:
                    continue
                readable = self.filter(cls, quiet=True)
                if readable is None:
                    whole.append(cls.resource)
                    continue
                allowed: list[Filter] = (
                    [] if readable == _NOTHING else [RefersTo(id, cls.resource, readable)]
                )
                if owner is AuditEntry:
                    allowed.append(Not(RefersTo(id, cls.resource)))
                if allowed:
                    either = allowed[0] if len(allowed) == 1 else Or(tuple(allowed))
                    parts.append(And((Eq(kind, cls.resource), either)))
            self._subjects[owner.resource] = (
                Or((In(kind, whole), *parts)) if parts else In(kind, whole)
            )
        return self._subjects[owner.resource]

    def allows(self, record: Stored, action: str) -> bool:
        """True if the actor may ``action`` this record."""
        if self._bypass:
            return True
        if not evaluate(record, type(record).read_rule(self._s.actor)):
            return False
        if record.about is not None and not self._subject_readable(record):
            return False
        if self._system or (action == "read" and record.read_follows_about):
            return True
        grants = self._s.crm.policy.grants_for(self.roles, record.resource, action)
        return any(evaluate(record, self._grant_filter(type(record), g)) for g in grants)

    def _subject_readable(self, record: Stored) -> bool:
        """Whether the actor may read the record that ``record`` is about."""
        assert record.about is not None
        kind, id = (getattr(record, name) for name in record.about)
        cls = RECORD_BY_RESOURCE.get(kind)
        if cls is AuditEntry and isinstance(record, AuditEntry):
            return True  # about the audit trail itself: the audit grant decides (see _about)
        if cls is None or cls is AuditEntry or cls is type(record):
            return False
        readable = self.filter(cls, quiet=True)
        if readable is None:
            return True
        subject = self._s._uow.repo(cls).get(id)
        if subject is None:
            return isinstance(record, AuditEntry)  # nothing to hide (a refused create)
        return self.allows(subject, "read")

    def confine(
        self, cls: type[Stored], where: Filter | None, *, quiet: bool = False
    ) -> Filter | None:
        """``where`` made safe to run for the actor.

        A condition over related records (:class:`~pycrm.domain.query.Related`)
        sees only the related records the actor may read, and refuses a kind
        the actor may not read at all (with ``quiet``, sees none of them); a
        condition on a field hidden from the actor raises PermissionDenied, as
        filtering on it would reveal its values.
        """
        if self._bypass or where is None:
            return where
        self.check_fields(cls, fields_of(where, cls.key_fields))

        def narrowed(condition: Related) -> Filter:
            related = RECORD_BY_RESOURCE[condition.resource]
            self.check_fields(related, [condition.key, *filter(None, [condition.field])])
            inner = self.confine(related, condition.where, quiet=quiet)
            return attrs.evolve(condition, where=all_of([inner, self.filter(related, quiet=quiet)]))

        return map_related(where, narrowed)

    def hides_key(self, cls: type[Stored], kind: str) -> bool:
        """Whether match keys of ``kind`` come from a field hidden from the actor."""
        return cls.key_fields.get(kind, kind) in self.hidden(cls.resource)

    def check_fields(self, cls: type[Stored], names: Iterable[str]) -> None:
        """Raise PermissionDenied if one of ``names`` (``field`` or ``custom.key``) is hidden."""
        if self.unrestricted:
            return
        hidden = self.hidden(cls.resource)
        secret: frozenset[str] | None = None
        for name in names:
            base, _, key = name.partition(".")
            if base == "custom" and key and secret is None:
                secret = self.hidden_custom(cls.resource)
            if base in hidden or (base == "custom" and key in (secret or ())):
                self._deny("read", cls.resource, None, f"the field {name!r} is hidden")

    def redact(self, record: S) -> S:
        """The record with fields hidden from the actor set to None (or empty).

        An audit entry's snapshot and changes lose the hidden fields of the
        record they describe; a merge's before-images lose theirs, and those of
        records the actor may not read.
        """
        if self._bypass:
            return record
        if isinstance(record, AuditEntry):
            record = self._redact_entry(record)  # type: ignore[assignment]
        hidden = self.hidden(record.resource)
        present = [f for f in hidden if hasattr(record, f) and getattr(record, f) is not None]
        empty: dict[str, Any] = {f: _empty(record, f) for f in present}
        custom = getattr(record, "custom", None)
        if custom:
            secret = self.hidden_custom(record.resource)
            if secret.intersection(custom):
                empty["custom"] = {k: v for k, v in custom.items() if k not in secret}
        if isinstance(record, Merge) and "changes" not in hidden:
            empty["changes"] = tuple(self._redact_merge(record))
        if not empty:
            return record
        return attrs.evolve(record, **empty)

    def redact_page(self, cls: type[S], records: Sequence[S]) -> list[S]:
        """:meth:`redact` of each of ``records`` (of ``cls``), asking the policy once."""
        if not self._bypass and (
            issubclass(cls, AuditEntry | Merge)
            or self.hidden(cls.resource)
            or (
                any(getattr(r, "custom", None) for r in records)
                and self.hidden_custom(cls.resource)
            )
        ):
            return [self.redact(r) for r in records]
        return list(records)  # nothing of theirs is hidden from the actor

    def readable(self, records: Iterable[S]) -> list[S]:
        """The records among ``records`` the actor may read, redacted (for lists built in Python)."""
        return [self.redact(r) for r in records if self.allows(r, "read")]

    def redact_all(self, value: T) -> T:
        """``value`` with every record in it redacted (whatever a service call hands back).

        A record, a tuple or list of them, or an attrs result holding records.
        """
        return value if self._bypass else cast(T, self._redact_any(value))

    def _redact_any(self, value: Any) -> Any:
        if isinstance(value, Stored):
            return self.redact(value)
        if type(value) in (tuple, list):
            return type(value)(self._redact_any(v) for v in value)
        if attrs.has(type(value)):
            changed = {}
            for field in attrs.fields(type(value)):
                before = getattr(value, field.name)
                after = self._redact_any(before)
                if after is not before and field.init:
                    changed[field.alias or field.name] = after
            return attrs.evolve(value, **changed) if changed else value
        return value

    def _hide(self, resource: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """A record's JSON form without the fields hidden from the actor."""
        hidden = self.hidden(resource)
        out = {name: value for name, value in data.items() if name not in hidden}
        for name in ("custom", "changes"):
            if name in out and name not in hidden:
                out[name] = self._shown(resource, name, out[name])
        return out

    def _shown(self, resource: str, name: str, value: Any) -> Any:
        """A (not hidden) field's JSON value as the actor may see it.

        Custom fields lose the keys hidden from the actor; a merge's
        before-images are kept only for records the actor may read, redacted.
        """
        if name == "custom" and isinstance(value, Mapping):
            secret = self.hidden_custom(resource) if resource in RECORD_BY_RESOURCE else ()
            return {k: v for k, v in value.items() if k not in secret} if secret else value
        if name == "changes" and resource == Merge.resource and isinstance(value, list):
            changes = [c for c in value if isinstance(c, Mapping)]
            stored = self._stored((c.get("record_type"), c.get("record_id")) for c in changes)
            kept = []
            for change in changes:
                before = self._before(
                    change.get("record_type"), change.get("record_id"), change.get("before"), stored
                )
                if before is not None:
                    kept.append({**change, "before": before})
            return kept
        return value

    def _stored(self, refs: Iterable[tuple[Any, Any]]) -> dict[tuple[str, str], Stored]:
        """The records ``(kind, id)`` as they are stored now, one query per kind."""
        wanted: dict[str, list[str]] = {}
        for resource, id in refs:
            if isinstance(resource, str) and resource in RECORD_BY_RESOURCE and isinstance(id, str):
                wanted.setdefault(resource, []).append(id)
        found: dict[tuple[str, str], Stored] = {}
        for resource, ids in wanted.items():
            repo = self._s._uow.repo(RECORD_BY_RESOURCE[resource])
            found.update(((resource, id), r) for id, r in repo.get_many(ids).items())
        return found

    def _before(
        self,
        resource: Any,
        record_id: Any,
        data: Any,
        stored: Mapping[tuple[str, str], Stored],
    ) -> dict[str, Any] | None:
        """A merge's before-image of a record, redacted; None if the actor may not read it.

        The record as it is stored now decides, as for an audit entry's subject: a
        before-image must not show a record ``get`` would not (a duplicate merged
        away is a tombstone now, which a grant may no longer reach). Only a record
        no longer stored is judged by its before-image.
        """
        cls = RECORD_BY_RESOURCE.get(resource) if isinstance(resource, str) else None
        try:
            record = None if cls is None else from_dict(cls, data)
        except CRMError:
            record = None
        if cls is None or record is None:
            return None
        current = stored.get((cls.resource, record_id)) if isinstance(record_id, str) else None
        if not self.allows(record if current is None else current, "read"):
            return None
        return self._hide(cls.resource, data)

    def _redact_entry(self, entry: AuditEntry) -> AuditEntry:
        """An audit entry's snapshot and changes as the actor may see them."""
        resource = entry.record_type
        hidden = self.hidden(resource)
        changes: dict[str, Any] = {}
        for name, (old, new) in entry.changes.items():
            if name in hidden:
                continue
            shown_old, shown_new = (
                self._shown(resource, name, old),
                self._shown(resource, name, new),
            )
            if (shown_old, shown_new) != (old, new) and shown_old == shown_new:
                continue  # a change to hidden parts only is no change this reader can see
            changes[name] = [shown_old, shown_new]
        snapshot = None if entry.snapshot is None else self._hide(resource, entry.snapshot)
        if changes == entry.changes and snapshot == entry.snapshot:
            return entry
        return attrs.evolve(entry, changes=changes, snapshot=snapshot)

    def _redact_merge(self, merge: Merge) -> Iterator[Any]:
        stored = self._stored((c.record_type, c.record_id) for c in merge.changes)
        for change in merge.changes:
            before = self._before(change.record_type, change.record_id, change.before, stored)
            if before is not None:
                yield attrs.evolve(change, before=before)

    def hidden(self, resource: str) -> frozenset[str]:
        """Fields of ``resource`` hidden from the actor (and those hidden with its subject's)."""
        if self.unrestricted:
            return frozenset()
        found = self._hidden.get(resource)
        if found is None:  # asked for every record read; the policy never changes
            policy = self._s.crm.policy
            found = policy.hidden(self.roles, resource)
            cls = RECORD_BY_RESOURCE.get(resource)
            if cls is not None and cls.hidden_with:
                subject = policy.hidden(self.roles, cls.about_kinds[0])
                found |= {
                    f for name, fields in cls.hidden_with.items() if name in subject for f in fields
                }
            self._hidden[resource] = found
        return found

    def hidden_custom(self, resource: str) -> frozenset[str]:
        """Custom field keys of ``resource`` whose ``readable_by`` leaves the actor out."""
        if self.unrestricted:
            return frozenset()
        return frozenset(
            key
            for key, defn in self._s._field_definitions(resource).items()
            if defn.readable_by and self.roles.isdisjoint(defn.readable_by)
        )

    # -- writes --------------------------------------------------------------

    def require(self, record: Stored, action: str, fields: Iterable[str] = ()) -> None:
        """Raise PermissionDenied unless the actor may ``action`` this record (and write ``fields``)."""
        if self.unrestricted:
            return
        if not self.allows(record, action):
            self._deny(action, record.resource, record.id, "outside the actor's scope")
        locked = self._s.crm.policy.read_only(self.roles, record.resource) & set(fields)
        if locked:
            self._deny(action, record.resource, record.id, f"read-only fields {sorted(locked)}")

    def require_any(self, resource: str, action: str) -> None:
        """Raise PermissionDenied unless some grant lets the actor ``action`` some ``resource``."""
        if not self.unrestricted and not self._s.crm.policy.grants_for(
            self.roles, resource, action
        ):
            self._deny(action, resource, None, "no grant for this")

    def deny(self, action: str, resource: str, record_id: str | None, why: str) -> NoReturn:
        """Refuse: audit the attempt (it outlives a rollback) and raise PermissionDenied."""
        self._deny(action, resource, record_id, why)

    def _deny(self, action: str, resource: str, record_id: str | None, why: str) -> NoReturn:
        actor = self._s.actor
        self._s._audit_apart(
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
