"""Duplicates: checked at the door, found in bulk, linked across sources, merged and unmerged.

Every decision comes from one engine, the Fellegi–Sunter model of
:mod:`pycrm.matching`, with the kind's latest fitted parameters (a stored
:class:`~pycrm.domain.matching.MatchModel`): scores are match probabilities,
candidates explain themselves as per-field match weights and name the version
of the parameters that decided. See the guide's "Finding duplicates" page.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.fields import (
    check_bool,
    check_id,
    check_ids,
    check_mapping,
    check_one_of,
    fold_points,
)
from pycrm.domain.leads import Lead
from pycrm.domain.matching import Evidence, MatchModel
from pycrm.domain.merging import (
    MERGEABLE,
    MERGED,
    REFERENCES,
    Merge,
    MergeChange,
    SurvivorshipRule,
    survive,
)
from pycrm.domain.normalise import place_key, sound_key
from pycrm.domain.query import Eq, HasKey, In, Not, OrderBy, Range, all_of
from pycrm.domain.records import Record
from pycrm.errors import (
    ConcurrencyError,
    DuplicateError,
    FieldError,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from pycrm.matching.blocking import candidate_pairs, clusters
from pycrm.matching.comparisons import compare
from pycrm.matching.features import IDENTIFIER_KINDS, Features, features
from pycrm.matching.model import (
    FieldWeight,
    Model,
    Scored,
    Scorer,
    default_model,
    fit,
    weight_of,
)
from pycrm.serialization import from_dict, to_dict
from pycrm.services.records import Service, write

__all__ = [
    "POLICIES",
    "Candidate",
    "CleansingIssue",
    "Cluster",
    "DedupeService",
    "DuplicateWarning",
    "FieldWeight",
    "Link",
    "MergeResult",
]

#: What a create or update does when it finds duplicates.
POLICIES = ("block", "warn", "merge", "allow")

_TYPES: dict[str, type[Customer] | type[Contact] | type[Lead]] = {
    "customer": Customer,
    "contact": Contact,
    "lead": Lead,
}

#: Which kinds a new record of each kind is compared with.
_COMPARED_WITH = {
    "customer": ("customer",),
    "contact": ("contact", "lead"),
    "lead": ("lead", "contact"),
}

#: How many records each index probe of the check at the door may bring back.
PROBE_LIMIT = 50

#: How much weaker than the threshold (in bits of match weight) a pair inside a
#: cluster may be when it was linked through others: a cluster never holds two
#: records that do not match each other at least this well.
CLUSTER_SLACK = 3.0

#: A kind is refitted automatically when it has grown this many times past the last fit.
REFIT_GROWTH = 2.0

#: Fewer live records than this: the built-in defaults are kept (too little to learn from).
MIN_FIT_RECORDS = 50

#: Records per query when the matcher reads a whole kind (scan, fit, link).
MATCH_PAGE = 100_000


@attrs.frozen
class Candidate:
    """An existing record that may be a duplicate, with its score and the evidence."""

    record_type: str
    """``customer``, ``contact`` or ``lead``."""
    record_id: str
    """The existing record."""
    score: float
    """The match probability, 0..1; at or above the CRM's ``duplicate_threshold``
    counts as a duplicate."""
    evidence: tuple[Evidence, ...]
    """The fields that spoke for the match, strongest first."""
    match_weight: float = 0.0
    """The match weight in bits (``score`` is ``1 / (1 + 2^-match_weight)``)."""
    weights: tuple[FieldWeight, ...] = ()
    """The explanation: the prior, then every compared field's weight, in bits."""
    model_version: int = 0
    """The version of the fitted parameters that decided (0: the built-in defaults)."""


@attrs.frozen
class DuplicateWarning:
    """A record that was written although it looks like a duplicate (policy ``warn``)."""

    record_type: str
    """Its kind."""
    record_id: str
    """The record written."""
    candidates: tuple[Candidate, ...]
    """What it resembles."""


@attrs.frozen
class Cluster:
    """A group of records a scan believes to be one."""

    record_type: str
    """Their kind."""
    record_ids: tuple[str, ...]
    """The records, oldest id first."""
    pairs: tuple[tuple[str, str, float, tuple[Evidence, ...]], ...]
    """Each pair in the group at or above the threshold, with its match probability and evidence."""
    model_version: int = 0
    """The version of the fitted parameters that decided (0: the built-in defaults)."""


