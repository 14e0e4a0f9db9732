"""Scoring how likely two records are the same person or company, with the evidence.

Each comparable field yields a piece of :class:`Evidence` with a strength in
0..1; the pieces are combined like independent witnesses (noisy-or: the score
is ``1 - Π(1 - weight × strength)``), and a clear disagreement on the name
caps the score, so that two colleagues sharing a switchboard number are not
taken for one person.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs
from rapidfuzz import fuzz

from pycrm.domain.contact_points import ContactPoint, PointKind
from pycrm.domain.normalise import address_key, company_key, person_key, spelled_tokens

__all__ = [
    "WEIGHTS",
    "Evidence",
    "Profile",
    "best",
    "profile",
    "reachable_without_keys",
    "score",
]

#: How much each kind of agreement says on its own. A phone alone stays below the
#: default threshold: colleagues share switchboards; with a similar name it passes.
WEIGHTS = {"email": 0.9, "phone": 0.75, "name": 0.6, "company": 0.35, "address": 0.4}


@attrs.frozen
class Evidence:
    """One field's contribution to a match score."""

    field: str
    """``email``, ``phone``, ``name``, ``company`` or ``address``."""
    similarity: float
    """How alike the two values are, 0..1."""
    detail: str
    """What matched, e.g. ``"same email bob@example.com"``."""


@attrs.frozen
class Profile:
    """The comparable parts of a customer, contact or lead."""

    record_type: str
    """``customer``, ``contact`` or ``lead``."""
    record_id: str
    """The record."""
    name: str
    """Person key (contacts, leads) or company key (customers)."""
    company: str
    """Company key (leads: the typed company; contacts: empty unless known)."""
    emails: frozenset[str]
    """Email match keys."""
    phones: frozenset[str]
    """E.164 phones."""
    address: str
    """Address key."""
    spelled: str = ""
    """The name folded but in its written token order (for typos that reorder sorted keys)."""


def profile(
    record_type: str,
    record_id: str,
    *,
    name: str | None,
    points: Iterable[ContactPoint] = (),
    company: str | None = None,
    address: tuple[str | None, str | None, str | None, str | None] | None = None,
) -> Profile:
    """The comparable parts of a record. ``name`` is a person's or (customers) a company's name."""
    points = list(points)
    is_company = record_type == "customer"
    return Profile(
        record_type=record_type,
        record_id=record_id,
        name=company_key(name) if is_company else person_key(name),
        spelled=" ".join(spelled_tokens(name)),
        company=company_key(company),
        emails=frozenset(p.match_key() for p in points if p.kind is PointKind.EMAIL and p.valid),
        phones=frozenset(p.match_key() for p in points if p.kind is PointKind.PHONE and p.valid),
        address=address_key(*address) if address else "",
    )


def _similarity(a: str, b: str) -> float:
    return max(fuzz.token_sort_ratio(a, b), fuzz.ratio(a, b)) / 100 if a and b else 0.0


def _name_similarity(a: Profile, b: Profile) -> float:
    if not a.name or not b.name:
        return 0.0
    # Sorted keys make "Smith, John" meet "John Smith", but a typo in a first letter
    # reorders them ("catrin jones" / "jones katrin"): compare as written too.
    return (
        max(
            fuzz.token_sort_ratio(a.name, b.name),
            fuzz.ratio(a.name, b.name),
            fuzz.ratio(a.spelled, b.spelled) if a.spelled and b.spelled else 0,
        )
        / 100
    )


def score(a: Profile, b: Profile) -> tuple[float, tuple[Evidence, ...]]:
    """How likely ``a`` and ``b`` are the same, and why (strongest evidence first)."""
    evidence: list[Evidence] = []
    shared = a.emails & b.emails
    if shared:
        evidence.append(Evidence("email", 1.0, f"same email {min(shared)}"))
    shared = a.phones & b.phones
    if shared:
        evidence.append(Evidence("phone", 1.0, f"same phone {min(shared)}"))
    name = _name_similarity(a, b)
    if name >= 0.75:
        evidence.append(Evidence("name", name, f"names {name:.0%} alike ({a.name!r} ~ {b.name!r})"))
    if a.company and b.company:
        company = _similarity(a.company, b.company)
        if company >= 0.85:
            evidence.append(Evidence("company", company, f"companies {company:.0%} alike"))
    if a.address and a.address == b.address:
        evidence.append(Evidence("address", 1.0, "same address"))
    miss = 1.0
    for item in evidence:
        strength = item.similarity if item.field != "name" else (item.similarity - 0.75) / 0.25
        miss *= 1 - WEIGHTS[item.field] * strength
    result = 1 - miss
    if a.name and b.name and name < 0.6:
        # Different names: shared channels (a switchboard, an info@ address) are weak evidence.
        result *= name
    evidence.sort(key=lambda e: WEIGHTS[e.field] * e.similarity, reverse=True)
    return round(result, 4), tuple(evidence)


def best(
    target: Profile, others: Sequence[Profile], threshold: float
) -> list[tuple[Profile, float, tuple[Evidence, ...]]]:
    """The ``others`` scoring at least ``threshold`` against ``target``, best first."""
    scored = [
        (other, *score(target, other)) for other in others if other.record_id != target.record_id
    ]
    kept = [item for item in scored if item[1] >= threshold]
    return sorted(kept, key=lambda item: (-item[1], item[0].record_id))


def reachable_without_keys(record_type: str) -> float:
    """The highest score two records of this kind reach without a shared email or phone."""
    fields = ["name", "address"] + (["company"] if record_type == "lead" else [])
    miss = 1.0
    for field in fields:
        miss *= 1 - WEIGHTS[field]
    return 1 - miss
