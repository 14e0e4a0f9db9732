"""Property tests for custom field values (docs/custom-fields.md).

Any value a definition accepts comes back unchanged, in its JSON form and as
a typed Python value, from every adapter (memory, SQLite, PostgreSQL), from
serialization, history, ``as_of`` and the 360 view; searching by a value and
filtering by a range find exactly the records a Python filter over the
stored values finds; a definition change is refused exactly when a stored
value would become invalid, and a migration makes every value valid.

The tests that store records take ``crm``: one CRM per backend per test,
shared by the test's examples (hence the suppressed function-scoped-fixture
health check), with few examples so that the three backends stay fast.
"""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm.domain.custom_fields import FieldDefinition, FieldType, check_value, typed_value
from pycrm.domain.customers import Customer
from pycrm.domain.money import MAX_AMOUNT, Money, minor_units
from pycrm.errors import ValidationError
from pycrm.serialization import from_dict, to_dict
from pycrm.testing import FakeClock

#: Many examples: pure functions, no storage.
PURE = settings(max_examples=300, deadline=None)
#: Few examples: each one writes to the backend under test.
STORED = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Reads only, after the fixture wrote the data once.
READS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CENT = Decimal("0.01")
CURRENCIES = ["EUR", "USD", "JPY", "KWD", "CLF", "CHF"]
CHOICES = ["gold", "Silber", "金", "a b"]
CHANNELS = ["web", "phone", "fax", "mail"]

#: key → (type, options) of the fields every property test defines on customers.
FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "note": ("text", {"maximum": 200}),
    "code": ("text", {"pattern": r"[A-Z]{2}-\d{1,4}"}),
    "count": ("number", {}),
    "score": ("number", {"minimum": 0, "maximum": 100}),
    "ratio": ("decimal", {}),
    "price": ("decimal", {"minimum": 0, "maximum": 1_000_000}),
    "day": ("date", {}),
    "moment": ("datetime", {}),
    "flag": ("boolean", {}),
    "tier": ("choice", {"choices": CHOICES}),
    "channels": ("multi_choice", {"choices": CHANNELS}),
    "revenue": ("money", {}),
    "partner": ("reference", {"reference": "customer"}),
}


def definitions(crm: pycrm.CRM) -> dict[str, FieldDefinition]:
    with crm.session(actor=crm.system_actor) as s:
        return {d.key: d for d in s.fields.definitions("customer")}


def define_fields(crm: pycrm.CRM) -> dict[str, FieldDefinition]:
    with crm.session(actor=crm.system_actor) as s:
        for key, (kind, options) in FIELDS.items():
            s.fields.define("customer", key, kind, searchable=key == "count", **options)
        for id in PARTNERS:  # the customers a reference may name
            s._uow.repo(Customer).add(Customer(**s._stamp(id=id, name=f"Partner {id}")))
    return definitions(crm)


#: Ids of stored customers, for the reference field (a reference must name a stored record).
PARTNERS = ["0" * 32, "f" * 32, "Acme-1"]


@pytest.fixture
def fielded(crm: pycrm.CRM) -> tuple[pycrm.CRM, dict[str, FieldDefinition]]:
    """The backend under test with the fields defined (once for all of a test's examples)."""
    return crm, define_fields(crm)


@pytest.fixture(scope="module")
def defs() -> dict[str, FieldDefinition]:
    """The definitions, from a memory CRM (for the pure properties)."""
    return define_fields(pycrm.connect("memory://", clock=FakeClock()))


# -- strategies -------------------------------------------------------------------------

#: UTC offsets in whole seconds (sub-second offsets do not survive: see test_custom_fields).
offsets = st.integers(-86_399, 86_399).map(lambda s: timezone(timedelta(seconds=s)))


def money() -> st.SearchStrategy[Money]:
    def in_currency(currency: str) -> st.SearchStrategy[Money]:
        limit = int(MAX_AMOUNT) * 10 ** minor_units(currency) - 1
        return st.integers(-limit, limit).map(lambda minor: Money.from_minor(minor, currency))

    return st.sampled_from(CURRENCIES).flatmap(in_currency)


def money_input(value: Money) -> st.SearchStrategy[Any]:
    """The ways a caller may give Money: itself, a pair, a JSON-form mapping."""
    return st.sampled_from(
        [
            value,
            (str(value.amount), value.currency),
            [value.amount, value.currency],
            {"amount": str(value.amount), "currency": value.currency},
        ]
    )


text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Co")), min_size=1, max_size=40
)

