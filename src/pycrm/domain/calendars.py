"""Working calendars: when someone (or a service desk) is at work."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from pycrm.errors import ValidationError

__all__ = ["WEEKDAYS", "OpenHours", "WorkingHours"]

#: Weekday names, Monday first (``datetime.weekday()`` order).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@attrs.frozen
class OpenHours:
    """One open period on one weekday, e.g. mon 09:00-17:00 (end exclusive)."""

    weekday: int
    """0 = Monday … 6 = Sunday."""
    start: time
    """Opening time, local."""
    end: time
    """Closing time, local; must be after ``start``."""


def _zone(name: str, field: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a name too long
        raise ValidationError(
            field, name, "is not an IANA time zone such as 'Europe/Berlin'"
        ) from None


def _hhmm(moment: time) -> str:
    return moment.isoformat("minutes" if not (moment.second or moment.microsecond) else "auto")


def _iso_date(value: Any) -> Any:
    """A date written as ISO 8601 text, as a date (anything else as it is, for the caller)."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    return value


@attrs.frozen
class WorkingHours:
    """Weekly open hours in a time zone, minus holidays."""

    timezone: str = "UTC"
    """IANA time zone the hours are given in."""
    hours: tuple[OpenHours, ...] = ()
    """Open periods; a weekday with none is closed."""
    holidays: tuple[date, ...] = ()
    """Local dates closed all day."""

    @classmethod
    def parse(cls, value: Any, field: str = "working_hours") -> WorkingHours | None:
        """Build from ``{"timezone": "Europe/Berlin", "mon": "09:00-17:00", "tue": ["08:00-12:00", "13:00-17:00"], "holidays": [date, …]}``."""
        if value is None or isinstance(value, WorkingHours):
            return value
        if not isinstance(value, dict):
            raise ValidationError(field, value, "must be a mapping of weekday → 'HH:MM-HH:MM'")
        unknown = set(value) - {"timezone", "holidays", *WEEKDAYS}
        if unknown:
            raise ValidationError(field, value, f"unknown keys {sorted(map(str, unknown))}")
        zone = value.get("timezone", "UTC")
        if not isinstance(zone, str):
            raise ValidationError(f"{field}.timezone", zone, "must be an IANA time zone name")
        _zone(zone, f"{field}.timezone")
        periods: list[OpenHours] = []
        for i, day in enumerate(WEEKDAYS):
            spans = value.get(day, ())
            if isinstance(spans, str):
                spans = [spans]
            if not isinstance(spans, list | tuple) or not all(isinstance(x, str) for x in spans):
                raise ValidationError(
                    f"{field}.{day}", spans, "must be 'HH:MM-HH:MM' or a list of them"
                )
            day_periods = []
            for span in spans:
                try:
                    start_text, end_text = span.split("-")
                    start = time.fromisoformat(start_text.strip())
                    end = time.fromisoformat(end_text.strip())
                except ValueError:
                    raise ValidationError(
                        f"{field}.{day}", span, "must look like '09:00-17:00'"
                    ) from None
                if start.tzinfo is not None or end.tzinfo is not None:
                    raise ValidationError(
                        f"{field}.{day}", span, "is local time: give no UTC offset"
                    )
                if end <= start:
                    raise ValidationError(f"{field}.{day}", span, "must end after it starts")
                day_periods.append(OpenHours(i, start, end))
            day_periods.sort(key=lambda p: p.start)
            for earlier, later in itertools.pairwise(day_periods):
                if later.start < earlier.end:
                    raise ValidationError(f"{field}.{day}", spans, "periods overlap")
            periods += day_periods
        holidays = value.get("holidays", ())
        if isinstance(holidays, list | tuple):
            holidays = [_iso_date(d) for d in holidays]
        if not isinstance(holidays, list) or not all(
            isinstance(d, date) and not isinstance(d, datetime) for d in holidays
        ):
            raise ValidationError(
                f"{field}.holidays", holidays, "must be a list of dates (or ISO 8601 texts)"
            )
        return cls(zone, tuple(periods), tuple(sorted(set(holidays))))

    def to_json(self) -> dict[str, Any]:
        """The mapping :meth:`parse` reads back, with ISO 8601 texts for the holidays."""
        data: dict[str, Any] = {"timezone": self.timezone}
        for i, day in enumerate(WEEKDAYS):
            spans = [
                f"{_hhmm(p.start)}-{_hhmm(p.end)}"
                for p in sorted(self.hours, key=lambda p: p.start)
                if p.weekday == i
            ]
            if spans:
                data[day] = spans
        if self.holidays:
            data["holidays"] = [d.isoformat() for d in self.holidays]
        return data

    def is_open(self, at: datetime) -> bool:
        """True if ``at`` (timezone-aware) falls in an open period."""
        local = at.astimezone(_zone(self.timezone))
        if local.date() in self.holidays:
            return False
        moment = local.time().replace(tzinfo=None)
        return any(p.weekday == local.weekday() and p.start <= moment < p.end for p in self.hours)

    def periods(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open periods as UTC ``(from, to)`` pairs, from the one containing ``start`` onwards.

        A period is every instant whose local wall-clock time falls in the open
        hours, exactly as :meth:`is_open` judges it. So a period spanning a
        DST change is as long as the clock says it is: hours inside the hour
        skipped in spring are never open, and hours inside the hour repeated in
        autumn are open in both of its passes.
        """
        if not self.hours:
            raise ValidationError(
                "working_hours", self, "has no open hours, so no time ever passes"
            )
        zone = _zone(self.timezone)
        day = start.astimezone(zone).date() - timedelta(days=1)
        ordered = sorted(self.hours, key=lambda h: h.start)
        closed_days = 0
        while True:
            todays = [p for p in ordered if p.weekday == day.weekday()]
            if day in self.holidays or not todays:
                closed_days += 1
            else:
                closed_days = 0
                for first, last, offset in _stretches(day, zone):
                    for p in todays:
                        begin = datetime.combine(day, p.start, tzinfo=UTC) - offset
                        end = datetime.combine(day, p.end, tzinfo=UTC) - offset
                        begin, end = max(begin, first, start), min(end, last)
                        if begin < end:
                            yield begin, end
            if closed_days > 366:
                raise ValidationError("working_hours", self, "is closed for more than a year")
            day += timedelta(days=1)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant when ``duration`` of open time has passed after ``start`` (UTC)."""
        if duration < timedelta(0):
            raise ValidationError("duration", duration, "must not be negative")
        start = start.astimezone(UTC)
        left = duration
        for begin, end in self.periods(start):
            if end - begin >= left:
                return begin + left
            left -= end - begin
        raise AssertionError("unreachable: periods() never ends")  # pragma: no cover

    def between(self, start: datetime, end: datetime) -> timedelta:
        """How much open time lies between ``start`` and ``end`` (zero if ``end`` is earlier)."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        total = timedelta(0)
        if end <= start:
            return total
        for begin, finish in self.periods(start):
            if begin >= end:
                break
            total += min(finish, end) - begin
        return total


def _offset(at: datetime, zone: ZoneInfo) -> timedelta:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _stretches(day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime, timedelta]]:
    """The UTC instants of a local ``day`` as ``(from, to, UTC offset)`` stretches.

    One stretch on most days; two on the day of a DST change, split at the
    instant the offset changes (found by bisection to the second).
    """
    first = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    last = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    before, after = _offset(first, zone), _offset(last - timedelta(seconds=1), zone)
    if before == after:
        return [(first, last, before)]
    low, high = first, last - timedelta(seconds=1)  # offset(low) == before != offset(high)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if _offset(middle, zone) == before:
            low = middle
        else:
            high = middle
    return [(first, high, before), (high, last, after)]
