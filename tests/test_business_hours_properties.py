"""Properties of business-hours arithmetic (WorkingHours) and of the SLA clock's pauses.

Random calendars (weekly hours with split days, holidays) in several time
zones, three of them with daylight saving time, are probed around their DST
changes:

* the due time ``add`` returns is never inside a closed period: it is open,
  or the end of an open period;
* ``between(start, add(start, d)) == d``; adding in two steps equals adding
  at once; ``between`` is additive over a split point and never more than the
  wall-clock time;
* ``between`` agrees with ``is_open`` (an independent count, slot by slot);
* a ticket's due times move by exactly the SLA time spent waiting on the
  customer, and a waiting ticket is never reported as breached.

The generated opening and closing times include the local hours 01:00-03:00,
where the DST changes of these zones happen (02:00-03:00 does not exist in
spring; 01:00-02:00 in New York and 02:00-03:00 elsewhere happens twice in
autumn), and the tests at the end of this file pin those cases down by hand.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from time import tzset
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm.adapters.memory import MemoryStore
from pycrm.domain.calendars import WEEKDAYS, WorkingHours
from pycrm.domain.tickets import SlaPolicy, TicketStatus
from pycrm.errors import ValidationError
from pycrm.testing import FakeClock

FAST = settings(max_examples=100, deadline=None)
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Shanghai")
DST_ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney")
QUARTER = timedelta(minutes=15)


def _transitions(zone: str, year: int = 2026) -> list[datetime]:
    """The instants (UTC, on the hour) at which ``zone``'s UTC offset changes in ``year``."""
    tz = ZoneInfo(zone)
    moment = datetime(year, 1, 1, tzinfo=UTC)
    found = []
    offset = moment.astimezone(tz).utcoffset()
    while moment.year == year:
        moment += timedelta(hours=1)
        now = moment.astimezone(tz).utcoffset()
        if now != offset:
            found.append(moment)
            offset = now
    return found


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES}


def test_the_zones_under_test_change_their_clocks_twice_a_year() -> None:
    for zone in DST_ZONES:
        assert len(TRANSITIONS[zone]) == 2, zone
    assert TRANSITIONS["UTC"] == TRANSITIONS["Asia/Shanghai"] == []
    # Spring forward in Berlin: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    assert datetime(2026, 3, 29, 1, tzinfo=UTC) in TRANSITIONS["Europe/Berlin"]


# -- strategies ---------------------------------------------------------------

#: Local quarter hours a span may start or end at: 00:00 … 23:45, the DST hours included.
MARKS = list(range(0, 24 * 60, 15))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def weekly_hours(draw: st.DrawFn) -> dict[str, Any]:
    """Up to three non-overlapping spans per weekday (touching spans allowed)."""
    spec: dict[str, Any] = {}
    for i, day in enumerate(WEEKDAYS):
        marks = sorted(draw(st.lists(st.sampled_from(MARKS), max_size=6)))
        spans = [
            f"{_hhmm(a)}-{_hhmm(b)}" for a, b in zip(marks[::2], marks[1::2], strict=False) if a < b
        ]
        if spans:  # both documented forms: "09:00-17:00" and ["09:00-17:00", ...]
            spec[day] = spans[0] if len(spans) == 1 and i % 2 else spans
    if not spec:
        spec["mon"] = "09:00-17:00"
    return spec


@st.composite
def starts(draw: st.DrawFn, zone: str) -> datetime:
    """An instant within four days of one of the zone's DST changes (any day in 2026 without DST)."""
    if TRANSITIONS[zone]:
        anchor = draw(st.sampled_from(TRANSITIONS[zone]))
    else:
        anchor = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 364)))
    moment = anchor + timedelta(seconds=draw(st.integers(-4 * 86400, 4 * 86400)))
    if draw(st.booleans()):  # callers may pass any aware datetime, not only UTC
        return moment.astimezone(ZoneInfo(zone))
    return moment


