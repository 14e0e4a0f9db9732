"""The built-in lead scorer: completeness, source and behaviour."""

from __future__ import annotations

from collections.abc import Mapping

from pycrm.domain.contact_points import PointKind
from pycrm.domain.leads import Lead
from pycrm.rules.context import RuleContext
from pycrm.rules.hookspecs import hookimpl

__all__ = ["DEFAULT_SOURCE_POINTS", "Scorer"]

#: Points per lead source.
DEFAULT_SOURCE_POINTS: Mapping[str, int] = {
    "referral": 30,
    "webform": 20,
    "trade_show": 15,
    "api": 10,
    "import": 5,
}


class Scorer:
    """Scores a lead out of about 100.

    * completeness: 10 each for an email, a phone, a company and stated needs;
      5 each for industry and region;
    * source: :data:`DEFAULT_SOURCE_POINTS` (or the given table);
    * behaviour: ``per_event`` points per tracked behaviour event, at most ``max_behaviour``.
    """

    def __init__(
        self,
        source_points: Mapping[str, int] | None = None,
        *,
        per_event: int = 10,
        max_behaviour: int = 30,
    ) -> None:
        self.source_points = dict(DEFAULT_SOURCE_POINTS if source_points is None else source_points)
        self.per_event = per_event
        self.max_behaviour = max_behaviour

    def score(self, lead: Lead, behaviour_events: int) -> int:
        """The score of ``lead`` with that many behaviour events."""
        kinds = {p.kind for p in lead.contact_points}
        points = 10 * (PointKind.EMAIL in kinds) + 10 * (PointKind.PHONE in kinds)
        points += 10 * bool(lead.company) + 10 * bool(lead.needs)
        points += 5 * bool(lead.industry) + 5 * bool(lead.region)
        points += self.source_points.get(lead.source, 0)
        points += min(self.max_behaviour, self.per_event * behaviour_events)
        return points

    @hookimpl
    def pycrm_score_lead(self, lead: Lead, ctx: RuleContext) -> int:
        """Completeness + source + behaviour."""
        return self.score(lead, 0 if ctx.bulk else len(ctx.behaviour(lead)))
