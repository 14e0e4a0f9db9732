"""Contract tests for custom fields, categories and documents (docs/custom-fields.md).

Every test that takes ``crm`` (or ``connect_crm``) runs on memory, SQLite and
PostgreSQL: each field type is stored, read back and searched the same way
on all three; a bad value is a ValidationError naming ``custom.<key>`` and
leaves the store as it was; a definition change that would make stored
values invalid is refused unless it brings a migration; department limits on
a field hold for reads and writes; a category filter finds its subtree; and
documents keep their bytes, versions and checksums and follow the record's
permissions. Sessions are opened one after the other, never side by side.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import pycrm
from pycrm.adapters.blobs import FileBlobStore, MemoryBlobStore
from pycrm.adapters.sqlalchemy.store import SqlStore
from pycrm.domain.custom_fields import FieldType, check_value, typed_value
from pycrm.domain.customers import Customer
from pycrm.errors import NotFound, PermissionDenied, StorageError, ValidationError
from pycrm.serialization import from_dict, to_dict
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import add_user, eur, refused

ConnectFn = Callable[..., pycrm.CRM]


def system(crm: pycrm.CRM) -> Session:
    return crm.session(actor=crm.system_actor)


def backend_of(crm: pycrm.CRM) -> str:
    engine = getattr(crm.store, "engine", None)
    return "memory" if engine is None else str(engine.dialect.name)


def xfail_on(request: pytest.FixtureRequest, crm: pycrm.CRM, reasons: dict[str, str]) -> None:
    """Mark the running test a strict xfail on the backends a known bug breaks."""
    reason = reasons.get(backend_of(crm))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def memory_crm() -> pycrm.CRM:
    """A memory CRM, for faults in the services that no adapter can change."""
    return pycrm.connect("memory://", clock=FakeClock(), default_region="DE")


def names(records: list[Any]) -> list[str]:
    return sorted(r.name for r in records)


def invalid(errors: list[Exception]) -> list[ValidationError]:
    """The refusals, each checked to be a ValidationError."""
    assert all(isinstance(e, ValidationError) for e in errors), errors
    return [e for e in errors if isinstance(e, ValidationError)]


def refused_invalid(crm: pycrm.CRM, actor: Any, *cases: Any) -> list[ValidationError]:
    """:func:`support.refused` for calls that must raise ValidationError."""
    return invalid(refused(crm, actor, *cases))


def field_error(exc: ValidationError, field: str) -> str:
    """The reason given for ``field`` (fails if the error does not name it)."""
    reasons = [e.reason for e in exc.errors if e.field == field]
    assert reasons, f"{field} not named in {exc}"
    return reasons[0]


# -- every type ------------------------------------------------------------------------

AWARE = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=timezone(timedelta(hours=2)))

#: key → (type, options, value as given, JSON form stored, typed value read back).
TYPES: dict[str, tuple[str, dict[str, Any], Any, Any, Any]] = {
    "note": ("text", {}, "  Needs\t a  forklift ", "Needs a forklift", "Needs a forklift"),
    "headcount": ("number", {"minimum": 0}, 420, 420, 420),
    "margin": ("decimal", {}, Decimal("12.50"), "12.50", Decimal("12.50")),
    "founded": ("date", {}, date(1999, 12, 31), "1999-12-31", date(1999, 12, 31)),
    # Datetimes are stored in UTC (equal instants, equal text) and read back as the same instant.
    "last_audit": ("datetime", {}, AWARE, "2026-03-04T03:06:07.000890+00:00", AWARE),
    "key_account": ("boolean", {}, True, True, True),
    "tier": ("choice", {"choices": ["gold", "silver"]}, "gold", "gold", "gold"),
    "channels": (
        "multi_choice",
        {"choices": ["web", "phone", "fax"]},
        ["fax", "web", "fax"],
        ["web", "fax"],
        ("web", "fax"),
    ),
    "revenue": (
        "money",
        {},
        ("48000000", "EUR"),
        {"amount": "48000000.00", "currency": "EUR"},
        eur("48000000"),
    ),
    "parent_company": ("reference", {"reference": "customer"}, None, None, None),
}


def define_all(s: Session, entity: str = "customer") -> None:
    for key, (kind, options, *_) in TYPES.items():
        s.fields.define(entity, key, kind, **options)


def test_every_field_type_is_stored_in_json_form_and_read_back_typed_from_a_new_session(
    crm: pycrm.CRM,
) -> None:
    with system(crm) as s:
        define_all(s)
        parent = s.customers.create("Holding AG")
        given = {k: v[2] for k, v in TYPES.items() if v[2] is not None}
        created = s.customers.create("Acme", custom={**given, "parent_company": parent.id})
    stored = {k: v[3] for k, v in TYPES.items() if v[3] is not None}
    stored["parent_company"] = parent.id
    assert created.custom == stored
    with system(crm) as s:
        again = s.customers.get(created.id)
        typed = s.fields.typed(again)
    assert again.custom == stored
    assert json.loads(json.dumps(again.custom)) == stored, "custom values are plain JSON"
    expected = {k: v[4] for k, v in TYPES.items() if v[4] is not None}
    assert typed == {**expected, "parent_company": parent.id}
    assert isinstance(typed["margin"], Decimal)
    assert isinstance(typed["revenue"], pycrm.Money)
    assert typed["last_audit"].utcoffset() == timedelta(0)


def test_every_customizable_entity_takes_checks_and_keeps_its_own_fields(
    crm: pycrm.CRM,
) -> None:
    with system(crm) as s:
        for entity in ("contact", "lead", "deal", "ticket", "contract"):
            s.fields.define(entity, "score", "number", minimum=1, maximum=5)
            s.fields.define(entity, "code", "text", pattern="[A-Z]{2}")
        acme = s.customers.create("Acme")
        won = s.deals.win(s.deals.create("Line", customer_id=acme.id, amount=eur("99")).id)
    creators: dict[str, Callable[[Session, dict[str, Any]], Any]] = {
        "contact": lambda s, c: s.contacts.create("Ada Berg", customer_id=acme.id, custom=c),
        "lead": lambda s, c: s.leads.capture("Lea", source="web", email="l@x.example", custom=c),
        "deal": lambda s, c: s.deals.create(
            "Press", customer_id=acme.id, amount=eur("1"), custom=c
        ),
        "ticket": lambda s, c: s.tickets.open("Broken", channel="email", custom=c),
        "contract": lambda s, c: s.contracts.draft(won.id, custom=c),
    }
    created = {}
    with system(crm) as s:
        for entity, create in creators.items():
            created[entity] = create(s, {"score": 3, "code": "DE"}).id
    with system(crm) as s:
        for entity, id in created.items():
            assert getattr(s, entity + "s").get(id).custom == {"score": 3, "code": "DE"}, entity
        assert s.fields.definitions("customer") == [], "fields belong to one entity"
        for entity in ("contact", "lead", "deal"):
            updated = getattr(s, entity + "s").update(created[entity], custom={"score": 5})
            assert updated.custom == {"score": 5, "code": "DE"}, entity
    cases = []
    for create in creators.values():
        cases += [
            (ValidationError, lambda s, f=create: f(s, {"score": 9})),
            (ValidationError, lambda s, f=create: f(s, {"code": "de"})),
            (ValidationError, lambda s, f=create: f(s, {"tier": "gold"})),
        ]
    for entity in ("contact", "lead", "deal"):
        cases.append(
            (
                ValidationError,
                lambda s, e=entity: getattr(s, e + "s").update(created[e], custom={"score": 0}),
            )
        )
    errors = refused(crm, crm.system_actor, *cases)
    assert [e.field for e in invalid(errors)] == [
        "custom.score",
        "custom.code",
        "custom.tier",
    ] * 5 + ["custom.score"] * 3


# -- validation ------------------------------------------------------------------------

#: (type, options, bad value, words the reason contains)
BAD_VALUES: list[tuple[str, dict[str, Any], Any, str]] = [
    ("text", {}, 42, "text"),
    ("text", {"maximum": 5}, "too long", "longer than 5"),
    ("text", {"minimum": 3}, "ab", "at least 3"),
    ("text", {"pattern": r"[A-Z]{2}\d{4}"}, "DE12345", "must match"),
    ("text", {}, "bell\x07", "control"),
    ("number", {}, 1.5, "whole number"),
    ("number", {}, True, "whole number"),
    ("number", {}, "12", "whole number"),
    ("number", {"minimum": 0}, -1, "at least 0"),
    ("number", {"maximum": 100}, 101, "at most 100"),
    ("number", {}, 2**53, "too large"),
    ("decimal", {}, 0.1, "never float"),
    ("decimal", {}, "12,5", "not a number"),
    ("decimal", {}, "NaN", "finite"),
    ("decimal", {"minimum": "0.5"}, "0.49", "at least 0.5"),
    ("date", {}, "31.12.1999", "ISO date"),
    ("date", {}, datetime(2026, 1, 1, tzinfo=UTC), "must be a date"),
    ("datetime", {}, datetime(2026, 1, 1), "timezone-aware"),
    ("datetime", {}, "2026-01-01T10:00:00", "timezone-aware"),
    ("datetime", {}, "yesterday", "ISO datetime"),
    ("boolean", {}, "yes", "True or False"),
    ("boolean", {}, 1, "True or False"),
    ("choice", {"choices": ["gold", "silver"]}, "platinum", "one of gold, silver"),
    ("choice", {"choices": ["gold", "silver"]}, "GOLD", "one of"),
    ("multi_choice", {"choices": ["a", "b"]}, "a", "list"),
    ("multi_choice", {"choices": ["a", "b"]}, ["a", "z"], "'z'"),
    ("money", {}, "100 EUR", "Money"),
    ("money", {"minimum": 0}, ("-1", "EUR"), "at least 0"),
    ("reference", {"reference": "customer"}, "", "id of a customer"),
    ("reference", {"reference": "customer"}, 17, "id of a customer"),
]


def test_a_bad_value_of_any_type_is_refused_naming_the_field_and_nothing_is_stored(
    crm: pycrm.CRM,
) -> None:
    with system(crm) as s:
        for i, (kind, options, _, _) in enumerate(BAD_VALUES):
            s.fields.define("customer", f"f{i}", kind, **options)
        acme = s.customers.create("Acme", custom={"f5": 7})
    cases = []
    for i, (_, _, bad, _) in enumerate(BAD_VALUES):
        custom = {f"f{i}": bad}
        cases.append((ValidationError, lambda s, c=custom: s.customers.create("Bolt", custom=c)))
        cases.append((ValidationError, lambda s, c=custom: s.customers.update(acme.id, custom=c)))
    several = {"f8": -5, "f22": "tin", "nickname": "x"}
    errors = refused(
        crm,
        crm.system_actor,
        *cases,
        (ValidationError, lambda s: s.customers.create("Bolt", custom=several)),
        (ValidationError, lambda s: s.customers.create("Bolt", custom=["f0", "x"])),
    )
    every, not_a_mapping = errors[-2:]
    assert isinstance(every, ValidationError)
    assert {e.field for e in every.errors} == {"custom.f8", "custom.f22", "custom.nickname"}
    assert "not a defined custom field" in field_error(every, "custom.nickname")
    assert isinstance(not_a_mapping, ValidationError)
    assert not_a_mapping.field == "custom"
    for i, (kind, _, bad, words) in enumerate(BAD_VALUES):
        for exc in errors[2 * i : 2 * i + 2]:
            assert isinstance(exc, ValidationError)
            reason = field_error(exc, f"custom.f{i}")
            assert words in reason, (kind, bad, reason)
            assert f"custom.f{i}" in str(exc)


def test_a_reference_must_name_an_existing_record_of_its_kind() -> None:
    crm = memory_crm()
    with system(crm) as s:
        s.fields.define("deal", "partner", "reference", reference="customer")
        acme = s.customers.create("Acme")
    (exc,) = refused_invalid(
        crm,
        crm.system_actor,
        (
            ValidationError,
            lambda s: s.deals.create(
                "Press", customer_id=acme.id, amount=eur("1"), custom={"partner": "no-such-id"}
            ),
        ),
    )
    assert isinstance(exc, ValidationError)
    assert exc.field == "custom.partner"


def test_a_reference_with_control_characters_is_refused() -> None:
    crm = memory_crm()
    with system(crm) as s:
        s.fields.define("customer", "partner", "reference", reference="customer")
    errors = refused_invalid(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.customers.create("A", custom={"partner": "ab\x00cd"})),
        (ValidationError, lambda s: s.customers.create("A", custom={"partner": "\ud800"})),
    )
    assert [e.field for e in errors] == ["custom.partner", "custom.partner"]


def test_every_accepted_datetime_reads_back_as_the_same_instant() -> None:
    crm = memory_crm()
    with system(crm) as s:
        defn = s.fields.define("customer", "seen", "datetime")
    odd = datetime(2026, 1, 1, tzinfo=timezone(timedelta(microseconds=1)))
    assert typed_value(defn, check_value(defn, odd)) == odd


def test_a_money_value_with_a_bad_currency_is_refused_naming_the_field() -> None:
    crm = memory_crm()
    with system(crm) as s:
        s.fields.define("customer", "revenue", "money")
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.customers.create("A", custom={"revenue": ("1", "EURO")})),
        (ValidationError, lambda s: s.customers.create("A", custom={"revenue": {"amount": "1"}})),
    )
    assert [e.field for e in invalid(errors)] == ["custom.revenue", "custom.revenue"]


# -- required and default -------------------------------------------------------------


def test_required_fields_take_their_default_on_create_or_are_refused(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver"], default="silver")
        s.fields.define("customer", "headcount", "number", required=True, default=1)
        s.fields.define("customer", "vat_id", "text", required=True)
    with system(crm) as s:
        acme = s.customers.create("Acme", custom={"vat_id": "DE1"})
        assert acme.custom == {"tier": "silver", "headcount": 1, "vat_id": "DE1"}
        given = s.customers.create("Bolt", custom={"vat_id": "DE2", "tier": "gold", "headcount": 5})
        assert given.custom == {"tier": "gold", "headcount": 5, "vat_id": "DE2"}
        # An update changes only what it names; defaults are for new records.
        updated = s.customers.update(acme.id, custom={"tier": None})
        assert updated.custom == {"headcount": 1, "vat_id": "DE1"}
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.customers.create("Cargo")),
        (ValidationError, lambda s: s.customers.create("Cargo", custom={"vat_id": None})),
        (ValidationError, lambda s: s.customers.create("Cargo", custom={"vat_id": "   "})),
        (ValidationError, lambda s: s.customers.update(acme.id, custom={"vat_id": None})),
        (ValidationError, lambda s: s.customers.update(acme.id, custom={"headcount": None})),
        (
            ValidationError,
            lambda s: s.fields.define("customer", "grade", "choice", choices=["a"], default="b"),
        ),
        (ValidationError, lambda s: s.fields.define("customer", "n", "number", default="many")),
    )
    for exc in errors:
        assert isinstance(exc, ValidationError)
    assert [e.field for e in invalid(errors)] == ["custom.vat_id"] * 4 + [
        "custom.headcount",
        "default",
        "default",
    ]
    assert "required" in invalid(errors)[0].reason


def test_blank_text_cannot_clear_a_required_field() -> None:
    crm = memory_crm()
    with system(crm) as s:
        s.fields.define("customer", "vat_id", "text", required=True)
        acme = s.customers.create("Acme", custom={"vat_id": "DE1"})
    (exc,) = refused_invalid(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.customers.update(acme.id, custom={"vat_id": "   "})),
    )
    assert exc.field == "custom.vat_id"


# -- definitions -----------------------------------------------------------------------


def test_a_definition_keeps_its_options_and_is_listed_by_group_then_key(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        defined = s.fields.define(
            "customer",
            "tier",
            "choice",
            label="Customer tier",
            choices=["gold", "silver"],
            group="grade",
            readable_by=["sales", "finance"],
            writable_by=["finance"],
            searchable=True,
        )
        s.fields.define("customer", "headcount", "number", minimum=0, maximum="1e6", group="basic")
        s.fields.define("customer", "note", "text")
    assert defined.version == 1
    with system(crm) as s:
        tier = s.fields.get_definition("customer", "tier")
        listed = [d.key for d in s.fields.definitions("customer")]
        headcount = s.fields.get_definition("customer", "headcount")
    assert tier == defined
    assert (tier.label, tier.type, tier.choices, tier.group) == (
        "Customer tier",
        FieldType.CHOICE,
        ("gold", "silver"),
        "grade",
    )
    assert (tier.readable_by, tier.writable_by, tier.searchable) == (
        ("sales", "finance"),
        ("finance",),
        True,
    )
    assert (headcount.minimum, headcount.maximum) == (Decimal(0), Decimal(1_000_000))
    assert listed == ["note", "headcount", "tier"]


def test_bad_definitions_are_refused_naming_the_option(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold"])
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.fields.define("planet", "x", "text")),
        (ValidationError, lambda s: s.fields.define("customer", "Tier", "text")),
        (ValidationError, lambda s: s.fields.define("customer", "1st", "text")),
        (ValidationError, lambda s: s.fields.define("customer", "x", "colour")),
        (ValidationError, lambda s: s.fields.define("customer", "x", "choice")),
        (ValidationError, lambda s: s.fields.define("customer", "x", "reference")),
        (ValidationError, lambda s: s.fields.define("customer", "x", "text", pattern="[")),
        (ValidationError, lambda s: s.fields.define("customer", "x", "number", minimum=0.5)),
        (ValidationError, lambda s: s.fields.define("customer", "x", "text", colour="red")),
        (ValidationError, lambda s: s.fields.define("customer", "tier", "text")),
        (NotFound, lambda s: s.fields.get_definition("customer", "nope")),
        (NotFound, lambda s: s.fields.redefine("customer", "nope", label="x")),
        (ValidationError, lambda s: s.fields.redefine("customer", "tier", reference="lead")),
        (ValidationError, lambda s: s.fields.define("activity", "mood", "text")),
        (ValidationError, lambda s: s.fields.define("user", "mood", "text")),
    )
    assert [getattr(e, "field", None) for e in errors] == [
        "entity",
        "key",
        "key",
        "type",
        "choices",
        "reference",
        "pattern",
        "minimum",
        "colour",
        "key",
        None,
        None,
        "reference",
        "entity",
        "entity",
    ]


def test_only_admins_define_change_or_retire_fields(crm: pycrm.CRM) -> None:
    sam = add_user(crm, "Sam")
    admin = add_user(crm, "Ada", "admin")
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold"])
    refused(
        crm,
        sam,
        (PermissionDenied, lambda s: s.fields.define("customer", "x", "text")),
        (PermissionDenied, lambda s: s.fields.redefine("customer", "tier", label="Rank")),
        (PermissionDenied, lambda s: s.fields.retire("customer", "tier")),
    )
    with crm.session(actor=admin) as s:
        assert s.fields.define("customer", "x", "text").created_by == admin


# -- changing a definition --------------------------------------------------------------


def test_a_change_that_would_invalidate_stored_values_is_refused_naming_the_record(
    crm: pycrm.CRM,
) -> None:
    with system(crm) as s:
        s.fields.define("customer", "headcount", "number", minimum=0)
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver"])
        s.fields.define("customer", "channels", "multi_choice", choices=["web", "fax"])
        s.fields.define("customer", "revenue", "money")
        s.fields.define("customer", "vat_id", "text")
        s.customers.create("Small", custom={"headcount": 50, "tier": "gold"})
        big = s.customers.create(
            "Big",
            custom={
                "headcount": 500,
                "tier": "silver",
                "channels": ["fax"],
                "revenue": ("-5", "EUR"),
                "vat_id": "DE 123",
            },
        )
        s.customers.create("Unknown")
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.fields.redefine("customer", "headcount", maximum=100)),
        (ValidationError, lambda s: s.fields.redefine("customer", "headcount", required=True)),
        (ValidationError, lambda s: s.fields.redefine("customer", "headcount", type="text")),
        (ValidationError, lambda s: s.fields.redefine("customer", "tier", choices=["gold"])),
        (ValidationError, lambda s: s.fields.redefine("customer", "tier", type="boolean")),
        (ValidationError, lambda s: s.fields.redefine("customer", "channels", choices=["web"])),
        (ValidationError, lambda s: s.fields.redefine("customer", "revenue", minimum=0)),
        (ValidationError, lambda s: s.fields.redefine("customer", "vat_id", pattern=r"DE\d+")),
    )
    assert [e.field for e in invalid(errors)] == ["custom.headcount"] * 3 + ["custom.tier"] * 2 + [
        "custom.channels",
        "custom.revenue",
        "custom.vat_id",
    ]
    assert big.id in str(errors[0])
    reasons = [e.reason for e in invalid(errors)]
    assert "at most 100" in reasons[0]
    assert "migrate" in reasons[0]
    assert "required" in reasons[1]
    assert "one of gold" in reasons[3]
    with system(crm) as s:
        assert s.fields.get_definition("customer", "headcount").version == 1


def test_a_change_applied_with_a_migration_converts_checks_and_audits_every_stored_value(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        s.fields.define("customer", "headcount", "number", minimum=0)
        small = s.customers.create("Small", custom={"headcount": 50})
        big = s.customers.create("Big", custom={"headcount": 500})
        unknown = s.customers.create("Unknown")
    fake_clock.advance(timedelta(days=1))
    seen: list[Any] = []

    def cap(stored: Any) -> Any:
        seen.append(stored)
        return min(stored, 100)

    with system(crm) as s:
        changed = s.fields.redefine("customer", "headcount", maximum=100, migrate=cap)
    assert changed.version == 2
    assert changed.maximum == Decimal(100)
    assert sorted(seen) == [50, 500], "records without a value are left alone"
    with system(crm) as s:
        assert s.customers.get(small.id).custom == {"headcount": 50}
        after = s.customers.get(big.id)
        assert after.custom == {"headcount": 100}
        assert after.version == big.version + 1
        assert s.customers.get(unknown.id).custom == {}
        history = s.customers.history(big.id, "custom")
        assert [(h.old, h.new) for h in history][-1] == ({"headcount": 500}, {"headcount": 100})
        assert history[-1].at == fake_clock.now()
        assert s.customers.as_of(big.id, fake_clock.now() - timedelta(hours=1)).custom == {
            "headcount": 500
        }
    with system(crm) as s:
        required = s.fields.redefine(
            "customer", "headcount", required=True, migrate=lambda v: 0 if v is None else v
        )
        assert required.version == 3
        assert s.customers.get(unknown.id).custom == {"headcount": 0}
        text = s.fields.redefine("customer", "headcount", type="text", migrate=str)
        assert (text.type, text.version) == (FieldType.TEXT, 4)
        assert s.customers.get(big.id).custom == {"headcount": "100"}


def test_a_migration_that_yields_an_invalid_value_changes_nothing(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver", "tin"])
        s.customers.create("A", custom={"tier": "gold"})
        s.customers.create("B", custom={"tier": "silver"})
        s.customers.create("C", custom={"tier": "tin"})
    rename = {"gold": "gold", "silver": "platinum"}
    (exc,) = refused_invalid(
        crm,
        crm.system_actor,
        (
            ValidationError,
            lambda s: s.fields.redefine(
                "customer",
                "tier",
                choices=["gold", "platinum"],
                migrate=lambda v: rename.get(v, v),
            ),
        ),
    )
    assert exc.field == "custom.tier"
    with system(crm) as s:
        moved = s.fields.redefine(
            "customer",
            "tier",
            choices=["gold", "platinum"],
            migrate=lambda v: rename.get(v),
        )
        assert moved.choices == ("gold", "platinum")
        assert {c.name: c.custom for c in s.customers.search()} == {
            "A": {"tier": "gold"},
            "B": {"tier": "platinum"},
            "C": {},
        }


def test_versions_count_real_changes_and_retire_keeps_stored_values(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold"])
        acme = s.customers.create("Acme", custom={"tier": "gold"})
    with system(crm) as s:
        assert s.fields.redefine("customer", "tier", label="Rank").version == 2
        assert s.fields.redefine("customer", "tier", label="Rank").version == 2, "no change"
        assert s.fields.redefine("customer", "tier", choices=["gold", "silver"]).version == 3
        retired = s.fields.retire("customer", "tier")
    assert (retired.version, retired.retired, retired.label) == (4, True, "Rank")
    with system(crm) as s:
        assert s.fields.definitions("customer") == []
        assert [d.key for d in s.fields.definitions("customer", include_retired=True)] == ["tier"]
        assert s.customers.get(acme.id).custom == {"tier": "gold"}
        assert s.fields.typed(s.customers.get(acme.id)) == {"tier": "gold"}
    (exc,) = refused_invalid(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.customers.update(acme.id, custom={"tier": "silver"})),
    )
    assert exc.field == "custom.tier"


# -- search, segments and indexes -------------------------------------------------------


@pytest.fixture
def catalogue(crm: pycrm.CRM) -> dict[str, str]:
    """Five customers with custom values of every searchable type; name → id."""
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver", "bronze"])
        s.fields.define("customer", "headcount", "number", searchable=True)
        s.fields.define("customer", "margin", "decimal")
        s.fields.define("customer", "since", "date")
        s.fields.define("customer", "key_account", "boolean")
        s.fields.define("customer", "vat_id", "text")
        s.fields.define("customer", "channels", "multi_choice", choices=["web", "fax"])
        s.fields.define("customer", "revenue", "money")
        rows = {
            "Alpha": {"tier": "gold", "headcount": 10, "margin": "1.25", "since": date(2020, 1, 1),
                      "key_account": True, "vat_id": "DE1"},
            "Beta": {"tier": "silver", "headcount": 250, "margin": "-3", "since": date(2021, 6, 30),
                     "key_account": False, "vat_id": "DE2"},
            "Gamma": {"tier": "bronze", "headcount": 99, "margin": "10.5", "since": date(2019, 2, 3),
                      "key_account": False},
            "Delta": {"tier": "gold", "headcount": 100, "since": date(2021, 7, 1),
                      "key_account": True, "channels": ["web"]},
            "Epsilon": {"revenue": ("10", "EUR")},
        }  # fmt: skip
        return {name: s.customers.create(name, custom=custom).id for name, custom in rows.items()}


def test_search_by_custom_field_equality_finds_the_same_rows_on_every_backend(
    crm: pycrm.CRM, catalogue: dict[str, str]
) -> None:
    with system(crm) as s:

        def found(custom: dict[str, Any], **criteria: Any) -> list[str]:
            return names(s.customers.search(custom=custom, **criteria))

        assert found({"tier": "gold"}) == ["Alpha", "Delta"]
        assert found({"headcount": 250}) == ["Beta"]
        assert found({"margin": "10.5"}) == ["Gamma"]
        assert found({"since": date(2021, 7, 1)}) == ["Delta"]
        assert found({"since": "2021-07-01"}) == ["Delta"]
        assert found({"key_account": True}) == ["Alpha", "Delta"]
        assert found({"key_account": False}) == ["Beta", "Gamma"]
        assert found({"vat_id": " DE1 "}) == ["Alpha"], "the value is cleaned like a stored one"
        assert found({"tier": "gold", "key_account": True, "headcount": 100}) == ["Delta"]
        assert found({"tier": "gold"}, text="alp") == ["Alpha"]
        assert found({"headcount": 11}) == []
        s.fields.define("contact", "role", "choice", choices=["buyer", "user"])
        s.fields.define("lead", "budget", "number")
        s.contacts.create("Ada Berg", customer_id=catalogue["Alpha"], custom={"role": "buyer"})
        s.contacts.create("Bo Lind", customer_id=catalogue["Alpha"], custom={"role": "user"})
        s.leads.capture("Lea", source="web", email="lea@a.example", custom={"budget": 5000})
        s.leads.capture("Lou", source="web", email="lou@b.example", custom={"budget": 70})
        assert names(s.contacts.search(custom={"role": "buyer"})) == ["Ada Berg"]
        assert names(s.leads.search(custom={"budget": 5000})) == ["Lea"]
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.customers.search(custom={"colour": "red"})),
        (ValidationError, lambda s: s.customers.search(custom={"tier": "tin"})),
        (ValidationError, lambda s: s.customers.search(custom={"headcount": "many"})),
        (ValidationError, lambda s: s.customers.search(custom={"channels": ["web"]})),
        (ValidationError, lambda s: s.customers.search(custom={"revenue": ("10", "EUR")})),
        (ValidationError, lambda s: s.customers.search(custom="tier=gold")),  # type: ignore[arg-type]
        (ValidationError, lambda s: s.leads.search(custom={"role": "buyer"})),
    )
    assert [e.field for e in invalid(errors)] == [
        "custom.colour",
        "custom.tier",
        "custom.headcount",
        "custom.channels",
        "custom.revenue",
        "custom",
        "custom.role",
    ]


def segment(s: Session, rule: dict[str, Any]) -> list[str]:
    """The customers a segment rule selects, evaluated in the database."""
    return names(s.read(Customer).find(s.campaigns.compile("customer", rule)))


def test_segments_filter_custom_fields_by_range_and_choice_membership_on_every_backend(
    crm: pycrm.CRM, catalogue: dict[str, str]
) -> None:
    with system(crm) as s:

        def rule(key: str, op: str, value: Any) -> list[str]:
            return segment(s, {"field": f"custom.{key}", "op": op, "value": value})

        assert rule("headcount", "gte", 100) == ["Beta", "Delta"]
        assert rule("headcount", "lt", 100) == ["Alpha", "Gamma"]
        assert rule("headcount", "between", [99, 101]) == ["Delta", "Gamma"]
        assert rule("margin", "gte", "1.25") == ["Alpha", "Gamma"]
        assert rule("margin", "lt", Decimal("2")) == ["Alpha", "Beta"]
        assert rule("margin", "between", ["-3", "10.5"]) == ["Alpha", "Beta"]
        assert rule("since", "between", [date(2021, 1, 1), date(2022, 1, 1)]) == ["Beta", "Delta"]
        assert rule("since", "lt", "2020-01-01") == ["Gamma"]
        assert rule("tier", "in", ["silver", "bronze"]) == ["Beta", "Gamma"]
        assert rule("tier", "eq", "gold") == ["Alpha", "Delta"]
        assert rule("tier", "ne", "gold") == ["Beta", "Epsilon", "Gamma"]
        assert rule("key_account", "eq", False) == ["Beta", "Gamma"]
        assert rule("headcount", "in", [10, 250, 7]) == ["Alpha", "Beta"]
        both = {
            "all": [
                {"field": "custom.tier", "op": "eq", "value": "gold"},
                {"not": {"field": "custom.headcount", "op": "lt", "value": 50}},
            ]
        }
        assert segment(s, both) == ["Delta"]
        saved = s.campaigns.create_segment("Gold", "customer", both)
        assert names(s.campaigns.members(saved.id)) == ["Delta"]
        assert s.campaigns.count(saved.id) == 1
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: segment(s, {"field": "custom.nope", "op": "eq", "value": 1})),
        (
            ValidationError,
            lambda s: segment(s, {"field": "custom.tier", "op": "in", "value": ["tin"]}),
        ),
        (
            ValidationError,
            lambda s: segment(s, {"field": "custom.headcount", "op": "gte", "value": "x"}),
        ),
        (
            ValidationError,
            lambda s: segment(s, {"field": "custom.tier", "op": "contains", "value": "g"}),
        ),
    )
    assert [e.field for e in invalid(errors)] == [
        "rule.field",
        "custom.tier",
        "custom.headcount",
        "rule.op",
    ]


def test_segments_refuse_comparisons_a_money_or_multi_choice_field_cannot_make() -> None:
    crm = memory_crm()
    with system(crm) as s:
        s.fields.define("customer", "revenue", "money")
        s.fields.define("customer", "channels", "multi_choice", choices=["web", "fax"])
        s.customers.create("Acme", custom={"revenue": ("10", "EUR"), "channels": ["web"]})
    errors = refused(
        crm,
        crm.system_actor,
        (
            ValidationError,
            lambda s: segment(s, {"field": "custom.revenue", "op": "gte", "value": ("5", "EUR")}),
        ),
        (
            ValidationError,
            lambda s: segment(s, {"field": "custom.channels", "op": "eq", "value": ["web"]}),
        ),
    )
    assert [e.field for e in invalid(errors)] == ["custom.revenue", "custom.channels"]


def test_equality_on_a_decimal_field_compares_numbers_not_their_spelling(
    crm: pycrm.CRM, catalogue: dict[str, str]
) -> None:
    with system(crm) as s:
        assert names(s.customers.search(custom={"margin": Decimal("10.50")})) == ["Gamma"]
        assert segment(s, {"field": "custom.margin", "op": "eq", "value": "-3.0"}) == ["Beta"]


def test_datetime_fields_compare_instants_whatever_their_utc_offset(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("customer", "seen", "datetime")
        berlin = timezone(timedelta(hours=2))
        s.customers.create("Early", custom={"seen": datetime(2026, 1, 1, 10, tzinfo=berlin)})
        s.customers.create("Late", custom={"seen": datetime(2026, 1, 1, 9, tzinfo=UTC)})
    with system(crm) as s:
        eight_utc = datetime(2026, 1, 1, 8, tzinfo=UTC)
        assert names(s.customers.search(custom={"seen": eight_utc})) == ["Early"]
        later = {"field": "custom.seen", "op": "gte", "value": eight_utc + timedelta(minutes=30)}
        assert segment(s, later) == ["Late"]


def test_range_filters_on_decimals_in_exponent_notation_compare_numbers(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("customer", "rate", "decimal")
        s.customers.create("Tiny", custom={"rate": "0.00000000001"})
        s.customers.create("Huge", custom={"rate": "1E+3"})
        s.customers.create("Plain", custom={"rate": "5"})
    with system(crm) as s:
        assert segment(s, {"field": "custom.rate", "op": "gte", "value": "1E-12"}) == [
            "Huge",
            "Plain",
            "Tiny",
        ]
        assert segment(s, {"field": "custom.rate", "op": "lt", "value": "0.000001"}) == ["Tiny"]


def test_range_filters_on_decimals_keep_every_digit(
    crm: pycrm.CRM, request: pytest.FixtureRequest
) -> None:
    xfail_on(
        request,
        crm,
        {
            "sqlite": "LIMITATION: SQLite casts JSON decimals to NUMERIC, i.e. a 64-bit float: "
            "digits beyond ~15 are lost in range filters (documented)",
        },
    )
    with system(crm) as s:
        s.fields.define("customer", "rate", "decimal")
        s.customers.create("Long", custom={"rate": "12345678901234567.1"})
        s.customers.create("Fine", custom={"rate": "0.123456789014"})
        s.customers.create("Vast", custom={"rate": "100000000000000000000000"})
    with system(crm) as s:

        def rule(op: str, value: Any) -> list[str]:
            return segment(s, {"field": "custom.rate", "op": op, "value": value})

        assert rule("gte", "12345678901234567.2") == ["Vast"]
        assert rule("lt", "0.123456789012") == []
        assert rule("between", ["1", "100000000000000000000001"]) == ["Long", "Vast"]


def test_a_searchable_field_gets_an_expression_index_on_sql_databases(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold"], searchable=True)
        s.fields.define("contact", "role", "text")
        s.fields.redefine("contact", "role", searchable=True)
        acme = s.customers.create("Acme", custom={"tier": "gold"})
        s.contacts.create("Ada Berg", customer_id=acme.id, custom={"role": "buyer"})
    with system(crm) as s:
        assert names(s.customers.search(custom={"tier": "gold"})) == ["Acme"]
        assert names(s.contacts.search(custom={"role": "buyer"})) == ["Ada Berg"]
    engine = getattr(crm.store, "engine", None)
    if engine is None:
        return
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'index'"
        else:
            query = "SELECT indexname FROM pg_indexes"
        indexes = {row[0] for row in connection.execute(sa.text(query))}
    assert {"ix_pycrm_customers_custom_tier", "ix_pycrm_contacts_custom_role"} <= indexes


def test_sqlite_searches_a_searchable_field_through_its_index(tmp_path: Path) -> None:
    # SQLite matches an expression index only against the same expression: the JSON
    # path must be written into the query as it is in the index, not bound.
    crm = pycrm.connect(f"sqlite:///{tmp_path / 'crm.db'}", clock=FakeClock())
    try:
        with system(crm) as s:
            s.fields.define("customer", "branch", "text", searchable=True)
            for i in range(300):
                s.customers.create(f"Customer {i:03d}", custom={"branch": f"B{i % 30:02d}"})
        store = crm.store
        assert isinstance(store, SqlStore)
        engine = store.engine
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        seen: list[tuple[str, Any]] = []

        def record(_c: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if "pycrm_customers" in statement and "custom" in statement:
                seen.append((statement, params))

        sa.event.listen(engine, "before_cursor_execute", record)
        with system(crm) as s:
            found = s.customers.search(custom={"branch": "B07"})
        sa.event.remove(engine, "before_cursor_execute", record)
        assert len(found) == 10
        statement, params = seen[-1]
        with engine.connect() as connection:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
        assert any("ix_pycrm_customers_custom_branch" in row[-1] for row in plan), plan
    finally:
        crm.close()


def test_a_second_searchable_field_of_an_entity_is_indexed_without_warnings(
    tmp_path: Path,
) -> None:
    crm = pycrm.connect(f"sqlite:///{tmp_path / 'crm.db'}", clock=FakeClock())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", sa.exc.SAWarning)
            with system(crm) as s:
                s.fields.define("customer", "tier", "text", searchable=True)
                s.fields.define("customer", "vat_id", "text", searchable=True)
        with system(crm) as s:
            assert [d.key for d in s.fields.definitions("customer")] == ["tier", "vat_id"]
            s.customers.create("Acme", custom={"tier": "gold", "vat_id": "DE1"})
            assert names(s.customers.search(custom={"vat_id": "DE1", "tier": "gold"})) == ["Acme"]
        engine = getattr(crm.store, "engine", None)
        assert engine is not None
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT name FROM sqlite_master WHERE type = 'index'")
            )
            indexes = {row[0] for row in rows}
        assert {"ix_pycrm_customers_custom_tier", "ix_pycrm_customers_custom_vat_id"} <= indexes
    finally:
        crm.close()


# -- history, as_of, serialization, 360 view ---------------------------------------------


def test_custom_values_appear_in_history_as_of_serialization_and_the_360_view(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver"])
        s.fields.define("customer", "revenue", "money")
        acme = s.customers.create("Acme", custom={"tier": "silver"})
    first = fake_clock.now()
    fake_clock.advance(timedelta(days=2))
    with system(crm) as s:
        s.customers.update(acme.id, custom={"tier": "gold", "revenue": ("1000", "EUR")})
    fake_clock.advance(timedelta(days=2))
    with system(crm) as s:
        current = s.customers.update(acme.id, custom={"revenue": None})
        history = s.customers.history(acme.id, "custom")
        old = s.customers.as_of(acme.id, first + timedelta(days=1))
        view = s.customers.view(acme.id)
    money = {"amount": "1000.00", "currency": "EUR"}
    assert [(h.old, h.new) for h in history] == [
        (None, {"tier": "silver"}),
        ({"tier": "silver"}, {"tier": "gold", "revenue": money}),
        ({"tier": "gold", "revenue": money}, {"tier": "gold"}),
    ]
    assert [h.at for h in history] == [first, first + timedelta(days=2), first + timedelta(days=4)]
    assert old.custom == {"tier": "silver"}
    assert view.customer.custom == {"tier": "gold"} == current.custom
    data = to_dict(current)
    assert data["custom"] == {"tier": "gold"}
    assert from_dict(Customer, json.loads(json.dumps(data))) == current


# -- department limits on a field -------------------------------------------------------


def setup_banking(crm: pycrm.CRM) -> dict[str, str]:
    """A customer with a finance-only field; users in sales, finance-role sales, service."""
    ids = {
        "sam": add_user(crm, "Sam"),
        "fiona": add_user(crm, "Fiona", roles=["finance"]),
        "seth": add_user(crm, "Seth", "service"),
    }
    with system(crm) as s:
        s.fields.define(
            "customer", "iban", "text", readable_by=["finance"], writable_by=["finance"]
        )
        s.fields.define("customer", "credit_limit", "number", writable_by=["finance", "service"])
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver"])
        ids["acme"] = s.customers.create(
            "Acme", custom={"iban": "DE02", "credit_limit": 100, "tier": "gold"}
        ).id
    return ids


@pytest.fixture
def banking(crm: pycrm.CRM) -> dict[str, str]:
    return setup_banking(crm)


def test_a_field_readable_by_some_departments_is_hidden_from_the_others(
    crm: pycrm.CRM, banking: dict[str, str], fake_clock: FakeClock
) -> None:
    acme = banking["acme"]
    before = fake_clock.now()
    with crm.session(actor=banking["sam"]) as s:
        assert s.customers.get(acme).custom == {"credit_limit": 100, "tier": "gold"}
        (found,) = s.customers.search(custom={"tier": "gold"})
        assert "iban" not in found.custom
        assert "iban" not in s.customers.view(acme).customer.custom
        assert "iban" not in s.customers.as_of(acme, before).custom
        assert "iban" not in to_dict(s.customers.get(acme))["custom"]
        assert s.fields.typed(s.customers.get(acme)) == {"credit_limit": 100, "tier": "gold"}
        # An edit by someone who cannot see the field keeps it.
        s.customers.update(acme, custom={"tier": "silver"})
    with crm.session(actor=banking["fiona"]) as s:
        assert s.customers.get(acme).custom == {
            "iban": "DE02",
            "credit_limit": 100,
            "tier": "silver",
        }
        assert s.customers.view(acme).customer.custom["iban"] == "DE02"


def test_history_hides_custom_values_the_reader_may_not_see() -> None:
    crm = memory_crm()
    banking = setup_banking(crm)
    with system(crm) as s:
        s.customers.update(banking["acme"], custom={"iban": "DE99"})
    with crm.session(actor=banking["sam"]) as s:
        text = repr(s.customers.history(banking["acme"]))
    assert "DE02" not in text
    assert "DE99" not in text


def test_a_hidden_field_cannot_be_probed_by_searching_on_it() -> None:
    crm = memory_crm()
    banking = setup_banking(crm)
    with crm.session(actor=banking["sam"]) as s:
        with pytest.raises(PermissionDenied):
            s.customers.search(custom={"iban": "DE02"})
        with pytest.raises(PermissionDenied):
            segment(s, {"field": "custom.iban", "op": "eq", "value": "DE02"})


def test_a_field_writable_by_some_departments_refuses_the_others(
    crm: pycrm.CRM, banking: dict[str, str]
) -> None:
    acme = banking["acme"]
    errors = refused(
        crm,
        banking["sam"],
        (PermissionDenied, lambda s: s.customers.update(acme, custom={"iban": "DE03"})),
        (PermissionDenied, lambda s: s.customers.update(acme, custom={"credit_limit": 5})),
        (PermissionDenied, lambda s: s.customers.create("Bolt", custom={"iban": "DE04"})),
        (PermissionDenied, lambda s: s.customers.update(acme, custom={"iban": None})),
    )
    assert all("iban" in str(e) or "credit_limit" in str(e) for e in errors)
    with crm.session(actor=banking["fiona"]) as s:
        assert s.customers.update(acme, custom={"iban": "DE03"}).custom["iban"] == "DE03"
    with crm.session(actor=banking["seth"]) as s:
        assert s.customers.update(acme, custom={"credit_limit": 7}).custom["credit_limit"] == 7
    with crm.session(actor=banking["sam"]) as s:
        assert s.customers.update(acme, custom={"tier": "silver"}).custom == {
            "credit_limit": 7,
            "tier": "silver",
        }
    with system(crm) as s:
        assert s.customers.get(acme).custom == {
            "iban": "DE03",
            "credit_limit": 7,
            "tier": "silver",
        }


# -- tags and categories ----------------------------------------------------------------


@pytest.fixture
def industries(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.categories.create("industry", "Industry")
        s.categories.create("manufacturing", "Manufacturing", parent="industry")
        s.categories.create("machinery", "Machinery", parent="industry/manufacturing")
        s.categories.create("textiles", "Textiles", parent="industry/manufacturing")
        s.categories.create("retail", "Retail", parent="industry")
        s.categories.create("region", "Region")
        s.categories.create("north", "North", parent="region")


def test_categories_form_a_tree_of_paths_and_tags_are_free(
    crm: pycrm.CRM, industries: None
) -> None:
    with system(crm) as s:
        tree = s.categories.tree("industry")
        machinery = s.categories.by_path("industry/manufacturing/machinery")
        parent = s.categories.by_path("industry/manufacturing")
    assert [c.path for c in tree] == [
        "industry",
        "industry/manufacturing",
        "industry/manufacturing/machinery",
        "industry/manufacturing/textiles",
        "industry/retail",
    ]
    assert (machinery.taxonomy, machinery.parent_id, machinery.name) == (
        "industry",
        parent.id,
        "Machinery",
    )
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.categories.create("retail", "Again", parent="industry")),
        (NotFound, lambda s: s.categories.create("x", "X", parent="industry/nope")),
        (ValidationError, lambda s: s.categories.create("Bad Key", "X")),
        (ValidationError, lambda s: s.categories.create("ok", "  ")),
        (NotFound, lambda s: s.categories.by_path("industry/manu")),
    )
    assert [getattr(e, "field", None) for e in errors[:4]] == ["key", None, "key", "name"]
    with system(crm) as s:
        acme = s.customers.create("Acme", tags=["VIP", "Trade Fair 2026", "vip"])
        s.customers.create("Bolt", tags=["prospect"])
    assert acme.tags == ("VIP", "Trade Fair 2026"), "tags are free text, kept as first given"
    with system(crm) as s:
        assert names(s.customers.search(tag="vip")) == ["Acme"]
        assert names(s.customers.search(tag="trade  fair 2026")) == ["Acme"]
        assert segment(s, {"field": "tag", "op": "any", "value": ["prospect", "x"]}) == ["Bolt"]


def test_a_category_filter_finds_the_category_and_everything_under_it(
    crm: pycrm.CRM, industries: None
) -> None:
    with system(crm) as s:
        bolt = s.customers.create("Bolt AG", categories=["industry/manufacturing/machinery"])
        s.customers.create("Weave Ltd", categories=["industry/manufacturing/textiles"])
        s.customers.create("Shop Inc", categories=["industry/retail", "region/north"])
        s.customers.create("Plant Co", categories=["industry/manufacturing"])
        s.customers.create("Nowhere")
        acme = s.customers.create("Acme")
        s.contacts.create("Ada Berg", customer_id=acme.id, categories=["region/north"])
        s.leads.capture(
            "Lea", source="web", email="lea@x.example", categories=["industry/manufacturing"]
        )
    with system(crm) as s:

        def under(path: str) -> list[str]:
            return names(s.customers.search(category=path))

        assert under("industry/manufacturing") == ["Bolt AG", "Plant Co", "Weave Ltd"]
        assert under("industry/manufacturing/machinery") == ["Bolt AG"]
        assert under("industry") == ["Bolt AG", "Plant Co", "Shop Inc", "Weave Ltd"]
        assert under("region") == ["Shop Inc"]
        assert names(s.customers.search(category="industry", text="bolt")) == ["Bolt AG"]
        assert names(s.contacts.search(category="region")) == ["Ada Berg"]
        assert names(s.leads.search(category="industry")) == ["Lea"]
        rule = {"field": "category", "op": "under", "value": "industry/manufacturing"}
        assert segment(s, rule) == ["Bolt AG", "Plant Co", "Weave Ltd"]
        s.customers.update(bolt.id, categories=["industry/retail"])
    with system(crm) as s:
        assert names(s.customers.search(category="industry/manufacturing")) == [
            "Plant Co",
            "Weave Ltd",
        ]
        assert names(s.customers.search(category="industry/retail")) == ["Bolt AG", "Shop Inc"]
    errors = refused(
        crm,
        crm.system_actor,
        (NotFound, lambda s: s.customers.search(category="industry/manu")),
        (ValidationError, lambda s: s.customers.create("X", categories=["industry/mining"])),
        (ValidationError, lambda s: s.customers.create("X", categories="industry")),
        (ValidationError, lambda s: s.customers.update(bolt.id, categories=["nope"])),
    )
    assert [getattr(e, "field", None) for e in errors[1:]] == [
        "categories[0]",
        "categories",
        "categories[0]",
    ]


# -- documents --------------------------------------------------------------------------


@pytest.fixture
def docs(connect_crm: ConnectFn, tmp_path: Path) -> pycrm.CRM:
    """A CRM whose blobs are files in the test's own directory (never ./pycrm-files)."""
    return connect_crm(default_region="DE", blob_store=FileBlobStore(tmp_path / "blobs"))