@attrs.frozen
class Link:
    """A pair found by :meth:`DedupeService.link`: one record or row of each source."""

    left: str
    """The record id in the first source, or ``row <n>`` (counted from 0) for a row."""
    right: str
    """The record id in the second source, or ``row <n>``."""
    score: float
    """The match probability."""
    match_weight: float
    """The match weight in bits."""
    weights: tuple[FieldWeight, ...]
    """The explanation: the prior, then every compared field's weight."""
    evidence: tuple[Evidence, ...]
    """The fields that spoke for the match, strongest first."""
    model_version: int = 0
    """The version of the fitted parameters that decided (0: the built-in defaults)."""


@attrs.frozen
class MergeResult:
    """What a merge did, or would do (``dry_run``)."""

    merge_id: str | None
    """The merge's id (None for a dry run); pass it to ``unmerge``."""
    survivor: Any
    """The surviving record, merged."""
    merged_ids: tuple[str, ...]
    """The records merged away (tombstones)."""
    reparented: tuple[tuple[str, str, str], ...]
    """``(record type, record id, field)`` of every related record re-pointed at the survivor."""


@attrs.frozen
class CleansingIssue:
    """Something a data steward should fix."""

    record_type: str
    """Its kind."""
    record_id: str
    """The record."""
    field: str
    """The field at fault."""
    value: Any
    """What is stored."""
    problem: str
    """What is wrong."""


def _explain(scorer: Scorer, a: Features, b: Features, scored: Scored) -> tuple[Evidence, ...]:
    """The fields that spoke for a match, strongest first, each with its summed weight."""
    sums: dict[str, list[float]] = {}  # field -> [weight, similarity sum, parts]
    weights = {x.comparison: x.weight for x in scored.weights}
    comparisons = scorer.comparisons
    for i, level in enumerate(scored.levels):
        if level < 0:
            continue
        c = comparisons[i]
        entry = sums.get(c.field)
        if entry is None:
            entry = sums[c.field] = [0.0, 0.0, 0.0]
        entry[0] += weights[c.name]
        entry[1] += level / (len(c.levels) - 1)
        entry[2] += 1
    out: list[Evidence] = []
    for field, (weight, total, parts) in sums.items():
        similarity = round(total / parts, 4)
        if weight <= 0 or similarity <= 0:
            continue
        out.append(Evidence(field, similarity, _detail(field, a, b, similarity), round(weight, 3)))
    out.sort(key=lambda e: (-e.weight, e.field))
    return tuple(out)


def _detail(field: str, a: Features, b: Features, similarity: float) -> str:
    if field == "email":
        shared = a.emails & b.emails
        return f"same email {min(shared)}" if shared else "same mailbox, a slip in the address"
    if field == "phone":
        shared = a.phones & b.phones
        return f"same phone {min(shared)}" if shared else "same phone digits"
    if field == "address":
        return "same address" if similarity == 1 else f"addresses {similarity:.0%} alike"
    if field == "name":
        return f"names {similarity:.0%} alike ({a.name!r} ~ {b.name!r})"
    return f"{field} {similarity:.0%} alike"


def _probes(f: Features, record: Any) -> list[HasKey]:
    """Index probes for the check at the door, strongest keys first."""
    keys = [HasKey("email", e) for e in sorted(f.emails)]
    keys += [HasKey("phone", p) for p in sorted(f.phones)]
    if f.is_company:
        if f.name:
            keys.append(HasKey("company", f.name))
    else:
        if f.name:
            keys.append(HasKey("person", f.name))
        sound = sound_key(record.name)
        if sound:
            keys.append(HasKey("sound", sound))
        if f.company and not f.company.startswith("id:"):
            keys.append(HasKey("company", f.company))
    address = getattr(record, "address", None)
    if address is not None:
        place = place_key(address.line1, address.postcode)
        if place:
            keys.append(HasKey("place", place))
    return keys


def _live(record: Any) -> bool:
    status = getattr(record, "status", None)
    if isinstance(record, Lead):
        return record.is_open
    return status is not RecordStatus.MERGED


