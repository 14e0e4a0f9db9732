"""Comparison levels: how alike two records are, field by field.

Each comparison maps a pair of :class:`~pycrm.matching.features.Features` to a
level: ``-1`` when either side has no value (the field says nothing), ``0``
when the values disagree, and higher levels for closer agreement, the highest
being an exact match. The Fellegi–Sunter model gives every level of every
comparison its own match weight. Fuzzy levels use rapidfuzz's Jaro–Winkler
and Levenshtein distances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

from pycrm.matching.features import Features

__all__ = [
    "Comparison",
    "comparisons_for",
    "compare",
    "date_level",
    "email_level",
    "identifier_level",
    "name_levels",
    "postcode_level",
    "token_level",
]

#: The values of exact name matches when there are none (shared, never written to).
_NO_VALUES: dict[str, str] = {}

_jw = JaroWinkler.normalized_similarity
_lev = Levenshtein.distance
_osa = OSA.distance


@attrs.frozen
class Comparison:
    """One compared field: its levels and the default m and u probability of each."""

    name: str
    """``first_name``, ``surname``, ``email``, ``street``, a custom field key, …"""
    field: str
    """The record field it explains, for :class:`~pycrm.domain.matching.Evidence`:
    ``name``, ``email``, ``phone``, ``address``, ``company``, ``website`` or a custom key."""
    levels: tuple[str, ...]
    """Level labels, from ``0`` (disagree) up to the exact match."""
    m: tuple[float, ...]
    """Default P(level | same record), per level."""
    u: tuple[float, ...]
    """Default P(level | different records), per level."""
    place: bool = False
    """Shared by people who live or work together (surname, address, landline):
    such agreement cannot outvote a disagreement on a person's own fields."""
    tf: str | None = None
    """Term-frequency adjustment of the exact level: ``names`` (from the fitted
    name-frequency table) or ``shared`` (from how many records hold the value)."""
    h: tuple[float, ...] | None = None
    """P(level | different people of one place), for ``place`` comparisons (None: as m)."""
    most_differ: float = 1.0
    """The most a fit may make of m(differ): one person's first name or birth date rarely
    differs outright, so a fitted "match" class that says otherwise has found something
    else (a household, an office) and is held back."""


def token_level(a: str, b: str) -> int:
    """0 differ, 1 alike (Jaro–Winkler ≥ 0.8 or an initial), 2 close (≥ 0.92 or one slip), 3 exact.

    A slip is one letter added, dropped, changed or swapped with its neighbour
    ("sam" / "sma"), which Jaro–Winkler misses in short names.
    """
    if a == b:
        return 3
    if len(a) == 1 or len(b) == 1:
        return 1 if a[0] == b[0] else 0
    sim = _jw(a, b)
    if sim >= 0.92 or (min(len(a), len(b)) >= 3 and _osa(a, b, score_cutoff=1) <= 1):
        return 2
    return 1 if sim >= 0.8 else 0


def name_levels(ga: str, sa: str, gb: str, sb: str) -> tuple[int, int, str, str]:
    """Levels of the given names and surnames, straight or swapped, whichever fits better.

    Returns ``(given level, surname level, given value, surname value)``; a
    value is the matched token (for term frequencies). A one-word name is
    compared with whichever of the other's names it fits.
    """
    if not (ga or sa) or not (gb or sb):
        return -1, -1, "", ""
    if (ga, sa) > (gb, sb):  # the same answer whichever record comes first
        ga, sa, gb, sb = gb, sb, ga, sa
    if ga and gb:
        straight = (token_level(ga, gb), token_level(sa, sb))
        if straight[0] + straight[1] >= 5:
            return straight[0], straight[1], ga, sa
        swapped = (token_level(ga, sb), token_level(sa, gb))
        if swapped[0] + swapped[1] > straight[0] + straight[1]:
            return swapped[0], swapped[1], ga, sa
        return straight[0], straight[1], ga, sa
    one, (other_g, other_s) = (sa, (gb, sb)) if not ga else (sb, (ga, sa))
    as_surname = token_level(one, other_s)
    as_given = token_level(one, other_g) if other_g else -1
    if as_given > as_surname:
        return as_given, -1, one, ""
    return -1, as_surname, "", one


def email_level(a: Features, b: Features) -> int:
    """2 same mailbox, 1 same local part with a slip in the domain (gmail.con), 0 differ."""
    if not a.emails or not b.emails:
        return -1
    if a.emails & b.emails:
        return 2
    for la, da in a.email_parts:
        for lb, db in b.email_parts:
            if la == lb and len(la) >= 3 and _lev(da, db, score_cutoff=2) <= 2:
                return 1
            if da == db and len(la) >= 5 and _lev(la, lb, score_cutoff=1) <= 1:
                return 1
    return 0