@st.composite
def cases(draw: st.DrawFn, *, quarter_aligned: bool = False) -> tuple[WorkingHours, datetime]:
    """A calendar and a start instant around one of its zone's DST changes."""
    zone = draw(st.sampled_from(ZONES))
    start = draw(starts(zone))
    if quarter_aligned:
        start = (
            datetime(2026, 1, 1, tzinfo=UTC)
            + (start - datetime(2026, 1, 1, tzinfo=UTC)) // (QUARTER) * QUARTER
        )
    first = start.astimezone(ZoneInfo(zone)).date() - timedelta(days=2)
    holidays = draw(
        st.lists(st.integers(0, 40).map(lambda n: first + timedelta(days=n)), max_size=4)
    )
    spec = {"timezone": zone, **draw(weekly_hours()), "holidays": holidays}
    calendar = WorkingHours.parse(spec)
    assert calendar is not None
    return calendar, start


durations = st.integers(0, 80 * 3600).map(lambda s: timedelta(seconds=s))
positive_durations = st.integers(1, 80 * 3600).map(lambda s: timedelta(seconds=s))
spans_of_time = st.integers(0, 10 * 86400).map(lambda s: timedelta(seconds=s))

BERLIN_WEEKDAYS = WorkingHours.parse(
    {"timezone": "Europe/Berlin", **dict.fromkeys(WEEKDAYS[:5], "09:00-17:00")}
)
SPRING_FORWARD_BERLIN = datetime(2026, 3, 27, 15, tzinfo=UTC)  # Friday 16:00 CET
SYDNEY_OVERNIGHT = WorkingHours.parse(
    {"timezone": "Australia/Sydney", "sat": "22:00-23:45", "sun": ["00:00-01:00", "03:00-08:00"]}
)
SYDNEY_SPRING = datetime(2026, 10, 3, 11, tzinfo=UTC)  # Saturday 21:00 AEST


# -- add / between ------------------------------------------------------------


@FAST
@given(case=cases(), duration=durations)
@example(case=(BERLIN_WEEKDAYS, SPRING_FORWARD_BERLIN), duration=timedelta(hours=1))
@example(case=(SYDNEY_OVERNIGHT, SYDNEY_SPRING), duration=timedelta(hours=3))
def test_the_due_time_is_never_inside_a_closed_period(
    case: tuple[WorkingHours, datetime], duration: timedelta
) -> None:
    calendar, start = case
    due = calendar.add(start, duration)
    assert due.utcoffset() == timedelta(0)
    assert due >= start
    if duration:
        # due - 1µs is open: due is inside an open period or exactly at its end.
        assert calendar.is_open(due - timedelta(microseconds=1))
    else:
        # No time to add: the next moment the desk is open (start itself if it is open).
        assert calendar.is_open(due)
        assert calendar.between(start, due) == timedelta(0)
        if calendar.is_open(start):
            assert due == start.astimezone(UTC)


def test_a_friday_afternoon_due_time_moves_over_the_weekend_and_the_dst_change() -> None:
    assert BERLIN_WEEKDAYS is not None
    # Friday 16:00 CET + 2h of business time: 1h on Friday, 1h on Monday (now CEST).
    due = BERLIN_WEEKDAYS.add(SPRING_FORWARD_BERLIN, timedelta(hours=2))
    assert due == datetime(2026, 3, 30, 8, tzinfo=UTC)  # Monday 10:00 CEST
    assert BERLIN_WEEKDAYS.between(SPRING_FORWARD_BERLIN, due) == timedelta(hours=2)


def test_a_period_spanning_the_change_is_as_long_as_the_clock_says() -> None:
    sundays = WorkingHours.parse({"timezone": "Europe/Berlin", "sun": "00:00-06:00"})
    assert sundays is not None
    spring = datetime(2026, 3, 28, tzinfo=UTC)  # the night 02:00 becomes 03:00
    assert sundays.between(spring, spring + timedelta(days=2)) == timedelta(hours=5)
    autumn = datetime(2026, 10, 24, tzinfo=UTC)  # the night 03:00 becomes 02:00 again
    assert sundays.between(autumn, autumn + timedelta(days=2)) == timedelta(hours=7)