class DedupeService(Service):
    """Duplicate checks, scans, merges and the cleansing report."""

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self.warnings: list[DuplicateWarning] = []
        """Duplicates let through with policy ``warn`` in this session, oldest first."""

    # -- the check at the door ----------------------------------------------

    # -- the fitted model ----------------------------------------------------

    def _model(self, record_type: str) -> Model:
        """The parameters in use for a kind: its latest stored version, else the defaults."""
        cache: dict[str, Model] = self.__dict__.setdefault("_models", {})
        model = cache.get(record_type)
        if model is None:
            stored = self._s._uow.repo(MatchModel).find(
                Eq("record_type", record_type), order_by=[OrderBy("number", True)], limit=1
            )
            model = (
                Model.from_json(stored[0].parameters, stored[0].number)
                if stored
                else default_model(record_type)
            )
            cache[record_type] = model
        return model

    def _scorer(self, record_type: str) -> Scorer:
        cache: dict[str, Scorer] = self.__dict__.setdefault("_scorers", {})
        model = self._model(record_type)
        scorer = cache.get(record_type)
        if scorer is None or scorer.model is not model:
            scorer = cache[record_type] = model.scorer()
        return scorer

    # -- the check at the door ----------------------------------------------

    def _candidates_for(self, record: Any, *, exclude: Sequence[str] = ()) -> list[Candidate]:
        """Existing records that look like ``record``, best first (index probes, then scoring).

        Only records the actor may read are compared: a check never reveals a
        record the policy hides (the steward's :meth:`scan` finds those).
        """
        scorer = self._scorer(record.resource)
        model = scorer.model
        ids = model.identifying_fields
        target = features(record, ids)
        probes = _probes(target, record)
        if not probes:
            return []
        limit = weight_of(self._s.crm.duplicate_threshold)
        skip = {record.id, *exclude}
        others: dict[tuple[str, str], Features] = {}
        holders: dict[tuple[str, str], int] = {}
        for kind in _COMPARED_WITH[record.resource]:
            repo = self._s.read(_TYPES[kind], quiet=True)
            # One index probe per key, strongest keys first, each with its own limit:
            # an OR of them defeats SQLite's planner (a scan), and fifty namesakes
            # must not crowd out the one record that shares the email.
            for key in probes:
                if self._s._guard.hides_key(_TYPES[kind], key.kind):
                    continue  # a probe on a field hidden from the actor would reveal it
                for other in repo.find(key, limit=PROBE_LIMIT):
                    if other.id in skip or not _live(other):
                        continue
                    if key.kind in ("email", "phone"):
                        holders[(key.kind, key.key)] = holders.get((key.kind, key.key), 1) + 1
                    if (kind, other.id) not in others:
                        others[(kind, other.id)] = features(other, ids)

        def shared(kind: str, value: str) -> int:
            return holders.get((kind, value), 2)

        found: list[Candidate] = []
        for (kind, other_id), seen in others.items():
            scored = scorer.score(target, seen, shared)
            if scored.weight >= limit:
                found.append(self._candidate(kind, other_id, scorer, target, seen, scored))
        return sorted(found, key=lambda c: (-c.match_weight, c.record_id))

    @staticmethod
    def _candidate(
        kind: str, other_id: str, scorer: Scorer, a: Features, b: Features, scored: Scored
    ) -> Candidate:
        return Candidate(
            kind,
            other_id,
            round(scored.probability, 6),
            _explain(scorer, a, b, scored),
            round(scored.weight, 3),
            scored.weights,
            scorer.model.version,
        )

    def check(self, record_type: str, **fields: Any) -> list[Candidate]:
        """The duplicates a record with these fields would have, without writing anything.

        Takes the fields ``create`` (or ``capture``) of that kind takes, ``custom``
        values included (identifying custom fields such as a birth date count).
        """
        from pycrm.domain.custom_fields import check_custom

        cls = self._kind(record_type)
        self._s._guard.filter(cls)  # no read grant for the kind: PermissionDenied
        service = getattr(self._s, record_type + "s")
        custom = fields.pop("custom", None)
        fold_points(fields)  # capture() takes email= and phone= too
        values = service._parse(fields, creating=True)
        # Asking about a field hidden from the actor would reveal who holds that value.
        given = [name for name, value in values.items() if value not in (None, (), "", {})]
        if custom is not None:
            check_mapping("custom", custom)
            given += [f"custom.{key}" for key in custom]
            defs = self._s._field_definitions(record_type)
            values["custom"] = check_custom(defs, {}, custom, creating=False)
        self._s._guard.check_fields(cls, given)
        if record_type == "lead":
            values.setdefault("source", "check")
        record = _TYPES[record_type](**self._s._stamp(**values))
        return self._candidates_for(record)

    def _policy(self, given: str | None) -> str:
        """The policy to apply: ``given`` or the CRM's ``on_duplicate``."""
        chosen = self._s.crm.on_duplicate if given is None else given
        if chosen not in POLICIES:
            raise ValidationError("on_duplicate", given, f"must be one of {', '.join(POLICIES)}")
        return chosen

    def _screen(self, record: Any, policy: str, *, exclude: Sequence[str] = ()) -> Any | None:
        """Apply ``policy`` to a record about to be written.

        Returns None to go on writing it, or (policy ``merge``) the existing
        record it was merged into instead.
        """
        if policy == "allow":
            return None
        found = self._candidates_for(record, exclude=exclude)
        if not found:
            return None
        if policy == "block":
            raise DuplicateError(
                f"{record.resource} looks like {len(found)} existing record(s); "
                f"best: {found[0].record_type} {found[0].record_id} ({found[0].score:.0%})",
                found,
            )
        same = [c for c in found if c.record_type == record.resource]
        if policy == "merge" and same and same[0].score >= self._s.crm.merge_threshold:
            return self._absorb(same[0].record_id, record)
        self.warnings.append(DuplicateWarning(record.resource, record.id, tuple(found)))
        return None

    def _absorb(self, existing_id: str, new: Any) -> Any:
        """Fold a would-be record's values into the existing one (policy ``merge``)."""
        service = getattr(self._s, new.resource + "s")
        existing = service._load(existing_id)
        values = survive([existing, new])
        changes = {k: v for k, v in values.items() if getattr(existing, k) != v}
        return service._change(existing, None, "update", **changes)

    # -- batch scan ----------------------------------------------------------

    def _kind(self, record_type: Any) -> type[Customer] | type[Contact] | type[Lead]:
        if not isinstance(record_type, str) or record_type not in _TYPES:
            raise ValidationError("record_type", record_type, f"must be one of {', '.join(_TYPES)}")
        return _TYPES[record_type]

    def _all(self, cls: type[Any], *, quiet: bool = False, page: int = 5000) -> Iterator[Any]:
        """Every record of ``cls`` the actor may read, in pages (PermissionDenied without a grant).

        The matcher, which holds every record anyway, reads in pages of
        :data:`MATCH_PAGE`: without table statistics SQLite sorts what is left of
        the table for each page, so small pages made a scan's reading quadratic.
        """
        repo = self._s.read(cls, quiet=quiet)
        after: str | None = None
        while True:
            where = (
                None if after is None else all_of([Range("id", after, None), Not(Eq("id", after))])
            )
            found = repo.find(where, order_by=[OrderBy("id")], limit=page)
            yield from found
            if len(found) < page:
                return
            after = found[-1].id

    def _threshold(self, threshold: Any) -> float:
        limit = self._s.crm.duplicate_threshold if threshold is None else threshold
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit <= 1:
            raise ValidationError("threshold", threshold, "must be a probability in (0, 1]")
        return float(limit)

    def _may_fit(self) -> bool:
        actor = self._s.actor
        return bool(actor.is_system or "admin" in actor.roles or actor.department == "admin")

    def _fitted(
        self,
        record_type: str,
        found: Sequence[Features],
        pairs: Sequence[tuple[int, int]],
        levels: Sequence[Sequence[int]],
        *,
        identifying: Mapping[str, str] | None = None,
        force: bool = False,
    ) -> Model:
        """The model to decide with: the stored one, or (stale or forced) a new fit, stored.

        A kind is fitted automatically when an admin (or the system) scans it
        with no fit yet, or after it grew :data:`REFIT_GROWTH` times past the
        last fit; other actors use what is stored.
        """
        current = self._model(record_type)
        stale = current.records == 0 or len(found) >= REFIT_GROWTH * current.records
        if not force and not (stale and self._may_fit() and len(found) >= MIN_FIT_RECORDS):
            return current
        base = current if identifying is None else default_model(record_type, identifying)
        if identifying is None and current.version:
            # Refit from the defaults, keeping the identifying fields chosen before.
            base = default_model(record_type, current.identifying_fields)
        model = fit(base, found, pairs, levels=levels)
        latest = self._s._uow.repo(MatchModel).find(
            Eq("record_type", record_type), order_by=[OrderBy("number", True)], limit=1
        )
        number = latest[0].number + 1 if latest else 1
        entry = MatchModel(
            **self._s._stamp(
                record_type=record_type,
                number=number,
                records=model.records,
                pairs=model.pairs,
                parameters=model.to_json(),
            )
        )
        with self._s._atomic():
            self._s._uow.repo(MatchModel).add(entry)
            self._s._record("fit", None, entry)
        model = attrs.evolve(model, version=number)
        self.__dict__.setdefault("_models", {})[record_type] = model
        return model

    def _compare_all(
        self,
        record_type: str,
        records: Sequence[Any],
        *,
        side: Sequence[int] | None = None,
        identifying: Mapping[str, str] | None = None,
        force: bool = False,
    ) -> tuple[
        Scorer,
        list[Features],
        list[tuple[int, int]],
        list[float],
        dict[str, int],
        list[tuple[list[int], dict[str, str]]],
    ]:
        """Block, compare, fit if due, and weigh every candidate pair of ``records``."""
        ids = (
            dict(identifying)
            if identifying is not None
            else self._model(record_type).identifying_fields
        )
        found = [features(r, ids) for r in records]
        chosen = tuple(ids.items())
        pairs, shared_counts = candidate_pairs(found, chosen, side=side)
        compared = [compare(found[a], found[b], chosen) for a, b in pairs]
        model = self._fitted(
            record_type,
            found,
            pairs,
            [c[0] for c in compared],
            identifying=identifying,
            force=force,
        )
        scorer = self._scorer(record_type)
        if scorer.model is not model:
            scorer = model.scorer()

        def shared(kind: str, value: str) -> int:
            return shared_counts.get(("e:" if kind == "email" else "p:") + value, 2)

        weight = scorer.weight
        scored = [
            weight(found[a], found[b], levels, tf, shared)
            for (a, b), (levels, tf) in zip(pairs, compared, strict=True)
        ]
        return scorer, found, pairs, scored, shared_counts, compared

    def scan(
        self, record_type: str = "contact", *, threshold: float | None = None
    ) -> list[Cluster]:
        """Find groups of duplicates among all customers, contacts or leads the actor may read.

        Records are compared only with those sharing a blocking key (see
        :mod:`pycrm.matching.blocking`), so the work grows close to linearly.
        Pairs whose match probability is at or above ``threshold`` (default:
        the CRM's ``duplicate_threshold``) are linked, strongest first, into
        clusters in which every two records match each other well enough (no
        chaining through a third). An admin's (or the system's) scan fits the
        kind's parameters first when none are stored or the data has doubled
        since (see :meth:`fit`).
        """
        cls = self._kind(record_type)
        limit = self._threshold(threshold)
        records = [r for r in self._all(cls, page=MATCH_PAGE) if _live(r)]
        enabled = gc.isenabled()
        gc.disable()  # millions of small tuples: the collector would rescan them all
        try:
            scorer, found, pairs, scored, shared_counts, _ = self._compare_all(record_type, records)
            return self._clusters(record_type, limit, scorer, found, pairs, scored, shared_counts)
        finally:
            if enabled:
                gc.enable()

    def _clusters(
        self,
        record_type: str,
        limit: float,
        scorer: Scorer,
        found: Sequence[Features],
        pairs: Sequence[tuple[int, int]],
        scored: Sequence[float],
        shared_counts: Mapping[str, int],
    ) -> list[Cluster]:
        bar = weight_of(limit)
        n = len(found)
        weights = {a * n + b: w for (a, b), w in zip(pairs, scored, strict=True)}
        links = [(a, b, w) for (a, b), w in zip(pairs, scored, strict=True) if w >= bar]

        def shared(kind: str, value: str) -> int:
            return shared_counts.get(("e:" if kind == "email" else "p:") + value, 2)

        def weight(x: int, y: int) -> float:
            a, b = min(x, y), max(x, y)
            known = weights.get(a * n + b)
            if known is None:
                levels, tf = scorer.levels(found[a], found[b])
                known = weights[a * n + b] = scorer.weight(found[a], found[b], levels, tf, shared)
            return known

        out = []
        for group in clusters(n, links, weight, bar - CLUSTER_SLACK):
            inside = []
            for x, a in enumerate(group):
                for b in group[x + 1 :]:
                    if weight(a, b) >= bar:
                        result = scorer.score(found[a], found[b], shared)
                        first, second = sorted((found[a].record_id, found[b].record_id))
                        inside.append(
                            (
                                first,
                                second,
                                round(result.probability, 6),
                                _explain(scorer, found[a], found[b], result),
                            )
                        )
            out.append(
                Cluster(
                    record_type,
                    tuple(sorted(found[i].record_id for i in group)),
                    tuple(sorted(inside, key=lambda p: (p[0], p[1]))),
                    scorer.model.version,
                )
            )
        return sorted(out, key=lambda c: c.record_ids)

    # -- fitting and linkage -------------------------------------------------

    @write
    def fit(
        self, record_type: str = "contact", *, identifying: Mapping[str, str] | None = None
    ) -> MatchModel:
        """Fit the matching parameters of a kind to the records the actor may read, and store them.

        m and u probabilities and the priors are estimated without labels (EM
        over the blocked candidate pairs, u from value frequencies and random
        pairs). Each fit stores a new version (:class:`MatchModel`); the check
        at the door, imports, scans and links then decide with it, and every
        decision names its version. ``identifying`` chooses the custom fields
        that identify a record of this kind, each with how it is compared:
        ``date``, ``identifier``, ``text`` or ``number``
        (``{"birth_date": "date", "vat_id": "identifier"}``); without it, the
        fields chosen at the last fit are kept.

        :raises PermissionDenied: unless the actor is an admin (or the system).
        """
        cls = self._kind(record_type)
        self._require_admin("fit", MatchModel.resource)
        if identifying is not None:
            check_mapping("identifying", identifying)
            defs = self._s._field_definitions(record_type)
            for key, kind in identifying.items():
                if key not in defs:
                    raise ValidationError(
                        "identifying", key, f"is not a custom field of {record_type}"
                    )
                check_one_of(f"identifying.{key}", kind, IDENTIFIER_KINDS)
        records = [r for r in self._all(cls, page=MATCH_PAGE) if _live(r)]
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._compare_all(record_type, records, identifying=identifying, force=True)
        finally:
            if enabled:
                gc.enable()
        return self._s._uow.repo(MatchModel).find(
            Eq("record_type", record_type), order_by=[OrderBy("number", True)], limit=1
        )[0]

    def models(self, record_type: str = "contact") -> list[MatchModel]:
        """Every stored version of a kind's fitted parameters, newest first."""
        self._kind(record_type)
        self._require_admin("read", MatchModel.resource)
        return self._s._uow.repo(MatchModel).find(
            Eq("record_type", record_type), order_by=[OrderBy("number", True)]
        )

    def _source(
        self, source: Any, name: str, record_type: str | None
    ) -> tuple[str, list[Any], list[str]]:
        """A source's kind, its records (rows parsed as ``create`` would) and their labels."""
        if isinstance(source, str):
            cls = _TYPES[check_one_of(name, source, _TYPES)]
            records = [r for r in self._all(cls, page=MATCH_PAGE) if _live(r)]
            return source, records, [r.id for r in records]
        if isinstance(source, Mapping) or not isinstance(source, Iterable):
            raise ValidationError(
                name, source, "must be a record kind or a list of rows (mappings of fields)"
            )
        kind = record_type or "contact"
        self._kind(kind)
        records = []
        for i, row in enumerate(source):
            if not isinstance(row, Mapping):
                raise ValidationError(f"{name}[{i}]", row, "must be a mapping of fields")
            try:
                records.append(self._draft(kind, dict(row)))
            except ValidationError as exc:  # name the row's place: source_a[0].emails[1]
                places = [
                    FieldError(f"{name}[{i}].{e.field}", e.value, e.reason) for e in exc.errors
                ]
                raise ValidationError(errors=places) from None
        return kind, records, [f"row {i}" for i in range(len(records))]

    def _draft(self, record_type: str, fields: dict[str, Any]) -> Any:
        """The record ``create`` would make of these fields, without writing it."""
        from pycrm.domain.custom_fields import check_custom

        service = getattr(self._s, record_type + "s")
        custom = fields.pop("custom", None)
        fold_points(fields)
        lenient = check_bool("lenient", fields.pop("lenient", True))
        fields.setdefault("name", None)  # required, as create's signature makes it
        values = service._parse(fields, creating=True, lenient=lenient)
        if record_type == "lead":
            values.setdefault("source", "check")
        if custom is not None:
            check_mapping("custom", custom)
            defs = self._s._field_definitions(record_type)
            values["custom"] = check_custom(defs, {}, custom, creating=False)
        return _TYPES[record_type](**self._s._stamp(**values))

    def link(
        self,
        source_a: Any,
        source_b: Any,
        *,
        record_type: str | None = None,
        threshold: float | None = None,
        one_to_one: bool = False,
    ) -> list[Link]:
        """Match one source against another: an import file against the stored customers.

        Each source is a record kind (``"contact"``: the live records of that
        kind the actor may read) or a list of rows, each a mapping of the
        fields ``create`` takes (parsed the same way, nothing written; a row
        may carry ``custom``). Only pairs across the sources are compared.
        Returns the pairs at or above ``threshold`` (default: the CRM's
        ``duplicate_threshold``), best first; with ``one_to_one``, each record
        is paired at most once (best pairs first). Rows are named ``row <n>``.
        """
        check_bool("one_to_one", one_to_one)
        if record_type is not None:
            self._kind(record_type)
        limit = self._threshold(threshold)
        kind_a, left, names_a = self._source(source_a, "source_a", record_type)
        kind_b, right, names_b = self._source(source_b, "source_b", record_type or kind_a)
        if (kind_a == "customer") != (kind_b == "customer"):
            raise ValidationError("source_b", source_b, "must hold the same kind of record")
        kind = record_type or (kind_b if isinstance(source_b, str) else kind_a)
        enabled = gc.isenabled()
        gc.disable()
        try:
            side = [0] * len(left) + [1] * len(right)
            scorer, found, pairs, scored, shared_counts, compared = self._compare_all(
                kind, [*left, *right], side=side
            )
        finally:
            if enabled:
                gc.enable()
        names = names_a + names_b
        bar = weight_of(limit)
        kept = sorted(
            (
                (w, a, b, n)
                for n, ((a, b), w) in enumerate(zip(pairs, scored, strict=True))
                if w >= bar
            ),
            key=lambda t: (-t[0], t[1], t[2]),
        )
        used: set[int] = set()

        def shared(kind: str, value: str) -> int:
            return shared_counts.get(("e:" if kind == "email" else "p:") + value, 2)

        out: list[Link] = []
        for _, a, b, n in kept:
            if one_to_one and (a in used or b in used):
                continue
            used.update((a, b))
            levels, tf = compared[n]
            result = scorer.weigh(found[a], found[b], levels, tf, shared)
            out.append(
                Link(
                    names[a],
                    names[b],
                    round(result.probability, 6),
                    round(result.weight, 3),
                    result.weights,
                    _explain(scorer, found[a], found[b], result),
                    scorer.model.version,
                )
            )
        return out

    # -- merge and unmerge ---------------------------------------------------

    def _mergeable(self, record_type: str) -> type[Customer] | type[Contact] | type[Lead]:
        if record_type not in MERGEABLE:
            raise ValidationError(
                "record_type", record_type, "only customers, contacts and leads are merged"
            )
        return MERGEABLE[record_type]

    @write
    def merge(
        self,
        survivor_id: str,
        duplicate_ids: Sequence[str],
        *,
        record_type: str = "customer",
        rules: Mapping[str, SurvivorshipRule] | None = None,
        dry_run: bool = False,
    ) -> MergeResult:
        """Merge duplicate customers, contacts or leads (``record_type``) into a survivor.

        Field values follow the survivorship ``rules`` (see
        :func:`pycrm.domain.merging.survive`); every related record (contacts,
        activities, leads, deals, contracts, receivables, tasks, documents …)
        is re-pointed at the survivor; the duplicates stay as tombstones with
        status ``merged``. Sends ``customers_merged`` (``contacts_merged``,
        ``leads_merged``). With ``dry_run`` nothing is written and the result
        shows what would happen.

        Leads: the survivor keeps its place in the workflow (status, owner,
        assignment, score, conversion), so pick the lead furthest along as the
        survivor; a converted lead cannot be merged away. Needs ``update`` on
        the survivor and ``delete`` on each duplicate, as for every kind; a
        record the actor may not read raises NotFound, as for every write.
        """
        check_id("survivor_id", survivor_id)
        check_ids("duplicate_ids", duplicate_ids)
        check_one_of("record_type", record_type, MERGEABLE)
        check_mapping("rules", rules)
        check_bool("dry_run", dry_run)
        cls = self._mergeable(record_type)
        if isinstance(duplicate_ids, str) or not duplicate_ids:
            raise ValidationError("duplicate_ids", duplicate_ids, "must be a non-empty list of ids")
        ids = list(dict.fromkeys(duplicate_ids))
        if survivor_id in ids:
            raise ValidationError(
                "duplicate_ids", survivor_id, "the survivor cannot be merged into itself"
            )
        repo = self._s._uow.repo(cls)
        found = repo.get_many([survivor_id, *ids])
        for id in (survivor_id, *ids):
            found_record = found.get(id)
            # A record the actor may not read is not there for them, whatever their update
            # or delete grants: the result would hand back the survivor and name the rest.
            if found_record is None or not self._s._guard.allows(found_record, "read"):
                raise NotFound(record_type, id)
            if found_record.status is MERGED[record_type]:
                raise InvalidTransition(record_type, "merged", "merged", f"{id} was already merged")
            if id != survivor_id and getattr(found_record, "converted_at", None) is not None:
                raise InvalidTransition(
                    record_type, "converted", "merged", f"{id} was converted: it is history"
                )
        survivor = found[survivor_id]
        duplicates = [found[i] for i in ids]
        self._s._guard.require(survivor, "update")
        for duplicate in duplicates:
            self._s._guard.require(duplicate, "delete")
        values = survive([survivor, *duplicates], rules)
        changes: list[MergeChange] = []
        now, actor = self._s._now(), self._s.actor.id

        def rewrite(record: Record, action: str, **fields: Any) -> Record:
            updated = attrs.evolve(
                record, **fields, version=record.version + 1, updated_at=now, updated_by=actor
            )
            changes.append(
                MergeChange(record.resource, record.id, to_dict(record), updated.version)
            )
            if not dry_run:
                self._s._replace(updated, record)
                self._s._record(action, record, updated)
            return updated

        merged = rewrite(
            survivor, "merge", **{k: v for k, v in values.items() if getattr(survivor, k) != v}
        )
        for duplicate in duplicates:
            rewrite(duplicate, "merge", status=MERGED[record_type], merged_into=survivor_id)
        reparented: list[tuple[str, str, str]] = []
        for ref_cls, field in REFERENCES[record_type]:
            related = self._s._uow.repo(ref_cls).find(In(field, ids))
            for record in related:
                # Following the survivor is part of the merge the actor may do; the result
                # names only the records the actor may read (not others' private notes).
                rewrite(record, "reparent", **{field: survivor_id})
                if self._s._guard.allows(record, "read"):
                    reparented.append((record.resource, record.id, field))
        merge_id = None
        if not dry_run:
            entry = Merge(
                **self._s._stamp(
                    record_type=record_type,
                    survivor_id=survivor_id,
                    merged_ids=tuple(ids),
                    changes=tuple(changes),
                )
            )
            self._s._uow.repo(Merge).add(entry)
            self._s._record("merge", None, entry, event=f"{record_type}s_merged")
            merge_id = entry.id
        return MergeResult(merge_id, merged, tuple(ids), tuple(reparented))

    @write
    def unmerge(self, merge_id: str) -> MergeResult:
        """Undo a merge: every record it changed goes back to how it was.

        :raises ConcurrencyError: when one of them changed since the merge.
        """
        check_id("merge_id", merge_id)
        repo = self._s._uow.repo(Merge)
        entry = repo.get(merge_id) if isinstance(merge_id, str) else None
        if entry is None:
            raise NotFound("merge", str(merge_id))
        if entry.undone_at is not None:
            raise InvalidTransition("merge", "undone", "undone", "this merge was already undone")
        self._s._guard.require(entry, "update")
        types: dict[str, type[Record]] = {cls.resource: cls for cls in MERGEABLE.values()}
        for refs in REFERENCES.values():
            types.update((cls.resource, cls) for cls, _ in refs)
        now, actor = self._s._now(), self._s.actor.id
        survivor: Any = None
        for change in reversed(entry.changes):
            cls = types[change.record_type]
            current = self._s._uow.repo(cls).get(change.record_id)
            if current is None:
                raise NotFound(change.record_type, change.record_id)
            if current.version != change.version_after:
                raise ConcurrencyError(
                    change.record_type, change.record_id, change.version_after, current.version
                )
            if change.record_type == entry.record_type:
                # Undoing a merge is as much as merging: update the survivor, restore the
                # duplicates (the merge needed delete on them).
                survived = change.record_id == entry.survivor_id
                self._s._guard.require(current, "update" if survived else "delete")
                if survived and not self._s._guard.allows(current, "read"):
                    raise NotFound(change.record_type, change.record_id)
            restored = attrs.evolve(
                from_dict(cls, change.before),
                version=current.version + 1,
                updated_at=now,
                updated_by=actor,
            )
            self._s._replace(restored, current)
            self._s._record("unmerge", current, restored)
            if change.record_id == entry.survivor_id:
                survivor = restored
        done = attrs.evolve(
            entry, undone_at=now, version=entry.version + 1, updated_at=now, updated_by=actor
        )
        self._s._replace(done, entry)
        self._s._record("unmerge", entry, done, event="merge_undone")
        return MergeResult(entry.id, survivor, entry.merged_ids, ())

    # -- cleansing report ----------------------------------------------------

    def cleansing_report(self, record_type: str | None = None) -> list[CleansingIssue]:
        """Records a data steward should fix.

        Lists invalid emails and phones (kept as typed in lenient mode),
        contacts and leads with no valid way to reach them, and incomplete addresses.
        Only records the actor may read are listed; without ``record_type``,
        the kinds the actor may not read are left out.

        :raises PermissionDenied: for a ``record_type`` the actor may not read.
        """
        kinds = list(_TYPES) if record_type is None else [record_type]
        issues: list[CleansingIssue] = []
        for kind in kinds:
            for record in self._all(self._kind(kind), quiet=record_type is None):
                if not _live(record) or getattr(record, "status", None) is RecordStatus.ARCHIVED:
                    continue
                for point in record.contact_points:
                    if not point.valid:
                        issues.append(
                            CleansingIssue(
                                kind,
                                record.id,
                                point.kind.value,
                                point.value,
                                f"not a valid {point.kind.value}",
                            )
                        )
                if kind != "customer" and not any(p.valid for p in record.contact_points):
                    issues.append(
                        CleansingIssue(
                            kind, record.id, "contact_points", (), "no valid email or phone"
                        )
                    )
                address = getattr(record, "address", None)
                if address is not None:
                    missing = [
                        p
                        for p in ("line1", "postcode", "city", "country")
                        if not getattr(address, p)
                    ]
                    if missing:
                        issues.append(
                            CleansingIssue(
                                kind,
                                record.id,
                                "address",
                                to_dict(address),
                                f"missing {', '.join(missing)}",
                            )
                        )
        return issues
