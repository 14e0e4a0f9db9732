"""Customers (companies) and contacts (people)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import ClassVar

import attrs

from pycrm.domain.contact_points import Address, ContactPoint, search_key
from pycrm.domain.money import Money
from pycrm.domain.records import Record

__all__ = ["Contact", "Customer", "RecordStatus"]


class RecordStatus(enum.Enum):
    """Whether a customer or contact is in use."""

    ACTIVE = "active"
    ARCHIVED = "archived"


def _point_keys(points: Iterable[ContactPoint], tags: Iterable[str]) -> Iterable[tuple[str, str]]:
    for point in points:
        yield point.kind.value, point.match_key()
    for tag in tags:
        yield "tag", search_key(tag)


@attrs.frozen(kw_only=True)
class Customer(Record):
    """A company the business sells to."""

    resource: ClassVar[str] = "customer"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("name_key",), ("owner_id",), ("status",))
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
    status: RecordStatus = RecordStatus.ACTIVE
    """Active or archived."""
    archived_at: datetime | None = None
    """When it was archived."""

    @property
    def name_key(self) -> str:
        """The name case-folded and whitespace-folded, for search."""
        return search_key(self.name)

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Emails, phones and tags."""
        return _point_keys(self.contact_points, self.tags)


@attrs.frozen(kw_only=True)
class Contact(Record):
    """A person, usually working for a customer."""

    resource: ClassVar[str] = "contact"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("customer_id",),
        ("name_key",),
        ("status",),
    )
    computed: ClassVar[tuple[str, ...]] = ("name_key",)

    name: str
    """Full name as the person writes it."""
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
    status: RecordStatus = RecordStatus.ACTIVE
    """Active or archived."""
    archived_at: datetime | None = None
    """When it was archived."""

    @property
    def name_key(self) -> str:
        """The name case-folded and whitespace-folded, for search."""
        return search_key(self.name)

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Emails, phones and tags."""
        return _point_keys(self.contact_points, self.tags)
