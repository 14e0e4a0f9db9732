"""Aggregates as data: what to group by and what to measure.

Analytics describe each figure with these values; the SQL adapter compiles
them into one GROUP BY query (so rows never travel to Python) and the memory
adapter computes the same in Python. A Money field is measured in minor units
(``Sum("amount")``) and grouped by currency with ``Field("amount.currency")``.
"""

from __future__ import annotations

from datetime import date

import attrs

from pycrm.domain.query import Filter

__all__ = [
    "AgeBucket",
    "Avg",
    "AvgDuration",
    "Count",
    "Field",
    "GroupKey",
    "Max",
    "Measure",
    "MedianDuration",
    "Min",
    "Period",
    "Sum",
    "SumProduct",
    "age_label",
    "period_label",
]


@attrs.frozen
class Field:
    """Group by a field's value (``"owner_id"``, or ``"amount.currency"`` for a Money field's currency)."""

    name: str


@attrs.frozen
class Period:
    """Group by the calendar period of a date or datetime field (UTC): ``day``, ``month``, ``quarter``, ``year``.

    Labels look like ``2026-03-01``, ``2026-03``, ``2026-Q1``, ``2026``.
    """

    field: str
    unit: str = "month"


@attrs.frozen
class AgeBucket:
    """Group by how many days a date field lies before ``as_of``.

    Labels: ``current`` (not yet past), then ``0-30``, ``31-60``, ``61-90``
    and ``90+`` with the default edges.
    """

    field: str
    as_of: date
    edges: tuple[int, ...] = (30, 60, 90)


GroupKey = Field | Period | AgeBucket


@attrs.frozen
class Count:
    """How many records (matching ``where``, if given)."""

    where: Filter | None = None


@attrs.frozen
class Sum:
    """The sum of a numeric or Money field (Money in minor units)."""

    field: str
    where: Filter | None = None


@attrs.frozen
class Avg:
    """The mean of a numeric field (None when there are no values)."""

    field: str
    where: Filter | None = None


@attrs.frozen
class Min:
    """The smallest value of a field."""

    field: str
    where: Filter | None = None


@attrs.frozen
class Max:
    """The largest value of a field."""

    field: str
    where: Filter | None = None


@attrs.frozen
class AvgDuration:
    """The mean of ``end - start`` in seconds, over records where both are set."""

    start: str
    end: str
    where: Filter | None = None


@attrs.frozen
class MedianDuration:
    """The median of ``end - start`` in seconds, over records where both are set.

    With an even number of values it is the mean of the two middle ones (as
    :func:`statistics.median`); None when there are none. PostgreSQL computes
    it with ``percentile_cont(0.5)``, SQLite with ``row_number()`` over the
    sorted values of each group.
    """

    start: str
    end: str
    where: Filter | None = None


@attrs.frozen
class SumProduct:
    """The sum of ``field × weight`` (e.g. amount in minor units × probability in percent)."""

    field: str
    weight: str
    where: Filter | None = None


Measure = Count | Sum | Avg | Min | Max | AvgDuration | MedianDuration | SumProduct


def period_label(value: date, unit: str) -> str:
    """The label of the period ``value`` falls in."""
    if unit == "day":
        return value.strftime("%Y-%m-%d")
    if unit == "month":
        return value.strftime("%Y-%m")
    if unit == "quarter":
        return f"{value.year}-Q{(value.month - 1) // 3 + 1}"
    if unit == "year":
        return str(value.year)
    raise ValueError(f"unknown period unit {unit!r}")


def age_label(days: int, edges: tuple[int, ...]) -> str:
    """The bucket label for something ``days`` past (negative or zero: ``current``)."""
    if days <= 0:
        return "current"
    low = 0
    for edge in edges:
        if days <= edge:
            return f"{low}-{edge}"
        low = edge + 1
    return f"{edges[-1]}+"
