"""Retention rules: how long records of a kind are kept, and what happens to them then.

A :class:`RetentionRule` names a record kind, a selection (``when``: field →
allowed values), a period (``after``) measured from one of the record's
moments (``measured_from``), and an action: ``erase`` (pseudonymise the
person), ``delete`` (remove the record) or ``clear_bodies`` (blank a closed
ticket's free text, keeping its dates and figures). A tenant stores its rules
as the ``retention`` setting; none is active until one is stored.
:data:`EXAMPLE_RULES` holds sensible ones to start from.

Everything here is pure: the rules are checked when they are made, and a bad
one is refused with a :class:`~pycrm.errors.ValidationError` naming the field
(``after``, ``when.status`` …, or ``value[0].after`` when a list is parsed).
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from pycrm.domain.customers import RecordStatus
from pycrm.domain.leads import LeadStatus
from pycrm.domain.tickets import Channel, Priority
from pycrm.errors import FieldError, ValidationError

__all__ = [
    "ACTIONS",
    "EXAMPLE_RULES",
    "KINDS",
    "MEASURES",
    "NEVER_SELECTED",
    "Period",
    "RetainedKind",
    "RetentionRule",
    "parse_rules",
]

#: What a rule does to the records it selects.
ACTIONS = ("erase", "delete", "clear_bodies")

#: The moments a period is measured from.
MEASURES = ("last_activity", "updated_at", "closed_at", "created_at")

#: The most rules a tenant keeps.
MAX_RULES = 50

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,59}")
_PERIOD = re.compile(r"\s*(\d{1,5})\s*(day|week|month|year)s?\s*")
_LONGEST_DAYS = 100 * 366


@attrs.frozen
class RetainedKind:
    """What retention may do to one record kind."""

    actions: tuple[str, ...]
    """The actions allowed, the first being the most usual."""
    measures: tuple[str, ...]
    """The moments a period may be measured from, the first being the default."""
    fields: Mapping[str, type[enum.Enum] | None]
    """The fields ``when`` may select on: the enum of their values, or None for free text."""


#: The record kinds retention rules apply to, by ``record_type``.
KINDS: dict[str, RetainedKind] = {
    "lead": RetainedKind(
        ("erase", "delete"),
        ("last_activity", "updated_at", "created_at"),
        {
            "status": LeadStatus,
            "source": None,
            "campaign": None,
            "region": None,
            "industry": None,
            "owner_id": None,
        },
    ),
    "contact": RetainedKind(
        ("erase",),
        ("last_activity", "updated_at", "created_at"),
        {"status": RecordStatus, "source": None, "owner_id": None, "customer_id": None},
    ),
    "ticket": RetainedKind(
        ("clear_bodies",),
        ("closed_at", "updated_at", "created_at"),
        {"channel": Channel, "priority": Priority, "category": None},
    ),
}

#: Statuses a rule never selects, by record kind: a converted or merged lead, a merged
#: contact, is part of another record's history. Erasing it would erase that record's
#: person too (whose own activity the rule did not measure), and leads in them are never
#: deleted (``s.leads.delete`` refuses them).
NEVER_SELECTED: dict[str, tuple[str, ...]] = {
    "lead": (LeadStatus.CONVERTED.value, LeadStatus.MERGED.value),
    "contact": (RecordStatus.MERGED.value,),
    "ticket": (),
}


@attrs.frozen
class Period:
    """A span of calendar months and days (``24 months``, ``5 years``, ``90 days``)."""

    months: int = 0
    """Whole calendar months (a year is 12)."""
    days: int = 0
    """Whole days (a week is 7)."""

    @classmethod
    def parse(cls, value: Any, field: str) -> Period:
        """A period from text (``"24 months"``), a :class:`~datetime.timedelta` or a Period.

        Text is a whole number and a unit: ``day``, ``week``, ``month`` or
        ``year`` (plural or not). A timedelta must be whole days. The period
        must be at least a day and at most 100 years.

        :raises ValidationError: naming ``field``.
        """
        if isinstance(value, Period):
            period = value
        elif isinstance(value, timedelta):
            if value % timedelta(days=1):
                raise ValidationError(field, value, "must be whole days")
            period = cls(days=value.days)
        elif isinstance(value, str):
            match = _PERIOD.fullmatch(value.lower()) if len(value) <= 40 else None
            if match is None:
                raise ValidationError(
                    field, value, 'must be a number and a unit: "90 days", "24 months", "5 years"'
                )
            number, unit = int(match.group(1)), match.group(2)
            period = {
                "day": cls(days=number),
                "week": cls(days=7 * number),
                "month": cls(months=number),
                "year": cls(months=12 * number),
            }[unit]
        else:
            raise ValidationError(
                field, value, 'must be text such as "24 months" or a timedelta of whole days'
            )
        if (
            not isinstance(period.months, int)
            or not isinstance(period.days, int)
            or period.months < 0
            or period.days < 0
        ):
            raise ValidationError(field, value, "must be a positive span")
        if period.months == 0 and period.days == 0:
            raise ValidationError(field, value, "must be at least a day")
        if period.months * 31 + period.days > _LONGEST_DAYS:
            raise ValidationError(field, value, "must be at most 100 years")
        return period

    def before(self, moment: datetime) -> datetime:
        """``moment`` less this period: months on the calendar (31 March - 1 month = 28/29 Feb)."""
        total = moment.year * 12 + moment.month - 1 - self.months
        year, month = divmod(total, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day) - timedelta(days=self.days)

    def __str__(self) -> str:
        parts = []
        if self.months:
            years, months = divmod(self.months, 12)
            if years and not months:
                parts.append(f"{years} year" + ("s" if years != 1 else ""))
            else:
                parts.append(f"{self.months} month" + ("s" if self.months != 1 else ""))
        if self.days:
            parts.append(f"{self.days} day" + ("s" if self.days != 1 else ""))
        return " ".join(parts)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            "name",
            value,
            "must be a lower-case slug: a letter, then letters, digits, - or _ (at most 60)",
        )
    return value


def _choice(field: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(field, value, f"must be one of {', '.join(allowed)}")
    return value


def _record_type(value: Any) -> str:
    return _choice("record_type", value, tuple(KINDS))


def _action(value: Any) -> str:
    return _choice("action", value, ACTIONS)


def _after(value: Any) -> Period:
    return Period.parse(value, "after")


def _when(value: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("when", value, 'must map fields to values: {"status": ["new"]}')
    when: dict[str, tuple[str, ...]] = {}
    for key, wanted in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValidationError("when", key, "must map field names to values")
        items = [wanted] if isinstance(wanted, str | enum.Enum) else wanted
        if not isinstance(items, list | tuple) or not 1 <= len(items) <= 100:
            raise ValidationError(f"when.{key}", wanted, "must be a value or a list of 1-100")
        texts = []
        for item in items:
            text = item.value if isinstance(item, enum.Enum) else item
            if not isinstance(text, str) or not text.isprintable() or not 0 < len(text) <= 200:
                raise ValidationError(f"when.{key}", item, "must be printable text (1-200)")
            texts.append(text)
        when[key] = tuple(dict.fromkeys(texts))
    return when


@attrs.frozen(kw_only=True)
class RetentionRule:
    """One retention rule: which records of a kind, how long after what, and what then.

    ``RetentionRule(name="stale-leads", record_type="lead", when={"status":
    ["new", "assigned", "contacted", "qualified", "disqualified"]},
    after="24 months", measured_from="last_activity", action="erase")``
    erases leads never converted once nothing happened to them for 24 months.

    :raises ValidationError: naming the field (``name``, ``record_type``,
        ``action``, ``after``, ``measured_from``, ``when`` or ``when.<field>``).
    """

    name: str = attrs.field(converter=_name)
    """A slug naming the rule; audit entries say ``retention:<name>``."""
    record_type: str = attrs.field(converter=_record_type)
    """``lead``, ``contact`` or ``ticket``."""
    action: str = attrs.field(converter=_action)
    """``erase`` (leads, contacts), ``delete`` (leads) or ``clear_bodies`` (tickets)."""
    after: Period = attrs.field(converter=_after)
    """How long after :attr:`measured_from` the action falls due."""
    measured_from: str = ""
    """``last_activity`` (leads, contacts; the default there), ``closed_at`` (tickets; the
    default there), ``updated_at`` or ``created_at``."""
    when: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_when)
    """Field → the values a record must have one of (all fields must match)."""
    description: str | None = None
    """Why the rule exists, for people reading it."""

    def __attrs_post_init__(self) -> None:
        kind = KINDS[self.record_type]
        if self.action not in kind.actions:
            raise ValidationError(
                "action",
                self.action,
                f"a {self.record_type} rule takes {', '.join(kind.actions)}",
            )
        measured = self.measured_from or kind.measures[0]
        if measured not in kind.measures:
            raise ValidationError(
                "measured_from",
                self.measured_from,
                f"a {self.record_type} rule measures from {', '.join(kind.measures)}",
            )
        object.__setattr__(self, "measured_from", measured)
        for key, values in self.when.items():
            if key not in kind.fields:
                raise ValidationError(
                    f"when.{key}",
                    key,
                    f"a {self.record_type} rule selects on {', '.join(kind.fields)}",
                )
            enum_type = kind.fields[key]
            if enum_type is not None:
                known = [m.value for m in enum_type]
                for value in values:
                    if value not in known:
                        raise ValidationError(f"when.{key}", value, f"must be one of {known}")
        for status in self.when.get("status", ()):
            if status in NEVER_SELECTED[self.record_type]:
                raise ValidationError(
                    "when.status",
                    status,
                    f"a {status} {self.record_type} is part of another record's history: "
                    "retention leaves it to that record's rules",
                )
        if self.description is not None and (
            not isinstance(self.description, str) or len(self.description) > 500
        ):
            raise ValidationError("description", self.description, "must be text (at most 500)")

    @classmethod
    def parse(cls, value: Any, field: str) -> RetentionRule:
        """A rule from its JSON form (or a rule); refusals name ``field.<part>``."""
        if isinstance(value, RetentionRule):
            return value
        if not isinstance(value, Mapping):
            raise ValidationError(field, value, "must be a mapping: name, record_type, action …")
        known = {a.name for a in attrs.fields(cls)}
        for key in value:
            if key not in known:
                raise ValidationError(
                    f"{field}.{key}", value[key], f"is not a rule field: {', '.join(sorted(known))}"
                )
        for required in ("name", "record_type", "action", "after"):
            if required not in value:
                raise ValidationError(f"{field}.{required}", None, "is required")
        try:
            return cls(**value)
        except ValidationError as exc:
            raise ValidationError(
                errors=[FieldError(f"{field}.{e.field}", e.value, e.reason) for e in exc.errors]
            ) from None
        except TypeError as exc:  # a value attrs could not take at all
            raise ValidationError(field, value, str(exc)) from None

    def to_json(self) -> dict[str, Any]:
        """The JSON form :meth:`parse` reads back."""
        data: dict[str, Any] = {
            "name": self.name,
            "record_type": self.record_type,
            "action": self.action,
            "after": str(self.after),
            "measured_from": self.measured_from,
            "when": {key: list(values) for key, values in self.when.items()},
        }
        if self.description is not None:
            data["description"] = self.description
        return data


def parse_rules(value: Any, field: str) -> tuple[RetentionRule, ...]:
    """Rules from a list of rules or their JSON forms; names must be unique.

    :raises ValidationError: naming ``field[i]`` and the part that is wrong.
    """
    if isinstance(value, RetentionRule) or not isinstance(value, list | tuple):
        raise ValidationError(field, value, "must be a list of retention rules")
    if len(value) > MAX_RULES:
        raise ValidationError(field, len(value), f"at most {MAX_RULES} rules")
    rules = tuple(RetentionRule.parse(item, f"{field}[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise ValidationError(f"{field}[{i}].name", rule.name, "names another rule already")
        seen.add(rule.name)
    return rules


#: Sensible rules to start from; none is active until a tenant stores it.
EXAMPLE_RULES: tuple[RetentionRule, ...] = (
    RetentionRule(
        name="stale-leads",
        record_type="lead",
        when={"status": ["new", "assigned", "contacted", "qualified", "disqualified"]},
        after="24 months",
        measured_from="last_activity",
        action="erase",
        description="Leads never converted, 24 months after their last activity.",
    ),
    RetentionRule(
        name="ticket-bodies",
        record_type="ticket",
        after="5 years",
        measured_from="closed_at",
        action="clear_bodies",
        description="Closed tickets' texts, 5 years after closing; dates and figures stay.",
    ),
    RetentionRule(
        name="former-contacts",
        record_type="contact",
        when={"status": ["archived"]},
        after="6 years",
        measured_from="last_activity",
        action="erase",
        description="Archived contacts, 6 years after their last activity.",
    ),
)
