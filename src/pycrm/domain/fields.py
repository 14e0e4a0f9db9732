"""Checks for the values users type into records' fields.

Each check returns the cleaned value or raises :class:`ValidationError`
naming the field; :class:`Checks` gathers several failures into one error so
a form can show them all at once.
"""

from __future__ import annotations

import enum
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from types import TracebackType
from typing import Any, TypeVar

from pycrm.domain.contact_points import (
    ContactPoint,
    PointKind,
    clean_text,
    email_point,
    phone_point,
)
from pycrm.domain.money import Money
from pycrm.domain.values import check_scalar
from pycrm.errors import FieldError, ValidationError

__all__ = [
    "Checks",
    "check_bool",
    "check_choice",
    "check_date",
    "check_id",
    "check_ids",
    "check_int",
    "check_json",
    "check_key",
    "check_mapping",
    "check_money",
    "check_one_of",
    "check_points",
    "check_tags",
    "check_text",
    "fold_points",
]

T = TypeVar("T")

MAX_TAGS = 100


class Checks:
    """Run several field checks and raise one ValidationError listing every failure.

    ``with Checks() as checks: name = checks(check_text, "name", raw, required=True)``
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def __call__(self, check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``check``; on failure remember its errors and return None."""
        try:
            return check(*args, **kwargs)
        except ValidationError as exc:
            self.errors.extend(exc.errors)
            return None  # type: ignore[return-value]

    def __enter__(self) -> Checks:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None and self.errors:
            raise ValidationError(errors=self.errors)


def check_text(
    field: str, value: Any, *, required: bool = False, limit: int = 200, multiline: bool = False
) -> str | None:
    """Cleaned text (NFKC, whitespace folded unless ``multiline``), at most ``limit`` characters."""
    return clean_text(value, field, required=required, limit=limit, multiline=multiline)


def check_int(field: str, value: Any, *, minimum: int = 0, maximum: int = 10**12) -> int | None:
    """A whole number in ``[minimum, maximum]`` (bools and floats are refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, value, f"must be a whole number, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValidationError(field, value, f"must be between {minimum} and {maximum:,}")
    return value


def check_key(field: str, value: Any, *, what: str = "text", limit: int = 1000) -> str:
    """Text that names something exactly (a key, a path, a name to look up), as given.

    Unlike :func:`check_text` nothing is normalised: the text must match as it
    is. Refuses non-strings, text with control characters (a NUL byte …) or
    unpaired surrogates, and text longer than ``limit``, naming ``field``.
    """
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be {what}, not {type(value).__name__}")
    if not value.isprintable() and any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValidationError(field, value, "contains control characters or unpaired surrogates")
    if len(value) > limit:
        raise ValidationError(field, value, f"is longer than {limit} characters")
    return value


def check_date(field: str, value: Any) -> date | None:
    """A calendar day (``datetime.date``, not a datetime), or None."""
    if value is None:
        return None
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValidationError(field, value, "must be a date (datetime.date)")
    return value


def check_id(field: str, value: Any) -> str:
    """The id of a record, as text (what no id can be is refused, naming ``field``)."""
    return check_key(field, value, what="a string id", limit=200)


def check_ids(field: str, value: Any) -> tuple[str, ...]:
    """A list of record ids; a bad one is named by its index (``duplicate_ids[1]``)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValidationError(field, value, "must be a list of ids")
    return tuple(check_id(f"{field}[{i}]", item) for i, item in enumerate(value))


