"""Property tests for the matcher's comparison functions, normalisers and model."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pycountry
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pycrm.domain.contact_points import Address, ContactPoint, PointKind
from pycrm.domain.customers import Contact
from pycrm.domain.normalise import email_key, name_parts, phonetic_key, sound_key, street_key
from pycrm.matching.comparisons import (
    compare,
    date_level,
    identifier_level,
    name_levels,
    postcode_level,
    token_level,
)
from pycrm.matching.countries import country_code
from pycrm.matching.features import features
from pycrm.matching.model import default_model, fit, probability, weight_of

NOW = datetime(2026, 1, 1, tzinfo=UTC)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöü", min_size=1, max_size=12)
digits = st.text(alphabet="0123456789", min_size=4, max_size=8)


def contact(name: str, **fields: object) -> Contact:
    return Contact(
        id=f"c{abs(hash((name, repr(fields))))}",
        tenant_id="t",
        created_at=NOW,
        created_by="system",
        updated_at=NOW,
        updated_by="system",
        name=name,
        **fields,  # type: ignore[arg-type]
    )


people = st.builds(
    lambda first, last, email, phone, street, number, post, born: contact(
        f"{first} {last}",
        contact_points=(
            ContactPoint(PointKind.EMAIL, f"{email}@example.com"),
            ContactPoint(PointKind.PHONE, f"+4930{phone}"),
        ),
        address=Address(line1=f"{street} {number}", postcode=post, city="Berlin", country="DE"),
        custom={"birth_date": born.isoformat()},
    ),
    words,
    words,
    words,
    digits,
    words,
    st.integers(1, 200),
    digits,
    st.dates(date(1920, 1, 1), date(2010, 1, 1)),
)

IDENTIFYING = (("birth_date", "date"),)


# -- comparison functions --------------------------------------------------------------


@given(words, words)
def test_token_levels_are_symmetric_and_exact_only_for_equal_tokens(a: str, b: str) -> None:
    assert token_level(a, b) == token_level(b, a)
    assert token_level(a, a) == 3
    assert (token_level(a, b) == 3) == (a == b)
    assert 0 <= token_level(a, b) <= 3


@given(words, words, words, words)
def test_name_levels_do_not_depend_on_the_order_of_the_records(
    ga: str, sa: str, gb: str, sb: str
) -> None:
    one = name_levels(ga, sa, gb, sb)[:2]
    other = name_levels(gb, sb, ga, sa)[:2]
    assert one == other


@given(words, words)
def test_swapped_given_name_and_surname_still_match_exactly(given_: str, surname: str) -> None:
    assert name_levels(given_, surname, surname, given_)[:2] == (3, 3)


@given(people, people)
@settings(max_examples=60)
def test_compare_is_symmetric(a: Contact, b: Contact) -> None:
    fa, fb = features(a, dict(IDENTIFYING)), features(b, dict(IDENTIFYING))
    assert compare(fa, fb, IDENTIFYING)[0] == compare(fb, fa, IDENTIFYING)[0]


@given(people)
@settings(max_examples=60)
def test_a_record_compared_with_itself_agrees_exactly_everywhere_it_has_values(
    a: Contact,
) -> None:
    fa = features(a, dict(IDENTIFYING))
    levels, _ = compare(fa, fa, IDENTIFYING)
    comparisons = default_model("contact", dict(IDENTIFYING)).comparisons
    for level, comparison in zip(levels, comparisons, strict=True):
        top = len(comparison.levels) - 1
        # A phone agrees as "same phone" or, for a mobile, "same mobile".
        exact = (top - 1, top) if comparison.name == "phone" else (top,)
        assert level == -1 or level in exact, comparison.name


@given(st.dates(date(1900, 1, 1), date(2030, 12, 31)))
def test_dates_exact_and_with_day_and_month_swapped(day: date) -> None:
    text = day.strftime("%Y%m%d")
    assert date_level(text, text) == 3
    swapped = day.strftime("%Y%d%m")
    if swapped != text:
        assert date_level(text, swapped) == 2
    later = (day + timedelta(days=400)).strftime("%Y%m%d")
    assert date_level(text, later) < 3
    assert date_level(text, "") == -1


@given(digits, digits)
@example("0120", "0200")  # two neighbours differ but are no swap: one way read as a slip
@example("1234", "1243")  # a true swap: one slip both ways
def test_postcode_and_identifier_levels_are_symmetric(a: str, b: str) -> None:
    assert postcode_level(a, b) == postcode_level(b, a)
    assert identifier_level(a, b) == identifier_level(b, a)
    assert postcode_level(a, a) == 2
    assert identifier_level(a, a) == 2


# -- normalisers -----------------------------------------------------------------------


@given(st.sampled_from(list(pycountry.countries)))
@settings(deadline=None)  # the first call builds the table
def test_every_country_code_and_name_gives_its_alpha_2(country: object) -> None:
    code = getattr(country, "alpha_2")  # noqa: B009
    for written in (code, code.lower(), getattr(country, "alpha_3"), getattr(country, "name")):  # noqa: B009
        assert country_code(written) == code
    assert country_code(code) == code  # idempotent


@pytest.mark.parametrize(
    ("written", "code"),
    [("Germany", "DE"), ("DEU", "DE"), ("Deutschland", "DE"), ("United States", "US"),
     ("U.S.A.", "US"), ("UK", "GB"), ("Österreich", "AT"), ("Nederland", "NL"), ("德国", "DE")],
)  # fmt: skip
def test_common_country_spellings(written: str, code: str) -> None:
    assert country_code(written) == code


@given(st.text(alphabet="abcdefghijklmnop", min_size=3, max_size=10), st.data())
def test_gmail_dots_case_tags_and_googlemail_fold_to_one_key(
    local: str, data: st.DataObject
) -> None:
    dotted = "".join(
        ch + ("." if data.draw(st.booleans()) and i < len(local) - 1 else "")
        for i, ch in enumerate(local)
    )
    domain = data.draw(st.sampled_from(["gmail.com", "googlemail.com", "GMAIL.com"]))
    tag = data.draw(st.sampled_from(["", "+news", "+x1"]))
    assert email_key(f"{dotted.upper()}{tag}@{domain}") == f"{local}@gmail.com"
    assert email_key(email_key(f"{dotted}@{domain}")) == email_key(f"{dotted}@{domain}")


@given(words, st.integers(1, 999), st.sampled_from([("Street", "St"), ("Gardens", "Gdns"),
                                                   ("Road", "Rd."), ("Avenue", "Ave")]))  # fmt: skip
def test_street_abbreviations_give_one_key(word: str, number: int, kind: tuple[str, str]) -> None:
    full, short = kind
    assert street_key(f"{number} {word} {full}") == street_key(f"{number} {word.upper()} {short}")
    assert street_key(f"{word} {full} {number}")[0] == str(number)


@given(words, words)
def test_name_parts_and_sounds_ignore_order_case_and_commas(first: str, last: str) -> None:
    assert name_parts(f"{first} {last}") == name_parts(f"{last.upper()}, {first}")
    assert sound_key(f"{first} {last}") == sound_key(f"{last} {first}")
    assert phonetic_key(first) == phonetic_key(first.upper())


# -- the model --------------------------------------------------------------------------


@given(st.floats(-50, 50), st.floats(-50, 50))
def test_probability_grows_with_the_match_weight_and_inverts(a: float, b: float) -> None:
    if a < b:
        assert probability(a) <= probability(b)
    p = probability(a)
    if 1e-9 < p < 1 - 1e-9:
        assert math.isclose(weight_of(p), a, abs_tol=1e-4)


@given(people, people)
@settings(max_examples=40)
def test_an_explanation_adds_up_to_the_match_weight(a: Contact, b: Contact) -> None:
    scorer = default_model("contact", dict(IDENTIFYING)).scorer()
    fa, fb = features(a, dict(IDENTIFYING)), features(b, dict(IDENTIFYING))
    scored = scorer.score(fa, fb)
    assert math.isclose(sum(w.weight for w in scored.weights), scored.weight, abs_tol=0.01)
    assert scored.weights[0].comparison == "prior"


@given(st.lists(people, min_size=25, max_size=40))
@settings(max_examples=10, deadline=None)
def test_fitted_parameters_are_probabilities_and_survive_storage(records: list[Contact]) -> None:
    found = [features(r, dict(IDENTIFYING)) for r in records]
    pairs = [(i, i + 1) for i in range(len(found) - 1)]
    model = fit(default_model("contact", dict(IDENTIFYING)), found, pairs)
    for c in model.comparisons:
        for values in (c.m, c.u, c.h or c.m):
            assert all(0 < v <= 1 for v in values)
            assert math.isclose(sum(values), 1, abs_tol=1e-6)
    assert 0 < model.prior < 1
    assert type(model).from_json(model.to_json()) == model