#: key → values as a caller may give them (every one valid for :data:`FIELDS`, bar rare text).
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "note": text,
    "code": st.from_regex(r"[A-Z]{2}-\d{1,4}", fullmatch=True),
    "count": st.integers(-(2**53) + 1, 2**53 - 1),
    "score": st.integers(0, 100),
    "ratio": st.decimals(allow_nan=False, allow_infinity=False),
    "price": st.decimals(min_value=0, max_value=1_000_000, places=2),
    "day": st.dates(),
    "moment": st.datetimes(timezones=offsets),
    "flag": st.booleans(),
    "tier": st.sampled_from(CHOICES),
    "channels": st.lists(st.sampled_from(CHANNELS), max_size=6),
    "revenue": money().flatmap(money_input),
    "partner": st.sampled_from(PARTNERS),
}

custom_values = st.fixed_dictionaries({}, optional=VALUES)

#: Text is cleaned (NFKC, spaces folded), so it reads back as its cleaned form.
CLEANED = {"note", "code"}


def canonical(key: str, value: Any) -> Any:
    """The typed value a given value should read back as."""
    if key == "channels":
        return tuple(c for c in CHANNELS if c in value)
    if key == "revenue":
        if isinstance(value, dict):
            return Money.of(value["amount"], value["currency"])
        return value if isinstance(value, Money) else Money.of(value[0], value[1])
    return value


