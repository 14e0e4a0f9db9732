"""The Fellegi–Sunter model: match weights per comparison level, EM without labels.

Two records are compared field by field (:mod:`pycrm.matching.comparisons`).
Each comparison level has an *m* probability (how often a true duplicate pair
shows it) and a *u* probability (how often two different records show it); its
match weight is ``log2(m / u)`` bits. A pair's match weight is the prior's
weight (how rare duplicates are among all pairs) plus the weights of its
levels, and its match probability is ``1 / (1 + 2^-weight)``.

Two refinements over the textbook model:

* term frequencies: an exact match on a common surname, or on a phone number
  many records share (a switchboard), weighs less than one on a rare value;
* shared places: besides "same record" and "unrelated", a third kind of pair
  is modelled, different people of one place (household members sharing a
  landline and an address, colleagues sharing a switchboard and an office). It
  agrees on the place fields (surname, address, landline, employer) and
  disagrees on a person's own (first name, birth date, email, mobile) like
  unrelated records do. Where the data holds such pairs, EM learns how common
  they are, and a pair that looks like one loses the weight that the place
  fields gave it; where it holds none (Febrl), nothing changes.

:func:`fit` estimates the parameters from a tenant's own records without
labels: *u* from value frequencies and random pairs, *m*, the place class and
the priors by expectation maximisation over the blocked candidate pairs,
starting from (and shrunk towards) defaults that serve a nearly empty CRM.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import attrs

from pycrm.matching.comparisons import Comparison, compare, comparisons_for
from pycrm.matching.features import Features

__all__ = [
    "DEFAULT_PRIOR",
    "FieldWeight",
    "Model",
    "Scored",
    "default_model",
    "fit",
    "probability",
]

#: The default chance that two records picked at random are one (about one
#: duplicate per five records in a CRM of 10,000).
DEFAULT_PRIOR = 3e-5

#: How many pairs' worth of belief the defaults carry when fitting.
PRIOR_STRENGTH = 50.0

#: The default chance that two records picked at random are different people of
#: one place (a household, an office).
DEFAULT_PLACE_PRIOR = 2e-5

_FLOOR = 1e-9

#: Pairs whose match weight under the current parameters is below this many bits
#: are left out of EM (plain non-matches; see :func:`fit`).
TRAINING_FLOOR = -8.0


def probability(weight: float) -> float:
    """Match probability of a match weight in bits."""
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    return 1.0 / (1.0 + math.pow(2.0, -weight))


def weight_of(probability_: float) -> float:
    """Match weight in bits of a match probability."""
    p = min(max(probability_, 1e-15), 1 - 1e-15)
    return math.log2(p / (1 - p))


@attrs.frozen
class FieldWeight:
    """One line of a match's explanation (the waterfall): a comparison, its level, its weight."""

    comparison: str
    """``prior``, ``first_name``, ``surname``, ``email``, ``street``, a custom key, or
    ``shared place`` (the weight taken back because the pair looks like two people of
    one household or office)."""
    level: str
    """What the values showed: ``exact``, ``close``, ``differ``, …"""
    weight: float
    """Bits added to the match weight: positive for, negative against."""


@attrs.frozen
class Scored:
    """A compared pair: its match weight and probability, and why."""

    weight: float
    """The match weight in bits (prior included)."""
    probability: float
    """``1 / (1 + 2^-weight)``."""
    levels: tuple[int, ...]
    """The level of every comparison (-1: a side had no value)."""
    weights: tuple[FieldWeight, ...]
    """The prior, then every compared field's weight (fields without values left out)."""


