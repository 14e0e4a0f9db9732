"""Users, departments and teams: just enough to know who acts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import ClassVar

import attrs

from pycrm.domain.calendars import WorkingHours
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
    owner_field: ClassVar[str] = "id"
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
    skills: tuple[str, ...] = ()
    """What the user knows (products, machines), for skills-based routing."""
    regions: tuple[str, ...] = ()
    """The regions or territories the user covers (``DACH``, ``north``), for routing by region."""
    languages: tuple[str, ...] = ()
    """The languages the user works in (``de``, ``en``, or their names), for routing by language."""
    on_leave: bool = False
    """On leave: routing never picks the user."""
    capacity: int | None = None
    """Most open items (leads, tickets) routing gives the user; None: no limit."""
    working_hours: WorkingHours | None = None
    """When the user is available; None: always. Routing skips users outside their hours."""

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """``("team", id)`` per team, so a team's members are one index probe away."""
        for team_id in self.team_ids:
            yield "team", team_id

    def available(self, at: datetime) -> bool:
        """True if routing may give the user work at ``at`` (capacity aside)."""
        if not self.active or self.on_leave:
            return False
        return self.working_hours is None or self.working_hours.is_open(at)


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
