"""The filter language's own algebra: ``simplify`` keeps every answer of ``evaluate``.

Pure domain tests: no backend. The adapters compile what ``simplify`` returns,
so a fold that changed one answer would change what every backend finds.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycrm.domain.query import (
    And,
    Contains,
    Eq,
    Filter,
    In,
    IsNull,
    Not,
    Or,
    Range,
    evaluate,
    simplify,
)

TEXTS = ("customer", "deal", "task", "")
records = st.builds(
    SimpleNamespace,
    id=st.just("r1"),
    kind=st.sampled_from(TEXTS),
    owner=st.sampled_from(("ana", "ben", None)),
    size=st.one_of(st.none(), st.integers(0, 3)),
)
_leaf = st.one_of(
    st.builds(Eq, st.sampled_from(["kind", "owner"]), st.sampled_from((*TEXTS, "ana", None))),
    st.builds(Eq, st.just("size"), st.integers(0, 3)),
    st.builds(In, st.sampled_from(["kind", "owner"]), st.lists(st.sampled_from((*TEXTS, "ben")))),
    st.builds(Range, st.just("size"), st.sampled_from([None, 1]), st.sampled_from([None, 2])),
    st.builds(IsNull, st.sampled_from(["owner", "size"])),
    st.builds(Contains, st.just("kind"), st.sampled_from(["de", "a", "x"])),
)
filters = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(And, st.lists(inner, min_size=1, max_size=4).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=1, max_size=4).map(tuple)),
        st.builds(Not, inner),
    ),
    max_leaves=12,
)


@given(where=filters, population=st.lists(records, min_size=1, max_size=12))
def test_simplify_passes_exactly_the_records_its_filter_passes(
    where: Filter, population: list[SimpleNamespace]
) -> None:
    simpler = simplify(where)
    for record in population:
        assert evaluate(record, simpler) == evaluate(record, where), (record, simpler)


def size(where: Filter | None) -> int:
    match where:
        case And(parts) | Or(parts):
            return 1 + sum(size(p) for p in parts)
        case Not(part):
            return 1 + size(part)
    return 0 if where is None else 1


def test_a_condition_for_every_kind_shrinks_to_the_kind_the_query_pins() -> None:
    # How a permission filter meets a query: the policy lists a case per
    # record type; the query asks for one type.
    policy = Or(
        (
            In("kind", ("customer", "deal")),
            And((Eq("kind", "task"), Eq("owner", "ana"))),
        )
    )
    customer = simplify(And((Eq("kind", "customer"), policy)))
    assert customer == Eq("kind", "customer")
    task = simplify(And((And((Eq("kind", "task"), Eq("size", 1))), policy)))
    assert task == And((Eq("kind", "task"), Eq("size", 1), Eq("owner", "ana")))
    assert size(task) < size(And((Eq("kind", "task"), Eq("size", 1), policy)))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (And((Eq("kind", "deal"), Eq("kind", "task"))), In("id", ())),  # pinned twice
        (And((Eq("kind", "deal"), Not(In("kind", ("deal",))))), In("id", ())),
        (
            Or((Eq("owner", "ana"), Not(IsNull("owner")))),
            Or((Eq("owner", "ana"), Not(IsNull("owner")))),
        ),
        (And((Eq("kind", "deal"), Or((Eq("kind", "deal"), Eq("owner", "x"))))), Eq("kind", "deal")),
        (Eq("kind", None), Eq("kind", None)),  # None pins nothing
        (And((Eq("size", 1), Eq("size", 2))), And((Eq("size", 1), Eq("size", 2)))),  # numbers too
    ],
    ids=["two-texts", "not-in", "no-fold-of-isnull", "or-decided", "none", "numbers-kept"],
)
def test_simplify_folds_what_the_pinned_texts_decide_and_nothing_else(
    where: Filter, expected: Filter | None
) -> None:
    assert simplify(where) == expected