@attrs.frozen
class Model:
    """Fitted (or default) parameters for one record kind."""

    record_type: str
    """``customer``, ``contact`` or ``lead``."""
    comparisons: tuple[Comparison, ...]
    """What is compared, with the fitted m and u of every level."""
    prior: float = DEFAULT_PRIOR
    """P(two records picked at random are one)."""
    place_prior: float = DEFAULT_PLACE_PRIOR
    """P(two records picked at random are different people of one place); 0 for companies."""
    identifying: tuple[tuple[str, str], ...] = ()
    """Identifying custom fields, ``(key, kind)``."""
    name_counts: Mapping[str, int] = attrs.field(factory=dict)
    """How many records carry each common name token (term frequencies)."""
    records: int = 0
    """How many records the parameters were fitted on (0: defaults)."""
    pairs: int = 0
    """How many candidate pairs EM saw."""
    version: int = 0
    """The stored version that holds these parameters (0: the built-in defaults)."""

    @property
    def identifying_fields(self) -> dict[str, str]:
        """The identifying custom fields as a mapping."""
        return dict(self.identifying)

    @property
    def prior_weight(self) -> float:
        """The prior's match weight in bits."""
        return math.log2(self.prior / (1 - self.prior))

    def tables(self) -> list[list[float]]:
        """``log2(m/u)`` of every level of every comparison."""
        return [
            [math.log2(max(m, _FLOOR) / max(u, _FLOOR)) for m, u in zip(c.m, c.u, strict=True)]
            for c in self.comparisons
        ]

    def to_json(self) -> dict[str, Any]:
        """The parameters in JSON form (how they are stored)."""
        return {
            "record_type": self.record_type,
            "prior": self.prior,
            "place_prior": self.place_prior,
            "identifying": [list(p) for p in self.identifying],
            "comparisons": {
                c.name: {"m": list(c.m), "u": list(c.u), "h": list(c.h) if c.h else None}
                for c in self.comparisons
            },
            "name_counts": dict(self.name_counts),
            "records": self.records,
            "pairs": self.pairs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], version: int = 0) -> Model:
        """Parameters stored by :meth:`to_json`; comparisons not stored keep their defaults."""
        identifying = tuple((str(k), str(v)) for k, v in data.get("identifying", ()))
        fitted = data.get("comparisons", {})
        comparisons = []
        for c in comparisons_for(str(data["record_type"]), dict(identifying)):
            stored = fitted.get(c.name)
            if stored and len(stored["m"]) == len(c.levels) == len(stored["u"]):
                h = stored.get("h")
                c = attrs.evolve(
                    c,
                    m=tuple(stored["m"]),
                    u=tuple(stored["u"]),
                    h=tuple(h) if h and len(h) == len(c.levels) else None,
                )
            comparisons.append(c)
        return cls(
            record_type=str(data["record_type"]),
            comparisons=tuple(comparisons),
            prior=float(data.get("prior", DEFAULT_PRIOR)),
            place_prior=float(data.get("place_prior", DEFAULT_PLACE_PRIOR)),
            identifying=identifying,
            name_counts=dict(data.get("name_counts", {})),
            records=int(data.get("records", 0)),
            pairs=int(data.get("pairs", 0)),
            version=version,
        )

    def scorer(self) -> Scorer:
        """A fast scorer of pairs under these parameters."""
        return Scorer(self)


def default_model(record_type: str, identifying: Mapping[str, str] | None = None) -> Model:
    """The built-in parameters for a nearly empty CRM."""
    ids = dict(identifying or {})
    return Model(
        record_type,
        comparisons_for(record_type, ids),
        place_prior=0.0 if record_type == "customer" else DEFAULT_PLACE_PRIOR,
        identifying=tuple(ids.items()),
    )


