"""A small typed filter language over record fields.

Services build filters; adapters evaluate them (the memory adapter in Python,
the SQL adapter by compiling them into a WHERE clause), so user input is only
ever a bound value, never SQL text. Each filter checks its values when it is
made (:mod:`pycrm.domain.values`): a value no stored field could hold raises
ValidationError naming the field, before any adapter sees it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from pycrm.domain.values import check_filter_value, check_scalar
from pycrm.errors import ValidationError

__all__ = [
    "And",
    "AnyKey",
    "Contains",
    "Eq",
    "Filter",
    "HasKey",
    "In",
    "IsNull",
    "Not",
    "Or",
    "OrderBy",
    "Range",
    "RefersTo",
    "Related",
    "all_of",
    "evaluate",
    "fields_of",
    "map_related",
    "plain",
    "simplify",
]


def _as_tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)


def _value(instance: Any, attribute: Any, value: Any) -> None:
    check_filter_value(instance.field, value)


def _values(instance: Any, attribute: Any, values: tuple[Any, ...]) -> None:
    for value in values:
        check_filter_value(instance.field, value)


def _bound(instance: Any, attribute: Any, value: Any) -> None:
    check_scalar(instance.field or instance.measure, value)


def _key(instance: Any, attribute: Any, value: Any) -> None:
    for key in value if isinstance(value, tuple) else (value,):
        check_filter_value(instance.kind, key)
        if not isinstance(key, str):
            raise ValidationError(instance.kind, key, f"must be text, not {type(key).__name__}")


def _text(instance: Any, attribute: Any, value: Any) -> None:
    check_filter_value(instance.field, value)
    if not isinstance(value, str):
        raise ValidationError(instance.field, value, f"must be text, not {type(value).__name__}")


@attrs.frozen
class Eq:
    """``field == value``."""

    field: str
    value: Any = attrs.field(validator=_value)


@attrs.frozen
class In:
    """``field`` is one of ``values``."""

    field: str
    values: tuple[Any, ...] = attrs.field(converter=_as_tuple, validator=_values)


@attrs.frozen
class Range:
    """``low <= field < high``; either bound may be None (open)."""

    field: str
    low: Any = attrs.field(default=None, validator=_value)
    high: Any = attrs.field(default=None, validator=_value)


@attrs.frozen
class Contains:
    """``field`` (a case-folded text column) contains ``text`` (case-folded by the caller)."""

    field: str
    text: str = attrs.field(validator=_text)


@attrs.frozen
class IsNull:
    """``field`` is None."""

    field: str


@attrs.frozen
class HasKey:
    """The record has match key ``(kind, key)`` (see :meth:`Stored.match_keys`)."""

    kind: str
    key: str = attrs.field(validator=_key)


@attrs.frozen
class AnyKey:
    """The record has a match key of ``kind`` equal to one of ``keys`` (one index probe)."""

    kind: str
    keys: tuple[str, ...] = attrs.field(converter=_as_tuple, validator=_key)


@attrs.frozen
class Related:
    """An aggregate over related records, compared with ``low <= value < high``.

    ``Related("contract", "customer_id", "sum", "amount", low=100_000_00)``:
    customers whose contracts sum to at least 100,000.00 (Money in minor
    units). ``measure`` is ``count``, ``sum`` or ``max``; count and sum are 0
    when there are no related records, max is then None (and never matches).
    """

    resource: str
    key: str
    measure: str
    field: str | None = None
    low: Any = attrs.field(default=None, validator=_bound)
    high: Any = attrs.field(default=None, validator=_bound)
    where: Filter | None = None


@attrs.frozen
class RefersTo:
    """``field`` holds the id of a ``resource`` record that matches ``where``.

    A semi-join: ``field IN (SELECT id FROM resource WHERE where)`` in SQL.
    The permission guard uses it to keep audit entries about records the
    reader may not see out of the query.
    """

    field: str
    resource: str
    where: Filter | None = None


@attrs.frozen
class And:
    """Every part holds."""

    parts: tuple[Filter, ...]


@attrs.frozen
class Or:
    """At least one part holds."""

    parts: tuple[Filter, ...]


@attrs.frozen
class Not:
    """The part does not hold."""

    part: Filter


Filter = Eq | In | Range | Contains | IsNull | HasKey | AnyKey | Related | RefersTo | And | Or | Not


@attrs.frozen
class OrderBy:
    """Sort by ``field``, descending when ``descending``; ties are broken by id."""

    field: str
    descending: bool = False


def all_of(parts: Sequence[Filter | None]) -> Filter | None:
    """Combine the given filters with AND, dropping Nones (None when nothing is left)."""
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else And(tuple(kept))


def simplify(where: Filter | None) -> Filter | None:
    """``where`` with the conditions decided by the texts it pins, folded away.

    Inside ``And(Eq("record_type", "customer"), x)`` every condition of ``x``
    on ``record_type`` is known: ``In("record_type", ("deal", "customer"))``
    holds, ``Eq("record_type", "task")`` does not, and the Ors, Ands and Nots
    around them fold. A record passes the result exactly when it passes
    ``where``; adapters get a shorter query (a permission filter written for
    every record type shrinks to the one the query asks for). A filter that
    can match nothing comes back as ``In("id", ())``; one that always holds
    as None. Conditions on related records (``Related``, ``RefersTo``) are
    about other records and left as they are.
    """
    if where is None:
        return None
    if not any(_pin(part) for part in _flat((where,))):
        return where  # no text pinned for the whole filter: nothing to decide
    folded = _fold(where, {})
    if folded is True:
        return None
    if folded is False:
        return In("id", ())
    return folded


def _pin(part: Filter) -> tuple[str, str] | None:
    """(field, text) when ``part`` is an ``Eq`` pinning a plain field to a text."""
    if isinstance(part, Eq) and "." not in part.field:
        value = plain(part.value)
        if isinstance(value, str):
            return part.field, value
    return None


def _flat(parts: Iterable[Filter]) -> Iterator[Filter]:
    for part in parts:
        if isinstance(part, And):
            yield from _flat(part.parts)
        else:
            yield part


def _fold(where: Filter, pinned: Mapping[str, str]) -> Filter | bool:
    match where:
        case Eq(field, value) if field in pinned and isinstance(plain(value), str):
            return bool(pinned[field] == plain(value))
        case In(field, values) if field in pinned and all(
            isinstance(plain(v), str) for v in values
        ):
            return pinned[field] in {plain(v) for v in values}
        case And(parts):
            flat = list(_flat(parts))
            pins = dict(pinned)
            own: set[int] = set()  # the parts that pin a field: they stay
            for i, part in enumerate(flat):
                pin = _pin(part)
                if pin is None or pin[0] in pinned:
                    continue
                field, text = pin
                if pins.setdefault(field, text) != text:
                    return False  # one field pinned to two texts
                own.add(i)
            kept: list[Filter] = []
            for i, part in enumerate(flat):
                folded = part if i in own else _fold(part, pins)
                if folded is False:
                    return False
                if folded is not True:
                    kept.append(folded)
            return True if not kept else kept[0] if len(kept) == 1 else And(tuple(kept))
        case Or(parts):
            alternatives: list[Filter] = []
            for part in parts:
                folded = _fold(part, pinned)
                if folded is True:
                    return True
                if folded is not False:
                    alternatives.append(folded)
            if not alternatives:
                return False
            return alternatives[0] if len(alternatives) == 1 else Or(tuple(alternatives))
        case Not(part):
            folded = _fold(part, pinned)
            return (not folded) if isinstance(folded, bool) else Not(folded)
    return where


def map_related(where: Filter | None, change: Callable[[Related], Filter]) -> Filter | None:
    """``where`` with every :class:`Related` condition replaced by ``change(condition)``.

    Parts without one come back as they are (the same objects).
    """
    match where:
        case Related():
            return change(where)
        case And(parts) | Or(parts):
            changed = tuple(map_related(p, change) for p in parts)
            if all(new is old for new, old in zip(changed, parts, strict=True)):
                return where
            return type(where)(changed)  # type: ignore[arg-type]
        case Not(part):
            inner = map_related(part, change)
            return where if inner is part else Not(inner)  # type: ignore[arg-type]
    return where


def fields_of(where: Filter | None, keys: Mapping[str, str] | None = None) -> Iterator[str]:
    """The record fields ``where`` reads (not those of related records): ``name`` or ``custom.key``.

    A match-key condition reads the field its kind is derived from (``keys``:
    kind → field, see :attr:`~pycrm.domain.records.Stored.key_fields`).
    """
    match where:
        case HasKey(kind) | AnyKey(kind):
            yield (keys or {}).get(kind, kind)
        case (
            Eq(field) | In(field) | Range(field) | Contains(field) | IsNull(field) | RefersTo(field)
        ):
            yield field
        case And(parts) | Or(parts):
            for part in parts:
                yield from fields_of(part, keys)
        case Not(part):
            yield from fields_of(part, keys)


def plain(value: Any) -> Any:
    """An enum's value, anything else as is (how filters compare values)."""
    return value.value if isinstance(value, enum.Enum) else value


