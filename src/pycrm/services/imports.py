"""Bulk import: streamed, chunked, idempotent and resumable, with every bad row accounted for.

Each chunk of rows is imported in a transaction of its own (a new unit of
work as the same actor and tenant), so a killed import keeps every chunk it
finished; running it again skips those rows by their external id and
finishes the rest. Rows are looked up in the database by external id, email
and phone with one indexed query per chunk, never per row.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, cast

import attrs

from pycrm.csvfiles import CsvRow
from pycrm.domain.audit import AuditEntry, compact
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.events import Event
from pycrm.domain.fields import (
    Checks,
    check_bool,
    check_int,
    check_key,
    check_mapping,
    check_points,
    check_text,
)
from pycrm.domain.ids import new_id
from pycrm.domain.imports import IMPORT_POLICIES, ImportReport, Reject, resolve_mapping, row_key
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.normalise import company_key, person_key
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.query import AnyKey
from pycrm.domain.records import Record
from pycrm.domain.tasks import Task
from pycrm.errors import (
    ConfigurationError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pycrm.matching.features import Features, features
from pycrm.matching.model import weight_of
from pycrm.regions import region_code
from pycrm.rules.context import RuleContext
from pycrm.serialization import to_dict
from pycrm.services.dedupe import PROBE_LIMIT
from pycrm.services.records import Service
from pycrm.session import Session

__all__ = ["ImporterService", "RejectsWriter"]

Row = Mapping[str, Any]

#: Bytes the file's encoding could not decode, kept by ``surrogateescape``.
_UNDECODED = re.compile("[\udc80-\udcff]")

_TEXT = {
    "name": 200, "company": 200, "title": 200, "region": 200, "industry": 200,
    "needs": 5000, "campaign": 200, "source": 60, "website": 500, "customer": 200,
}  # fmt: skip

_FIELDS = {
    "lead": ("external_id", "name", "email", "phone", "company", "title", "region", "industry",
             "needs", "campaign", "source"),
    "contact": ("external_id", "name", "email", "phone", "title", "customer"),
    "customer": ("external_id", "name", "email", "phone", "industry", "region", "website"),
}  # fmt: skip

_TYPES: dict[str, type[Lead] | type[Contact] | type[Customer]] = {
    "lead": Lead,
    "contact": Contact,
    "customer": Customer,
}


class RejectsWriter:
    """Writes rejected rows to a CSV: line, field, reason, then the row's own columns.

    A row with more values than the header gets its surplus values after the
    columns, so nothing it held is lost.
    """

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._writer = csv.writer(stream)
        self._columns = [c for c in columns if c is not None]
        self._writer.writerow(["line", "field", "reason", *self._columns])

    def __call__(self, reject: Reject) -> None:
        """Write one rejected row."""
        values = reject.values
        self._writer.writerow(
            [
                reject.line,
                reject.field,
                reject.reason,
                *(values.get(c, "") for c in self._columns),
                *reject.extra,
            ]
        )


@attrs.frozen
class _Raw:
    """A row as read: its line, its values by column, and what did not fit the header."""

    line: int
    values: dict[str, Any]
    missing: tuple[str, ...] = ()
    surplus: tuple[str, ...] = ()
    problem: str | None = None
    """Why the row cannot be read at all (it is not a mapping)."""


def _records(rows: Iterable[Row], start_line: int) -> Iterator[_Raw]:
    """The rows with their file lines, and the columns they lack or have too many of.

    :class:`~pycrm.csvfiles.CsvRow` records know all three. A ``csv.DictReader``
    marks a short record with ``None`` values and puts surplus values under the
    key ``None``; its line is where the record starts, even after blank lines
    and line breaks inside quoted values (shifted by ``start_line`` - 2, for a
    file read in parts). Any other mapping is one row per line from
    ``start_line`` on, and ``None`` means an empty value.
    """
    if isinstance(rows, csv.DictReader):
        for record in rows:
            fields = {k: v for k, v in record.items() if k is not None}
            surplus = tuple(record.get(None) or ())
            breaks = sum(v.count("\n") for v in (*fields.values(), *surplus) if v)
            yield _Raw(
                rows.line_num - breaks + start_line - 2,
                fields,
                tuple(k for k, v in fields.items() if v is None),
                surplus,
            )
        return
    line = start_line - 1
    for raw in rows:
        line += 1
        if isinstance(raw, CsvRow):
            yield _Raw(raw.line, raw, raw.missing, raw.surplus)
            continue
        if not isinstance(raw, Mapping):
            yield _Raw(line, {}, problem=f"is not a mapping of column to value: {raw!r:.60}")
            continue
        extra = cast("Mapping[object, Any]", raw).get(None)  # a DictReader row's surplus
        values = {str(k): v for k, v in raw.items() if k is not None}
        yield _Raw(line, values, (), tuple(extra) if isinstance(extra, list | tuple) else ())


def _column_field(field: str) -> str:
    """The import field a check's field names: ``emails[0]`` is the ``email`` column."""
    if field.startswith(("emails", "phones")):
        return field.split("[")[0].rstrip("s")
    return field