def check_mapping(field: str, value: Any) -> Mapping[str, Any] | None:
    """None, or a mapping with text keys (its values are the caller's to check)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, f"must be a mapping, not {type(value).__name__}")
    for key in value:
        check_key(field, key, what="a text key")
    return value


def check_one_of(field: str, value: Any, choices: Iterable[str]) -> str:
    """One of the texts ``choices`` (anything else, unhashable values too, is refused)."""
    allowed = tuple(choices)
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(field, value, f"must be one of {', '.join(allowed)}")
    return value


def check_json(field: str, value: Any, *, depth: int = 20) -> Any:
    """JSON data to store as it is: ``value`` with tuples as lists and mappings as dicts.

    None, True/False, whole numbers, finite floats, text, lists and mappings
    with text keys, nested at most ``depth`` deep. Text may hold no NUL byte or
    unpaired surrogate (no database stores them in JSON). A refusal names the
    place: ``properties.page``, ``rule.all[0].value``.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, value, "must be a finite number")
        return value
    if isinstance(value, str):
        check_scalar(field, value)
        return value
    if depth <= 0:
        raise ValidationError(field, value, "is nested too deeply")
    if isinstance(value, list | tuple):
        return [check_json(f"{field}[{i}]", v, depth=depth - 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(field, key, "keys must be text")
            check_scalar(field, key)
            out[key] = check_json(f"{field}.{key}", item, depth=depth - 1)
        return out
    raise ValidationError(field, value, f"must be JSON data, not {type(value).__name__}")


def check_bool(field: str, value: Any) -> bool:
    """A real bool (``1`` and ``"yes"`` are refused)."""
    if not isinstance(value, bool):
        raise ValidationError(field, value, f"must be True or False, not {type(value).__name__}")
    return value


def check_money(field: str, value: Any) -> Money | None:
    """A :class:`Money`, or a ``(amount, currency)`` pair turned into one."""
    if value is None or isinstance(value, Money):
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        try:
            return Money.of(value[0], value[1], field=field)
        except ValidationError as exc:
            if exc.field != "currency":
                raise
            raise ValidationError(field, value, f"currency {exc.reason}") from None
    raise ValidationError(field, value, "must be Money or an (amount, currency) pair")


def check_tags(field: str, value: Any) -> tuple[str, ...]:
    """Tags: distinct (case-insensitively) cleaned strings, in the order given."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(field, value, "must be a list of strings")
    tags: dict[str, str] = {}
    for i, raw in enumerate(value):
        tag = clean_text(raw, f"{field}[{i}]", required=True, limit=50)
        assert tag is not None
        tags.setdefault(tag.casefold(), tag)
    if len(tags) > MAX_TAGS:
        raise ValidationError(field, value, f"at most {MAX_TAGS} tags")
    return tuple(tags.values())


def check_points(
    emails: Any, phones: Any, *, region: str | None, lenient: bool = False
) -> tuple[ContactPoint, ...]:
    """Normalised contact points from lists of emails and phones.

    Each item is a string, a ``(value, label)`` pair, a mapping
    ``{"value": …, "label": …, "primary": True}`` or a :class:`ContactPoint`.
    At most one email and one phone may be marked primary (without a mark,
    the first of its kind is the primary one). Every bad item is reported, by
    index (``phones[1]``). Duplicates are dropped.
    With ``lenient``, a value that fails validation is kept as typed (cleaned of
    control characters and extra spaces) and flagged ``valid=False`` instead,
    so nothing is lost when migrating legacy data.
    """
    points: dict[tuple[PointKind, str], ContactPoint] = {}
    primaries: dict[PointKind, bool] = {}
    errors: list[FieldError] = []
    for field, items, build in (("emails", emails, email_point), ("phones", phones, phone_point)):
        if items is None:
            continue
        if isinstance(items, str) or not isinstance(items, Iterable):
            errors.append(FieldError(field, items, "must be a list"))
            continue
        for i, item in enumerate(items):
            name = f"{field}[{i}]"
            if isinstance(item, _Lone):
                name, item = item.field, item.value
            value, label, primary = item, "work", False
            try:
                if isinstance(item, ContactPoint):
                    value, label, primary = item.value, item.label, item.primary
                elif isinstance(item, tuple | list) and len(item) == 2:
                    value, label = item
                elif isinstance(item, Mapping):
                    value, label, primary = _point_mapping(name, item)
                else:
                    value, label = item, "work"
                kwargs: dict[str, Any] = {"field": name}
                if build is phone_point:
                    kwargs["region"] = region
                point = build(value, label, **kwargs)
            except ValidationError as exc:
                raw = _raw(value) if lenient else None
                if raw is None:
                    errors.extend(exc.errors)
                    continue
                kind = PointKind.EMAIL if field == "emails" else PointKind.PHONE
                point = ContactPoint(kind, raw, _raw(label) or "work", valid=False)
            if primary:
                if primaries.get(point.kind):
                    errors.append(FieldError(name, item, f"only one of the {field} may be primary"))
                    continue
                primaries[point.kind] = True
                point = ContactPoint(point.kind, point.value, point.label, point.valid, True)
            points.setdefault((point.kind, point.match_key() or point.value), point)
    if errors:
        raise ValidationError(errors=errors)
    if len(points) > 50:
        raise ValidationError("contact_points", len(points), "at most 50 emails and phones")
    return tuple(points.values())


def _point_mapping(field: str, item: Mapping[Any, Any]) -> tuple[Any, Any, bool]:
    """``(value, label, primary)`` of a point given as a mapping."""
    unknown = sorted(map(str, set(item) - {"value", "label", "primary"}))
    if unknown:
        raise ValidationError(f"{field}.{unknown[0]}", item, "is not value, label or primary")
    if "value" not in item:
        raise ValidationError(f"{field}.value", item, "is required")
    primary = item.get("primary", False)
    if not isinstance(primary, bool):
        raise ValidationError(f"{field}.primary", primary, "must be True or False")
    return item["value"], item.get("label", "work"), primary


class _Lone:
    """One email or phone given on its own (``email=``): a refusal names that argument."""

    __slots__ = ("field", "value")

    def __init__(self, field: str, value: Any) -> None:
        self.field = field
        self.value = value


def fold_points(fields: dict[str, Any]) -> None:
    """Put a lone ``email``/``phone`` in ``fields`` first in its ``emails``/``phones`` list.

    For calls that take one of each beside the lists (every create, capture,
    update and ``check``):
    :func:`check_points` then names ``email`` or ``phone`` when it refuses one.
    """
    for one, many in (("email", "emails"), ("phone", "phones")):
        if one not in fields:
            continue
        value = fields.pop(one)
        if value is None and many not in fields:
            continue  # email=None says nothing (an update keeps the emails it has)
        given = fields.get(many) or ()
        if isinstance(given, str) or not isinstance(given, Iterable):
            raise ValidationError(many, given, "must be a list")
        fields[many] = [_Lone(one, value), *given] if value is not None else list(given)


E = TypeVar("E", bound=enum.Enum)


def check_choice(field: str, value: Any, choices: type[E]) -> E:
    """A member of the enum ``choices``, given as the member or its value."""
    if isinstance(value, choices):
        return value
    try:
        return choices(value)
    except (ValueError, TypeError):  # TypeError: an unhashable value, or a signalling NaN
        allowed = ", ".join(str(c.value) for c in choices)
        raise ValidationError(field, value, f"must be one of {allowed}") from None


def _raw(value: Any) -> str | None:
    """``value`` as storable text, if it is text at all."""
    try:
        return clean_text(value, "value", limit=320) if isinstance(value, str) else None
    except ValidationError:
        return None