@FAST
@given(case=cases(), duration=durations)
def test_between_measures_back_what_add_added(
    case: tuple[WorkingHours, datetime], duration: timedelta
) -> None:
    calendar, start = case
    assert calendar.between(start, calendar.add(start, duration)) == duration


@FAST
@given(case=cases(), first=durations, second=positive_durations)
def test_adding_in_two_steps_equals_adding_at_once(
    case: tuple[WorkingHours, datetime], first: timedelta, second: timedelta
) -> None:
    # ``second`` is positive: add(end_of_period, 0) is the *next opening*, the
    # same SLA time as the end of the period but a different instant.
    calendar, start = case
    assert calendar.add(calendar.add(start, first), second) == calendar.add(start, first + second)


@FAST
@given(case=cases(), to_split=spans_of_time, after_split=spans_of_time)
def test_between_is_additive_over_a_split_point_and_bounded_by_the_wall_clock(
    case: tuple[WorkingHours, datetime], to_split: timedelta, after_split: timedelta
) -> None:
    calendar, start = case
    # Arithmetic in UTC: on an aware datetime in a DST zone, + moves the wall clock.
    split = start.astimezone(UTC) + to_split
    end = split + after_split
    whole = calendar.between(start, end)
    assert whole == calendar.between(start, split) + calendar.between(split, end)
    assert timedelta(0) <= whole <= end - start
    if end > start:  # the same instants the other way round
        assert calendar.between(end, start) == timedelta(0)


@FAST
@given(case=cases(quarter_aligned=True), quarters=st.integers(0, 3 * 96))
def test_between_agrees_with_is_open(case: tuple[WorkingHours, datetime], quarters: int) -> None:
    # Every boundary (spans, DST changes, local midnights) falls on a UTC quarter
    # hour in these zones, so is_open is constant over each quarter-hour slot.
    calendar, start = case
    slots = [start + i * QUARTER for i in range(quarters)]
    counted = sum(calendar.is_open(slot) for slot in slots) * QUARTER
    assert calendar.between(start, start + quarters * QUARTER) == counted


def test_holidays_are_closed_all_day_in_local_time() -> None:
    calendar = WorkingHours.parse(
        {
            "timezone": "America/New_York",
            **dict.fromkeys(WEEKDAYS[:5], "09:00-17:00"),
            "holidays": [date(2026, 1, 1)],
        }
    )
    assert calendar is not None
    new_year = datetime(2026, 1, 1, 15, tzinfo=UTC)  # Thursday 10:00 EST
    assert not calendar.is_open(new_year)
    assert calendar.add(new_year, timedelta(hours=1)) == datetime(2026, 1, 2, 15, tzinfo=UTC)
    assert calendar.between(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)) == (
        timedelta(0)
    )


def test_negative_durations_and_calendars_without_hours_are_refused() -> None:
    assert BERLIN_WEEKDAYS is not None
    with pytest.raises(ValidationError) as negative:
        BERLIN_WEEKDAYS.add(SPRING_FORWARD_BERLIN, timedelta(seconds=-1))
    assert (negative.value.field, negative.value.value) == ("duration", timedelta(seconds=-1))
    assert negative.value.reason
    never = WorkingHours.parse({"timezone": "Europe/Berlin"})
    assert never is not None
    with pytest.raises(ValidationError) as closed:
        never.add(SPRING_FORWARD_BERLIN, timedelta(hours=1))
    assert (closed.value.field, closed.value.value) == ("working_hours", never)
    assert closed.value.reason
    always_holiday = WorkingHours.parse(
        {
            "mon": "09:00-17:00",
            "holidays": [date(2026, 1, 5) + timedelta(weeks=n) for n in range(60)],
        }
    )
    assert always_holiday is not None
    with pytest.raises(ValidationError, match="closed for more than a year"):
        always_holiday.add(datetime(2026, 1, 1, tzinfo=UTC), timedelta(hours=1))


