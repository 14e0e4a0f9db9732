"""Customers (companies) and contacts (people)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.contact_points import Address, ContactPoint, Reachable, search_key
from pycrm.domain.money import Money
from pycrm.domain.names import NameOrder
from pycrm.domain.normalise import company_key, person_key, place_key, sound_key
from pycrm.domain.records import Record

__all__ = ["Contact", "Customer", "RecordStatus", "category_keys", "name_keys", "point_keys"]


class RecordStatus(enum.StrEnum):
    """Whether a customer or contact is in use."""

    ACTIVE = "active"
    ARCHIVED = "archived"
    MERGED = "merged"
    """Merged into another record; kept as a tombstone so the merge can be undone."""


def point_keys(points: Iterable[ContactPoint]) -> Iterable[tuple[str, str]]:
    """Email and phone keys, and ``("invalid", kind)`` for points stored unvalidated."""
    for point in points:
        if point.valid:
            yield point.kind.value, point.match_key()
        else:
            yield "invalid", point.kind.value


def category_keys(paths: Iterable[str]) -> Iterable[tuple[str, str]]:
    """``("category", prefix)`` for every prefix of every path, so a parent finds its subtree."""
    seen: set[str] = set()
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix not in seen:
                seen.add(prefix)
                yield "category", prefix


def _keys(
    points: Iterable[ContactPoint],
    tags: Iterable[str],
    *names: tuple[str, str],
    categories: Iterable[str] = (),
) -> Iterable[tuple[str, str]]:
    yield from point_keys(points)
    yield from category_keys(categories)
    for tag in tags:
        yield "tag", search_key(tag)
    for kind, key in names:
        if key:
            yield kind, key


def name_keys(given: str | None, family: str | None) -> list[tuple[str, str]]:
    """``("given", …)`` and ``("family", …)`` keys of a name known in parts (search by them)."""
    return [
        (kind, search_key(part)) for kind, part in (("given", given), ("family", family)) if part
    ]


def _place(address: Address | None) -> str:
    return "" if address is None else place_key(address.line1, address.postcode)


@attrs.frozen(kw_only=True)
class Customer(Record, Reachable):
    """A company the business sells to."""

    resource: ClassVar[str] = "customer"
    owner_field: ClassVar[str] = "owner_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("name_key",),
        ("owner_id", "status"),
        ("status",),
    )
    computed: ClassVar[tuple[str, ...]] = ("name_key",)

    name: str
    """The company's name as it should be displayed."""
    industry: str | None = None
    """Industry, free text or a code of the company's own classification."""
    size: int | None = None
    """Headcount."""
    annual_revenue: Money | None = None
    """Yearly revenue, where known."""
    grade: str | None = None
    """The consolidated grade (see assessments), e.g. ``"A"``."""
    region: str | None = None
    """Sales region or territory."""
    website: str | None = None
    """Home page URL."""
    address: Address | None = None
    """Main postal address."""
    contact_points: tuple[ContactPoint, ...] = ()
    """Company-level emails and phones (switchboard, info@)."""
    tags: tuple[str, ...] = ()
    """Free tags, stored as given and matched case-insensitively."""
    owner_id: str | None = None
    """The user responsible for the account."""
    source: str | None = None
    """The system or channel the record came from (``erp``, ``webshop``, ``import`` …)."""
    status: RecordStatus = RecordStatus.ACTIVE
    """Active or archived."""
    archived_at: datetime | None = None
    """When it was archived."""
    merged_into: str | None = None
    """The customer it was merged into (status ``merged``)."""
    external_id: str | None = None
    """The record's id in the system it was imported from (re-imports update, never duplicate)."""
    categories: tuple[str, ...] = ()
    """Category paths (``industry/manufacturing/machinery``); a filter on a category finds everything under it."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values by key, in their JSON form (see :mod:`pycrm.domain.custom_fields`)."""

    @property
    def name_key(self) -> str:
        """The name case-folded and whitespace-folded, for search."""
        return search_key(self.name)

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Emails, phones, tags, the company-name key (legal form stripped) and the building."""
        return _keys(
            self.contact_points,
            self.tags,
            ("company", company_key(self.name)),
            ("external_id", self.external_id or ""),
            ("place", _place(self.address)),
            categories=self.categories,
        )


@attrs.frozen(kw_only=True)
class Contact(Record, Reachable):
    """A person, usually working for a customer."""

    resource: ClassVar[str] = "contact"
    owner_field: ClassVar[str] = "owner_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("customer_id",),
        ("name_key",),
        ("status",),
    )
    computed: ClassVar[tuple[str, ...]] = ("name_key",)

    name: str
    """Full name as the person writes it (made from the parts when only they are given)."""
    given_name: str | None = None
    """Given (first) name, where known apart from ``name``."""
    family_name: str | None = None
    """Family name (surname), where known apart from ``name``."""
    name_order: NameOrder | None = None
    """Which part the person's culture writes first; None: from the script or address country."""
    customer_id: str | None = None
    """The company the person works for, if any."""
    title: str | None = None
    """Job title or role, e.g. ``"Head of purchasing"``."""
    contact_points: tuple[ContactPoint, ...] = ()
    """Emails and phones."""
    address: Address | None = None
    """Postal address."""
    tags: tuple[str, ...] = ()
    """Free tags."""
    owner_id: str | None = None
    """The user responsible for the relationship."""
    source: str | None = None
    """The system or channel the record came from (``erp``, ``webshop``, ``import`` …)."""
    status: RecordStatus = RecordStatus.ACTIVE
    """Active or archived."""
    archived_at: datetime | None = None
    """When it was archived."""
    merged_into: str | None = None
    """The contact it was merged into (status ``merged``)."""
    external_id: str | None = None
    """The record's id in the system it was imported from (re-imports update, never duplicate)."""
    categories: tuple[str, ...] = ()
    """Category paths (``industry/manufacturing/machinery``); a filter on a category finds everything under it."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values by key, in their JSON form (see :mod:`pycrm.domain.custom_fields`)."""

    @property
    def name_key(self) -> str:
        """The name case-folded and whitespace-folded, for search."""
        return search_key(self.name)

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Emails, phones, tags, the person-name key (order and case ignored), its sound, the building.

        And the given and family names, when they are known apart.
        """
        return _keys(
            self.contact_points,
            self.tags,
            ("person", person_key(self.name)),
            ("sound", sound_key(self.name)),
            ("external_id", self.external_id or ""),
            ("place", _place(self.address)),
            *name_keys(self.given_name, self.family_name),
            categories=self.categories,
        )
