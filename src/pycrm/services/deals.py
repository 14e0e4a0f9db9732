"""Deals and pipelines: what sales is working on, stage by stage."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.customers import Contact, Customer
from pycrm.domain.deals import (
    DEFAULT_STAGES,
    Deal,
    DealStatus,
    Pipeline,
    Stage,
    StageChange,
    StageVisit,
)
from pycrm.domain.fields import (
    Checks,
    check_choice,
    check_date,
    check_int,
    check_key,
    check_money,
    check_text,
)
from pycrm.domain.leads import Lead
from pycrm.domain.query import Eq, Filter, OrderBy, all_of
from pycrm.errors import InvalidTransition, NotFound, ValidationError
from pycrm.services.records import RecordService, checked_changes, write
from pycrm.services.search import check_page, referenced

__all__ = ["DealService"]


def _probability(field: str, value: Any) -> int | None:
    return check_int(field, value, minimum=0, maximum=100)


class DealService(RecordService[Deal]):
    """Deals moving through pipelines; won or lost with a reason."""

    record_type = Deal
    events: ClassVar[Mapping[str, str]] = {
        "create": "deal_stage_changed",
        "move": "deal_stage_changed",
        "win": "deal_won",
        "lose": "deal_lost",
    }

    # -- pipelines ---------------------------------------------------------

    def pipeline(self, key: str = "default") -> Pipeline:
        """The pipeline called ``key``; the default one is created on first use.

        :raises NotFound: when there is none, or the actor may not read it.
        """
        found = self._pipeline(check_key("key", key))
        if not self._s._guard.allows(found, "read"):
            raise NotFound("pipeline", key)
        return self._s._guard.redact(found)

    def _pipeline(self, key: str) -> Pipeline:
        """The pipeline called ``key`` (creating the default one), whoever may read it."""
        repo = self._s._uow.repo(Pipeline)
        found = repo.find(Eq("key", key), limit=1)
        if found:
            return found[0]
        if key != "default":
            raise NotFound("pipeline", key)
        with self._s._atomic(), self._s._guard.bypass():
            pipeline = Pipeline(
                **self._s._stamp(key="default", name="Default", stages=DEFAULT_STAGES)
            )
            repo.add(pipeline)
            self._s._record("create", None, pipeline)
        return pipeline

    @write
    def create_pipeline(
        self, key: str, name: str, stages: Sequence[tuple[str, str, int] | Stage]
    ) -> Pipeline:
        """Add a pipeline of ordered open stages ``(key, name, probability %)``."""
        with Checks() as checks:
            clean_key = checks(check_text, "key", key, required=True, limit=40)
            clean_name = checks(check_text, "name", name, required=True)
        if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
            raise ValidationError("stages", stages, "must be a non-empty list of stages")
        parsed: list[Stage] = []
        for i, item in enumerate(stages):
            if not isinstance(item, Stage) and (
                isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 3
            ):
                raise ValidationError(f"stages[{i}]", item, "must be (key, name, probability %)")
            stage = item if isinstance(item, Stage) else Stage(*item)
            with Checks() as checks:
                checks(check_text, f"stages[{i}].key", stage.key, required=True, limit=40)
                checks(check_text, f"stages[{i}].name", stage.name, required=True)
                checks(_probability, f"stages[{i}].probability", stage.probability)
            if stage.key in ("won", "lost") or stage.key in {s.key for s in parsed}:
                raise ValidationError(
                    f"stages[{i}].key", stage.key, "must be unique and not won/lost"
                )
            parsed.append(stage)
        pipeline = Pipeline(**self._s._stamp(key=clean_key, name=clean_name, stages=tuple(parsed)))
        self._s._guard.require(pipeline, "create")
        self._s._uow.repo(Pipeline).add(pipeline)
        self._s._record("create", None, pipeline)
        return pipeline

    def pipelines(self) -> list[Pipeline]:
        """Every pipeline (the default one included), by key.

        Returns all of them: this list has no pages.
        """
        self._pipeline("default")
        return self._s.read(Pipeline).find(order_by=[OrderBy("key")])

    # -- deals -------------------------------------------------------------

    @write
    def create(
        self,
        name: str,
        *,
        customer_id: str,
        amount: Any,
        pipeline: str = "default",
        stage: str | None = None,
        contact_id: str | None = None,
        lead_id: str | None = None,
        expected_close: date | None = None,
        owner_id: str | None = None,
        probability: int | None = None,
        source: str | None = None,
        campaign: str | None = None,
        custom: dict[str, Any] | None = None,
    ) -> Deal:
        """Open a deal in the first (or the given) stage of a pipeline.

        ``source`` and ``campaign`` attribute the deal for analytics (conversion copies the lead's).
        """
        chosen = self._pipeline(check_key("pipeline", pipeline))
        with Checks() as checks:
            fields: dict[str, Any] = {
                "name": checks(check_text, "name", name, required=True),
                "amount": checks(check_money, "amount", amount),
                "expected_close": checks(check_date, "expected_close", expected_close),
                "owner_id": checks(
                    self._check_user,
                    "owner_id",
                    owner_id
                    if owner_id is not None or self._s.actor.is_system
                    else self._s.actor.id,
                ),
                "probability": checks(_probability, "probability", probability),
                "source": checks(check_text, "source", source, limit=60),
                "campaign": checks(check_text, "campaign", campaign, limit=200),
            }
        if fields["amount"] is None:
            raise ValidationError("amount", amount, "is required")
        if customer_id is None:
            raise ValidationError("customer_id", customer_id, "is required")
        referenced(self._s, Customer, "customer_id", customer_id)
        referenced(self._s, Contact, "contact_id", contact_id)
        referenced(self._s, Lead, "lead_id", lead_id)
        fields["custom"] = self._custom({}, custom, creating=True)
        first = chosen.stage(stage) if stage is not None else chosen.stages[0]
        if fields["probability"] is None:
            fields["probability"] = first.probability
        deal = self._add(
            "create",
            customer_id=customer_id,
            contact_id=contact_id,
            lead_id=lead_id,
            pipeline_id=chosen.id,
            stage=first.key,
            stage_history=(StageChange(first.key, self._s._now(), self._s.actor.id),),
            **fields,
        )
        self._enter(deal, first.key, chosen.stages.index(first), deal.created_at)
        return deal

    # -- the stage visits the deal-stage funnel reads ---------------------------

    def _enter(self, deal: Deal, stage: str, position: int, at: datetime) -> None:
        """Record that ``deal`` entered ``stage`` at ``at``: its current stay ends then.

        Stage visits are derived from the deal's stage history (see
        :class:`~pycrm.domain.deals.StageVisit`), written with it and not
        audited apart.
        """
        repo = self._s._uow.repo(StageVisit)
        visits = repo.find(Eq("deal_id", deal.id))
        for visit in visits:
            if visit.left_at is None and visit.position >= 0 and visit.stage != "won":
                self._rewrite(visit, left_at=at)
        repo.add(
            StageVisit(
                **self._s._stamp(
                    deal_id=deal.id,
                    pipeline_id=deal.pipeline_id,
                    stage=stage,
                    position=position,
                    reached_before=max((v.position for v in visits), default=-1),
                    entered_at=at,
                    owner_id=deal.owner_id,
                    opened_at=deal.created_at,
                    moved_by=self._s.actor.id,
                )
            )
        )

    def _rewrite(self, visit: StageVisit, **changes: Any) -> None:
        now = self._s._now()
        changed = attrs.evolve(
            visit,
            **changes,
            version=visit.version + 1,
            updated_at=now,
            updated_by=self._s.actor.id,
        )
        self._s._uow.repo(StageVisit).replace(changed, visit.version)

    def _sync_owner(self, deal: Deal) -> None:
        """Give the deal's stage visits its owner (the funnel counts them per owner)."""
        for visit in self._s._uow.repo(StageVisit).find(Eq("deal_id", deal.id)):
            if visit.owner_id != deal.owner_id:
                self._rewrite(visit, owner_id=deal.owner_id)

    def _open(self, id: str, to: str) -> Deal:
        deal = self._load(id)
        if deal.status is not DealStatus.OPEN:
            raise InvalidTransition("deal", deal.status.value, to, "the deal is closed")
        return deal

    @write
    def move(
        self, id: str, stage: str, *, probability: int | None = None, version: int | None = None
    ) -> Deal:
        """Move an open deal to another stage of its pipeline (forwards or back).

        Its probability becomes the stage's default unless ``probability`` is given.
        """
        deal = self._open(id, stage)
        pipeline = self._s._uow.repo(Pipeline).get(deal.pipeline_id)
        assert pipeline is not None
        target = pipeline.stage(stage)
        chance = _probability("probability", probability)
        now = self._s._now()
        moved = self._change(
            deal,
            version,
            "move",
            stage=target.key,
            probability=target.probability if chance is None else chance,
            stage_history=(*deal.stage_history, StageChange(target.key, now, self._s.actor.id)),
        )
        self._enter(moved, target.key, pipeline.stages.index(target), now)
        return moved

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Deal:
        """Change an open deal's name, amount, expected close, owner or probability."""
        deal = self._open(id, "open")
        checkers = {
            "name": lambda f, v: check_text(f, v, required=True),
            "amount": check_money,
            "expected_close": check_date,
            "owner_id": self._check_user,
            "probability": _probability,
            "custom": lambda f, v: self._custom(deal.custom, v, creating=False),
        }
        changes = checked_changes(fields, checkers, "deal")
        if "amount" in changes and changes["amount"] is None:
            raise ValidationError("amount", None, "is required")
        updated = self._change(deal, version, "update", **changes)
        if updated.owner_id != deal.owner_id:
            self._sync_owner(updated)
        return updated

    def _close(self, id: str, status: DealStatus, version: int | None, **changes: Any) -> Deal:
        deal = self._open(id, status.value)
        now = self._s._now()
        closed = self._change(
            deal,
            version,
            "win" if status is DealStatus.WON else "lose",
            status=status,
            probability=100 if status is DealStatus.WON else 0,
            closed_at=now,
            stage_history=(*deal.stage_history, StageChange(status.value, now, self._s.actor.id)),
            **changes,
        )
        pipeline = self._s._uow.repo(Pipeline).get(deal.pipeline_id)
        assert pipeline is not None
        won = status is DealStatus.WON
        self._enter(closed, status.value, len(pipeline.stages) if won else -1, now)
        return closed

    @write
    def win(self, id: str, *, version: int | None = None) -> Deal:
        """Mark an open deal won: legal and finance take over with a contract."""
        return self._close(id, DealStatus.WON, version)

    @write
    def lose(self, id: str, reason: str, *, version: int | None = None) -> Deal:
        """Mark an open deal lost, saying why."""
        text = check_text("reason", reason, required=True, limit=500)
        return self._close(id, DealStatus.LOST, version, lost_reason=text)

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Deal]:
        """Every deal :meth:`list` finds with ``filters``, however many there are.

        Takes the filters of :meth:`list` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.deals.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.list, filters, page_size)

    def list(
        self,
        *,
        customer_id: str | None = None,
        owner_id: str | None = None,
        status: DealStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Deal]:
        """Deals by expected close date, filtered by customer, owner and status.

        Returns the first 100 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if customer_id is not None:
            parts.append(Eq("customer_id", customer_id))
        if owner_id is not None:
            parts.append(Eq("owner_id", owner_id))
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, DealStatus)))
        return self._find(
            all_of(parts),
            order_by=[OrderBy("expected_close"), OrderBy("created_at")],
            limit=limit,
            offset=offset,
        )