def test_an_attached_document_keeps_its_metadata_and_bytes(
    docs: pycrm.CRM, fake_clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = docs
    data = b"%PDF-1.4 quote"
    with system(crm) as s:
        acme = s.customers.create("Acme")
        doc = s.documents.attach("customer", acme.id, "Quote 2026.pdf", data)
        note = s.documents.attach("customer", acme.id, "notes", b"hi", content_type="text/markdown")
    assert (doc.record_type, doc.record_id, doc.name) == ("customer", acme.id, "Quote 2026.pdf")
    assert (doc.content_type, doc.size, doc.number, doc.latest) == (
        "application/pdf",
        len(data),
        1,
        True,
    )
    assert doc.checksum == hashlib.sha256(data).hexdigest()
    assert (doc.created_by, doc.created_at) == ("system", fake_clock.now())
    assert note.content_type == "text/markdown"
    blob = tmp_path / "blobs" / doc.blob_key[:2] / doc.blob_key[2:4] / doc.blob_key
    assert blob.read_bytes() == data, "bytes live in the blob store, not the database"
    with system(crm) as s:
        assert s.documents.read(doc.id) == data
        assert [d.name for d in s.documents.list("customer", acme.id)] == [
            "Quote 2026.pdf",
            "notes",
        ]
        assert s.documents.get(doc.id) == doc
    monkeypatch.setattr("pycrm.services.documents.MAX_SIZE", 8)
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.documents.attach("customer", acme.id, "a", "x")),  # type: ignore[arg-type]
        (ValidationError, lambda s: s.documents.attach("customer", acme.id, "a", b"123456789")),
        (ValidationError, lambda s: s.documents.attach("customer", acme.id, "  ", b"x")),
        (ValidationError, lambda s: s.documents.attach("planet", acme.id, "a.txt", b"x")),
        (NotFound, lambda s: s.documents.attach("customer", "nope", "a.txt", b"x")),
        (NotFound, lambda s: s.documents.new_version("no-such-key", b"x")),
        (NotFound, lambda s: s.documents.versions("no-such-key")),
        (NotFound, lambda s: s.documents.read("no-such-id")),
    )
    assert [getattr(e, "field", None) for e in errors[:4]] == [
        "data",
        "data",
        "name",
        "record_type",
    ]