def _refuse(
    report: ImportReport, rejects: Callable[[Reject], object] | None, reject: Reject
) -> None:
    report.reject(reject)
    if rejects is not None:
        rejects(reject)


@attrs.define
class _Row:
    line: int
    values: dict[str, Any]
    external_id: str
    raw: Mapping[str, Any]
    """The row as read, by column (what a reject hands back)."""
    keys: list[tuple[str, str]] = attrs.field(factory=list)
    lookalike: list[tuple[str, str]] = attrs.field(factory=list)
    """Name keys of stored records the matcher weighs when no email or phone is shared."""


class ImporterService(Service):
    """``s.importer``: bulk imports of leads, contacts and customers."""

    def leads(self, rows: Iterable[Row], **options: Any) -> ImportReport:
        """Import leads from an iterable of mappings (a ``csv.DictReader``, a generator …).

        :param rows: the rows, read lazily (never loaded whole).
        :param mapping: field → column name; fields not mapped are found by common
            column names (``email``, ``E-mail``, ``Phone``, ``Company`` …).
        :param default_region: region for phones without a country code (default: the CRM's).
        :param on_duplicate: ``skip`` (default), ``merge`` or ``flag`` for rows matching a
            stored lead or contact, or an earlier row, by email or phone.
        :param source: lead source when the row has none (default ``import``).
        :param campaign: campaign when the row has none.
        :param external_id: column holding each row's id in the source system; without it
            a stable hash of the row's values is used, so re-running the same file creates nothing.
        :param chunk_size: rows per transaction (default 1,000).
        :param rejects: called with each :class:`~pycrm.domain.imports.Reject` (e.g. a
            :class:`RejectsWriter`).
        :param lenient: keep invalid phones and emails flagged instead of rejecting the row.
        :param start_line: line number of the first row (default 2: after a header).
        :param progress: called with the number of rows read after each chunk.
        :param dry_run: check and count every row as the import would, then roll it all
            back: no record, audit entry, signal or outbox message is written. The whole
            file runs in one transaction (on SQLite it holds the write lock until the end).
        :raises ConfigurationError: when this session has uncommitted writes (the chunks
            commit in transactions of their own), or for a bad ``mapping``.
        :raises ValidationError: for a bad option, or a file without a name column.
        :raises PermissionDenied: when the actor may not create this kind of record.
        """
        return self._run("lead", rows, **options)

    def contacts(self, rows: Iterable[Row], **options: Any) -> ImportReport:
        """Import contacts (columns: name, email, phone, title, customer — linked by company name).

        Takes the options of :meth:`leads` (``source`` and ``campaign`` aside).
        """
        return self._run("contact", rows, **options)

    def customers(self, rows: Iterable[Row], **options: Any) -> ImportReport:
        """Import customers (columns: name, email, phone, industry, region, website).

        Takes the options of :meth:`leads` (``source`` and ``campaign`` aside).
        """
        return self._run("customer", rows, **options)

    # -- the pipeline ----------------------------------------------------------

    def _run(
        self,
        kind: str,
        rows: Iterable[Row],
        *,
        mapping: Mapping[str, str] | None = None,
        default_region: str | None = None,
        on_duplicate: str = "skip",
        source: str = "import",
        campaign: str | None = None,
        external_id: str | None = None,
        chunk_size: int = 1000,
        rejects: Callable[[Reject], object] | None = None,
        lenient: bool = False,
        start_line: int = 2,
        progress: Callable[[int], object] | None = None,
        dry_run: bool = False,
        **unknown: Any,
    ) -> ImportReport:
        if unknown:
            name = min(unknown)
            raise ValidationError(name, unknown[name], "is not an import option")
        if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
            raise ValidationError("rows", rows, "must be an iterable of rows (mappings)")
        for field, column in (check_mapping("mapping", mapping) or {}).items():
            check_key(f"mapping.{field}", column, what="a column name")
        if default_region is not None:
            default_region = region_code(default_region)
        if external_id is not None:
            check_key("external_id", external_id)
        with Checks() as checks:
            # Cleaned as a row's own source and campaign are (and as a capture's).
            source = checks(check_text, "source", source, required=True, limit=60) or ""
            campaign = checks(check_text, "campaign", campaign, limit=200)
            checks(check_bool, "lenient", lenient)
            checks(check_bool, "dry_run", dry_run)
            checks(check_int, "start_line", start_line, minimum=0)
        if start_line is None:
            raise ValidationError("start_line", start_line, "is required")
        for name, call in (("rejects", rejects), ("progress", progress)):
            if call is not None and not callable(call):
                raise ValidationError(name, call, "must be a function")
        if on_duplicate not in IMPORT_POLICIES:
            raise ValidationError(
                "on_duplicate", on_duplicate, f"must be one of {', '.join(IMPORT_POLICIES)}"
            )
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, int)
            or not 1 <= chunk_size <= 50_000
        ):
            raise ValidationError(
                "chunk_size", chunk_size, "must be a whole number from 1 to 50,000"
            )
        self._s._guard.require_any(kind, "create")
        if self._s._events:
            # Each chunk commits in a transaction of its own, which would wait on
            # (SQLite) or never see (PostgreSQL) this session's uncommitted rows.
            raise ConfigurationError(
                "s.importer commits chunk by chunk in transactions of its own: call it in "
                "a session without uncommitted writes (commit this session's work first)"
            )
        options = {
            "kind": kind,
            "region": default_region or self._s.settings._default_region(),
            "policy": on_duplicate,
            "source": source,
            "campaign": campaign,
            "lenient": lenient,
        }
        fields = _FIELDS[kind]
        if external_id is not None:
            mapping = {**(mapping or {}), "external_id": external_id}
        report = ImportReport()
        started = time.perf_counter()
        resolved: dict[str, str] | None = None
        header: list[str] = []
        chunk: list[_Raw] = []
        # A dry run keeps every chunk in one transaction, so later chunks see the
        # earlier ones as a real import would, and rolls it back at the end.
        trial = self._s.crm.session(self._s.actor, tenant=self._s.tenant_id) if dry_run else None
        try:
            for raw in _records(rows, start_line):
                report.rows += 1
                if resolved is None and raw.problem is None:
                    header = list(raw.values)
                    resolved = resolve_mapping(header, fields, mapping)
                    if "name" not in resolved:
                        raise ValidationError(
                            "mapping", header, "no column for the required field 'name'"
                        )
                chunk.append(raw)
                if len(chunk) >= chunk_size:
                    self._chunk(chunk, resolved or {}, header, options, report, rejects, trial)
                    chunk = []
                    if progress is not None:
                        progress(report.rows)
            if chunk:
                self._chunk(chunk, resolved or {}, header, options, report, rejects, trial)
                if progress is not None:
                    progress(report.rows)
        finally:
            if trial is not None:
                trial._lasting.clear()  # a dry run writes nothing, not even its refusals
                trial.rollback()
        report.elapsed = time.perf_counter() - started
        return report

    def _prepare(
        self,
        row: _Raw,
        mapping: Mapping[str, str],
        header: Sequence[str],
        options: Mapping[str, Any],
    ) -> _Row | Reject:
        line, raw = row.line, row.values
        if row.problem is not None:
            return Reject(line, "row", row.problem, raw)
        if row.surplus:
            return Reject(
                line,
                "row",
                f"has {len(header) + len(row.surplus)} values, the header has {len(header)}",
                raw,
                row.surplus,
            )
        if row.missing:
            return Reject(line, "row", f"has fewer values than the header's {len(header)}", raw)
        unknown = [column for column in raw if column not in header]
        if unknown:  # a mapping row naming a column the first row has not: never dropped silently
            return Reject(
                line,
                ", ".join(unknown),
                f"is not a column of the first row ({', '.join(header)}); "
                "give every row the same columns",
                raw,
                tuple(str(raw[column]) for column in unknown),  # kept in the rejects file
            )
        for column, value in raw.items():
            if isinstance(value, str) and _UNDECODED.search(value):
                return Reject(line, str(column), "is not valid text in the file's encoding", raw)
        picked = {field: raw.get(column) for field, column in mapping.items()}
        picked = {k: (v.strip() if isinstance(v, str) else v) or None for k, v in picked.items()}
        ext = picked.pop("external_id", None)
        if ext is not None:
            try:
                ext = check_key(
                    "external_id", str(ext) if type(ext) is int else ext, what="text", limit=200
                )
            except ValidationError as exc:
                return Reject(line, "external_id", exc.reason, raw)
        kind = options["kind"]
        values: dict[str, Any] = {}
        try:
            with Checks() as checks:
                for field, value in picked.items():
                    if field in _TEXT:
                        values[field] = checks(
                            check_text, field, value, required=field == "name", limit=_TEXT[field]
                        )
                if "name" not in picked:
                    values["name"] = checks(check_text, "name", None, required=True)
                values["contact_points"] = checks(
                    check_points,
                    [picked["email"]] if picked.get("email") else [],
                    [picked["phone"]] if picked.get("phone") else [],
                    region=options["region"],
                    lenient=options["lenient"],
                )
        except ValidationError as exc:
            named = [(_column_field(e.field), e.reason) for e in exc.errors]
            fields = list(dict.fromkeys(field for field, _ in named))
            if len(fields) == 1:
                reason = "; ".join(reason for _, reason in named)
            else:  # each reason says which field it is about
                reason = "; ".join(f"{field}: {reason}" for field, reason in named)
            return Reject(line, ", ".join(fields), reason, raw)
        if kind == "lead":
            values["source"] = (values.get("source") or options["source"]).lower().replace(" ", "_")
            values["campaign"] = values.get("campaign") or options["campaign"]
        if kind != "contact":
            values.pop("customer", None)
        external = str(ext) if ext else row_key(picked)
        prepared = _Row(line, values, external, raw)
        prepared.keys = [(p.kind.value, p.match_key()) for p in values["contact_points"] if p.valid]
        name = values.get("name")
        if kind == "customer":
            prepared.lookalike = [("company", company_key(name))] if name else []
        else:
            prepared.lookalike = [("person", person_key(name))] if name else []
        return prepared

    def _chunk(
        self,
        chunk: list[_Raw],
        mapping: Mapping[str, str],
        header: Sequence[str],
        options: Mapping[str, Any],
        report: ImportReport,
        rejects: Callable[[Reject], object] | None,
        trial: Session | None = None,
    ) -> None:
        prepared: list[_Row] = []
        for raw in chunk:
            result = self._prepare(raw, mapping, header, options)
            if isinstance(result, Reject):
                _refuse(report, rejects, result)
            else:
                prepared.append(result)
        if trial is not None:
            _Chunk(trial, options, report, rejects).run(prepared)
            return
        crm = self._s.crm
        with crm.session(actor=self._s.actor, tenant=self._s.tenant_id) as session:
            _Chunk(session, options, report, rejects).run(prepared)