@pytest.mark.parametrize(
    ("machine_zone", "calendar", "start", "duration", "due"),
    [
        # Open now: the answer starts from the given instant.
        ("Asia/Tokyo", {"timezone": "Europe/Berlin", "mon": "09:00-17:00"},
         datetime(2026, 3, 2, 10, tzinfo=ZoneInfo("Europe/Berlin")), timedelta(hours=1),
         datetime(2026, 3, 2, 10, tzinfo=UTC)),
        # Across the spring change: the second part starts at the change instant.
        ("Asia/Tokyo", {"timezone": "Europe/Berlin", "sun": "01:00-04:00"},
         datetime(2026, 3, 28, 12, tzinfo=UTC), timedelta(minutes=90),
         datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        # The machine's date is two days after the calendar's.
        ("Pacific/Kiritimati", {"timezone": "Pacific/Pago_Pago", "mon": "23:00-23:59"},
         datetime(2026, 3, 2, 23, 30, tzinfo=ZoneInfo("Pacific/Pago_Pago")), timedelta(minutes=10),
         datetime(2026, 3, 3, 10, 40, tzinfo=UTC)),
    ],
    ids=["open-now", "across-dst", "two-days-apart"],
)  # fmt: skip
def test_add_answers_in_utc_whatever_the_machines_time_zone(
    monkeypatch: pytest.MonkeyPatch,
    machine_zone: str,
    calendar: dict[str, str],
    start: datetime,
    duration: timedelta,
    due: datetime,
) -> None:
    hours = WorkingHours.parse(calendar)
    assert hours is not None
    monkeypatch.setenv("TZ", machine_zone)
    tzset()
    try:
        answer = hours.add(start, duration)
        measured = hours.between(start, answer)
    finally:
        monkeypatch.undo()
        tzset()
    assert answer == due
    assert answer.utcoffset() == timedelta(0)
    assert measured == duration


@pytest.mark.parametrize(("closed", "refused"), [(366, False), (367, True)])
def test_a_calendar_closed_for_more_than_a_year_is_refused(closed: int, refused: bool) -> None:
    first = date(2028, 1, 1)
    holidays = [first + timedelta(days=n) for n in range(closed)]
    hours = WorkingHours.parse({**dict.fromkeys(WEEKDAYS, "09:00-17:00"), "holidays": holidays})
    assert hours is not None
    start = datetime(2027, 12, 31, 17, tzinfo=UTC)  # the evening before the closure
    if refused:
        with pytest.raises(ValidationError) as raised:
            hours.add(start, timedelta(hours=1))
        assert (raised.value.field, raised.value.value) == ("working_hours", hours)
        assert raised.value.reason
    else:  # a whole leap year is not more than a year
        reopened = first + timedelta(days=closed)
        assert hours.add(start, timedelta(hours=1)) == datetime.combine(
            reopened, time(10), tzinfo=UTC
        )


def test_a_seasonal_desk_closed_for_months_still_answers() -> None:
    winter = [date(2026, 10, 1) + timedelta(days=n) for n in range(240)]
    hours = WorkingHours.parse({"mon": "09:00-17:00", "holidays": winter})
    assert hours is not None
    assert hours.add(datetime(2026, 9, 30, tzinfo=UTC), timedelta(hours=1)) == datetime(
        2027, 5, 31, 10, tzinfo=UTC
    )


def test_a_calendar_built_directly_with_a_bad_zone_is_refused_when_used() -> None:
    hours = WorkingHours("Mars/Olympus_Mons", ())
    with pytest.raises(ValidationError) as raised:
        hours.is_open(datetime(2026, 3, 2, 10, tzinfo=UTC))
    assert (raised.value.field, raised.value.value) == ("timezone", "Mars/Olympus_Mons")


# -- pauses: waiting on the customer -------------------------------------------


@st.composite
def ticket_stories(draw: st.DrawFn) -> dict[str, Any]:
    calendar, start = draw(cases())
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, 3 * 86400).map(lambda s: timedelta(seconds=s)),  # working
                st.integers(0, 3 * 86400).map(lambda s: timedelta(seconds=s)),  # waiting
            ),
            min_size=1,
            max_size=3,
        )
    )
    priority = draw(st.sampled_from(["low", "normal", "high", "urgent"]))
    business_hours = draw(st.booleans())
    return {
        "policy": SlaPolicy(calendar=calendar if business_hours else None),
        "start": start,
        "steps": steps,
        "priority": priority,
    }


