"""Duplicates: checked at the door, found in bulk, merged and unmerged."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
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
from pycrm.domain.matching import Evidence, Profile, profile, reachable_without_keys, score
from pycrm.domain.merging import (
    MERGEABLE,
    REFERENCES,
    Merge,
    MergeChange,
    SurvivorshipRule,
    survive,
)
from pycrm.domain.query import Eq, Filter, HasKey, In, Not, OrderBy, Range, all_of
from pycrm.domain.records import Record
from pycrm.errors import (
    ConcurrencyError,
    DuplicateError,
    InvalidTransition,
    NotFound,
    ValidationError,
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

#: Blocks larger than this are too common to tell anything (a switchboard number).
MAX_BLOCK = 200

#: Name-token blocks larger than this are skipped (a common surname prefix).
MAX_NAME_BLOCK = 30


@attrs.frozen
class Candidate:
    """An existing record that may be a duplicate, with its score and the evidence."""

    record_type: str
    """``customer``, ``contact`` or ``lead``."""
    record_id: str
    """The existing record."""
    score: float
    """0..1; at or above the CRM's ``duplicate_threshold`` counts as a duplicate."""
    evidence: tuple[Evidence, ...]
    """What matched, strongest first."""


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
    """Each linked pair with its score and evidence."""


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


def _profile(record: Any) -> Profile:
    address = record.address if isinstance(record, Customer | Contact) else None
    parts = (
        None
        if address is None
        else (address.line1, address.postcode, address.city, address.country)
    )
    return profile(
        record.resource,
        record.id,
        name=record.name,
        points=record.contact_points,
        company=record.company if isinstance(record, Lead) else None,
        address=parts,
    )


def _keys(p: Profile) -> list[Filter]:
    keys: list[Filter] = [HasKey("email", e) for e in p.emails]
    keys += [HasKey("phone", ph) for ph in p.phones]
    if p.name:
        keys.append(HasKey("company" if p.record_type == "customer" else "person", p.name))
    if p.company:
        keys.append(HasKey("company", p.company))
    return keys


