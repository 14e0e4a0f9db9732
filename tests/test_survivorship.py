"""Survivorship: which values a merge keeps (``pycrm.domain.merging.survive``), without storage.

``records[0]`` is the survivor. Without a rule each field keeps the
survivor's value, or, where it has none (None, "" or an empty tuple), the
most recently updated other record's; custom values merge key by key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pycrm.domain.contact_points import ContactPoint, PointKind
from pycrm.domain.customers import Customer
from pycrm.domain.merging import Pick, survive
from pycrm.errors import ValidationError

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def customer(id: str, *, age_days: int = 0, **fields: Any) -> Customer:
    """A customer last updated ``age_days`` before T0."""
    at = T0 - timedelta(days=age_days)
    return Customer(
        id=id,
        tenant_id="default",
        created_at=at,
        created_by="system",
        updated_at=at,
        updated_by="system",
        **{"name": f"Customer {id}", **fields},
    )


@pytest.mark.parametrize("empty", [None, "", ()], ids=["none", "empty-text", "empty-tuple"])
def test_an_empty_survivor_value_is_filled_from_the_others(empty: Any) -> None:
    field = "categories" if empty == () else "website"
    filled = ("industry/tools",) if empty == () else "acme.example"
    survivor = customer("a", **{field: empty})
    other = customer("b", age_days=3, **{field: filled})
    assert survive([survivor, other])[field] == filled


def test_most_complete_takes_the_fuller_record_even_when_older() -> None:
    survivor = customer("a", website="new.example")  # most recent, least complete
    sparse = customer("b", age_days=1, website="sparse.example")
    full = customer(
        "c", age_days=30, website="full.example", industry="tools", size=12, region="north"
    )
    values = survive([survivor, sparse, full], {"website": "most_complete"})
    assert values["website"] == "full.example"


def test_custom_values_merge_key_by_key_the_survivors_first() -> None:
    survivor = customer("a", custom={"tier": "gold", "note": ""})
    newer = customer("b", age_days=1, custom={"tier": "silver", "note": "call first", "erp": "7"})
    older = customer("c", age_days=9, custom={"erp": "3", "since": "2019"})
    merged = survive([survivor, newer, older])["custom"]
    assert merged == {"tier": "gold", "note": "call first", "erp": "7", "since": "2019"}


def test_a_rule_for_an_unknown_field_names_it() -> None:
    with pytest.raises(ValidationError) as raised:
        survive([customer("a"), customer("b")], {"shoe_size": "survivor", "zzz": "survivor"})
    assert (raised.value.field, raised.value.value) == ("rules", "shoe_size")
    assert raised.value.reason


@pytest.mark.parametrize(
    ("rule", "offending"),
    [(Pick("nobody"), "nobody"), ("loudest", "loudest"), (42, 42)],
    ids=["pick-of-another-record", "unknown-name", "not-a-rule"],
)
def test_a_bad_rule_names_the_field_and_the_offending_rule(rule: Any, offending: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        survive([customer("a"), customer("b")], {"website": rule})
    assert raised.value.field == "rules.website"
    assert raised.value.value == offending
    assert raised.value.reason


def _points(*values: str, primary: str | None = None) -> tuple[ContactPoint, ...]:
    return tuple(
        ContactPoint(
            PointKind.PHONE if v.startswith("+") else PointKind.EMAIL, v, primary=v == primary
        )
        for v in values
    )


def test_taking_a_duplicates_phones_keeps_the_survivors_emails_and_drops_its_phones() -> None:
    survivor = customer("a", contact_points=_points("a@a.example", "+49301111111"))
    other = customer("b", contact_points=_points("b@b.example", "+49302222222", "+49303333333"))
    points = survive([survivor, other], {"phones": Pick("b")})["contact_points"]
    assert [p.value for p in points] == [
        "a@a.example",
        "b@b.example",  # emails: the union, as without a rule
        "+49302222222",
        "+49303333333",
    ]


def test_each_kind_of_contact_point_follows_its_own_rule() -> None:
    survivor = customer("a", contact_points=_points("a@a.example", "+49301111111"))
    other = customer("b", age_days=5, contact_points=_points("b@b.example", "+49302222222"))
    values = survive([survivor, other], {"emails": Pick("b"), "phones": "survivor"})
    assert [p.value for p in values["contact_points"]] == ["b@b.example", "+49301111111"]


def test_a_kind_the_chosen_record_lacks_comes_from_the_next_in_the_rules_order() -> None:
    survivor = customer("a", contact_points=_points("a@a.example", "+49301111111"))
    newest = customer("b", contact_points=_points("b@b.example"))
    values = survive([newest, survivor], {"phones": "most_recent"})
    assert [p.value for p in values["contact_points"]] == [
        "b@b.example",
        "a@a.example",
        "+49301111111",
    ]


def test_a_rule_on_contact_points_still_takes_every_point_of_one_record() -> None:
    survivor = customer("a", contact_points=_points("a@a.example", "+49301111111"))
    other = customer("b", contact_points=_points("b@b.example"))
    values = survive([survivor, other], {"contact_points": Pick("b")})
    assert [p.value for p in values["contact_points"]] == ["b@b.example"]


def test_after_a_merge_one_email_and_one_phone_at_most_are_primary() -> None:
    survivor = customer(
        "a", contact_points=_points("a@a.example", "x@a.example", primary="x@a.example")
    )
    other = customer("b", contact_points=_points("b@b.example", primary="b@b.example"))
    points = survive([survivor, other])["contact_points"]
    assert [p.value for p in points if p.primary] == ["x@a.example"]


def test_a_kind_rule_naming_another_record_is_refused() -> None:
    survivor = customer("a")
    with pytest.raises(ValidationError) as info:
        survive([survivor, customer("b")], {"phones": Pick("zzz")})
    assert info.value.field == "rules.phones"
