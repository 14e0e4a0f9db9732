"""Merging duplicates: which value survives, and what must follow the survivor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.activities import Activity
from pycrm.domain.assessments import Assessment
from pycrm.domain.contracts import Contract
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.deals import Deal
from pycrm.domain.documents import Document
from pycrm.domain.leads import Lead
from pycrm.domain.receivables import Receivable
from pycrm.domain.records import Record
from pycrm.domain.tasks import BehaviourEvent, Task
from pycrm.domain.tickets import Ticket
from pycrm.errors import ValidationError

__all__ = [
    "MERGEABLE",
    "REFERENCES",
    "Merge",
    "MergeChange",
    "Pick",
    "SourcePriority",
    "SurvivorshipRule",
    "survive",
]

#: The record kinds that can be merged, by resource name.
MERGEABLE: dict[str, type[Customer] | type[Contact]] = {"customer": Customer, "contact": Contact}

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
}

#: Fields no survivorship rule touches.
FIXED = frozenset(
    {"id", "tenant_id", "created_at", "created_by", "updated_at", "updated_by", "version",
     "status", "archived_at", "merged_into"}
)  # fmt: skip

#: Fields whose values are combined from every record (survivor's first).
UNIONS = frozenset({"contact_points", "tags"})


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
    """
    rules = dict(rules or {})
    survivor = records[0]
    fields = [f.name for f in attrs.fields(type(survivor)) if f.name not in FIXED]
    unknown = sorted(set(rules) - set(fields))
    if unknown:
        raise ValidationError(
            "rules", unknown[0], f"is not a mergeable field of {survivor.resource}"
        )
    ids = {r.id for r in records}
    recent = sorted(records, key=lambda r: (r.updated_at, r.id), reverse=True)
    complete = sorted(records, key=lambda r: (_filled(r), r.updated_at, r.id), reverse=True)
    values: dict[str, Any] = {}
    for name in fields:
        rule = rules.get(name)
        if rule is None and name in UNIONS:
            seen: dict[Any, Any] = {}
            for record in records:
                for item in getattr(record, name):
                    key = (
                        item.match_key() or item.value
                        if hasattr(item, "match_key")
                        else str(item).casefold()
                    )
                    seen.setdefault(key, item)
            values[name] = tuple(seen.values())
            continue
        if rule is None and isinstance(getattr(survivor, name), Mapping):
            # Custom values merge key by key: the survivor's, then the most recent other's.
            merged: dict[str, Any] = {}
            for record in reversed([survivor, *recent]):
                merged.update({k: v for k, v in getattr(record, name).items() if not _empty(v)})
            values[name] = merged
            continue
        if rule is None:
            order: Sequence[Record] = [survivor, *recent]
        elif rule == "survivor":
            values[name] = getattr(survivor, name)
            continue
        elif rule == "most_recent":
            order = recent
        elif rule == "most_complete":
            order = complete
        elif isinstance(rule, SourcePriority):
            rank = {s: i for i, s in enumerate(rule.sources)}
            order = sorted(
                records, key=lambda r: rank.get(getattr(r, "source", None) or "", len(rank))
            )
        elif isinstance(rule, Pick):
            if rule.record_id not in ids:
                raise ValidationError(
                    f"rules.{name}", rule.record_id, "is not one of the merged records"
                )
            values[name] = getattr(next(r for r in records if r.id == rule.record_id), name)
            continue
        else:
            raise ValidationError(
                f"rules.{name}", rule, f"must be one of {', '.join(_NAMED)}, SourcePriority or Pick"
            )
        values[name] = next(
            (getattr(r, name) for r in order if not _empty(getattr(r, name))),
            getattr(survivor, name),
        )
    return values


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
    """``customer`` or ``contact``."""
    survivor_id: str
    """The record that remains."""
    merged_ids: tuple[str, ...]
    """The records merged into it (now tombstones)."""
    changes: tuple[MergeChange, ...] = ()
    """Every record the merge changed, in order."""
    undone_at: datetime | None = None
    """When it was undone."""