@SLOW
@given(story=ticket_stories())
def test_waiting_on_the_customer_moves_the_due_times_by_the_sla_time_waited(
    story: dict[str, Any],
) -> None:
    policy: SlaPolicy = story["policy"]
    clock = FakeClock(story["start"].astimezone(UTC))  # counts real (UTC) time
    crm = pycrm.CRM(MemoryStore(), clock=clock, sla_policy=policy)
    with crm.session(crm.system_actor) as s:
        agent = s.org.create_user("Agent", "agent@example.com", "service")
        ticket = s.tickets.open("Help", channel="email", priority=story["priority"])
        ticket = s.tickets.assign(ticket.id, agent.id)
    target = policy.target(ticket.priority, None)
    opened = ticket.opened_at
    assert policy.elapsed(opened, ticket.first_response_due) == target.first_response
    assert policy.elapsed(opened, ticket.resolution_due) == target.resolution

    waited = timedelta(0)
    for working, waiting in story["steps"]:
        clock.advance(working)
        with crm.session(crm.system_actor) as s:
            before = s.tickets.wait_on_customer(ticket.id)
        assert before.paused_since == clock.now()
        clock.advance(waiting)
        with crm.session(crm.system_actor) as s:
            # A waiting ticket is never reported, however late it would be.
            for at in (clock.now(), clock.now() + timedelta(days=400)):
                assert ticket.id not in {b.ticket_id for b in s.tickets.breaches(at=at)}
            after = s.tickets.customer_reply(ticket.id, "Here is the photo")
        assert after.status is TicketStatus.IN_PROGRESS
        assert after.paused_since is None
        this_wait = policy.elapsed(before.paused_since, clock.now())
        waited += this_wait
        for field in ("first_response_due", "resolution_due"):
            old, new = getattr(before, field), getattr(after, field)
            assert new >= old
            assert policy.elapsed(old, new) == this_wait, field
        ticket = after
    # In SLA time, the targets now end exactly `waited` later than without pauses.
    assert policy.elapsed(opened, ticket.first_response_due) == target.first_response + waited
    assert policy.elapsed(opened, ticket.resolution_due) == target.resolution + waited


@SLOW
@given(story=ticket_stories())
def test_a_first_reply_stops_the_first_response_clock_for_later_pauses(
    story: dict[str, Any],
) -> None:
    policy: SlaPolicy = story["policy"]
    clock = FakeClock(story["start"].astimezone(UTC))  # counts real (UTC) time
    crm = pycrm.CRM(MemoryStore(), clock=clock, sla_policy=policy)
    with crm.session(crm.system_actor) as s:
        agent = s.org.create_user("Agent", "agent@example.com", "service")
        ticket = s.tickets.open("Help", channel="chat", priority=story["priority"])
        s.tickets.assign(ticket.id, agent.id)
        replied = s.tickets.reply(ticket.id, "Could you send a photo?")
    working, waiting = story["steps"][0]
    clock.advance(working)
    with crm.session(crm.system_actor) as s:
        s.tickets.wait_on_customer(ticket.id)
    clock.advance(waiting)
    with crm.session(crm.system_actor) as s:
        resumed = s.tickets.start(ticket.id)
    assert resumed.first_response_due == replied.first_response_due
    assert policy.elapsed(replied.resolution_due, resumed.resolution_due) == policy.elapsed(
        clock.now() - waiting, clock.now()
    )


# -- parsing -------------------------------------------------------------------


