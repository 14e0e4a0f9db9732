"""Computing aggregates in Python: what the memory adapter does and the SQL adapter compiles."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from pycrm.domain.aggregates import (
    AgeBucket,
    Avg,
    AvgDuration,
    Count,
    Field,
    GroupKey,
    Max,
    Measure,
    MedianDuration,
    Min,
    Period,
    Sum,
    SumProduct,
    age_label,
    period_label,
)
from pycrm.domain.money import Money
from pycrm.domain.query import evaluate, plain

__all__ = ["aggregate", "value_of"]


def value_of(record: Any, path: str) -> Any:
    """A field's comparable value: enums by value, Money in minor units, ``a.b`` followed."""
    value = record
    for part in path.split("."):
        value = getattr(value, part) if value is not None else None
    if isinstance(value, Money):
        return value.minor
    return plain(value)


def _day(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def _group_value(record: Any, key: GroupKey) -> Any:
    match key:
        case Field(name):
            return value_of(record, name)
        case Period(field, unit):
            value = getattr(record, field)
            return None if value is None else period_label(_day(value), unit)
        case AgeBucket(field, as_of, edges):
            value = getattr(record, field)
            return None if value is None else age_label((as_of - _day(value)).days, edges)
    raise TypeError(f"unknown group key {key!r}")


def _measure(records: Sequence[Any], measure: Measure) -> Any:
    chosen = [r for r in records if measure.where is None or evaluate(r, measure.where)]
    match measure:
        case Count():
            return len(chosen)
        case Sum(field):
            return sum((value_of(r, field) or 0) for r in chosen)
        case Avg(field):
            values = [value_of(r, field) for r in chosen if value_of(r, field) is not None]
            return sum(values) / len(values) if values else None
        case Min(field) | Max(field):
            values = [value_of(r, field) for r in chosen if value_of(r, field) is not None]
            pick: Callable[[Iterable[Any]], Any] = min if isinstance(measure, Min) else max
            return pick(values) if values else None
        case SumProduct(field, weight):
            return sum((value_of(r, field) or 0) * (value_of(r, weight) or 0) for r in chosen)
        case AvgDuration(start, end) | MedianDuration(start, end):
            spans = [
                (getattr(r, end) - getattr(r, start)).total_seconds()
                for r in chosen
                if getattr(r, start) is not None and getattr(r, end) is not None
            ]
            if not spans:
                return None
            return (
                statistics.median(spans)
                if isinstance(measure, MedianDuration)
                else (sum(spans) / len(spans))
            )
    raise TypeError(f"unknown measure {measure!r}")


def aggregate(
    records: Iterable[Any], group_by: Sequence[GroupKey], measures: Mapping[str, Measure]
) -> list[dict[str, Any]]:
    """One dict per group: the group keys (named after their field) and each measure."""
    groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for record in records:
        groups[tuple(_group_value(record, key) for key in group_by)].append(record)
    if not group_by and not groups:
        groups[()] = []
    rows = []
    for values, members in groups.items():
        row = {_key_name(key): value for key, value in zip(group_by, values, strict=True)}
        row.update({name: _measure(members, m) for name, m in measures.items()})
        rows.append(row)
    return rows


def _key_name(key: GroupKey) -> str:
    return key.name if isinstance(key, Field) else key.field
