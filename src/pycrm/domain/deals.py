"""Deals and the pipelines of stages they move through."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from pycrm.domain.money import Money
from pycrm.domain.records import Record
from pycrm.errors import ValidationError

__all__ = [
    "DEFAULT_STAGES",
    "Deal",
    "DealStatus",
    "Pipeline",
    "Stage",
    "StageChange",
    "StageVisit",
    "stays_of",
]


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


@attrs.frozen(kw_only=True)
class StageVisit(Record):
    """One stay of one deal in one stage: the rows the deal-stage funnel aggregates.

    A deal's :attr:`Deal.stage_history` is its own story, kept on the deal; the
    same history is also kept here, one row per stage entered, so that SQL can
    count and measure it with plain indexed columns (the history is JSON on the
    deal). Rows are written by the deal service in the same transaction as the
    deal, and are derived data, like match keys: they are not audited apart
    from the deal. Whoever may read the deal reads its visits, no one else.
    """

    resource: ClassVar[str] = "stage_visit"
    owner_field: ClassVar[str] = "owner_id"
    about: ClassVar[tuple[str, str] | None] = ("record_type", "deal_id")
    about_kinds: ClassVar[tuple[str, ...]] = ("deal",)
    read_follows_about: ClassVar[bool] = True
    hidden_with: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "owner_id": ("owner_id",),
        "created_at": ("opened_at",),
        **dict.fromkeys(
            ("stage", "stage_history"),
            ("stage", "position", "reached_before", "entered_at", "left_at", "moved_by"),
        ),
    }
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("deal_id",),
        ("pipeline_id", "opened_at"),
    )

    record_type: str = "deal"
    """What a visit is about: always a deal (it lets the permission guard follow the deal)."""
    deal_id: str
    """The deal."""
    pipeline_id: str
    """Its pipeline."""
    stage: str
    """The stage key; ``won`` or ``lost`` for the closing entry."""
    position: int
    """The stage's place in the pipeline, 0 first; the number of stages for ``won``; -1 for
    ``lost``."""
    reached_before: int
    """The furthest position the deal had reached before this visit (-1 before its first):
    a visit with ``position >= k > reached_before`` is the one that first took it to ``k``."""
    entered_at: datetime
    """When the deal entered the stage."""
    left_at: datetime | None = None
    """When it left (None while it is there, and for ``won``/``lost``)."""
    owner_id: str | None = None
    """The deal's owner (kept in step with the deal)."""
    opened_at: datetime
    """When the deal was opened: the cohort a period of the funnel counts it in."""
    moved_by: str
    """Who moved the deal into the stage."""


def stays_of(history: Sequence[StageChange], stages: Sequence[str]) -> list[dict[str, Any]]:
    """The stage visits a deal's ``history`` describes, as :class:`StageVisit` fields.

    ``stages`` are the pipeline's stage keys in order. Each entry of the
    history is a stay that ends when the next one begins (``won`` and
    ``lost`` end nothing); an entry naming no stage of the pipeline is
    skipped. The deal service writes the same rows as the deal moves; this
    rebuilds them for deals stored before the visits were.
    """
    out: list[dict[str, Any]] = []
    best = -1
    known = [c for c in history if c.stage in ("won", "lost") or c.stage in stages]
    for i, change in enumerate(known):
        if change.stage == "won":
            position = len(stages)
        elif change.stage == "lost":
            position = -1
        else:
            position = list(stages).index(change.stage)
        ends = position >= 0 and change.stage != "won" and i + 1 < len(known)
        out.append(
            {
                "stage": change.stage,
                "position": position,
                "reached_before": best,
                "entered_at": change.at,
                "left_at": known[i + 1].at if ends else None,
                "moved_by": change.by,
            }
        )
        best = max(best, position)
    return out
