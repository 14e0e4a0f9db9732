"""Segments, campaigns and quotas."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.money import Money
from pycrm.domain.records import Record

__all__ = ["Campaign", "CampaignMember", "CampaignStatus", "Quota", "Segment"]


@attrs.frozen(kw_only=True)
class Segment(Record):
    """A saved, composable filter over customers or contacts (see :mod:`pycrm.services.campaigns`)."""

    resource: ClassVar[str] = "segment"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("name",),)

    name: str
    """Unique name."""
    target: str
    """``customer`` or ``contact``."""
    rule: dict[str, Any]
    """The filter, as data: ``{"all": [{"field": "industry", "op": "in", "value": [...]}, …]}``."""
    description: str | None = None
    """What it is for."""


class CampaignStatus(enum.StrEnum):
    """Where a campaign is."""

    PLANNED = "planned"
    ACTIVE = "active"
    FINISHED = "finished"


@attrs.frozen(kw_only=True)
class Campaign(Record):
    """A marketing campaign; leads whose ``campaign`` is its name are attributed to it."""

    resource: ClassVar[str] = "campaign"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("name",),)

    name: str
    """Unique name (what leads carry in their ``campaign`` field)."""
    channel: str
    """``email``, ``event``, ``webinar``, ``ads`` …"""
    budget: Money | None = None
    """What it costs."""
    start: date | None = None
    """First day."""
    end: date | None = None
    """Last day."""
    segment_id: str | None = None
    """The target segment."""
    status: CampaignStatus = CampaignStatus.PLANNED
    """Planned, active or finished."""
    members_added_at: datetime | None = None
    """When the member snapshot was taken."""


@attrs.frozen(kw_only=True)
class CampaignMember(Record):
    """A customer or contact in a campaign's snapshot, and their response."""

    resource: ClassVar[str] = "campaign_member"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("campaign_id",),
        ("customer_id",),
        ("contact_id",),
    )

    campaign_id: str
    """The campaign."""
    customer_id: str | None = None
    """The customer targeted."""
    contact_id: str | None = None
    """The contact targeted."""
    responded_at: datetime | None = None
    """When they responded."""
    response: str | None = None
    """How: ``opened``, ``clicked``, ``registered``, ``replied`` …"""


@attrs.frozen(kw_only=True)
class Quota(Record):
    """A sales target for a user (or a team) in a period."""

    resource: ClassVar[str] = "quota"
    owner_field: ClassVar[str] = "owner_id"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("owner_id", "team_id", "period"),)

    owner_id: str | None = None
    """The salesperson (None for a team quota)."""
    team_id: str | None = None
    """The team (None for a personal quota)."""
    period: str
    """``2026-03`` (a month) or ``2026-Q1`` (a quarter)."""
    amount: Money
    """The target."""