NOT_A_DATE = datetime(2026, 12, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "field", "offending"),
    [
        ({"mon": "9-17"}, "working_hours.mon", "9-17"),
        ({"tue": ["08:00-12:00", "13:00"]}, "working_hours.tue", "13:00"),
        ({"wed": "noon-evening"}, "working_hours.wed", "noon-evening"),
        ({"thu": "17:00-09:00"}, "working_hours.thu", "17:00-09:00"),
        ({"fri": "09:00-09:00"}, "working_hours.fri", "09:00-09:00"),
        ({"sat": "00:00-24:00"}, "working_hours.sat", "00:00-24:00"),
        ({"sun": "09:00+02:00-17:00"}, "working_hours.sun", "09:00+02:00-17:00"),
        ({"mon": ["09:00-12:00", "11:00-14:00"]}, "working_hours.mon", ["09:00-12:00", "11:00-14:00"]),
        ({"mon": 9}, "working_hours.mon", 9),
        ({"monday": "09:00-17:00"}, "working_hours", {"monday": "09:00-17:00"}),
        ({"mon": "09:00-17:00", "lunch": "12:00-13:00"}, "working_hours",
         {"mon": "09:00-17:00", "lunch": "12:00-13:00"}),
        ({"timezone": 1}, "working_hours.timezone", 1),
        ({"timezone": "Mars/Olympus_Mons"}, "working_hours.timezone", "Mars/Olympus_Mons"),
        ({"holidays": ["Christmas"]}, "working_hours.holidays", ["Christmas"]),
        ({"holidays": ["2026-13-25"]}, "working_hours.holidays", ["2026-13-25"]),
        ({"holidays": [NOT_A_DATE]}, "working_hours.holidays", [NOT_A_DATE]),
        ("mon-fri 9-17", "working_hours", "mon-fri 9-17"),
        (["09:00-17:00"], "working_hours", ["09:00-17:00"]),
    ],
)  # fmt: skip
def test_parse_names_the_field_and_the_offending_value_of_bad_input(
    value: Any, field: str, offending: Any
) -> None:
    with pytest.raises(ValidationError) as refused:
        WorkingHours.parse(value)
    assert (refused.value.field, refused.value.value) == (field, offending)
    assert refused.value.reason


def test_parse_names_the_custom_field() -> None:
    with pytest.raises(ValidationError) as refused:
        WorkingHours.parse({"mon": "17:00-09:00"}, field="desk_hours")
    assert refused.value.field == "desk_hours.mon"
    assert "after it starts" in refused.value.reason


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "Europe/../etc/passwd", "CEST"])
def test_parse_refuses_a_zone_that_is_not_iana(zone: str) -> None:
    with pytest.raises(ValidationError) as refused:
        WorkingHours.parse({"timezone": zone, "mon": "09:00-17:00"})
    assert refused.value.field.endswith("timezone")
    assert "IANA" in refused.value.reason


def test_a_bad_zone_is_named_inside_the_field() -> None:
    with pytest.raises(ValidationError) as refused:
        WorkingHours.parse({"timezone": "Mars/Olympus_Mons"})
    assert refused.value.field == "working_hours.timezone"


def test_parse_accepts_the_documented_forms() -> None:
    calendar = WorkingHours.parse(
        {
            "timezone": "Asia/Shanghai",
            "mon": "09:00-17:00",
            "tue": ["08:00-12:00", "13:00-17:00"],
            "sat": [],
            "holidays": [date(2026, 10, 1), date(2026, 2, 17)],
        }
    )
    assert calendar is not None
    assert calendar.timezone == "Asia/Shanghai"
    assert [(h.weekday, h.start, h.end) for h in calendar.hours] == [
        (0, time(9), time(17)),
        (1, time(8), time(12)),
        (1, time(13), time(17)),
    ]
    assert calendar.holidays == (date(2026, 2, 17), date(2026, 10, 1))  # sorted
    assert WorkingHours.parse(None) is None
    assert WorkingHours.parse(calendar) is calendar
    assert WorkingHours.parse({}) == WorkingHours()  # UTC, closed: fine until time is added


