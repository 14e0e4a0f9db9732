"""Users, departments and teams: just enough to know who acts."""

from __future__ import annotations

from typing import ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["DEPARTMENTS", "SYSTEM_ACTOR_ID", "Actor", "Department", "Team", "User"]

#: The departments a new CRM starts with.
DEPARTMENTS = ("admin", "marketing", "sales", "service", "finance", "legal", "analytics")

#: The id under which the built-in system actor's writes are audited.
SYSTEM_ACTOR_ID = "system"


@attrs.frozen(kw_only=True)
class Department(Record):
    """A department such as sales or finance."""

    resource: ClassVar[str] = "department"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("key",),)

    key: str
    """Short lower-case identifier, e.g. ``"sales"``."""
    name: str
    """Display name."""


@attrs.frozen(kw_only=True)
class Team(Record):
    """A team inside a department."""

    resource: ClassVar[str] = "team"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("name",),)

    name: str
    """Unique team name."""
    department: str
    """Key of the department the team belongs to."""
    manager_id: str | None = None
    """The team's manager."""


@attrs.frozen(kw_only=True)
class User(Record):
    """Someone who works with the CRM."""

    resource: ClassVar[str] = "user"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("email",),)
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("department",),)

    name: str
    """Display name."""
    email: str
    """Normalised login email, unique per tenant."""
    department: str
    """Key of the user's department."""
    roles: tuple[str, ...] = ()
    """Role names, e.g. ``("sales_rep",)`` or ``("admin",)``."""
    team_ids: tuple[str, ...] = ()
    """Teams the user belongs to."""
    manager_id: str | None = None
    """The user's manager."""
    active: bool = True
    """Inactive users cannot open sessions."""


@attrs.frozen
class Actor:
    """Who a session acts as: a user, or the built-in system actor."""

    id: str
    """The user's id, or ``"system"``."""
    department: str
    """The user's department key (``"system"`` for the system actor)."""
    roles: tuple[str, ...] = ()
    """The user's roles."""
    team_ids: tuple[str, ...] = ()
    """The user's teams."""

    @property
    def is_system(self) -> bool:
        """True for the built-in system actor."""
        return self.id == SYSTEM_ACTOR_ID

    @classmethod
    def of(cls, user: User) -> Actor:
        """The actor for ``user``."""
        return cls(user.id, user.department, user.roles, user.team_ids)
