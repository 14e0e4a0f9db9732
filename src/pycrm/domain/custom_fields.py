"""Custom fields: the data each company adds that pycrm was not built with.

A :class:`FieldDefinition` says what a field on one kind of record holds and
how it is checked. Values live in the record's ``custom`` mapping in their
JSON form (so every adapter stores, indexes and compares them the same way):
text, numbers and booleans as themselves, decimals as strings, dates and
datetimes in ISO 8601, money as ``{"amount": "…", "currency": "…"}``,
choices as strings and multi-choices as lists.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import attrs

from pycrm.domain.contact_points import clean_text
from pycrm.domain.money import Money
from pycrm.domain.records import Record
from pycrm.errors import FieldError, ValidationError

__all__ = [
    "CUSTOMIZABLE",
    "comparable",
    "FieldDefinition",
    "FieldType",
    "check_custom",
    "check_value",
    "typed_value",
]

#: The record kinds that take custom fields.
CUSTOMIZABLE = ("customer", "contact", "lead", "deal", "ticket", "contract", "product")


class FieldType(enum.StrEnum):
    """What a custom field holds."""

    TEXT = "text"
    NUMBER = "number"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MULTI_CHOICE = "multi_choice"
    MONEY = "money"
    REFERENCE = "reference"


@attrs.frozen(kw_only=True)
class FieldDefinition(Record):
    """One custom field of one kind of record. Its ``version`` counts its changes."""

    resource: ClassVar[str] = "field_definition"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("entity", "key"),)

    entity: str
    """The record kind: see :data:`CUSTOMIZABLE`."""
    key: str
    """Lower-case identifier, the key in ``record.custom``."""
    label: str
    """What forms show."""
    type: FieldType
    """What it holds."""
    required: bool = False
    """Every record must have a value (the default fills it on create, if there is one)."""
    default: Any = None
    """Value for new records without one (JSON form)."""
    minimum: Decimal | None = None
    """Smallest number, amount or date ordinal allowed; for text, the shortest length."""
    maximum: Decimal | None = None
    """Largest number or amount allowed; for text, the longest length."""
    pattern: str | None = None
    """Regular expression a text value must match in full."""
    choices: tuple[str, ...] = ()
    """Allowed values of a choice or multi-choice field."""
    reference: str | None = None
    """The record kind a reference points to (e.g. ``"customer"``)."""
    group: str | None = None
    """A layer for classification, e.g. ``"basic data"``, ``"growth"``."""
    readable_by: tuple[str, ...] = ()
    """Departments (or roles) that may see it; empty: everyone who may read the record."""
    writable_by: tuple[str, ...] = ()
    """Departments (or roles) that may set it; empty: everyone who may update the record."""
    searchable: bool = False
    """Indexed for search (an expression index on SQL adapters)."""
    retired: bool = False
    """No longer offered; stored values are kept."""
    personal: bool = False
    """It holds a value about a person (a birthday, a passport number): an erasure
    (``s.privacy.erase``) removes it from the person's records and those about them."""


#: What a record id looks like (ids are made by :func:`pycrm.domain.ids.new_id`, or
#: given by an application as plain identifiers).
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _number(defn: FieldDefinition, value: Any, name: str) -> Decimal:
    if isinstance(value, bool | float):
        raise ValidationError(
            name, value, "give numbers as int, Decimal or numeric text, never float"
        )
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(name, value, "is not a number") from None
    if not number.is_finite():
        raise ValidationError(name, value, "must be finite")
    if defn.minimum is not None and number < defn.minimum:
        raise ValidationError(name, value, f"must be at least {defn.minimum}")
    if defn.maximum is not None and number > defn.maximum:
        raise ValidationError(name, value, f"must be at most {defn.maximum}")
    return number


