"""Leads: prospects captured by marketing, worked by sales, converted or disqualified."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.contact_points import ContactPoint, Reachable, search_key
from pycrm.domain.customers import category_keys, name_keys, point_keys
from pycrm.domain.names import NameOrder
from pycrm.domain.normalise import company_key, person_key, sound_key
from pycrm.domain.records import Record
from pycrm.domain.states import StateMachine

__all__ = ["LEAD_MOVES", "Lead", "LeadStatus"]


class LeadStatus(enum.StrEnum):
    """Where a lead is in its life."""

    NEW = "new"
    ASSIGNED = "assigned"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    CONVERTED = "converted"
    DISQUALIFIED = "disqualified"
    MERGED = "merged"
    """Merged into another lead (:attr:`Lead.merged_into`); kept so the merge can be undone."""


_S = LeadStatus
#: new → assigned → contacted → qualified → converted; disqualified from any open status.
#: ``merged`` is no move: a merge of duplicates (``s.dedupe.merge``) sets it, an unmerge undoes it.
LEAD_MOVES: StateMachine[LeadStatus] = StateMachine(
    "lead",
    {
        _S.NEW: {_S.ASSIGNED, _S.DISQUALIFIED},
        _S.ASSIGNED: {_S.CONTACTED, _S.DISQUALIFIED},
        _S.CONTACTED: {_S.QUALIFIED, _S.DISQUALIFIED},
        _S.QUALIFIED: {_S.CONVERTED, _S.DISQUALIFIED},
    },
)


@attrs.frozen(kw_only=True)
class Lead(Record, Reachable):
    """A prospect: a person, maybe a company, and what they need."""

    resource: ClassVar[str] = "lead"
    key_fields: ClassVar[Mapping[str, str]] = {**Record.key_fields, "company": "company"}
    owner_field: ClassVar[str] = "owner_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("status",),
        ("owner_id", "status"),
        ("source",),
        ("campaign",),
        ("name_key",),
        ("customer_id",),
    )
    computed: ClassVar[tuple[str, ...]] = ("name_key",)

    name: str
    """The person's name (made from the parts when only they are given)."""
    given_name: str | None = None
    """Given (first) name, where known apart from ``name``."""
    family_name: str | None = None
    """Family name (surname), where known apart from ``name``."""
    name_order: NameOrder | None = None
    """Which part the person's culture writes first; None: from the script."""
    company: str | None = None
    """The company they work for, as typed."""
    title: str | None = None
    """Their job title."""
    contact_points: tuple[ContactPoint, ...] = ()
    """Emails and phones."""
    source: str
    """Where the lead came from: ``webform``, ``import``, ``trade_show``, ``api`` …"""
    campaign: str | None = None
    """The campaign it is attributed to."""
    region: str | None = None
    """Sales region or territory."""
    industry: str | None = None
    """Industry of the company."""
    needs: str | None = None
    """What the prospect is looking for."""
    status: LeadStatus = LeadStatus.NEW
    """See :data:`LEAD_MOVES`."""
    owner_id: str | None = None
    """The salesperson working it."""
    assigned_at: datetime | None = None
    """When it was last assigned."""
    assigned_by: str | None = None
    """The rule, plugin or user that chose the owner."""
    assignment_reason: str | None = None
    """Why that owner."""
    score: int | None = None
    """Lead score, where scoring is used."""
    disqualify_reason: str | None = None
    """Why it was disqualified."""
    customer_id: str | None = None
    """The customer it became (or was linked to) on conversion."""
    contact_id: str | None = None
    """The contact it became on conversion."""
    deal_id: str | None = None
    """The deal opened on conversion."""
    converted_at: datetime | None = None
    """When it was converted."""
    external_id: str | None = None
    """The record's id in the system it was imported from (re-imports update, never duplicate)."""
    archived_at: datetime | None = None
    """When it was archived: out of lists and searches (unless asked for), kept for history."""
    merged_into: str | None = None
    """The lead it was merged into (status ``merged``)."""
    tags: tuple[str, ...] = ()
    """Free tags."""
    categories: tuple[str, ...] = ()
    """Category paths (``industry/manufacturing/machinery``); a filter on a category finds everything under it."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values by key, in their JSON form (see :mod:`pycrm.domain.custom_fields`)."""

    @property
    def name_key(self) -> str:
        """The name case-folded and whitespace-folded, for search."""
        return search_key(self.name)

    @property
    def is_open(self) -> bool:
        """Still being worked (neither converted, disqualified nor merged away)."""
        return self.status not in (
            LeadStatus.CONVERTED,
            LeadStatus.DISQUALIFIED,
            LeadStatus.MERGED,
        )

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Emails, phones, the person-name key, its sound and the company key.

        And the given and family names, when they are known apart.
        """
        yield from point_keys(self.contact_points)
        yield from name_keys(self.given_name, self.family_name)
        yield from category_keys(self.categories)
        for tag in self.tags:
            yield "tag", search_key(tag)
        for kind, key in (
            ("person", person_key(self.name)),
            ("sound", sound_key(self.name)),
            ("company", company_key(self.company)),
            ("external_id", self.external_id or ""),
        ):
            if key:
                yield kind, key