def json_value(field: str, value: Any) -> Any:
    """How a filter value compares with a value inside a JSON field (``custom.key``).

    Numbers compare as Decimals, dates and datetimes as ISO text, the rest as is.
    Plain fields compare ``plain(value)``.
    """
    if "." not in field or value is None:
        return plain(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, date | datetime):
        return value.isoformat()
    return plain(value)


def _get(record: Any, field: str, sample: Any) -> Any:
    """A field's value; ``custom.key`` reads a key of a JSON mapping, typed like ``sample``."""
    name, _, key = field.partition(".")
    value = getattr(record, name)
    if not key:
        return value
    value = value.get(key) if isinstance(value, dict) else None
    if value is None or isinstance(sample, bool) or isinstance(value, bool):
        return value
    if isinstance(sample, int | float | Decimal):
        try:
            return Decimal(str(value))
        except ArithmeticError:
            return None
    return value


def evaluate(record: Any, where: Filter | None) -> bool:
    """Whether ``record`` passes ``where``, with the semantics the SQL adapter compiles to."""
    if where is None:
        return True
    match where:
        case Eq(field, value):
            return bool(plain(_get(record, field, value)) == json_value(field, value))
        case In(field, values):
            return plain(_get(record, field, values[0] if values else None)) in {
                json_value(field, v) for v in values
            }
        case Range(field, low, high):
            actual = _get(record, field, low if low is not None else high)
            if actual is None:
                return False
            low, high = json_value(field, low), json_value(field, high)
            return (low is None or actual >= low) and (high is None or actual < high)
        case Contains(field, text):
            actual = _get(record, field, text)
            return isinstance(actual, str) and text in actual
        case IsNull(field):
            return _get(record, field, None) is None
        case HasKey(kind, key):
            return (kind, key) in set(record.match_keys())
        case AnyKey(kind, keys):
            wanted = set(keys)
            return any(k == kind and v in wanted for k, v in record.match_keys())
        case Related() | RefersTo():
            raise TypeError(f"{type(where).__name__} filters are resolved by the adapter")
        case And(parts):
            return all(evaluate(record, p) for p in parts)
        case Or(parts):
            return any(evaluate(record, p) for p in parts)
        case Not(part):
            return not evaluate(record, part)
    raise TypeError(f"unknown filter {where!r}")
