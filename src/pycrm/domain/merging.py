"""Merging duplicates: which value survives, and what must follow the survivor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.activities import Activity
from pycrm.domain.assessments import Assessment
from pycrm.domain.contact_points import ContactPoint, PointKind
from pycrm.domain.contracts import Contract
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.deals import Deal
from pycrm.domain.documents import Document
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.receivables import Receivable
from pycrm.domain.records import Record
from pycrm.domain.tasks import BehaviourEvent, Task
from pycrm.domain.tickets import Ticket
from pycrm.errors import ValidationError

__all__ = [
    "MERGEABLE",
    "MERGED",
    "POINT_RULES",
    "REFERENCES",
    "Merge",
    "MergeChange",
    "Pick",
    "SourcePriority",
    "SurvivorshipRule",
    "survive",
]

#: The record kinds that can be merged, by resource name.
MERGEABLE: dict[str, type[Customer] | type[Contact] | type[Lead]] = {
    "customer": Customer,
    "contact": Contact,
    "lead": Lead,
}

#: The status a duplicate takes when merged away (a tombstone an unmerge brings back).
MERGED: dict[str, RecordStatus | LeadStatus] = {
    "customer": RecordStatus.MERGED,
    "contact": RecordStatus.MERGED,
    "lead": LeadStatus.MERGED,
}

#: For each mergeable kind, the (record type, field) pairs that point at it and
#: are re-pointed at the survivor. Later capabilities add their own.
REFERENCES: dict[str, list[tuple[type[Record], str]]] = {
    "customer": [
        (Contact, "customer_id"),
        (Activity, "customer_id"),
        (Assessment, "customer_id"),
        (Lead, "customer_id"),
        (Deal, "customer_id"),
        (Contract, "customer_id"),
        (Receivable, "customer_id"),
        (Ticket, "customer_id"),
        (Document, "record_id"),
        (Task, "related_id"),
    ],
    "contact": [
        (Activity, "contact_id"),
        (Deal, "contact_id"),
        (Lead, "contact_id"),
        (BehaviourEvent, "contact_id"),
        (Ticket, "contact_id"),
        (Document, "record_id"),
        (Task, "related_id"),
    ],
    "lead": [
        (Deal, "lead_id"),
        (BehaviourEvent, "lead_id"),
        (Document, "record_id"),
        (Task, "related_id"),
    ],
}

#: Fields no survivorship rule touches.
FIXED = frozenset(
    {"id", "tenant_id", "created_at", "created_by", "updated_at", "updated_by", "version",
     "status", "archived_at", "merged_into"}
)  # fmt: skip

#: Fields no survivorship rule touches in one kind: a lead keeps its place in the workflow
#: (owner, assignment, conversion, score) from the survivor.
FIXED_FOR: dict[str, frozenset[str]] = {
    "lead": frozenset(
        {"owner_id", "assigned_at", "assigned_by", "assignment_reason", "score",
         "disqualify_reason", "customer_id", "contact_id", "deal_id", "converted_at"}
    ),
}  # fmt: skip

#: Fields whose values are combined from every record (survivor's first).
UNIONS = frozenset({"contact_points", "tags"})

#: Survivorship rule keys for one kind of contact point each.
POINT_RULES = {"emails": PointKind.EMAIL, "phones": PointKind.PHONE}


@attrs.frozen
class SourcePriority:
    """Take the value from the record whose ``source`` ranks first (a master data source)."""

    sources: tuple[str, ...]
    """Sources, best first; records with other or no source come last."""


@attrs.frozen
class Pick:
    """Take the value from this record (a data steward's manual choice)."""

    record_id: str
    """One of the merged records."""


SurvivorshipRule = str | SourcePriority | Pick
"""``"survivor"``, ``"most_recent"``, ``"most_complete"``, a :class:`SourcePriority` or a :class:`Pick`."""

_NAMED = ("survivor", "most_recent", "most_complete")


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == ()


def _filled(record: Record) -> int:
    return sum(
        not _empty(getattr(record, f.name))
        for f in attrs.fields(type(record))
        if f.name not in FIXED
    )


def survive(
    records: Sequence[Record], rules: Mapping[str, SurvivorshipRule] | None = None
) -> dict[str, Any]:
    """The merged field values. ``records[0]`` is the survivor.

    Unless a rule says otherwise, each field keeps the survivor's value, or,
    where the survivor has none, the most recently updated record's value;
    contact points and tags are the union of all records', and custom values
    are merged key by key the same way.

    Contact points take a rule per kind too: ``{"phones": Pick(id)}`` takes
    the phones of that record and leaves the emails to their own rule (the
    union by default), so choosing a duplicate's phone never drops the
    survivor's emails. A rule on ``contact_points`` is the rule of both kinds.
    Of the merged points, at most one email and one phone stay primary.
    """
    rules = dict(rules or {})
    survivor = records[0]
    fixed = FIXED | FIXED_FOR.get(survivor.resource, frozenset())
    fields = [f.name for f in attrs.fields(type(survivor)) if f.name not in fixed]
    allowed = set(fields) | (set(POINT_RULES) if "contact_points" in fields else set())
    unknown = sorted(set(rules) - allowed)
    if unknown:
        raise ValidationError(
            "rules", unknown[0], f"is not a mergeable field of {survivor.resource}"
        )
    recent = sorted(records, key=lambda r: (r.updated_at, r.id), reverse=True)
    complete = sorted(records, key=lambda r: (_filled(r), r.updated_at, r.id), reverse=True)

    def ordered(name: str, rule: SurvivorshipRule) -> Sequence[Record]:
        """The records in the order ``rule`` prefers their values of ``name``."""
        if rule == "survivor":
            return [survivor]
        if rule == "most_recent":
            return recent
        if rule == "most_complete":
            return complete
        if isinstance(rule, SourcePriority):
            rank = {s: i for i, s in enumerate(rule.sources)}
            return sorted(
                records, key=lambda r: rank.get(getattr(r, "source", None) or "", len(rank))
            )
        if isinstance(rule, Pick):
            picked = [r for r in records if r.id == rule.record_id]
            if not picked:
                raise ValidationError(
                    f"rules.{name}", rule.record_id, "is not one of the merged records"
                )
            return picked
        raise ValidationError(
            f"rules.{name}", rule, f"must be one of {', '.join(_NAMED)}, SourcePriority or Pick"
        )

    values: dict[str, Any] = {}
    for name in fields:
        rule = rules.get(name)
        if name == "contact_points" and set(POINT_RULES) & set(rules):
            parts: list[ContactPoint] = []
            for key, kind in POINT_RULES.items():
                kind_rule = rules.get(key, rule)
                if kind_rule is None:
                    parts += _union([p for r in records for p in _points(r, kind)])
                    continue
                chosen = (_points(r, kind) for r in ordered(key, kind_rule))
                parts += next((points for points in chosen if points), [])
            values[name] = _one_primary(parts)
            continue
        if rule is None and name in UNIONS:
            items = _union([item for record in records for item in getattr(record, name)])
            values[name] = _one_primary(items) if name == "contact_points" else tuple(items)
            continue
        if rule is None and isinstance(getattr(survivor, name), Mapping):
            # Custom values merge key by key: the survivor's, then the most recent other's.
            merged: dict[str, Any] = {}
            for record in reversed([survivor, *recent]):
                merged.update({k: v for k, v in getattr(record, name).items() if not _empty(v)})
            values[name] = merged
            continue
        if rule == "survivor":
            values[name] = getattr(survivor, name)
            continue
        if isinstance(rule, Pick):
            values[name] = getattr(ordered(name, rule)[0], name)
            continue
        order = [survivor, *recent] if rule is None else ordered(name, rule)
        values[name] = next(
            (getattr(r, name) for r in order if not _empty(getattr(r, name))),
            getattr(survivor, name),
        )
    return values


def _points(record: Any, kind: PointKind) -> list[ContactPoint]:
    """The contact points of ``kind`` of a record that has contact points."""
    return [p for p in record.contact_points if p.kind is kind]


def _union(items: Sequence[Any]) -> list[Any]:
    """``items`` without repeats (a contact point by its match key, a tag by its text), first kept."""
    seen: dict[Any, Any] = {}
    for item in items:
        key = item.match_key() or item.value if hasattr(item, "match_key") else str(item).casefold()
        seen.setdefault(key, item)
    return list(seen.values())


def _one_primary(points: Sequence[ContactPoint]) -> tuple[ContactPoint, ...]:
    """``points`` with the primary mark kept on the first marked point of each kind only."""
    marked: set[PointKind] = set()
    kept: list[ContactPoint] = []
    for point in points:
        if point.primary and point.kind in marked:
            point = attrs.evolve(point, primary=False)
        elif point.primary:
            marked.add(point.kind)
        kept.append(point)
    return tuple(kept)


@attrs.frozen
class MergeChange:
    """One record a merge changed, as it was before, and the version the merge left it at."""

    record_type: str
    """Resource name."""
    record_id: str
    """The record."""
    before: dict[str, Any]
    """The whole record before the merge, in JSON form."""
    version_after: int
    """Its version right after the merge (an unmerge refuses if it changed since)."""


@attrs.frozen(kw_only=True)
class Merge(Record):
    """A merge of duplicates into a survivor, kept so it can be undone."""

    resource: ClassVar[str] = "merge"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("survivor_id",),)

    record_type: str
    """``customer``, ``contact`` or ``lead``."""
    survivor_id: str
    """The record that remains."""
    merged_ids: tuple[str, ...]
    """The records merged into it (now tombstones)."""
    changes: tuple[MergeChange, ...] = ()
    """Every record the merge changed, in order."""
    undone_at: datetime | None = None
    """When it was undone."""
