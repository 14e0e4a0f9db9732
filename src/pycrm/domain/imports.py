"""What an import reports, how columns map to fields, and how a row gets its identity."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycrm.errors import ConfigurationError

__all__ = ["ALIASES", "IMPORT_POLICIES", "ImportReport", "Reject", "resolve_mapping", "row_key"]

#: What an import does with a row matching a stored (or earlier) record by email or phone.
IMPORT_POLICIES = ("skip", "merge", "flag")

#: Column names recognised without a mapping, per target field (compared case-insensitively).
ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": ("external_id", "id", "external id", "record id", "crm id"),
    "name": ("name", "full name", "full_name", "contact", "contact name", "person", "姓名"),
    "email": ("email", "emails", "e-mail", "email address", "mail", "邮箱"),
    "phone": ("phone", "phones", "telephone", "tel", "mobile", "phone number", "电话", "手机"),
    "company": ("company", "organisation", "organization", "account", "company name", "公司"),
    "title": ("title", "job title", "position", "职位"),
    "region": ("region", "territory", "state", "地区"),
    "industry": ("industry", "sector", "行业"),
    "needs": ("needs", "notes", "interest", "comment", "comments", "需求"),
    "campaign": ("campaign",),
    "source": ("source", "lead source"),
    "website": ("website", "url", "web"),
    "customer": ("customer", "customer name", "account name"),
}


@attrs.frozen
class Reject:
    """A row that was not imported, and why."""

    line: int
    """Line number in the file (the header is line 1)."""
    field: str
    """The field at fault (``row`` for the row as a whole); several are listed
    as ``email, phone``."""
    reason: str
    """Why, in words; with several fields, each reason after its field's name."""
    values: Mapping[str, Any]
    """The row as read, by column."""
    extra: tuple[str, ...] = ()
    """Values beyond the header's columns, as read (for a row with too many)."""

    @property
    def summary(self) -> str:
        """The field and the reason in one line, e.g. ``phone: is too short``."""
        if ", " in self.field:  # the reason names each field already
            return self.reason
        return f"{self.field}: {self.reason}"


@attrs.define
class ImportReport:
    """What an import did."""

    rows: int = 0
    """Rows read."""
    created: int = 0
    """New records."""
    merged: int = 0
    """Rows folded into a stored or earlier record (policy ``merge``)."""
    skipped: int = 0
    """Rows left out on purpose: already imported, or duplicates under policy ``skip``."""
    flagged: int = 0
    """Rows imported although they look like duplicates (policy ``flag``)."""
    rejected: int = 0
    """Rows refused for bad data; each is in :attr:`rejects` and the rejects file."""
    reasons: Counter[str] = attrs.field(factory=Counter)
    """Count per reason, e.g. ``{"phone: is not a valid number …": 12, "already imported": 100}``."""
    rejects: list[Reject] = attrs.field(factory=list)
    """The first rejected rows (at most ``keep_rejects``; all of them are in the rejects file)."""
    elapsed: float = 0.0
    """Seconds taken."""
    keep_rejects: int = 1000
    """How many rejects to keep in memory."""

    @property
    def rows_per_second(self) -> float:
        """Throughput."""
        return self.rows / self.elapsed if self.elapsed else 0.0

    def reject(self, reject: Reject) -> None:
        """Count a rejected row."""
        self.rejected += 1
        self.reasons[reject.summary] += 1
        if len(self.rejects) < self.keep_rejects:
            self.rejects.append(reject)

    def add(self, outcome: str, reason: str | None = None) -> None:
        """Count a created, merged, skipped or flagged row."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        if reason:
            self.reasons[reason] += 1


def resolve_mapping(
    header: Sequence[str], fields: Sequence[str], mapping: Mapping[str, str] | None
) -> dict[str, str]:
    """Field → column for this file: the explicit ``mapping`` first, then :data:`ALIASES`.

    :raises ConfigurationError: when the mapping names a column the file lacks or an unknown field.
    """
    present = {c.strip().casefold(): c for c in header if c is not None}
    resolved: dict[str, str] = {}
    for field, column in (mapping or {}).items():
        if field in ("emails", "phones") and field[:-1] in fields:
            field = field[:-1]  # the calls take emails= too: one column holds one of them
        if field not in fields:
            raise ConfigurationError(
                f"mapping: {field!r} is not a field here ({', '.join(fields)})"
            )
        if column.strip().casefold() not in present:
            raise ConfigurationError(f"mapping: column {column!r} for {field!r} is not in the file")
        resolved[field] = present[column.strip().casefold()]
    for field in fields:
        if field in resolved:
            continue
        for alias in ALIASES.get(field, (field,)):
            if alias.casefold() in present and present[alias.casefold()] not in resolved.values():
                resolved[field] = present[alias.casefold()]
                break
    return resolved


def row_key(values: Mapping[str, Any]) -> str:
    """A stable id for a row without one: a hash of its mapped values (order-independent)."""
    text = "\x1f".join(
        f"{k}={'' if v is None else str(v).strip()}" for k, v in sorted(values.items())
    )
    return "row:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