def test_new_versions_keep_the_old_ones_readable(docs: pycrm.CRM, fake_clock: FakeClock) -> None:
    crm = docs
    with system(crm) as s:
        acme = s.customers.create("Acme")
        v1 = s.documents.attach("customer", acme.id, "quote.pdf", b"v1")
    fake_clock.advance(timedelta(hours=1))
    with system(crm) as s:
        v2 = s.documents.new_version(v1.document_key, b"version two")
        v3 = s.documents.new_version(v1.document_key, b"v3", name="quote-final.txt")
    assert (v2.number, v2.document_key, v2.name, v2.size) == (2, v1.document_key, "quote.pdf", 11)
    assert (v3.number, v3.name, v3.content_type) == (3, "quote-final.txt", "text/plain")
    assert v2.created_at == fake_clock.now()
    with system(crm) as s:
        versions = s.documents.versions(v1.document_key)
        assert [(d.number, d.latest) for d in versions] == [(1, False), (2, False), (3, True)]
        assert [s.documents.read(d.id) for d in versions] == [b"v1", b"version two", b"v3"]
        assert [d.checksum for d in versions] == [
            hashlib.sha256(b).hexdigest() for b in (b"v1", b"version two", b"v3")
        ]
        assert [d.id for d in s.documents.list("customer", acme.id)] == [v3.id]


