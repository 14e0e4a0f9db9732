"""What a value must be to be compared with a stored field, checked where filters are built.

Every filter of :mod:`pycrm.domain.query` checks its values when it is
made, so a value that no stored field could hold is refused with a
:class:`~pycrm.errors.ValidationError` naming the filter's field (which is
normally the argument it came from) before any adapter sees it: memory,
SQLite and PostgreSQL then refuse the same values the same way, and a
database is never handed a value it cannot bind.

Refused everywhere: text with a NUL byte or an unpaired surrogate; NaN and
infinities (float or Decimal); whole numbers beyond 64 bits; naive
datetimes; bytes, lists, mappings and other objects where one value belongs.

Refused by the field's type: a field has the same type in every record
kind (``customer_id`` is text wherever it appears, ``due`` a date,
``occurred_at`` a datetime; a test keeps it so), so the field's name says
what it holds, and a value of another type is refused: a number or a date
for a text field, text for a date field, a date for a datetime field.
Custom fields (``custom.<key>``) hold JSON values and take any clean scalar.
"""

from __future__ import annotations

import enum
import functools
import math
import re
import types
import typing
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pycrm.errors import ValidationError

__all__ = ["Kind", "check_filter_value", "check_scalar", "field_kinds", "kind_of_type"]

#: What no stored text holds: a NUL byte, or half of a surrogate pair.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")

#: Whole numbers a database column holds (BIGINT).
_INT64 = 2**63


class Kind(enum.Enum):
    """What a stored field holds, as far as comparing values with it goes."""

    TEXT = "text"
    INT = "a whole number"
    BOOL = "True or False"
    DECIMAL = "a number"
    DATE = "a date"
    DATETIME = "a timezone-aware datetime"
    OTHER = "a value"


def kind_of_type(hint: Any) -> Kind:
    """The kind of a field annotated ``hint`` (``X | None`` is the kind of ``X``)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = {kind_of_type(h) for h in typing.get_args(hint) if h is not type(None)}
        return kinds.pop() if len(kinds) == 1 else Kind.OTHER
    if not isinstance(hint, type):
        return Kind.OTHER
    if issubclass(hint, enum.Enum):
        return Kind.TEXT if all(isinstance(m.value, str) for m in hint) else Kind.OTHER
    for cls, kind in (
        (bool, Kind.BOOL),
        (int, Kind.INT),
        (str, Kind.TEXT),
        (Decimal, Kind.DECIMAL),
        (datetime, Kind.DATETIME),
        (date, Kind.DATE),
    ):
        if issubclass(hint, cls):
            return kind
    return Kind.OTHER


@functools.cache
def field_kinds() -> dict[str, Kind]:
    """The kind of every stored field, by name, over every record type.

    A name with different kinds in different record types (none today) is OTHER.
    """
    import attrs

    from pycrm.domain import RECORD_TYPES  # the record model imports this module's users

    kinds: dict[str, set[Kind]] = {}
    for cls in RECORD_TYPES:
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            kinds.setdefault(field.name, set()).add(kind_of_type(hints[field.name]))
        for computed in cls.computed:
            kinds.setdefault(computed, set()).add(Kind.TEXT)
    return {name: found.pop() if len(found) == 1 else Kind.OTHER for name, found in kinds.items()}


def check_scalar(field: str, value: Any) -> None:
    """Raise ValidationError naming ``field`` unless ``value`` is one clean storable value.

    None, text without NUL bytes or unpaired surrogates, a bool, a whole number
    within 64 bits, a finite float or Decimal, a date, a timezone-aware
    datetime, or an enum member whose value is one of these.
    """
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if _BAD_TEXT.search(value):
            raise ValidationError(field, value, "contains a NUL byte or an unpaired surrogate")
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValidationError(field, value, "is too large a number")
    elif isinstance(value, float | Decimal):
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            raise ValidationError(field, value, "must be a finite number")
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(field, value, "must be timezone-aware (e.g. datetime.now(UTC))")
    elif not isinstance(value, date):
        raise ValidationError(field, value, f"must be a single value, not {type(value).__name__}")


def _fits(kind: Kind, value: Any) -> bool:
    match kind:
        case Kind.TEXT:
            return isinstance(value, str)
        case Kind.BOOL:
            return isinstance(value, bool)
        case Kind.INT:
            return isinstance(value, int) and not isinstance(value, bool)
        case Kind.DECIMAL:
            return isinstance(value, int | Decimal) and not isinstance(value, bool)
        case Kind.DATETIME:
            return isinstance(value, datetime)
        case Kind.DATE:
            return isinstance(value, date) and not isinstance(value, datetime)
    return True


def check_filter_value(field: str, value: Any) -> None:
    """Raise ValidationError naming ``field`` unless ``value`` can be compared with it.

    ``value`` must pass :func:`check_scalar` and, for a stored field of a known
    kind (see :func:`field_kinds`), be of that kind; None always can.
    """
    check_scalar(field, value)
    if value is None:
        return
    plain = value.value if isinstance(value, enum.Enum) else value
    kind = field_kinds().get(field, Kind.OTHER)
    if not _fits(kind, plain):
        raise ValidationError(field, value, f"must be {kind.value}, not {type(value).__name__}")
