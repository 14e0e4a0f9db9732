"""Deals and the pipelines of stages they move through."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from pycrm.domain.money import Money
from pycrm.domain.records import Record
from pycrm.errors import ValidationError

__all__ = ["DEFAULT_STAGES", "Deal", "DealStatus", "Pipeline", "Stage", "StageChange"]


@attrs.frozen
class Stage:
    """One step of a pipeline."""

    key: str
    """Short identifier, e.g. ``"proposal"``."""
    name: str
    """Display name."""
    probability: int
    """Default chance of winning at this stage, in percent (0-100)."""


#: The stages of the pipeline every tenant starts with.
DEFAULT_STAGES = (
    Stage("qualification", "Qualification", 10),
    Stage("needs_analysis", "Needs analysis", 25),
    Stage("proposal", "Proposal", 50),
    Stage("negotiation", "Negotiation", 75),
)


@attrs.frozen(kw_only=True)
class Pipeline(Record):
    """An ordered list of open stages; deals leave it as won or lost."""

    resource: ClassVar[str] = "pipeline"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("key",),)

    key: str
    """Short identifier, e.g. ``"default"`` or ``"renewals"``."""
    name: str
    """Display name."""
    stages: tuple[Stage, ...]
    """Open stages, in order."""

    def stage(self, key: str) -> Stage:
        """The stage called ``key``."""
        for stage in self.stages:
            if stage.key == key:
                return stage
        known = ", ".join(s.key for s in self.stages)
        raise ValidationError("stage", key, f"is not a stage of pipeline {self.key!r} ({known})")


class DealStatus(enum.StrEnum):
    """Whether a deal is still open."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


@attrs.frozen
class StageChange:
    """One entry of a deal's stage history."""

    stage: str
    """The stage entered (``won``/``lost`` when the deal closed)."""
    at: datetime
    """When."""
    by: str
    """Who moved it."""


@attrs.frozen(kw_only=True)
class Deal(Record):
    """A sales opportunity with a customer."""

    resource: ClassVar[str] = "deal"
    owner_field: ClassVar[str] = "owner_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("customer_id",),
        ("owner_id", "status"),
        ("status", "expected_close"),
        ("lead_id",),
    )

    name: str
    """What is being sold."""
    customer_id: str
    """The customer."""
    contact_id: str | None = None
    """The main contact."""
    lead_id: str | None = None
    """The lead it came from."""
    pipeline_id: str
    """The pipeline it moves through."""
    stage: str
    """The current stage key (the last open stage once closed)."""
    probability: int
    """Chance of winning, percent: the stage's default unless set; 100 won, 0 lost."""
    amount: Money
    """Expected value."""
    expected_close: date | None = None
    """When it is expected to close."""
    owner_id: str | None = None
    """The salesperson."""
    status: DealStatus = DealStatus.OPEN
    """Open, won or lost."""
    lost_reason: str | None = None
    """Why it was lost."""
    closed_at: datetime | None = None
    """When it was won or lost."""
    stage_history: tuple[StageChange, ...] = ()
    """Every stage entered, with time and actor, oldest first."""
    source: str | None = None
    """The lead source it came from (attribution, copied on conversion)."""
    campaign: str | None = None
    """The campaign it came from (attribution, copied on conversion)."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values by key, in their JSON form (see :mod:`pycrm.domain.custom_fields`)."""

    @property
    def weighted_amount(self) -> Money:
        """``amount × probability``, rounded to the currency's minor unit."""
        return Money.of(self.amount.amount * Decimal(self.probability) / 100, self.amount.currency)
