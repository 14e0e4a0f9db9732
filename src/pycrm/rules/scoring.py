"""The built-in lead scorer: completeness, source and behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from pycrm.domain.contact_points import PointKind
from pycrm.domain.fields import check_int, check_key, check_mapping
from pycrm.domain.leads import Lead
from pycrm.errors import ValidationError
from pycrm.rules.context import RuleContext
from pycrm.rules.hookspecs import hookimpl

__all__ = ["DEFAULT_SOURCE_POINTS", "Scorer", "ScoringRules"]

#: Points per lead source.
DEFAULT_SOURCE_POINTS: Mapping[str, int] = {
    "referral": 30,
    "webform": 20,
    "trade_show": 15,
    "api": 10,
    "import": 5,
}

_POINTS = 1000  # the largest number of points one part of the score may give or take


def _table(points: Mapping[str, int]) -> dict[str, int]:
    return dict(points)


@attrs.frozen
class ScoringRules:
    """The built-in scorer's weights (the ``scoring`` setting)."""

    source_points: Mapping[str, int] = attrs.field(
        factory=lambda: dict(DEFAULT_SOURCE_POINTS), converter=_table
    )
    """Points per lead source (a source not listed gives none)."""
    per_event: int = 10
    """Points per tracked behaviour event."""
    max_behaviour: int = 30
    """The most points behaviour events give together."""

    @classmethod
    def parse(cls, value: Any, field: str = "scoring") -> ScoringRules:
        """Build from a ScoringRules or a mapping with any of its fields; refusals name ``field``."""
        if isinstance(value, ScoringRules):
            return value
        mapping = check_mapping(field, value)
        if mapping is None:
            raise ValidationError(field, value, "must be a mapping of scoring weights")
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValidationError(
                f"{field}.{unknown[0]}", mapping[unknown[0]], f"is not one of {sorted(known)}"
            )
        points = check_mapping(f"{field}.source_points", mapping.get("source_points", {}))
        if points is None:
            raise ValidationError(f"{field}.source_points", None, "must be a mapping")
        table: dict[str, int] = {}
        for source, number in points.items():
            name = f"{field}.source_points.{source}"
            check_key(name, source, limit=60)
            table[source] = check_int(name, number, minimum=-_POINTS, maximum=_POINTS) or 0
        defaults = cls()
        return cls(
            table if "source_points" in mapping else defaults.source_points,
            per_event=_weight(f"{field}.per_event", mapping.get("per_event", defaults.per_event)),
            max_behaviour=_weight(
                f"{field}.max_behaviour", mapping.get("max_behaviour", defaults.max_behaviour)
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form :meth:`parse` reads back."""
        return {
            "source_points": dict(self.source_points),
            "per_event": self.per_event,
            "max_behaviour": self.max_behaviour,
        }

    def score(self, lead: Lead, behaviour_events: int) -> int:
        """The score of ``lead`` with that many behaviour events."""
        kinds = {p.kind for p in lead.contact_points}
        points = 10 * (PointKind.EMAIL in kinds) + 10 * (PointKind.PHONE in kinds)
        points += 10 * bool(lead.company) + 10 * bool(lead.needs)
        points += 5 * bool(lead.industry) + 5 * bool(lead.region)
        points += self.source_points.get(lead.source, 0)
        points += min(self.max_behaviour, self.per_event * behaviour_events)
        return points


def _weight(field: str, value: Any) -> int:
    number = check_int(field, value, minimum=0, maximum=_POINTS)
    if number is None:
        raise ValidationError(field, value, "must be a whole number")
    return number


class Scorer:
    """Scores a lead out of about 100.

    * completeness: 10 each for an email, a phone, a company and stated needs;
      5 each for industry and region;
    * source: :data:`DEFAULT_SOURCE_POINTS` (or the given table);
    * behaviour: ``per_event`` points per tracked behaviour event, at most ``max_behaviour``.

    With ``setting`` (as the CRM's own scorer, ``setting="scoring"``), the
    weights are the tenant's stored setting of that name, read when a lead is
    scored, and the given ones are only its default.
    """

    def __init__(
        self,
        source_points: Mapping[str, int] | None = None,
        *,
        per_event: int = 10,
        max_behaviour: int = 30,
        setting: str | None = None,
    ) -> None:
        self.rules = ScoringRules(
            dict(DEFAULT_SOURCE_POINTS if source_points is None else source_points),
            per_event=per_event,
            max_behaviour=max_behaviour,
        )
        """The weights (the default of the setting, when there is one)."""
        self.setting = setting
        """The name of the setting that holds the weights at runtime (None: ``rules`` always)."""

    @property
    def source_points(self) -> Mapping[str, int]:
        """Points per lead source."""
        return self.rules.source_points

    @property
    def per_event(self) -> int:
        """Points per behaviour event."""
        return self.rules.per_event

    @property
    def max_behaviour(self) -> int:
        """The most points behaviour events give."""
        return self.rules.max_behaviour

    def score(self, lead: Lead, behaviour_events: int) -> int:
        """The score of ``lead`` with that many behaviour events."""
        return self.rules.score(lead, behaviour_events)

    @hookimpl
    def pycrm_score_lead(self, lead: Lead, ctx: RuleContext) -> int:
        """Completeness + source + behaviour."""
        rules: ScoringRules = self.rules if self.setting is None else ctx.setting(self.setting)
        return rules.score(lead, 0 if ctx.bulk else len(ctx.behaviour(lead)))