def _blocks(p: Profile, names: bool) -> Iterator[str]:
    """Blocking keys: records sharing one are compared in a scan.

    Name blocks are made only when names (with company and address) can reach
    the threshold without a shared email or phone; otherwise a shared email or
    phone is needed anyway and the email and phone blocks find every pair.
    """
    for e in p.emails:
        yield "e:" + e
    for ph in p.phones:
        yield "p:" + ph
    if p.name and names:
        yield "n:" + p.name
        tokens = p.name.split()
        if len(tokens) > 1:
            # Tolerate a typo in one token: block on a prefix of one token plus
            # the initial of another (both ways round for swapped names).
            for i, token in enumerate(tokens):
                for j, other in enumerate(tokens):
                    if i != j:
                        yield f"t:{token[:4]}|{other[:1]}"
        else:
            yield "t:" + p.name[:5]


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

    def _candidates_for(self, record: Any, *, exclude: Sequence[str] = ()) -> list[Candidate]:
        """Existing records that look like ``record``, best first (index lookups, then scoring).

        Only records the actor may read are compared: a check never reveals a
        record the policy hides (the steward's :meth:`scan` finds those).
        """
        target = _profile(record)
        keys = _keys(target)
        if not keys:
            return []
        threshold = self._s.crm.duplicate_threshold
        skip = {record.id, *exclude}
        found: dict[tuple[str, str], Candidate] = {}
        for kind in _COMPARED_WITH[record.resource]:
            repo = self._s.read(_TYPES[kind], quiet=True)
            # One index probe per key, strongest keys first, each with its own limit:
            # an OR of them defeats SQLite's planner (a scan), and fifty namesakes
            # must not crowd out the one record that shares the email.
            for key in keys:
                for other in repo.find(key, limit=50):
                    if other.id in skip or (kind, other.id) in found or not _live(other):
                        continue
                    value, evidence = score(target, _profile(other))
                    if value >= threshold:
                        found[(kind, other.id)] = Candidate(kind, other.id, value, evidence)
        return sorted(found.values(), key=lambda c: (-c.score, c.record_id))

    def check(self, record_type: str, **fields: Any) -> list[Candidate]:
        """The duplicates a record with these fields would have, without writing anything.

        Takes the fields ``create`` (or ``capture``) of that kind takes.
        """
        cls = self._kind(record_type)
        self._s._guard.filter(cls)  # no read grant for the kind: PermissionDenied
        service = getattr(self._s, record_type + "s")
        fold_points(fields)  # capture() takes email= and phone= too
        values = service._parse(fields, creating=True)
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

    def _all(self, cls: type[Any], *, quiet: bool = False) -> Iterator[Any]:
        """Every record of ``cls`` the actor may read, in pages (PermissionDenied without a grant)."""
        repo = self._s.read(cls, quiet=quiet)
        after: str | None = None
        while True:
            where = (
                None if after is None else all_of([Range("id", after, None), Not(Eq("id", after))])
            )
            page = repo.find(where, order_by=[OrderBy("id")], limit=5000)
            yield from page
            if len(page) < 5000:
                return
            after = page[-1].id

    def scan(
        self, record_type: str = "contact", *, threshold: float | None = None
    ) -> list[Cluster]:
        """Find groups of duplicates among all customers, contacts or leads.

        Records are compared only with those sharing a blocking key (an email,
        a phone, the name, or a name-token prefix with another token's
        initial), so the work grows close to linearly. Pairs at or above
        ``threshold`` (default: the CRM's ``duplicate_threshold``) are linked;
        linked records form clusters.
        """
        cls = self._kind(record_type)
        limit = self._s.crm.duplicate_threshold if threshold is None else threshold
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit <= 1:
            raise ValidationError("threshold", threshold, "must be a number in (0, 1]")
        profiles = [_profile(r) for r in self._all(cls) if _live(r)]
        names = limit <= reachable_without_keys(record_type)
        blocks: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(profiles):
            for key in set(_blocks(p, names)):
                blocks[key].append(i)
        pairs: set[tuple[int, int]] = set()
        for key, members in blocks.items():
            # Name-token blocks grow with the data: past a few dozen they say little.
            cap = MAX_NAME_BLOCK if key.startswith("t:") else MAX_BLOCK
            if 1 < len(members) <= cap:
                pairs.update((a, b) for n, a in enumerate(members) for b in members[n + 1 :])
        parent = list(range(len(profiles)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        linked: list[tuple[int, int, float, tuple[Evidence, ...]]] = []
        for a, b in pairs:
            value, evidence = score(profiles[a], profiles[b])
            if value >= limit:
                linked.append((a, b, value, evidence))
                parent[root(a)] = root(b)
        groups: dict[int, list[tuple[int, int, float, tuple[Evidence, ...]]]] = defaultdict(list)
        for link in linked:
            groups[root(link[0])].append(link)
        clusters = []
        for links in groups.values():
            ids = sorted({profiles[i].record_id for a, b, _, _ in links for i in (a, b)})
            clusters.append(
                Cluster(
                    record_type,
                    tuple(ids),
                    tuple(
                        sorted(
                            (profiles[a].record_id, profiles[b].record_id, s, e)
                            for a, b, s, e in links
                        )
                    ),
                )
            )
        return sorted(clusters, key=lambda c: c.record_ids)

    # -- merge and unmerge ---------------------------------------------------

    def _mergeable(self, record_type: str) -> type[Customer] | type[Contact]:
        if record_type not in MERGEABLE:
            raise ValidationError(
                "record_type", record_type, "only customers and contacts are merged"
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
        """Merge duplicates into a survivor.

        Field values follow the survivorship ``rules`` (see
        :func:`pycrm.domain.merging.survive`); every related record (contacts,
        activities, leads, deals, contracts, receivables, tasks …) is re-pointed
        at the survivor; the duplicates stay as tombstones with status
        ``merged``. Sends ``customers_merged`` (or ``contacts_merged``).
        With ``dry_run`` nothing is written and the result shows what would happen.
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
            if found_record is None:
                raise NotFound(record_type, id)
            if found_record.status is RecordStatus.MERGED:
                raise InvalidTransition(record_type, "merged", "merged", f"{id} was already merged")
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
            rewrite(duplicate, "merge", status=RecordStatus.MERGED, merged_into=survivor_id)
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
        repo = self._s._uow.repo(Merge)
        entry = repo.get(merge_id) if isinstance(merge_id, str) else None
        if entry is None:
            raise NotFound("merge", str(merge_id))
        if entry.undone_at is not None:
            raise InvalidTransition("merge", "undone", "undone", "this merge was already undone")
        self._s._guard.require(entry, "update")
        types: dict[str, type[Record]] = {Customer.resource: Customer, Contact.resource: Contact}
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
