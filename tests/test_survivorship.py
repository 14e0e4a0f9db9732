"""Survivorship: which values a merge keeps (``pycrm.domain.merging.survive``), without storage.

``records[0]`` is the survivor. Without a rule each field keeps the
survivor's value, or, where it has none (None, "" or an empty tuple), the
most recently updated other record's; custom values merge key by key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

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