def check_value(defn: FieldDefinition, value: Any) -> Any:
    """The JSON form of ``value`` for this field, or ValidationError naming ``custom.<key>``."""
    name = f"custom.{defn.key}"
    if value is None:
        if defn.required:
            raise ValidationError(name, value, "is required")
        return None
    kind = defn.type
    if kind is FieldType.TEXT:
        text = clean_text(
            value, name, limit=int(defn.maximum) if defn.maximum is not None else 10_000
        )
        if text is None:  # blank: no value, which a required field may not be
            if defn.required:
                raise ValidationError(name, value, "is required")
            return None
        if defn.minimum is not None and len(text) < defn.minimum:
            raise ValidationError(name, value, f"must be at least {defn.minimum} characters")
        if defn.pattern and not re.fullmatch(defn.pattern, text):
            raise ValidationError(name, value, f"must match {defn.pattern}")
        return text
    if kind is FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(name, value, "must be a whole number")
        _number(defn, value, name)
        if abs(value) >= 2**53:
            raise ValidationError(name, value, "is too large")
        return value
    if kind is FieldType.DECIMAL:
        return str(_number(defn, value, name))
    if kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValidationError(name, value, "must be True or False")
        return value
    if kind is FieldType.DATE:
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                raise ValidationError(name, value, "is not an ISO date") from None
        if not isinstance(value, date) or isinstance(value, datetime):
            raise ValidationError(name, value, "must be a date")
        return value.isoformat()
    if kind is FieldType.DATETIME:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ValidationError(name, value, "is not an ISO datetime") from None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValidationError(name, value, "must be a timezone-aware datetime")
        # Stored in UTC with a fixed width, so equal instants are equal text and
        # text order is time order (searches and ranges compare the text).
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if kind is FieldType.CHOICE:
        if value not in defn.choices:
            raise ValidationError(name, value, f"must be one of {', '.join(defn.choices)}")
        return value
    if kind is FieldType.MULTI_CHOICE:
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise ValidationError(name, value, "must be a list of choices")
        bad = [v for v in value if v not in defn.choices]
        if bad:
            raise ValidationError(
                name, value, f"{bad[0]!r} is not one of {', '.join(defn.choices)}"
            )
        return sorted(set(value), key=defn.choices.index)
    if kind is FieldType.MONEY:
        if isinstance(value, Mapping):
            value = (value.get("amount"), value.get("currency"))
        if isinstance(value, tuple | list) and len(value) == 2:
            try:
                value = Money.of(value[0], value[1], field=name)
            except ValidationError as exc:  # name the custom field, whichever part is bad
                reason = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
                raise ValidationError(name, value, reason) from None
        if not isinstance(value, Money):
            raise ValidationError(name, value, "must be Money or an (amount, currency) pair")
        _number(defn, value.amount, name)
        return {"amount": str(value.amount), "currency": value.currency}
    if kind is FieldType.REFERENCE:
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise ValidationError(name, value, f"must be the id of a {defn.reference}")
        return value
    raise AssertionError(kind)  # pragma: no cover


def comparable(defn: FieldDefinition, stored: Any) -> Any:
    """A stored (JSON-form) value as searches compare it: decimals as numbers, not text.

    Whole numbers are ints already; dates and datetimes are ISO text whose
    order is time order; multi-choice and money values are not compared.
    """
    if stored is None:
        return None
    if defn.type is FieldType.DECIMAL:
        return Decimal(stored)
    if defn.type in (FieldType.MULTI_CHOICE, FieldType.MONEY):
        raise ValidationError(
            f"custom.{defn.key}", stored, f"{defn.type.value} fields are not searched by value"
        )
    return stored


def typed_value(defn: FieldDefinition, stored: Any) -> Any:
    """A stored JSON-form value as a Python value (Decimal, date, datetime, Money …)."""
    if stored is None:
        return None
    kind = defn.type
    if kind is FieldType.DECIMAL:
        return Decimal(stored)
    if kind is FieldType.DATE:
        return date.fromisoformat(stored)
    if kind is FieldType.DATETIME:
        return datetime.fromisoformat(stored)
    if kind is FieldType.MONEY:
        return Money.of(stored["amount"], stored["currency"])
    if kind is FieldType.MULTI_CHOICE:
        return tuple(stored)
    return stored


def check_custom(
    definitions: Mapping[str, FieldDefinition],
    current: Mapping[str, Any],
    given: Any,
    *,
    creating: bool,
) -> dict[str, Any]:
    """The record's new ``custom`` mapping: ``current`` with ``given`` applied and checked.

    Every bad value is reported (``custom.<key>``); on create, required
    fields take their default or are refused.
    """
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ValidationError("custom", given, "must be a mapping of field key → value")
    errors: list[FieldError] = []
    result = dict(current)
    for key, value in given.items():
        defn = definitions.get(key)
        if defn is None or defn.retired:
            errors.append(FieldError(f"custom.{key}", value, "is not a defined custom field"))
            continue
        try:
            checked = check_value(defn, value)
        except ValidationError as exc:
            errors.extend(exc.errors)
            continue
        if checked is None:
            result.pop(key, None)
        else:
            result[key] = checked
    if creating:
        for key, defn in definitions.items():
            if key in result or defn.retired:
                continue
            if defn.default is not None:
                result[key] = defn.default
            elif defn.required:
                errors.append(FieldError(f"custom.{key}", None, "is required"))
    if errors:
        raise ValidationError(errors=errors)
    return result