def accepted(defs: dict[str, FieldDefinition], values: dict[str, Any]) -> dict[str, Any]:
    """The JSON forms the definitions give ``values`` (examples they refuse are skipped)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            stored = check_value(defs[key], value)
        except ValidationError:
            assume(False)
        if stored is not None:
            out[key] = stored
    return out


# -- pure properties --------------------------------------------------------------------


@PURE
@given(data=st.data())
def test_the_json_form_of_an_accepted_value_is_accepted_unchanged_and_types_back(
    defs: dict[str, FieldDefinition], data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(VALUES)), label="key")
    value = data.draw(VALUES[key], label="value")
    defn = defs[key]
    stored = accepted(defs, {key: value}).get(key)
    assume(stored is not None)
    assert check_value(defn, stored) == stored, "the JSON form is a fixed point"
    assert json.loads(json.dumps(stored)) == stored, "the JSON form is plain JSON"
    typed = typed_value(defn, stored)
    assert check_value(defn, typed) == stored, "the typed value gives the same JSON form"
    if key not in CLEANED:
        assert typed == canonical(key, value)
    if key in ("ratio", "price"):
        assert str(typed) == str(value), "decimals keep their digits and scale"
    if key == "moment":  # the same instant, stored and read back in UTC
        assert typed == value
        assert typed.utcoffset() == timedelta(0)


@PURE
@given(
    low=st.integers(-1000, 1000),
    span=st.integers(0, 1000),
    value=st.decimals(-3000, 3000, places=3),
    key=st.sampled_from(["count", "ratio", "revenue"]),
)
def test_a_number_or_amount_outside_the_range_is_refused_naming_the_field(
    defs: dict[str, FieldDefinition], low: int, span: int, value: Decimal, key: str
) -> None:
    defn = attrs.evolve(defs[key], minimum=Decimal(low), maximum=Decimal(low + span))
    given: Any = value
    if key == "count":
        value = value.to_integral_value()
        given = int(value)
    elif key == "revenue":
        value = value.quantize(CENT)
        given = Money.of(value, "EUR")
    if low <= value <= low + span:
        stored = check_value(defn, given)
        number = stored["amount"] if key == "revenue" else stored
        assert Decimal(str(number)) == value
    else:
        with pytest.raises(ValidationError) as info:
            check_value(defn, given)
        assert info.value.field == f"custom.{key}"
        assert "at least" in info.value.reason or "at most" in info.value.reason


@PURE
@given(value=text, low=st.integers(0, 10), span=st.integers(0, 10))
def test_text_longer_or_shorter_than_allowed_is_refused_naming_the_field(
    defs: dict[str, FieldDefinition], value: str, low: int, span: int
) -> None:
    defn = attrs.evolve(defs["note"], minimum=Decimal(low), maximum=Decimal(low + span))
    cleaned = check_value(defs["note"], value)
    assume(cleaned is not None)
    if low <= len(cleaned) <= low + span:
        assert check_value(defn, value) == cleaned
    else:
        with pytest.raises(ValidationError) as info:
            check_value(defn, value)
        assert info.value.field == "custom.note"


@PURE
@given(value=st.text(max_size=12), choices=st.lists(st.sampled_from(CHOICES), min_size=1))
def test_a_choice_is_accepted_exactly_when_it_is_one_of_the_choices(
    defs: dict[str, FieldDefinition], value: str, choices: list[str]
) -> None:
    defn = defs["tier"]
    if value in CHOICES:
        assert check_value(defn, value) == value
    else:
        with pytest.raises(ValidationError) as info:
            check_value(defn, value)
        assert info.value.field == "custom.tier"
    assert check_value(defs["channels"], []) == []
    picked = [c for c in choices if c in CHANNELS]
    assert check_value(defs["channels"], picked) == sorted(set(picked), key=CHANNELS.index)


# -- round trips through every adapter ----------------------------------------------------

_names = itertools.count(1)


@STORED
@given(first=custom_values, second=custom_values, drop=st.sets(st.sampled_from(sorted(VALUES))))
def test_accepted_values_round_trip_unchanged_through_every_adapter_and_serialization(
    fielded: tuple[pycrm.CRM, dict[str, FieldDefinition]],
    fake_clock: FakeClock,
    first: dict[str, Any],
    second: dict[str, Any],
    drop: set[str],
) -> None:
    crm, defs = fielded
    created_json = accepted(defs, first)
    removed = drop - set(second)
    update = {**second, **dict.fromkeys(removed)}
    final_json = {**created_json, **accepted(defs, second)}
    for key in removed:
        final_json.pop(key, None)
    created_at = fake_clock.now()
    with crm.session(actor=crm.system_actor) as s:
        created = s.customers.create(f"R{next(_names)}", custom=first, on_duplicate="allow")
        assert created.custom == created_json
    fake_clock.advance(timedelta(seconds=1))
    with crm.session(actor=crm.system_actor) as s:
        updated = s.customers.update(created.id, custom=update)
        assert updated.custom == final_json
    with crm.session(actor=crm.system_actor) as s:
        again = s.customers.get(created.id)
        assert again.custom == final_json
        typed = s.fields.typed(again)
        assert typed == {k: typed_value(defs[k], v) for k, v in final_json.items()}
        for key in final_json:
            if key not in CLEANED:  # text is cleaned; the others read back as given
                given = second[key] if key in second else first[key]
                assert typed[key] == canonical(key, given), key
        assert s.customers.view(created.id).customer.custom == final_json
        assert s.customers.as_of(created.id, created_at).custom == created_json
        assert s.customers.as_of(created.id, fake_clock.now()).custom == final_json
        changes = s.customers.history(created.id, "custom")
        # Empty from the start is no change (history leaves it out); otherwise the last says.
        assert (changes[-1].new if changes else {}) == final_json
        assert bool(changes) == bool(created_json or final_json)
    data = json.loads(json.dumps(to_dict(again)))
    assert data["custom"] == final_json
    assert from_dict(Customer, data) == again


# -- searches and filters agree with Python ------------------------------------------------

#: Small domains, so that several records share a value.
SEARCHED: dict[str, st.SearchStrategy[Any]] = {
    "note": st.sampled_from(["alpha", "Beta", "gamma delta", "ü"]),
    "count": st.integers(-2, 2),
    "price": st.sampled_from([Decimal("0.00"), Decimal("1.50"), Decimal("999999.99")]),
    "day": st.dates(date(2025, 12, 30), date(2026, 1, 2)),
    "moment": st.sampled_from(
        [datetime(2026, 1, 1, h, tzinfo=timezone(timedelta(hours=h - 3))) for h in range(3)]
    ),
    "flag": st.booleans(),
    "tier": st.sampled_from(CHOICES),
    "partner": st.sampled_from(PARTNERS),
}


@STORED
@given(values=st.fixed_dictionaries({}, optional=SEARCHED), data=st.data())
def test_searching_by_a_custom_value_finds_exactly_the_records_holding_it(
    fielded: tuple[pycrm.CRM, dict[str, FieldDefinition]],
    values: dict[str, Any],
    data: st.DataObject,
) -> None:
    crm, defs = fielded
    with crm.session(actor=crm.system_actor) as s:
        s.customers.create(f"S{next(_names)}", custom=values, on_duplicate="allow")
    key = data.draw(st.sampled_from(sorted(SEARCHED)), label="key")
    wanted = data.draw(SEARCHED[key], label="wanted")
    stored = check_value(defs[key], wanted)
    with crm.session(actor=crm.system_actor) as s:
        everyone = s.customers.search(limit=1000)
        found = s.customers.search(custom={key: wanted}, limit=1000)
    assert {c.id for c in found} == {c.id for c in everyone if c.custom.get(key) == stored}


@pytest.fixture
def ranged(crm: pycrm.CRM) -> tuple[pycrm.CRM, dict[str, FieldDefinition]]:
    """Forty customers with numbers, decimals and dates in small ranges (and gaps)."""
    defs = define_fields(crm)
    days = [date(2026, 1, 1) + timedelta(days=d) for d in range(-5, 5)]
    with crm.session(actor=crm.system_actor) as s:
        for i in range(40):
            custom: dict[str, Any] = {}
            if i % 7:
                custom["count"] = (i * 37) % 23 - 11
            if i % 5:
                custom["price"] = CENT * ((i * 7919) % 200_000)
            if i % 3:
                custom["day"] = days[(i * 13) % len(days)]
            s.customers.create(f"N{i}", custom=custom, on_duplicate="allow")
    return crm, defs


RANGED: dict[str, st.SearchStrategy[Any]] = {
    "count": st.integers(-13, 13),
    # Two places, as stored: plain decimals compare as numbers on every backend (decimals in
    # exponent notation and with many digits do not; see the xfails in test_custom_fields).
    "price": st.decimals(min_value=0, max_value=2001, places=2).map(lambda d: d.quantize(CENT)),
    "day": st.dates(date(2025, 12, 25), date(2026, 1, 8)),
}


@READS
@given(data=st.data())
def test_range_and_membership_filters_find_what_python_finds(
    ranged: tuple[pycrm.CRM, dict[str, FieldDefinition]], data: st.DataObject
) -> None:
    crm, defs = ranged
    key = data.draw(st.sampled_from(sorted(RANGED)), label="key")
    low = data.draw(st.none() | RANGED[key], label="low")
    high = data.draw(st.none() | RANGED[key], label="high")
    among = data.draw(st.lists(RANGED[key], min_size=1, max_size=4), label="among")
    assume(low is not None or high is not None)
    if low is None:
        op, value = "lt", high
    elif high is None:
        op, value = "gte", low
    else:
        op, value = "between", [low, high]

    def typed(stored: Any) -> Any:
        return Decimal(stored) if key == "price" else stored

    def as_json(value: Any) -> Any:
        return value.isoformat() if isinstance(value, date) else value

    with crm.session(actor=crm.system_actor) as s:
        everyone = s.customers.search(limit=1000)
        where = s.campaigns.compile(
            "customer", {"field": f"custom.{key}", "op": op, "value": value}
        )
        found = s.read(Customer).find(where)
        members = s.campaigns.compile(
            "customer", {"field": f"custom.{key}", "op": "in", "value": among}
        )
        found_in = s.read(Customer).find(members)
    bottom = None if low is None else as_json(low)
    top = None if high is None else as_json(high)
    expected = {
        c.id
        for c in everyone
        if key in c.custom
        and (bottom is None or typed(c.custom[key]) >= typed(bottom))
        and (top is None or typed(c.custom[key]) < typed(top))
    }
    assert {c.id for c in found} == expected
    wanted = {typed(check_value(defs[key], v)) for v in among}
    assert {c.id for c in found_in} == {
        c.id for c in everyone if key in c.custom and typed(c.custom[key]) in wanted
    }


# -- definition changes -----------------------------------------------------------------

_keys = (f"k{n}" for n in itertools.count())


@STORED
@given(
    stored=st.lists(st.integers(-50, 50), min_size=1, max_size=5),
    low=st.integers(-60, 60),
    span=st.integers(0, 60),
)
def test_a_change_is_refused_exactly_when_a_stored_value_breaks_it_and_a_migration_fixes_all(
    crm: pycrm.CRM, stored: list[int], low: int, span: int
) -> None:
    key = next(_keys)
    high = low + span
    with crm.session(actor=crm.system_actor) as s:
        s.fields.define("customer", key, "number")
        ids = [
            s.customers.create(f"{key}-{i}", custom={key: v}, on_duplicate="allow").id
            for i, v in enumerate(stored)
        ]
    fits = all(low <= v <= high for v in stored)
    if fits:
        with crm.session(actor=crm.system_actor) as s:
            changed = s.fields.redefine("customer", key, minimum=low, maximum=high)
    else:
        with crm.session(actor=crm.system_actor) as s, pytest.raises(ValidationError) as info:
            s.fields.redefine("customer", key, minimum=low, maximum=high)
        assert info.value.field == f"custom.{key}"
        first_bad = next(i for i, v in zip(ids, stored, strict=True) if not low <= v <= high)
        assert first_bad in str(info.value) or any(i in str(info.value) for i in ids)
        with crm.session(actor=crm.system_actor) as s:
            assert s.fields.get_definition("customer", key).version == 1
            assert [s.customers.get(i).custom[key] for i in ids] == stored
            changed = s.fields.redefine(
                "customer", key, minimum=low, maximum=high, migrate=lambda v: min(max(v, low), high)
            )
    assert changed.version == 2
    assert (changed.minimum, changed.maximum) == (Decimal(low), Decimal(high))
    with crm.session(actor=crm.system_actor) as s:
        after = [s.customers.get(i).custom[key] for i in ids]
    assert after == [min(max(v, low), high) for v in stored]


# -- the field types are all covered ---------------------------------------------------------


def test_the_properties_cover_every_field_type() -> None:
    assert {FieldType(kind) for kind, _ in FIELDS.values()} == set(FieldType)
    assert set(VALUES) == set(FIELDS)