def test_records_are_archived_or_merged_never_orphaning_files_and_lost_bytes_are_reported(
    docs: pycrm.CRM,
) -> None:
    crm = docs
    with system(crm) as s:
        acme = s.customers.create("Acme", emails=["info@acme.example"])
        dup = s.customers.create("Acme Ltd", emails=["info@acme.example"], on_duplicate="allow")
        doc = s.documents.attach("customer", dup.id, "a.txt", b"A")
        v2 = s.documents.new_version(doc.document_key, b"B")
        other = s.documents.attach("customer", acme.id, "b.txt", b"other")
        s.customers.archive(dup.id)
    with system(crm) as s:
        assert [d.id for d in s.documents.list("customer", dup.id)] == [v2.id]
        assert s.documents.orphans() == []
        s.dedupe.merge(acme.id, [dup.id])
    with system(crm) as s:
        assert {d.id for d in s.documents.list("customer", acme.id)} == {v2.id, other.id}
        assert {d.record_id for d in s.documents.versions(doc.document_key)} == {acme.id}
        assert s.documents.orphans() == []
        assert s.documents.read(doc.id) == b"A"
    crm.blob_store.put(other.blob_key, b"tampered")
    with system(crm) as s, pytest.raises(StorageError, match="checksum"):
        s.documents.read(other.id)
    crm.blob_store.delete(other.blob_key)
    with system(crm) as s:
        assert [d.id for d in s.documents.orphans()] == [other.id]
        with pytest.raises(NotFound):
            s.documents.read(other.id)