class Scorer:
    """Scores pairs under one model (the weight tables computed once)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.comparisons = model.comparisons
        self.table = model.tables()
        self.identifying = model.identifying
        self.prior_weight = model.prior_weight
        self.place = [c.place for c in self.comparisons]
        # log2(h/m) per level of each place comparison: what the place class adds.
        self.place_shift = [
            [
                math.log2(max(h, _FLOOR) / max(m, _FLOOR))
                for h, m in zip(c.h or c.m, c.m, strict=True)
            ]
            if c.place
            else None
            for c in self.comparisons
        ]
        self.place_weight = (
            math.log2(model.place_prior / (1 - model.prior - model.place_prior))
            if model.place_prior > 0
            else None
        )
        total = max(model.records, 1)
        self.name_u = {
            i: (c.m[-1], total)
            for i, c in enumerate(self.comparisons)
            if c.tf == "names" and model.name_counts
        }
        self.counts = model.name_counts
        self._lines: dict[tuple[str, str, float], FieldWeight] = {}
        # The exact level of each comparison with a term-frequency adjustment (-2: none).
        self.exact = [len(c.levels) - 1 if c.tf else -2 for c in self.comparisons]

    def levels(self, a: Features, b: Features) -> tuple[list[int], dict[str, str]]:
        """The comparison levels of a pair."""
        return compare(a, b, self.identifying)

    def score(
        self,
        a: Features,
        b: Features,
        shared: Callable[[str, str], int] | None = None,
        *,
        explain: bool = True,
    ) -> Scored:
        """Compare ``a`` and ``b``.

        ``shared(kind, value)`` tells how many records hold an email or phone
        (``kind`` ``email`` or ``phone``), for the term-frequency adjustment.
        """
        levels, tf = compare(a, b, self.identifying)
        return self.weigh(a, b, levels, tf, shared, explain=explain)

    def weigh(
        self,
        a: Features,
        b: Features,
        levels: Sequence[int],
        tf: Mapping[str, str],
        shared: Callable[[str, str], int] | None = None,
        *,
        explain: bool = True,
    ) -> Scored:
        """The match weight of a pair from its comparison levels."""
        weights: list[float] = []
        total, correction = self._total(a, b, levels, tf, shared, weights)
        lines: tuple[FieldWeight, ...] = ()
        if explain:
            line = self._line
            out = [line("prior", f"{self.model.prior:.2g}", self.prior_weight)]
            for i, level in enumerate(levels):
                if level >= 0:
                    c = self.comparisons[i]
                    out.append(line(c.name, c.levels[level], weights[i]))
            if correction < -0.001:
                out.append(line("shared place", "looks like a household or office", correction))
            lines = tuple(out)
        return Scored(total, probability(total), tuple(levels), lines)

    def _line(self, comparison: str, level: str, weight: float) -> FieldWeight:
        """One explanation line; the same line is made once (most repeat from pair to pair)."""
        key = (comparison, level, round(weight, 3))
        found = self._lines.get(key)
        if found is None:
            found = FieldWeight(*key)
            if len(self._lines) < 100_000:
                self._lines[key] = found
        return found

    def weight(
        self,
        a: Features,
        b: Features,
        levels: Sequence[int],
        tf: Mapping[str, str],
        shared: Callable[[str, str], int] | None = None,
    ) -> float:
        """The match weight of a pair from its comparison levels (no explanation)."""
        return self._total(a, b, levels, tf, shared, None)[0]

    def _total(
        self,
        a: Features,
        b: Features,
        levels: Sequence[int],
        tf: Mapping[str, str],
        shared: Callable[[str, str], int] | None,
        weights: list[float] | None,
    ) -> tuple[float, float]:
        """The match weight and the shared-place correction in it; each field's into ``weights``."""
        table, exact, shifts = self.table, self.exact, self.place_shift
        total = self.prior_weight
        place = self.place_weight
        for i, level in enumerate(levels):
            if level < 0:
                if weights is not None:
                    weights.append(0.0)
                continue
            w = table[i][level]
            if level == exact[i]:
                w = self._adjust(i, self.comparisons[i], w, a, b, tf, shared)
            total += w
            if weights is not None:
                weights.append(w)
            shift = shifts[i]
            if place is not None and shift is not None:
                place += w + shift[level]
        correction = 0.0
        if place is not None and place > -30:
            # -log2(1 + P(place pair) / P(unrelated)): the place class's share of the odds.
            correction = -(place if place > 50 else math.log2(1 + 2.0**place))
            total += correction
        return total, correction

    def _adjust(
        self,
        i: int,
        comparison: Comparison,
        w: float,
        a: Features,
        b: Features,
        tf: Mapping[str, str],
        shared: Callable[[str, str], int] | None,
    ) -> float:
        if comparison.tf == "names":
            value = tf.get(comparison.name, "")
            if i in self.name_u and value:
                m, total = self.name_u[i]
                count = self.counts.get(value, 1)
                # u of an exact match on this value: the chance two records both carry it.
                u = max(count / total, comparison.u[-1] * 0.1, 1 / (50 * total))
                return max(math.log2(m / u), 0.0)
            return w
        if shared is None:
            return w
        values = (a.emails & b.emails) if comparison.name == "email" else (a.phones & b.phones)
        if not values:
            return w
        count = min(shared(comparison.name, v) for v in values)
        if count <= 2:
            return w
        return max(w - math.log2(count / 2), 0.0)


# -- fitting -------------------------------------------------------------------------


def _exact_u(features: Sequence[Features], names: Sequence[str]) -> list[float | None]:
    """P(two random records share the value exactly) per comparison, from value counts."""
    out: list[float | None] = []
    for name in names:
        counts: Counter[str] = Counter()
        if name in _MULTI:
            known = 0
            for values in map(attrgetter(_MULTI[name]), features):
                if values:
                    known += 1
                    counts.update(values)
        else:
            found: Iterable[str]
            if name in _SINGLE:
                found = map(attrgetter(_SINGLE[name]), features)
            else:
                found = (f.ids.get(name, "") for f in features)
            counts.update(v for v in found if v)
            known = sum(counts.values())
        if known < 2:
            out.append(None)
            continue
        if name == "street":
            merged: Counter[str] = Counter()
            for value, count in counts.items():
                merged[value.replace(" ", "")] += count
            counts = merged
        same = sum(c * (c - 1) for c in counts.values())
        out.append(max(same / (known * (known - 1)), 0.5 / (known * (known - 1))))
    return out


