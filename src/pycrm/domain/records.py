"""The fields every stored record shares, and the metadata adapters read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import attrs

from pycrm.domain.query import Filter

if TYPE_CHECKING:
    from pycrm.domain.org import Actor

__all__ = ["Record", "Stored"]


@attrs.frozen(kw_only=True)
class Stored:
    """Anything pycrm stores: it has an id and belongs to one tenant.

    Subclasses describe their storage with class variables that both adapters
    read, so memory and SQL index, constrain and search the same way.
    """

    resource: ClassVar[str] = "record"
    """The record kind's name in errors, audit entries and table names."""
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = ()
    """Column tuples to index (each prefixed by ``tenant_id`` in SQL)."""
    unique: ClassVar[tuple[tuple[str, ...], ...]] = ()
    """Column tuples that must be unique within a tenant."""
    computed: ClassVar[tuple[str, ...]] = ()
    """Names of read-only properties stored as indexed-searchable columns."""
    owner_field: ClassVar[str] = "created_by"
    """The field naming the user a record belongs to, for ``own``/``team``/``department`` scopes."""
    department_field: ClassVar[str | None] = None
    """A field naming a department a record belongs to as a whole (a department's task queue)."""
    about: ClassVar[tuple[str, str] | None] = None
    """``(kind field, id field)`` naming another record this one is about (an audit entry, a
    document): a reader sees it only if they may read that record."""
    about_kinds: ClassVar[tuple[str, ...]] = ()
    """The kinds of record it can be :attr:`about` (empty: any kind)."""
    hidden_with: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """For a record about one kind only: a field of that kind → fields of this one that a
    field rule hiding it hides too (a deal's hidden ``stage`` hides its stage visits')."""
    read_follows_about: ClassVar[bool] = False
    """True: reading one needs only that the record it is :attr:`about` may be read (a
    document is as readable as its record); False: the kind's own read grants too."""
    key_fields: ClassVar[Mapping[str, str]] = {
        "email": "contact_points",
        "phone": "contact_points",
        "invalid": "contact_points",
        "tag": "tags",
        "category": "categories",
        "person": "name",
        "company": "name",
        "given": "given_name",
        "family": "family_name",
        "external_id": "external_id",
        "payment_ref": "payments",
        "team": "team_ids",
    }
    """The field each kind of match key is derived from: a filter on the key reads that field."""

    id: str
    """Time-ordered unique id (see :func:`pycrm.domain.ids.new_id`)."""
    tenant_id: str
    """The company whose CRM this record belongs to."""

    @classmethod
    def read_rule(cls, actor: Actor) -> Filter | None:
        """A condition a record must meet for ``actor`` to see it, whatever their grants.

        The permission guard ANDs it into every read and write of the session
        (pycrm's own side effects aside), so it holds on every read path. It
        may use the actor's id, department and roles. None: no such condition.
        A private activity, for one, exists for its author alone (the system
        actor included); a document shared with chosen readers exists for them.
        """
        return None

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Yield ``(kind, key)`` pairs the record can be looked up by (email, phone, tag, …).

        Adapters keep them in an index so lookups never scan a table.
        """
        return ()


@attrs.frozen(kw_only=True)
class Record(Stored):
    """A record users create and change: it carries who and when, and a version."""

    created_at: datetime
    """When the record was created (UTC)."""
    created_by: str
    """Id of the actor who created it (``"system"`` for the system actor)."""
    updated_at: datetime
    """When it last changed (UTC)."""
    updated_by: str
    """Id of the actor who last changed it."""
    version: int = 1
    """Incremented on every write; a write based on an older version is refused."""