# -- known bugs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"mon": 9},
        {"mon": None},
        {"holidays": 2026},
        {"timezone": 1},
        {"timezone": None},
        {"mon": "09:00+02:00-17:00"},
    ],
    ids=["int-span", "none-span", "int-holidays", "int-zone", "none-zone", "offset-in-span"],
)
def test_parse_refuses_wrongly_typed_parts_with_validation_error(value: Any) -> None:
    try:
        calendar = WorkingHours.parse(value)
    except ValidationError:
        return
    assert calendar is not None
    calendar.is_open(datetime(2026, 1, 5, 12, tzinfo=UTC))  # must not raise TypeError


def test_overlapping_spans_are_refused_or_merged() -> None:
    try:
        calendar = WorkingHours.parse({"mon": ["09:00-12:00", "10:00-14:00"]})
    except ValidationError as refused:
        field = refused.field
        assert field == "working_hours.mon"
        return
    assert calendar is not None
    monday = datetime(2026, 1, 5, tzinfo=UTC)
    assert calendar.between(monday, monday + timedelta(days=1)) == timedelta(hours=5)
    assert calendar.add(monday, timedelta(hours=5)) == monday + timedelta(hours=14)


def _open_minutes(calendar: WorkingHours, start: datetime, end: datetime) -> timedelta:
    """Open time counted minute by minute with is_open (the independent oracle)."""
    minutes = int((end - start) / timedelta(minutes=1))
    step = timedelta(minutes=1)
    return sum(calendar.is_open(start + i * step) for i in range(minutes)) * step


@pytest.mark.parametrize("span", ["02:45-03:15", "01:00-02:30"])
def test_spans_with_a_boundary_in_the_skipped_hour_agree_with_is_open(span: str) -> None:
    calendar = WorkingHours.parse({"timezone": "Europe/Berlin", "sun": span})
    assert calendar is not None
    saturday = datetime(2026, 3, 28, tzinfo=UTC)
    monday = saturday + timedelta(days=2)
    counted = calendar.between(saturday, monday)
    assert counted >= timedelta(0)
    assert counted == _open_minutes(calendar, saturday, monday)
    due = calendar.add(saturday, timedelta(minutes=10))
    assert due < monday
    assert calendar.is_open(due - timedelta(microseconds=1))


def test_spans_in_the_repeated_hour_agree_with_is_open() -> None:
    calendar = WorkingHours.parse({"timezone": "Europe/Berlin", "sun": "02:15-02:45"})
    assert calendar is not None
    saturday = datetime(2026, 10, 24, tzinfo=UTC)
    monday = saturday + timedelta(days=2)
    assert calendar.between(saturday, monday) == _open_minutes(calendar, saturday, monday)


def test_fake_clock_advances_real_time_whatever_zone_it_started_in() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock = FakeClock(datetime(2026, 3, 29, 1, 59, 59, tzinfo=berlin))  # 00:59:59 UTC
    assert clock.advance(seconds=3601) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    clock.set(datetime(2026, 10, 25, 2, 30, tzinfo=berlin))  # 00:30 UTC, first 02:30
    assert clock.advance(hours=1) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_periods_are_ordered_and_disjoint_for_generated_calendars() -> None:
    # A fixed sample of the generator's shapes around every DST change.
    spec = {"tue": ["08:00-12:00", "12:00-17:00"], "sun": ["00:00-01:00", "03:00-04:00"]}
    for zone in DST_ZONES:
        calendar = WorkingHours.parse({"timezone": zone, **spec})
        assert calendar is not None
        for change in TRANSITIONS[zone]:
            periods = list(itertools.islice(calendar.periods(change - timedelta(days=8)), 12))
            for (begin, end), (next_begin, _) in itertools.pairwise(periods):
                assert begin < end <= next_begin


@given(cases())
def test_to_json_reads_back_as_the_same_calendar(case: tuple[WorkingHours, datetime]) -> None:
    calendar, _ = case
    stored = calendar.to_json()
    assert all(isinstance(day, str) for day in stored.get("holidays", []))  # JSON-safe
    assert WorkingHours.parse(stored) == calendar
