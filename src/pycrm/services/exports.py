"""Exports: records streamed as CSV or JSON Lines, for actors with the ``export`` grant.

An export reads through the session's one read path
(:meth:`~pycrm.session.Session.read`): the actor's read filter and the
``export`` grant's filter are both in the query, fields hidden from the actor
(and custom fields whose ``readable_by`` leaves the actor out) are left out of
every row, and other users' private activities are never read. Rows are read
in pages of :attr:`ExportService.page_size`, by id, so an export of a million
records never holds them all.

Each export is audited once, when it finishes: an entry with action
``export``, the kind as ``record_type``, and in ``changes`` the format, the
filters, how many rows were handed out (``rows``) and whether the export ran
to its end (``complete``).
"""

from __future__ import annotations

import csv as _csv
import json
import os
from collections.abc import Generator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import attrs

from pycrm.domain import RECORD_BY_RESOURCE
from pycrm.domain.audit import AuditEntry
from pycrm.domain.ids import new_id
from pycrm.domain.query import Eq, Filter, Not, OrderBy, Range, all_of
from pycrm.domain.records import Stored
from pycrm.errors import ValidationError
from pycrm.serialization import to_dict
from pycrm.services.records import Service, check_when
from pycrm.session import Reader

__all__ = ["KINDS", "ExportService", "Target"]

#: What can be exported: the kind's plural name → its resource name (either is accepted).
KINDS: dict[str, str] = {
    "customers": "customer",
    "contacts": "contact",
    "leads": "lead",
    "deals": "deal",
    "tickets": "ticket",
    "receivables": "receivable",
    "activities": "activity",
    "documents": "document",
}

Target = str | os.PathLike[str] | TextIO
"""Where an export goes: a file path (created or overwritten, UTF-8) or an open text file."""


@attrs.frozen
class _Plan:
    """One export, checked and ready to stream."""

    cls: type[Stored]
    size: int
    columns: tuple[str, ...]
    where: Filter | None
    filters: dict[str, Any]
    first: tuple[Stored, ...]