class _Chunk:
    """One chunk, in one transaction."""

    def __init__(
        self,
        session: Session,
        options: Mapping[str, Any],
        report: ImportReport,
        rejects: Callable[[Reject], object] | None,
    ) -> None:
        self.s = session
        self.kind: str = options["kind"]
        self.cls = _TYPES[self.kind]
        self.policy: str = options["policy"]
        self.report = report
        self.rejects = rejects
        self.records: list[Record] = []
        self.audit: list[AuditEntry] = []
        self.outbox: list[OutboxMessage] = []
        self.events: list[Event] = []
        self._features: dict[tuple[str, int], Features] = {}

    def run(self, rows: list[_Row]) -> None:
        s = self.s
        repo = s._uow.repo(self.cls)
        stored_ext = {
            r.external_id: r
            for r in repo.find(AnyKey("external_id", [r.external_id for r in rows]))
        }
        existing = self._existing(rows)
        alike = self._alike(rows)
        seen_ext: set[str] = set()
        pending: dict[tuple[str, str], Record] = {}
        customers = self._customers(rows) if self.kind == "contact" else {}
        for row in rows:
            if row.external_id in stored_ext and self.policy == "merge":
                # The same row imported before: update that record, never duplicate it.
                stored = stored_ext[row.external_id]
                if self._update(stored, row, "updated by its external id"):
                    self._learn(existing, row, stored)
                continue
            if row.external_id in stored_ext or row.external_id in seen_ext:
                self.report.add("skipped", "already imported")
                continue
            seen_ext.add(row.external_id)
            match = next((existing[k] for k in row.keys if k in existing), None)
            earlier = next((pending[k] for k in row.keys if k in pending), None)
            if match is None and earlier is None:
                # No shared email or phone: the matcher (the check at the door's engine
                # and parameters) weighs the stored records of the same name or building.
                match = self._best(row, [r for k in row.lookalike for r in alike.get(k, ())])
            if (match or earlier) is not None and self.policy != "flag":
                if self.policy == "skip":
                    self.report.add(
                        "skipped",
                        "duplicate of " + ("a stored record" if match else "an earlier row"),
                    )
                    continue
                self._merge(match, earlier, row, pending, existing)
                continue
            if (match or earlier) is not None:
                self.report.add("flagged", "possible duplicate (flagged)")
            record = self._build(row, customers)
            self.records.append(record)
            for key in row.keys:
                pending.setdefault(key, record)
            self.report.add("created")
        if self.kind == "lead":
            self.records = [self._route(r) for r in self.records]  # type: ignore[arg-type]
        self._write()

    def _best(self, row: _Row, candidates: list[Record]) -> Record | None:
        """The candidate the matcher finds most likely the row's record, if likely enough."""
        if not candidates:
            return None
        dedupe = self.s.dedupe
        scorer = dedupe._scorer(self.kind)
        values = {k: v for k, v in row.values.items() if k != "customer"}
        if self.kind == "contact" and row.values.get("customer"):
            values["customer_id"] = None
        draft = features(self.cls(**self.s._stamp(**values)), scorer.model.identifying_fields)
        limit = weight_of(self.s.crm.duplicate_threshold)
        best: tuple[float, Record] | None = None
        for candidate in {c.id: c for c in candidates}.values():
            # A stored namesake is weighed against many rows of the chunk: its
            # features are worked out once (records are immutable).
            at = (candidate.id, candidate.version)
            seen = self._features.get(at)
            if seen is None:
                seen = self._features[at] = features(candidate, scorer.model.identifying_fields)
            weight = scorer.score(draft, seen, explain=False).weight
            if weight >= limit and (best is None or weight > best[0]):
                best = (weight, candidate)
        return None if best is None else best[1]

    def _alike(self, rows: list[_Row]) -> dict[tuple[str, str], list[Record]]:
        """Stored records sharing a row's person-name or company key.

        Per key the first ``PROBE_LIMIT`` by id, as the check at the door
        probes: a common name's thousands of holders are not all weighed
        against every row that bears it.
        """
        found: dict[tuple[str, str], list[Record]] = {}
        for key, record in self._sharing(
            ("person", "company"), {k for r in rows for k in r.lookalike}, per_key=PROBE_LIMIT
        ):
            found.setdefault(key, []).append(record)
        return found

    def _existing(self, rows: list[_Row]) -> dict[tuple[str, str], Record]:
        """The first stored record sharing each email or phone key of the rows."""
        found: dict[tuple[str, str], Record] = {}
        for key, record in self._sharing(("email", "phone"), {k for r in rows for k in r.keys}):
            found.setdefault(key, record)
        return found

    def _sharing(
        self, kinds: tuple[str, ...], wanted: set[tuple[str, str]], per_key: int | None = None
    ) -> Iterator[tuple[tuple[str, str], Record]]:
        """Each ``wanted`` key of ``kinds`` with a stored record holding it.

        One probe per key kind and record type; with ``per_key``, the first
        that many holders of each key (by id). Only records the importer may
        read count (a hidden one is not revealed); closed leads and merged
        records are no one's duplicate.
        """
        classes = [self.cls, Contact] if self.kind == "lead" else [self.cls]
        for kind in kinds:
            keys = {k for t, k in wanted if t == kind}  # a set: a chunk asks for thousands
            if not keys:
                continue
            for cls in classes:
                if self.s._guard.hides_key(cls, kind):
                    continue
                reader = self.s.read(cls, quiet=True)
                held: Iterable[tuple[tuple[str, str], Record]]
                if per_key is None:
                    held = (
                        (key, record)
                        for record in reader.find(AnyKey(kind, sorted(keys)))
                        for key in record.match_keys()
                        if key[0] == kind and key[1] in keys
                    )
                else:
                    holders = reader.find_holders(kind, sorted(keys), per_key=per_key)
                    held = (((kind, k), r) for k, records in holders.items() for r in records)
                for key, record in held:
                    if isinstance(record, Lead) and not record.is_open:
                        continue
                    if getattr(record, "status", None) is RecordStatus.MERGED:
                        continue
                    yield key, record

    def _customers(self, rows: list[_Row]) -> dict[str, str]:
        names = {company_key(r.values.get("customer")) for r in rows if r.values.get("customer")}
        if not names:
            return {}
        found = self.s.read(Customer, quiet=True).find(AnyKey("company", sorted(names)))
        return {company_key(c.name): c.id for c in found}

    def _build(self, row: _Row, customers: Mapping[str, str]) -> Record:
        values = dict(row.values)
        if self.kind == "contact":
            name = values.pop("customer", None)
            values["customer_id"] = customers.get(company_key(name)) if name else None
        record = self.cls(**self.s._stamp(external_id=row.external_id, **values))
        self.s._guard.require(record, "create")
        return record

    def _merge(
        self,
        match: Record | None,
        earlier: Record | None,
        row: _Row,
        pending: dict[tuple[str, str], Record],
        existing: dict[tuple[str, str], Record],
    ) -> None:
        if earlier is not None and match is None:
            merged = attrs.evolve(earlier, **_survivors(earlier, row.values))
            self.records[self.records.index(earlier)] = merged
            for key, value in list(pending.items()):
                if value is earlier:
                    pending[key] = merged
            self._learn(pending, row, merged)
            self.report.add("merged", "merged into an earlier row")
            return
        assert match is not None
        if not isinstance(match, self.cls):
            self.report.add("skipped", f"duplicate of a stored {match.resource}")
            return
        if self._update(match, row, "merged into a stored record"):
            self._learn(existing, row, match)

    @staticmethod
    def _learn(found: dict[tuple[str, str], Record], row: _Row, record: Record) -> None:
        """Later rows sharing an email or phone ``row`` merged into ``record`` match it too.

        So a file gives the same records whatever its chunk size: in a later
        chunk the probe would find the key on the stored record.
        """
        for key in row.keys:
            found.setdefault(key, record)

    def _update(self, stored: Record, row: _Row, reason: str) -> bool:
        """Fill ``stored``'s empty fields from ``row``, as the actor, or reject the row.

        True when the row changed the record.

        A row that changes nothing counts as already imported. One the actor
        may not apply (no right to update that record, or a lead already
        closed) is rejected with the reason, and the import goes on.
        """
        service = getattr(self.s, self.kind + "s")
        try:
            current = service._load(stored.id)
            changes = {
                k: v for k, v in _survivors(current, row.values).items() if getattr(current, k) != v
            }
            if not changes:
                self.report.add("skipped", "already imported")
                return False
            service._change(current, None, "update", **changes)
        except (NotFound, PermissionDenied, InvalidTransition) as exc:
            _refuse(
                self.report,
                self.rejects,
                Reject(
                    row.line,
                    "row",
                    f"matches a stored {stored.resource} it cannot update: {exc}",
                    row.raw,
                ),
            )
            return False
        self.report.add("merged", reason)
        return True

    def _route(self, lead: Lead) -> Lead:
        s = self.s
        ctx = RuleContext(s, bulk=True)
        score, _ = s.crm.rules.score_lead(lead, ctx)
        lead = attrs.evolve(lead, score=score)
        if not hasattr(self, "_candidates"):
            self._candidates = s.leads.candidates(ctx.now)
        decision = s.crm.rules.assign("pycrm_assign_lead", lead, self._candidates, ctx)
        if decision is None:
            return lead
        return attrs.evolve(
            lead,
            owner_id=decision.assignment.owner_id,
            status=LeadStatus.ASSIGNED,
            assigned_at=s._now(),
            assigned_by=decision.decided_by,
            assignment_reason=decision.assignment.reason,
        )

    def _write(self) -> None:
        s = self.s
        tasks: list[Task] = []
        for record in self.records:
            snapshot = self._note(
                record, "import", "created" if self.kind != "lead" else "captured"
            )
            if isinstance(record, Lead) and record.owner_id is not None:
                event = self._event("lead_assigned", record, snapshot)
                with s._guard.bypass():
                    for spec in s.crm.rules.followups(event, RuleContext(s, bulk=True)):
                        task = Task(**s._stamp(**attrs.asdict(spec, recurse=False)))
                        tasks.append(task)
                        self._note(task, "create", "created")
        with s._atomic():
            s._uow.repo(self.cls).add_many(self.records)  # type: ignore[arg-type]
            s._uow.repo(Task).add_many(tasks)
            s._uow.repo(AuditEntry).add_many(self.audit)
            s._uow.repo(OutboxMessage).add_many(self.outbox)
            s._events.extend(self.events)

    def _note(self, record: Record, action: str, verb: str) -> dict[str, Any]:
        # The same form as the session's own creations: the record once, empty fields left out.
        snapshot = compact(to_dict(record))
        self.audit.append(
            AuditEntry(
                id=new_id(),
                tenant_id=record.tenant_id,
                at=record.created_at,
                actor_id=self.s.actor.id,
                department=self.s.actor.department,
                action=action,
                record_type=record.resource,
                record_id=record.id,
                snapshot=snapshot,
            )
        )
        self._event(f"{record.resource}_{verb}", record, snapshot)
        return snapshot

    def _event(self, name: str, record: Record, snapshot: dict[str, Any]) -> Event:
        event = Event(
            id=new_id(),
            name=name,
            tenant_id=record.tenant_id,
            actor_id=self.s.actor.id,
            occurred_at=self.s._now(),
            record_type=record.resource,
            record_id=record.id,
            after=snapshot,
        )
        self.events.append(event)
        self.outbox.append(
            OutboxMessage(
                **self.s._stamp(id=event.id),
                name=name,
                payload=to_dict(event),
                record_id=record.id,
            )
        )
        return event


def _survivors(current: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """Fields of ``current`` filled from ``values`` where empty; contact points unioned."""
    changes: dict[str, Any] = {}
    for field, value in values.items():
        if field == "contact_points":
            known = {(p.kind, p.match_key() or p.value) for p in current.contact_points}
            extra = tuple(p for p in value if (p.kind, p.match_key() or p.value) not in known)
            if extra:
                changes[field] = (*current.contact_points, *extra)
        elif (
            hasattr(current, field)
            and value not in (None, "")
            and getattr(current, field) in (None, "")
        ):
            changes[field] = value
    return changes