def phone_level(a: Features, b: Features) -> int:
    """3 same mobile, 2 same other phone, 1 same last eight digits, 0 differ."""
    if not a.phones or not b.phones:
        return -1
    shared = a.phones & b.phones
    if shared:
        return 3 if shared & a.mobiles else 2
    tails = {p[-8:] for p in a.phones}
    return 1 if any(p[-8:] in tails for p in b.phones) else 0


def postcode_level(a: str, b: str) -> int:
    """2 exact, 1 one slip (an edit or two neighbours swapped), 0 differ."""
    if not a or not b:
        return -1
    if a == b:
        return 2
    if len(a) == len(b) and _lev(a, b, score_cutoff=2) <= 2:
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]  # a true swap, so the level is the same both ways
        ):
            return 1
    return 1 if abs(len(a) - len(b)) == 1 and _lev(a, b, score_cutoff=1) <= 1 else 0


def date_level(a: str, b: str) -> int:
    """Dates as digit strings: 3 exact, 2 one slip or day and month swapped, 1 two slips, 0."""
    if not a or not b:
        return -1
    if a == b:
        return 3
    if len(a) == len(b) == 8 and a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]:
        return 2
    distance = _lev(a, b, score_cutoff=2)
    if distance <= 1:
        return 2
    return 1 if distance == 2 else 0


def identifier_level(a: str, b: str) -> int:
    """2 exact, 1 one slip, 0 differ."""
    if not a or not b:
        return -1
    if a == b:
        return 2
    return 1 if _lev(a, b, score_cutoff=1) <= 1 else 0


def text_level(a: str, b: str, close: float = 0.9) -> int:
    """2 exact, 1 Jaro–Winkler ≥ ``close``, 0 differ."""
    if not a or not b:
        return -1
    if a == b:
        return 2
    return 1 if _jw(a, b) >= close else 0


def street_level(a: str, b: str) -> int:
    """Street words compared without spaces ("pridhamstreet"): 3 exact, 2 ≥ 0.92, 1 ≥ 0.8, 0."""
    if not a or not b:
        return -1
    a, b = a.replace(" ", ""), b.replace(" ", "")
    if a == b:
        return 3
    sim = _jw(a, b)
    if sim >= 0.92:
        return 2
    return 1 if sim >= 0.8 else 0


def number_level(a: str, b: str) -> int:
    """2 equal, 1 within 5%, 0 differ (non-numbers compared as text)."""
    if not a or not b:
        return -1
    if a == b:
        return 2
    try:
        x, y = float(a), float(b)
    except ValueError:
        return 0
    return 1 if abs(x - y) <= 0.05 * max(abs(x), abs(y)) else 0


def company_level(a: str, b: str) -> int:
    """Contacts: same customer (1) or not; leads and customers: company keys, 2 exact, 1 ≥ 0.9."""
    if not a or not b:
        return -1
    ida, idb = a.startswith("id:"), b.startswith("id:")
    if ida != idb:
        return -1
    if ida:
        return 2 if a == b else 0
    return text_level(a, b)


PERSON: tuple[Comparison, ...] = (
    Comparison("first_name", "name", ("differ", "alike", "close", "exact"),
               (0.03, 0.04, 0.08, 0.85), (0.902, 0.07, 0.02, 0.008), tf="names",
               most_differ=0.15),
    Comparison("surname", "name", ("differ", "alike", "close", "exact"),
               (0.03, 0.04, 0.08, 0.85), (0.9505, 0.04, 0.008, 0.0015), place=True, tf="names"),
    Comparison("email", "email", ("differ", "same mailbox, slip in one part", "same"),
               (0.35, 0.05, 0.6), (0.99997, 1e-5, 2e-5), tf="shared"),
    Comparison("phone", "phone", ("differ", "same last digits", "same phone", "same mobile"),
               (0.35, 0.05, 0.35, 0.25), (0.9997, 1e-4, 1.8e-4, 2e-5), place=True, tf="shared"),
    Comparison("street_number", "address", ("differ", "same"),
               (0.1, 0.9), (0.97, 0.03), place=True),
    Comparison("street", "address", ("differ", "alike", "close", "same"),
               (0.04, 0.04, 0.07, 0.85), (0.985, 0.012, 0.002, 0.001), place=True),
    Comparison("line2", "address", ("differ", "alike", "same"),
               (0.1, 0.1, 0.8), (0.985, 0.01, 0.005), place=True),
    Comparison("city", "address", ("differ", "alike", "same"),
               (0.05, 0.05, 0.9), (0.97, 0.01, 0.02), place=True),
    Comparison("postcode", "address", ("differ", "one slip", "same"),
               (0.05, 0.05, 0.9), (0.98, 0.01, 0.01), place=True),
    Comparison("region", "address", ("differ", "same"), (0.1, 0.9), (0.7, 0.3), place=True),
    Comparison("country", "address", ("differ", "same"), (0.02, 0.98), (0.5, 0.5), place=True),
    Comparison("company", "company", ("differ", "alike", "same"),
               (0.3, 0.05, 0.65), (0.99, 0.005, 0.005), place=True),
)  # fmt: skip