def test_merging_keeps_the_duplicates_custom_values_the_survivor_lacks() -> None:
    crm = memory_crm()
    with system(crm) as s:
        s.fields.define("customer", "tier", "choice", choices=["gold"])
        acme = s.customers.create("Acme", emails=["info@acme.example"])
        dup = s.customers.create(
            "Acme Ltd", emails=["info@acme.example"], on_duplicate="allow", custom={"tier": "gold"}
        )
        merged = s.dedupe.merge(acme.id, [dup.id]).survivor
    assert merged.custom == {"tier": "gold"}


def setup_deal_docs(crm: pycrm.CRM) -> dict[str, str]:
    """Sam's deal with a document; Sue (sales, not the owner); Hal (no read grant on deals)."""
    with system(crm) as s:
        s.org.create_department("warehouse", "Warehouse")
        ids = {
            "sam": s.org.create_user("Sam", "sam@corp.example", "sales").id,
            "sue": s.org.create_user("Sue", "sue@corp.example", "sales").id,
            "hal": s.org.create_user("Hal", "hal@corp.example", "warehouse").id,
        }
        acme = s.customers.create("Acme")
        deal = s.deals.create("Press", customer_id=acme.id, amount=eur("10"), owner_id=ids["sam"])
        ids["deal"] = deal.id
        doc = s.documents.attach("deal", deal.id, "offer.pdf", b"offer")
        ids["doc"], ids["key"] = doc.id, doc.document_key
    return ids


