"""Assessments: several departments rate the same attribute; a rule consolidates them.

Sales may say a customer is grade A while service says C. Each rating is kept
with its source, and a :data:`ConsolidationRule` chosen per attribute gives
the value the customer record shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = [
    "Assessment",
    "ConsolidationRule",
    "latest",
    "majority",
    "by_priority",
]


@attrs.frozen(kw_only=True)
class Assessment(Record):
    """One department's rating of one attribute of a customer."""

    resource: ClassVar[str] = "assessment"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("customer_id", "attribute"),)

    customer_id: str
    """The customer rated."""
    attribute: str
    """What is rated, e.g. ``"grade"``."""
    value: str
    """The rating, e.g. ``"A"``."""
    source: str
    """Who rates: a department key (``"sales"``) or a data source (``"erp"``)."""
    assessed_at: datetime
    """When the rating was given."""
    note: str | None = None
    """Why."""


ConsolidationRule = Callable[[Sequence[Assessment]], str | None]
"""Takes the current assessment of each source (never empty) and returns the consolidated value."""


def latest(assessments: Sequence[Assessment]) -> str | None:
    """The most recent rating wins."""
    return max(assessments, key=lambda a: (a.assessed_at, a.id)).value


def majority(assessments: Sequence[Assessment]) -> str | None:
    """The value most sources give wins; ties go to the most recent of the tied values."""
    counts = Counter(a.value for a in assessments)
    best = max(counts.values())
    tied = [a for a in assessments if counts[a.value] == best]
    return latest(tied)


def by_priority(*sources: str) -> ConsolidationRule:
    """The first source in ``sources`` that has rated wins; unlisted sources rank last, by recency."""
    rank = {source: i for i, source in enumerate(sources)}

    def rule(assessments: Sequence[Assessment]) -> str | None:
        best = min(
            assessments,
            key=lambda a: (rank.get(a.source, len(rank)), -a.assessed_at.timestamp()),
        )
        return best.value

    rule.__doc__ = f"Priority: {', '.join(sources)}, then the rest by recency."
    return rule