class ExportService(Service):
    """Records of one kind as rows, CSV or JSON Lines.

    The kinds are ``customers``, ``contacts``, ``leads``, ``deals``,
    ``tickets``, ``receivables``, ``activities`` and ``documents`` (their
    descriptions, not their bytes), or their singular resource names. The
    actor needs both a read and an ``export`` grant for the kind, and gets the
    records both allow (a document only where its record may be read, and
    only by its chosen readers when it is shared). The filters, shared by
    every method:

    * ``since``, ``until``: timezone-aware datetimes; records with
      ``since <= updated_at < until`` (either may be None: open);
    * ``fields``: the field names to export, in that order (default: every
      field the actor may read, in the record's own order). Naming a field
      hidden from the actor raises PermissionDenied.

    Everything is checked before the first row is handed out and before a
    target file is created, so a refused export writes nothing:

    :raises ValidationError: for an unknown kind (field ``kind``), a naive or
        non-datetime ``since``/``until``, an empty window, an unknown field,
        or a target that cannot be written (field ``target``).
    :raises PermissionDenied: without a read or ``export`` grant for the kind,
        or when ``fields`` names a hidden field (the refusal is audited).

    **Audit.** The entry is written when the export finishes, so that an
    export holds no write lock while it streams (on SQLite, the session's
    first write takes the database's one write lock until it ends). For
    :meth:`csv` and :meth:`jsonl` that is inside the call, even when writing
    the target fails (then ``complete`` is false). For :meth:`rows` it is when
    the iterator is exhausted or closed: ``close()``, leaving a
    ``with contextlib.closing(...)`` block, or dropping the iterator (a
    ``break`` out of a ``for`` loop over it closes it at once in CPython);
    ``rows`` then counts the rows handed out. An iterator never started read
    nothing for its caller and is not audited. Finish or close an iterator
    before its session ends: its entry goes into the session's unit of work
    (and commits, or rolls back, with it), and once the session has ended it
    yields no more rows and its entry can no longer be written.
    """

    page_size: int = 1000
    """Records read per query (set it on ``s.export`` to change it for one session)."""

    # -- the public calls ------------------------------------------------------

    def rows(
        self,
        kind: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        fields: Sequence[str] | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """The records as JSON-form dicts (:func:`pycrm.serialization.to_dict`), by id.

        Each dict holds the exported fields in column order. The iterator
        reads one page at a time; see the class for when it is audited.
        """
        return self._stream(self._plan(kind, since, until, fields), "rows")

    def csv(
        self,
        kind: str,
        target: Target,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        fields: Sequence[str] | None = None,
    ) -> int:
        """Write the records as CSV to ``target``; return how many rows were written.

        A header row names the columns, then one row per record, in id order.
        Cells hold the JSON form of each field, flattened: text as it is,
        numbers and decimal amounts as written in JSON (``12.30``), ``true``
        or ``false``, dates and times in ISO 8601, an empty cell for None;
        lists and mappings (contact points, tags, custom fields, money,
        stage history, messages) as compact JSON text, e.g.
        ``{"amount":"12.30","currency":"EUR"}``. An open file should be
        opened with ``newline=""``, as the :mod:`csv` module asks.
        """
        plan = self._plan(kind, since, until, fields)
        return self._write(plan, target, "csv")

    def jsonl(
        self,
        kind: str,
        target: Target,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        fields: Sequence[str] | None = None,
    ) -> int:
        """Write the records as JSON Lines to ``target``; return how many rows were written.

        One JSON object per line, as :meth:`rows` gives them, in id order.
        """
        plan = self._plan(kind, since, until, fields)
        return self._write(plan, target, "jsonl")

    # -- planning ----------------------------------------------------------------

    def _plan(
        self,
        kind: str,
        since: datetime | None,
        until: datetime | None,
        fields: Sequence[str] | None,
    ) -> _Plan:
        """Check everything and read the first page, so refusals come before any output."""
        size = self.page_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValidationError("page_size", size, "must be a whole number of at least 1")
        resource = KINDS.get(kind, kind) if isinstance(kind, str) else None
        if resource not in KINDS.values():
            raise ValidationError("kind", kind, f"must be one of {', '.join(KINDS)}")
        cls = RECORD_BY_RESOURCE[resource]
        low = None if since is None else check_when("since", since)
        high = None if until is None else check_when("until", until)
        if low is not None and high is not None and high <= low:
            raise ValidationError("until", until, "must be later than since")
        guard = self._s._guard
        names = tuple(f.name for f in attrs.fields(cls))
        if fields is None:
            hidden = guard.hidden(cls.resource)
            columns = tuple(n for n in names if n not in hidden)
        else:
            columns = self._columns(cls, names, fields)
        granted = guard.filter(cls, "export")
        guard.check_fields(cls, columns)
        window = None if low is None and high is None else Range("updated_at", low, high)
        where = all_of([window, granted])
        return _Plan(
            cls=cls,
            size=size,
            columns=columns,
            where=where,
            filters={
                "since": None if low is None else low.isoformat(),
                "until": None if high is None else high.isoformat(),
                "fields": None if fields is None else list(columns),
            },
            first=tuple(self._page(cls, where, None, size)),
        )

    @staticmethod
    def _columns(cls: type[Stored], names: Sequence[str], fields: Sequence[str]) -> tuple[str, ...]:
        if (
            isinstance(fields, str)
            or not isinstance(fields, Sequence)
            or not all(isinstance(f, str) for f in fields)
        ):
            raise ValidationError("fields", fields, "must be a list of field names")
        if not fields:
            raise ValidationError("fields", fields, "must name at least one field")
        for name in fields:
            if name not in names:
                raise ValidationError("fields", name, f"is not a {cls.resource} field")
        if len(set(fields)) != len(fields):
            raise ValidationError("fields", fields, "names a field twice")
        return tuple(fields)

    def _page(
        self, cls: type[Stored], where: Filter | None, after: str | None, size: int
    ) -> list[Stored]:
        """The page of records after id ``after`` (keyset), through the session's read path."""
        if after is not None:
            where = all_of([where, Range("id", after, None), Not(Eq("id", after))])
        # Refused once the session has ended. Not remembered for version checks:
        # a million exported rows would otherwise sit in the session's memory.
        reader = Reader(self._s, cls, remember=False)
        return reader.find(where, order_by=[OrderBy("id")], limit=size)

    # -- streaming ---------------------------------------------------------------

    def _stream(self, plan: _Plan, format: str) -> Generator[dict[str, Any], None, None]:
        """Yield the rows page by page; audit the export when it finishes."""
        count = 0
        complete = False
        try:
            page: Sequence[Stored] = plan.first
            while True:
                for record in page:
                    data = to_dict(record)
                    count += 1  # handed out, whether or not the caller asks for more
                    yield {name: data[name] for name in plan.columns}
                if len(page) < plan.size:
                    break
                page = self._page(plan.cls, plan.where, page[-1].id, plan.size)
            complete = True
        finally:
            self._audit(plan, format, count, complete)

    def _write(self, plan: _Plan, target: Target, format: str) -> int:
        """Stream ``plan`` into ``target``; a file created here is removed if the export fails."""
        path: Path | None = None
        if isinstance(target, str | os.PathLike):
            path = Path(target)
            try:
                out: TextIO = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
            except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
                raise ValidationError("target", str(path), _why(exc)) from None
        elif callable(getattr(target, "write", None)):
            out = target
        else:
            raise ValidationError("target", target, "must be a file path or an open text file")
        rows = self._stream(plan, format)
        done = False
        try:
            count = 0
            try:
                if format == "csv":
                    writer = _csv.writer(out)
                    writer.writerow(plan.columns)
                    for row in rows:
                        writer.writerow([_cell(v) for v in row.values()])
                        count += 1
                else:
                    for row in rows:
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                        count += 1
                out.flush()
            except (OSError, ValueError) as exc:  # ValueError: the caller's file is closed
                raise ValidationError("target", str(path or target), _why(exc)) from None
            finally:
                rows.close()  # audits now, also when writing failed
            done = True
            return count
        finally:
            if path is not None:
                out.close()
                if not done:
                    path.unlink(missing_ok=True)

    # -- audit -------------------------------------------------------------------

    def _audit(self, plan: _Plan, format: str, count: int, complete: bool) -> None:
        """Record one export in the audit trail (what, which filters, how many rows)."""
        actor = self._s.actor
        facts = {"format": format, **plan.filters, "rows": count, "complete": complete}
        entry = AuditEntry(
            id=new_id(),
            tenant_id=self._s.tenant_id,
            at=self._s._now(),
            actor_id=actor.id,
            department=actor.department,
            action="export",
            record_type=plan.cls.resource,
            record_id="",
            changes={name: [None, value] for name, value in facts.items()},
        )
        self._s._audit_apart(entry)  # kept even if the caller's session rolls back


def _cell(value: Any) -> str:
    """One CSV cell from a JSON-form value (see :meth:`ExportService.csv`)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _why(exc: Exception) -> str:
    return f"cannot be written: {getattr(exc, 'strerror', None) or exc}"