def test_document_access_follows_the_records_permissions(docs: pycrm.CRM) -> None:
    crm = docs
    ids = setup_deal_docs(crm)
    with crm.session(actor=ids["sue"]) as s:
        assert s.documents.read(ids["doc"]) == b"offer", "who may read the deal reads its files"
        assert [d.id for d in s.documents.versions(ids["key"])] == [ids["doc"]]
        assert [d.id for d in s.documents.list("deal", ids["deal"])] == [ids["doc"]]
    refused(
        crm,
        ids["sue"],
        (PermissionDenied, lambda s: s.documents.attach("deal", ids["deal"], "x.txt", b"x")),
        (PermissionDenied, lambda s: s.documents.new_version(ids["key"], b"x")),
    )
    refused(
        crm,
        ids["hal"],
        (NotFound, lambda s: s.documents.read(ids["doc"])),
        (NotFound, lambda s: s.documents.list("deal", ids["deal"])),
        (NotFound, lambda s: s.documents.versions(ids["key"])),
        (NotFound, lambda s: s.documents.attach("deal", ids["deal"], "x.txt", b"x")),
        (PermissionDenied, lambda s: s.documents.orphans()),
    )


def test_who_may_update_a_record_may_attach_documents_to_it() -> None:
    crm = memory_crm()
    ids = setup_deal_docs(crm)
    with crm.session(actor=ids["sam"]) as s:
        doc = s.documents.attach("deal", ids["deal"], "spec.txt", b"spec")
        v2 = s.documents.new_version(ids["key"], b"offer v2")
    assert doc.created_by == ids["sam"]
    assert v2.number == 2