#: Comparisons of one value per record, and the Features attribute holding it.
_SINGLE = {
    "first_name": "given",
    **{name: name for name in ("name", "surname", "street_number", "street", "line2", "city")},
    **{name: name for name in ("postcode", "region", "country", "company", "website")},
}
#: Comparisons of several values per record (a set of them).
_MULTI = {"email": "emails", "phone": "phones"}


def name_frequencies(features: Sequence[Features], limit: int = 5000) -> dict[str, int]:
    """How many records carry each name token that two or more carry (the most common first)."""
    counts: Counter[str] = Counter()
    for f in features:
        if f.is_company:
            if f.name:
                counts[f.name] += 1
        else:
            counts.update({f.given, f.surname} - {""})
    return {k: v for k, v in counts.most_common(limit) if v > 1}


def fit(
    base: Model,
    features: Sequence[Features],
    pairs: Sequence[tuple[int, int]],
    *,
    samples: int = 5_000,
    iterations: int = 25,
    seed: int = 0,
    levels: Sequence[Sequence[int]] | None = None,
) -> Model:
    """Estimate m, u and the prior from the records themselves (no labels).

    ``pairs`` are the candidate pairs blocking found (indexes into
    ``features``); ``levels``, if given, their comparison levels already
    computed. u comes from random pairs (its exact level from value counts),
    m and the share of duplicates among the candidates from EM with u fixed,
    each shrunk towards ``base`` by :data:`PRIOR_STRENGTH` pairs.
    """
    n = len(features)
    comparisons = list(base.comparisons)
    identifying = base.identifying
    if n < 20 or not pairs:
        return attrs.evolve(
            base, records=n, pairs=len(pairs), name_counts=name_frequencies(features)
        )
    # u: random pairs, the exact level from how often values repeat.
    rng = random.Random(seed)
    sampled: list[Counter[int]] = [Counter() for _ in comparisons]
    total_pairs = n * (n - 1) // 2
    for _ in range(min(samples, total_pairs)):
        i, j = rng.randrange(n), rng.randrange(n)
        if i == j:
            continue
        for k, level in enumerate(compare(features[i], features[j], identifying)[0]):
            if level >= 0:
                sampled[k][level] += 1
    new_u: list[tuple[float, ...]] = []
    exacts = _exact_u(features, [c.name for c in comparisons])
    for k, c in enumerate(comparisons):
        drawn = sum(sampled[k].values())
        exact_level = len(c.levels) - 1
        exact = exacts[k]
        weight = 100.0  # pairs' worth of belief in the default u
        u = [
            (sampled[k][level] + weight * c.u[level]) / (drawn + weight)
            for level in range(len(c.levels))
        ]
        if exact is not None:
            u[exact_level] = exact
        rest = sum(u[:exact_level]) or 1.0
        scale = (1 - u[exact_level]) / rest
        u = [x * scale for x in u[:exact_level]] + [u[exact_level]]
        new_u.append(tuple(max(x, _FLOOR) for x in u))
    # m, h and the priors: EM over the distinct level patterns of the candidate pairs.
    if levels is None:
        levels = [compare(features[i], features[j], identifying)[0] for i, j in pairs]
    # EM learns from the pairs the current belief (the base model) finds at least
    # plausible: left in, the many plain look-alikes blocking brings (namesakes with
    # nothing else in common, colleagues sharing an office) would outnumber the
    # duplicates and EM would take them for the "match" class.
    base_table = base.tables()
    needed = TRAINING_FLOOR - base.prior_weight
    every = Counter(map(tuple, levels))
    patterns = Counter(
        {
            key: count
            for key, count in every.items()
            if sum(base_table[k][level] for k, level in enumerate(key) if level >= 0) >= needed
        }
    )
    if not patterns:
        patterns = every
    places = [k for k, c in enumerate(comparisons) if c.place]
    with_place = base.place_prior > 0 and bool(places)
    # Every (comparison, level) gets a flat index; a pattern is the indexes it shows.
    offset = [0]
    for c in comparisons:
        offset.append(offset[-1] + len(c.levels))
    flat_u = [math.log(x) for u in new_u for x in u]
    flat_m = [x for c in comparisons for x in c.m]
    flat_h = [x for c in comparisons for x in (c.h or c.m)]
    is_place = [c.place for c in comparisons for _ in c.levels]
    shown = [[offset[k] + level for k, level in enumerate(p) if level >= 0] for p in patterns]
    shown_place = [[i for i in key if is_place[i]] for key in shown]
    counts = list(patterns.values())
    base_u = [sum(map(flat_u.__getitem__, key)) for key in shown]
    place_u = [sum(map(flat_u.__getitem__, key)) for key in shown_place]
    holders: list[list[int]] = [[] for _ in flat_u]
    for p, key in enumerate(shown):
        for i in key:
            holders[i].append(p)
    total = float(sum(patterns.values()))
    # Start from the defaults' belief: how many of the candidates the priors expect.
    lam = min(max(base.prior * total_pairs / total, 0.001), 0.5)
    lam_h = min(max(base.place_prior * total_pairs / total, 0.001), 0.3) if with_place else 0.0
    defaults_m = list(flat_m)
    defaults_h = list(flat_h)
    for _ in range(iterations):
        log_m = [math.log(max(x, _FLOOR)) for x in flat_m]
        log_h = [math.log(max(x, _FLOOR)) for x in flat_h]
        l_m, l_u = math.log(lam), math.log(max(1 - lam - lam_h, 1e-12))
        l_h = math.log(lam_h) if lam_h > 0 else None
        r_m: list[float] = []
        r_h: list[float] = []
        for p, count in enumerate(counts):
            lm: float = l_m + sum(map(log_m.__getitem__, shown[p]))
            lu = l_u + base_u[p]
            if l_h is not None:
                lh: float = (
                    l_h + lu - l_u + sum(map(log_h.__getitem__, shown_place[p])) - place_u[p]
                )
                top = max(lm, lu, lh)
                eh = math.exp(lh - top)
            else:
                top = max(lm, lu)
                eh = 0.0
            em, eu = math.exp(lm - top), math.exp(lu - top)
            norm = em + eh + eu
            r_m.append(em / norm * count)
            r_h.append(eh / norm * count)
        old = lam
        lam = min(max(sum(r_m) / total, 1e-6), 1 - 1e-6)
        if with_place:
            lam_h = min(max(sum(r_h) / total, 1e-6), 1 - lam - 1e-6)
        acc_m: list[float] = [math.fsum(map(r_m.__getitem__, h_)) for h_ in holders]
        acc_h = [math.fsum(map(r_h.__getitem__, h_)) for h_ in holders] if with_place else acc_m
        for k, c in enumerate(comparisons):
            lo, hi = offset[k], offset[k + 1]
            seen = sum(acc_m[lo:hi])
            for i in range(lo, hi):
                flat_m[i] = (acc_m[i] + PRIOR_STRENGTH * defaults_m[i]) / (seen + PRIOR_STRENGTH)
            if flat_m[lo] > c.most_differ:
                rest = 1 - flat_m[lo]
                flat_m[lo] = c.most_differ
                for i in range(lo + 1, hi):
                    flat_m[i] *= (1 - c.most_differ) / rest
            if with_place and c.place:
                seen_h = sum(acc_h[lo:hi])
                for i in range(lo, hi):
                    flat_h[i] = (acc_h[i] + PRIOR_STRENGTH * defaults_h[i]) / (
                        seen_h + PRIOR_STRENGTH
                    )
        if abs(lam - old) < 1e-5 * max(old, 1e-3):
            break
    m = [flat_m[offset[k] : offset[k + 1]] for k in range(len(comparisons))]
    h = [flat_h[offset[k] : offset[k + 1]] for k in range(len(comparisons))]
    fitted = tuple(
        attrs.evolve(
            c, m=tuple(m[k]), u=new_u[k], h=tuple(h[k]) if with_place and c.place else None
        )
        for k, c in enumerate(comparisons)
    )
    prior = min(max(lam * total / total_pairs, 1e-12), 0.25)
    place_prior = min(max(lam_h * total / total_pairs, 1e-12), 0.25) if with_place else 0.0
    return attrs.evolve(
        base,
        comparisons=fitted,
        prior=prior,
        place_prior=place_prior,
        name_counts=name_frequencies(features),
        records=n,
        pairs=len(pairs),
    )
