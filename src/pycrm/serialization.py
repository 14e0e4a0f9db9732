"""The one configured cattrs converter, and the rules it applies.

Every pycrm record and event turns into plain JSON-able data and back without
loss:

* ``Decimal`` ↔ its string (``"12.30"``), never a float;
* ``datetime`` ↔ ISO 8601 with offset (``"2026-01-02T03:04:05.000006+00:00"``);
  naive datetimes are refused when loading, and values are loaded as UTC;
* ``date`` ↔ ISO 8601 (``"2026-01-02"``), ``time`` ↔ ISO 8601 (``"09:30:00"``);
* enums ↔ their value;
* a None where the type has none (a field redacted for a reader) ↔ None;
* tuples ↔ lists;
* :class:`~pycrm.Money` ↔ ``{"amount": "12.30", "currency": "EUR"}``;
* attrs classes ↔ dicts of their fields (class variables are not fields).

Hooks are registered on this module's own converter, never on cattrs' global one.
"""

from __future__ import annotations

import enum
import functools
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import cattrs

from pycrm.domain.events import Event
from pycrm.domain.money import Money
from pycrm.errors import ValidationError

__all__ = ["converter", "from_dict", "to_dict"]

T = TypeVar("T")

converter = cattrs.Converter()
"""The converter every pycrm component uses to (un)structure records and events."""


def _load_datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value)
    else:
        raise ValueError(f"expected an ISO 8601 datetime, got {value!r}")
    if parsed.tzinfo is None:
        raise ValueError(f"datetime {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _load_date(value: Any, _: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return date.fromisoformat(value)


def _or_none(dump: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # A field hidden from a reader is None even where its type has no None
    # (a lead's status, a deal's amount): what the reader got still serializes.
    return lambda value: None if value is None else dump(value)


converter.register_unstructure_hook(Decimal, _or_none(str))
converter.register_structure_hook(Decimal, lambda v, _: Decimal(str(v)))
converter.register_unstructure_hook_func(
    lambda cls: isinstance(cls, type) and issubclass(cls, enum.Enum),
    _or_none(lambda member: converter.unstructure(member.value)),
)
# A StrEnum is a str too, and cattrs passes str through as it is: its plain
# value, so the JSON form holds text, not enum members.
converter.register_unstructure_hook(enum.StrEnum, _or_none(lambda member: str(member.value)))
converter.register_unstructure_hook(datetime, _or_none(lambda v: v.isoformat()))
converter.register_structure_hook(datetime, _load_datetime)
converter.register_unstructure_hook(date, _or_none(lambda v: v.isoformat()))
converter.register_unstructure_hook(time, _or_none(lambda v: v.isoformat()))
converter.register_structure_hook(
    time, lambda v, _: v if isinstance(v, time) else time.fromisoformat(v)
)
converter.register_structure_hook(date, _load_date)
converter.register_unstructure_hook(
    Money, _or_none(lambda m: {"amount": str(m.amount), "currency": m.currency})
)
converter.register_structure_hook(
    Money, lambda v, _: v if isinstance(v, Money) else Money.of(v["amount"], v["currency"])
)


_EVENT_FIELDS = tuple(f.name for f in attrs.fields(Event))


def _unstructure_event(event: Event) -> dict[str, Any]:
    # ``before`` and ``after`` are in JSON form already: walking them again is
    # most of the cost of an event's payload. Its other fields are strings.
    data = {name: getattr(event, name) for name in _EVENT_FIELDS}
    data["occurred_at"] = event.occurred_at.isoformat()
    return data


converter.register_unstructure_hook(Event, _unstructure_event)


def to_dict(obj: Any) -> dict[str, Any]:
    """Return ``obj`` (an attrs record, value or event) as a JSON-able dict."""
    data = converter.unstructure(obj)
    if not isinstance(data, dict):
        raise ValidationError("obj", obj, "is not a record or value pycrm can serialize")
    return data


@functools.cache
def _optional(cls: type) -> tuple[str, ...]:
    """Fields of attrs class ``cls`` without a default whose type admits None."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved here
        return ()
    return tuple(
        f.name
        for f in attrs.fields(cls)
        if f.default is attrs.NOTHING and type(None) in typing.get_args(hints.get(f.name))
    )


def from_dict(cls: type[T], data: Any) -> T:
    """Build a ``cls`` from what :func:`to_dict` returned.

    Raises :class:`~pycrm.errors.ValidationError` naming the first bad field.
    """
    if isinstance(data, Mapping) and attrs.has(cls):
        # Compact forms (audit snapshots, event payloads) leave empty fields out: an
        # optional field that is missing is None. A missing required one is still refused.
        missing = [name for name in _optional(cls) if name not in data]
        if missing:
            data = {**dict.fromkeys(missing), **data}
    try:
        return converter.structure(data, cls)
    except cattrs.ClassValidationError as exc:
        notes = cattrs.transform_error(exc)
        raise ValidationError(cls.__name__, data, "; ".join(notes)) from None
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
        raise ValidationError(cls.__name__, data, str(exc)) from None