# -- blob stores ------------------------------------------------------------------------


def test_sqlite_files_keep_document_bytes_in_a_directory_beside_the_database(
    tmp_path: Path,
) -> None:
    crm = pycrm.connect(f"sqlite:///{tmp_path / 'crm.db'}", clock=FakeClock())
    try:
        assert isinstance(crm.blob_store, FileBlobStore)
        assert crm.blob_store.root == tmp_path / "crm.db.files"
        with system(crm) as s:
            acme = s.customers.create("Acme")
            doc = s.documents.attach("customer", acme.id, "a.bin", b"\x00\x01")
        assert (tmp_path / "crm.db.files").is_dir()
        assert crm.blob_store.get(doc.blob_key) == b"\x00\x01"
    finally:
        crm.close()
    assert isinstance(pycrm.connect("memory://").blob_store, MemoryBlobStore)


@pytest.mark.parametrize("kind", ["memory", "files"])
def test_blob_stores_put_get_exists_and_delete(kind: str, tmp_path: Path) -> None:
    store: MemoryBlobStore | FileBlobStore = (
        MemoryBlobStore() if kind == "memory" else FileBlobStore(tmp_path)
    )
    key = hashlib.sha256(b"x").hexdigest()
    assert not store.exists(key)
    with pytest.raises(NotFound):
        store.get(key)
    store.put(key, b"x")
    store.put(key, b"x")
    assert store.exists(key)
    assert store.get(key) == b"x"
    store.delete(key)
    store.delete(key)
    assert not store.exists(key)
    if isinstance(store, FileBlobStore):
        assert not list(tmp_path.rglob(".tmp-*")), "writes leave no temporary files"
        with pytest.raises(StorageError):
            store.put("../escape", b"x")


