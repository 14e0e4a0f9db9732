"""Blocking: which pairs are worth comparing, and clusters that do not chain.

Comparing every pair grows with the square of the records, so only pairs that
share a *blocking key* are compared. Several keys are made per record, so
that recall never hangs on one field: each email (and its local part, for a
slip in the domain), each phone (and its last eight digits), the sound of the
given name with the sound of the surname, either with the postcode, the
surname or the given name with the birth date, the birth date with the
postcode, the house with the street and postcode, each identifying number;
for companies the name and its words. A sorted-neighbourhood pass adds the
records next to each other in name order. Keys shared by too many records say
little (a switchboard, a common name at one postcode) and are skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence

from pycrm.domain.normalise import phonetic_key
from pycrm.matching.features import Features

__all__ = [
    "MAX_BLOCK",
    "MAX_NAME_BLOCK",
    "block_keys",
    "candidate_pairs",
    "clusters",
]

#: Blocks on an email, a phone or a building larger than this are skipped (a
#: switchboard, info@, an office): more than a household shares. The people behind
#: them are compared through their names and other keys, which they do not share.
MAX_BLOCK = 10

#: Blocks on name or date keys larger than this are skipped (a common name).
MAX_NAME_BLOCK = 40

#: Blocks on the sound of a whole name alone (no postcode, date or email with it)
#: larger than this are skipped: a common name's namesakes; its duplicates share
#: one of the narrower keys as well.
MAX_SOUND_BLOCK = 12

#: Sorted-neighbourhood window: each record is paired with this many after it in name order.
WINDOW = 1


def _dates(f: Features, identifying: Sequence[tuple[str, str]]) -> list[str]:
    return [f.ids[k] for k, kind in identifying if kind == "date" and k in f.ids]


def block_keys(f: Features, identifying: Sequence[tuple[str, str]] = ()) -> Iterator[str]:
    """The blocking keys of one record (channel keys start with ``e``, ``l`` or ``p``)."""
    for email in f.emails:
        yield "e:" + email
    for local, _domain in f.email_parts:
        if len(local) >= 4:
            yield "l:" + local
    for phone in f.phones:
        yield "p:" + phone
        yield "q:" + phone[-8:]
    for key, kind in identifying:
        value = f.ids.get(key)
        if value and kind == "identifier":
            yield f"i:{key}:{value}"
    post = f.postcode
    if f.is_company:
        if f.name:
            yield "n:" + f.name
            tokens = f.name.split()
            first = tokens[0]
            yield "c:" + phonetic_key(first) + (tokens[1][:1] if len(tokens) > 1 else "")
            if post:
                yield f"cp:{post}|{phonetic_key(first)}"
        if f.website:
            yield "w:" + f.website
        return
    dates = _dates(f, identifying)
    given, surname = f.given, f.surname
    sounds = [phonetic_key(t) for t in (given, surname) if t]
    names = [t for t in (given, surname) if t]
    if len(sounds) == 2:
        yield "n:" + "|".join(sorted(sounds))
    elif sounds:
        yield "n1:" + sounds[0]
    for sound in sounds:
        if post:
            yield f"np:{post}|{sound}"
    for name in names:
        for date in dates:
            yield f"nd:{name}|{date}"
    for date in dates:
        if post:
            yield f"dp:{date}|{post}"
        if f.street_number:
            yield f"dh:{date}|{f.street_number}"
    if f.street and post:
        yield f"h:{post}|{f.street_number}|{f.street.replace(' ', '')[:5]}"
    if f.street and f.street_number and f.city:
        yield f"hc:{f.city[:4]}|{f.street_number}|{phonetic_key(f.street.replace(' ', ''))}"


def _is_channel(key: str) -> bool:
    return key[0] in "elpqh" and (key[1] == ":" or key[:3] == "hc:")


def candidate_pairs(
    features: Sequence[Features],
    identifying: Sequence[tuple[str, str]] = (),
    *,
    side: Sequence[int] | None = None,
) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """Pairs of indexes sharing a blocking key, and how many records hold each email and phone.

    With ``side`` (0 or 1 per record), only pairs across the two sides are
    kept (linkage). Pairs come out as ``(i, j)`` with ``i < j``, sorted.
    """
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(features):
        for key in set(block_keys(f, identifying)):
            blocks[key].append(i)
    n = len(features)
    seen: set[int] = set()
    shared: dict[str, int] = {}
    for key, members in blocks.items():
        size = len(members)
        channel = _is_channel(key)
        if channel and key[0] in "ep":
            shared[key] = size
        cap = (
            MAX_BLOCK
            if channel
            else MAX_SOUND_BLOCK
            if key[0] == "n" and key[1] in ":1"
            else MAX_NAME_BLOCK
        )
        if size < 2 or size > cap:
            continue
        for x, a in enumerate(members):
            for b in members[x + 1 :]:
                if side is None or side[a] != side[b]:
                    seen.add(a * n + b)
    # Sorted neighbourhood on the name written surname first.
    order = sorted(
        range(n),
        key=lambda i: (features[i].surname or features[i].name, features[i].given),
    )
    for x, a in enumerate(order):
        for b in order[x + 1 : x + 1 + WINDOW]:
            if side is None or side[a] != side[b]:
                seen.add(min(a, b) * n + max(a, b))
    pairs = sorted(seen)
    return [(p // n, p % n) for p in pairs], shared


def clusters(
    size: int,
    links: Iterable[tuple[int, int, float]],
    weight_of_pair: Callable[[int, int], float],
    floor: float,
) -> list[list[int]]:
    """Group linked records so that every pair in a group matches well enough.

    ``links`` are ``(i, j, weight)`` of the pairs at or above the threshold;
    they join groups strongest first, and two groups join only if every pair
    across them has a match weight of at least ``floor`` (asked of
    ``weight_of_pair``): a record that resembles two others does not chain
    them together unless they resemble each other too.
    """
    group = list(range(size))
    members: dict[int, list[int]] = {}
    for a, b, _ in sorted(links, key=lambda link: (-link[2], link[0], link[1])):
        ga, gb = group[a], group[b]
        if ga == gb:
            continue
        left = members.get(ga, [a])
        right = members.get(gb, [b])
        if len(left) + len(right) > 50:
            continue
        if all(
            weight_of_pair(x, y) >= floor
            for x in left
            for y in right
            if not ((x == a and y == b) or (x == b and y == a))
        ):
            if len(left) < len(right):
                ga, gb, left, right = gb, ga, right, left
            left = left + right
            members[ga] = left
            members.pop(gb, None)
            for x in right:
                group[x] = ga
    return [sorted(m) for m in members.values() if len(m) > 1]