COMPANY: tuple[Comparison, ...] = (
    Comparison("name", "name", ("differ", "alike", "close", "exact"),
               (0.05, 0.05, 0.1, 0.8), (0.995, 0.004, 0.0009, 0.0001), tf="names"),
    Comparison("email", "email", ("differ", "same mailbox, slip in one part", "same"),
               (0.4, 0.05, 0.55), (0.99997, 1e-5, 2e-5), tf="shared"),
    Comparison("phone", "phone", ("differ", "same last digits", "same phone", "same mobile"),
               (0.3, 0.05, 0.6, 0.05), (0.9997, 1e-4, 1.8e-4, 2e-5), tf="shared"),
    Comparison("website", "website", ("differ", "same"), (0.2, 0.8), (0.9999, 1e-4)),
    *PERSON[4:11],
)  # fmt: skip

#: Defaults for custom identifying fields, by kind.
CUSTOM: dict[str, tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]] = {
    "date": (("differ", "two slips", "one slip or day and month swapped", "same"),
             (0.05, 0.03, 0.07, 0.85), (0.96, 0.035, 0.005, 0.0001)),
    "identifier": (("differ", "one slip", "same"), (0.1, 0.05, 0.85), (0.99999, 1e-5, 1e-6)),
    "text": (("differ", "alike", "same"), (0.1, 0.1, 0.8), (0.98, 0.015, 0.005)),
    "number": (("differ", "within 5%", "same"), (0.1, 0.1, 0.8), (0.9, 0.09, 0.01)),
}  # fmt: skip

_CUSTOM_LEVEL: dict[str, Callable[[str, str], int]] = {
    "date": date_level,
    "identifier": identifier_level,
    "text": text_level,
    "number": number_level,
}


def comparisons_for(record_type: str, identifying: dict[str, str]) -> tuple[Comparison, ...]:
    """The comparisons of a record kind, its identifying custom fields last."""
    base = COMPANY if record_type == "customer" else PERSON
    extra = tuple(
        Comparison(key, key, CUSTOM[kind][0], CUSTOM[kind][1], CUSTOM[kind][2], most_differ=0.2)
        for key, kind in identifying.items()
    )
    return base + extra


def compare(
    a: Features, b: Features, identifying: Sequence[tuple[str, str]]
) -> tuple[list[int], dict[str, str]]:
    """The level of every comparison of ``a`` and ``b``, and the values exact name levels matched.

    The order is :func:`comparisons_for`'s; ``identifying`` is its custom
    fields as ``(key, kind)`` pairs.
    """
    tf: dict[str, str] = _NO_VALUES
    if a.is_company:
        if a.name and b.name:
            if a.name == b.name:
                name = 3
                tf = {"name": a.name}
            else:
                sim = _jw(a.name, b.name)
                slip = (
                    min(len(a.name), len(b.name)) >= 4 and _osa(a.name, b.name, score_cutoff=1) <= 1
                )
                name = 2 if sim >= 0.94 or slip else 1 if sim >= 0.88 else 0
        else:
            name = -1
        website = -1 if not a.website or not b.website else 1 if a.website == b.website else 0
        levels = [name, email_level(a, b), phone_level(a, b), website]
    else:
        given, surname, gv, sv = name_levels(a.given, a.surname, b.given, b.surname)
        if given == 3 or surname == 3:
            tf = {}
            if given == 3:
                tf["first_name"] = gv
            if surname == 3:
                tf["surname"] = sv
        levels = [given, surname, email_level(a, b), phone_level(a, b)]
    levels.append(
        -1
        if not a.street_number or not b.street_number
        else 1
        if a.street_number == b.street_number
        else 0
    )
    levels.append(street_level(a.street, b.street))
    levels.append(text_level(a.line2, b.line2, 0.85))
    levels.append(text_level(a.city, b.city, 0.88))
    levels.append(postcode_level(a.postcode, b.postcode))
    levels.append(-1 if not a.region or not b.region else 1 if a.region == b.region else 0)
    levels.append(-1 if not a.country or not b.country else 1 if a.country == b.country else 0)
    if not a.is_company:
        levels.append(company_level(a.company, b.company))
    for key, kind in identifying:
        levels.append(_CUSTOM_LEVEL[kind](a.ids.get(key, ""), b.ids.get(key, "")))
    return levels, tf