# -- analytics filters -----------------------------------------------------------------------


def test_analytics_figures_can_be_filtered_by_custom_fields(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        s.fields.define("lead", "fair", "choice", choices=["hannover", "cebit"])
        s.fields.define("deal", "line", "choice", choices=["presses", "lathes"])
        s.fields.define("ticket", "plant", "text")
        for name, fair in (("Ann", "hannover"), ("Ben", "hannover"), ("Cem", "cebit")):
            s.leads.capture(name, source="fair", custom={"fair": fair})
        acme = s.customers.create("Acme")
        for title, line, amount in (("Big press", "presses", "900"), ("Lathe", "lathes", "100")):
            s.deals.create(
                title,
                customer_id=acme.id,
                amount=eur(amount),
                expected_close=date(2026, 6, 30),
                custom={"line": line},
            )
        s.tickets.open("Leak", channel="phone", customer_id=acme.id, custom={"plant": "Ulm"})
        s.tickets.open("Noise", channel="phone", customer_id=acme.id)
    with system(crm) as s:
        # Two of the three leads came from Hannover; one of the two deals sells presses.
        assert [r.captured for r in s.analytics.funnel(custom={"fair": "hannover"})] == [2]
        assert [r.captured for r in s.analytics.funnel()] == [3]
        forecast = s.analytics.forecast(custom={"line": "presses"})
        assert [(r.period, r.pipeline) for r in forecast] == [("2026-06", eur("900"))]
        assert [r.tickets for r in s.analytics.service(custom={"plant": "Ulm"})] == [1]
        with pytest.raises(ValidationError) as raised:
            s.analytics.funnel(custom={"fair": "ces"})
        assert raised.value.field == "custom.fair"


def test_analytics_refuse_a_filter_on_a_field_the_actor_may_not_read() -> None:
    crm = memory_crm()
    banking = setup_banking(crm)
    with system(crm) as s:
        s.fields.define("deal", "margin", "decimal", readable_by=["finance"])
    with crm.session(actor=banking["sam"]) as s, pytest.raises(PermissionDenied):
        s.analytics.forecast(custom={"margin": "0.3"})
