"""The organisation: users, departments and teams.

The system actor and admins (role ``admin`` or the admin department) change
it; so may anyone the permission policy grants ``create``/``update`` on
``user``, ``team`` or ``department`` (HR, say), within the grant's scope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

from pycrm.domain.calendars import WorkingHours
from pycrm.domain.contact_points import normalise_email
from pycrm.domain.deals import Deal, DealStatus
from pycrm.domain.fields import Checks, check_bool, check_id, check_int, check_tags, check_text
from pycrm.domain.leads import Lead
from pycrm.domain.org import DEPARTMENTS, Department, Team, User
from pycrm.domain.query import Eq, Filter, In, OrderBy, all_of
from pycrm.domain.tasks import Task, TaskStatus
from pycrm.domain.tickets import OPEN_TICKET_STATUSES, Ticket
from pycrm.errors import DuplicateError, NotFound, ValidationError
from pycrm.rules.context import OPEN_LEAD_STATUSES
from pycrm.services.records import RecordService, write

__all__ = ["OPEN_WORK", "OrgService"]

#: (record type, assignee field, filter of the open ones): the work a deactivated
#: user hands on. Later capabilities add theirs.
OPEN_WORK: list[tuple[type[Any], str, Filter]] = [
    (Lead, "owner_id", In("status", OPEN_LEAD_STATUSES)),
    (Deal, "owner_id", Eq("status", DealStatus.OPEN)),
    (Task, "assignee_id", Eq("status", TaskStatus.OPEN)),
    (Ticket, "assignee_id", In("status", OPEN_TICKET_STATUSES)),
]


def _key(field: str, value: Any) -> str:
    text = check_text(field, value, required=True, limit=40)
    assert text is not None
    if not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in text) or text != text.lower():
        raise ValidationError(field, value, "must be lower-case letters, digits and _")
    return text


def _roles(field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(field, value, "must be a list of role names")
    return tuple(dict.fromkeys(_key(f"{field}[{i}]", r) for i, r in enumerate(value)))


class OrgService(RecordService[User]):
    """Users, departments and teams of one tenant."""

    record_type = User
    events: ClassVar[Mapping[str, str]] = {
        "create": "user_created",
        "deactivate": "user_deactivated",
    }

    def _check_department(self, field: str, value: Any) -> str:
        key = _key(field, value)
        if key not in DEPARTMENTS and not self._s._uow.repo(Department).find(
            Eq("key", key), limit=1
        ):
            raise ValidationError(field, value, "is not a department (create it first)")
        return key

    def _check_teams(self, field: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ValidationError(field, value, "must be a list of team ids")
        ids = tuple(dict.fromkeys(check_id(f"{field}[{i}]", v) for i, v in enumerate(value)))
        found = self._s._uow.repo(Team).get_many(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationError(field, missing[0], "is not the id of a team")
        return ids

    def _checkers(self) -> dict[str, Callable[[str, Any], Any]]:
        return {
            "name": partial(check_text, required=True),
            # Login emails are matched without case, the local part included.
            "email": lambda field, value: normalise_email(value, field=field).lower(),
            "department": self._check_department,
            "roles": _roles,
            "team_ids": self._check_teams,
            "manager_id": self._check_user,
            "skills": check_tags,
            "regions": check_tags,
            "languages": check_tags,
            "on_leave": check_bool,
            "capacity": lambda field, value: check_int(field, value, minimum=1, maximum=1_000_000),
            "working_hours": lambda field, value: WorkingHours.parse(value, field),
        }

    # -- users -------------------------------------------------------------

    @write
    def create_user(
        self,
        name: str,
        email: str,
        department: str,
        *,
        roles: Sequence[str] = (),
        team_ids: Sequence[str] = (),
        manager_id: str | None = None,
        **routing: Any,
    ) -> User:
        """Create a user. Admins, and those the policy grants ``create`` on ``user`` (HR).

        ``routing`` may set what routing rules read about the user: ``skills``,
        ``regions`` (territories covered), ``languages``, ``on_leave``,
        ``capacity`` (most open items) and ``working_hours``
        (``{"timezone": …, "mon": "09:00-17:00", …}``).

        :raises DuplicateError: when the email is taken in this tenant.
        """
        self._require_org("create", "user")
        fields = self._parse(
            {
                "name": name,
                "email": email,
                "department": department,
                "roles": roles,
                "team_ids": team_ids,
                "manager_id": manager_id,
                **routing,
            },
            creating=True,
        )
        self._email_free(fields["email"], None)
        self._no_escalation(None, fields)
        return self._add("create", **fields)

    def _no_escalation(self, user_id: str | None, fields: Mapping[str, Any]) -> None:
        """Only admins make admins, and nobody but an admin changes their own access.

        A grant on users (HR's) is for running accounts: it never gives the
        ``admin`` role or department, nor a user's own roles or department.
        """
        if self._is_admin():
            return
        action = "create" if user_id is None else "update"
        if "admin" in fields.get("roles", ()) or fields.get("department") == "admin":
            self._s._guard.deny(action, "user", user_id, "only admins make admins")
        if user_id == self._s.actor.id and {"roles", "department"} & set(fields):
            self._s._guard.deny(action, "user", user_id, "nobody changes their own access")

    def _email_free(self, email: str, user_id: str | None) -> None:
        """Refuse an email another user of this tenant has (DuplicateError naming them)."""
        taken = self._repo.find(Eq("email", email), limit=1)
        if taken and taken[0].id != user_id:
            raise DuplicateError(f"a user with email {email} exists", [taken[0].id])

    def get_user(self, id: str) -> User:
        """The user with ``id``."""
        return self.get(id)

    def find_user(self, email: str) -> User:
        """The user with this login email."""
        key = normalise_email(email).lower()
        found = self._find(Eq("email", key), limit=1)
        if not found:
            raise NotFound("user", key)
        return found[0]

    def users(
        self,
        *,
        department: str | None = None,
        team_id: str | None = None,
        active: bool | None = None,
    ) -> list[User]:
        """Users, by name; filtered by department, team and/or active state.

        Returns all of them: this list has no pages.
        """
        parts: list[Filter | None] = []
        if department is not None:
            parts.append(Eq("department", _key("department", department)))
        if active is not None:
            parts.append(Eq("active", active))
        users = self._find(all_of(parts), order_by=[OrderBy("name")])
        if team_id is not None:
            users = [u for u in users if team_id in u.team_ids]
        return users

    @write
    def update_user(self, id: str, *, version: int | None = None, **fields: Any) -> User:
        """Change a user's name, email, department, roles, teams or manager, or routing data.

        Routing data: ``skills``, ``regions``, ``languages``, ``on_leave``,
        ``capacity``, ``working_hours`` (see :meth:`create_user`).

        Admins, and those the policy grants ``update`` on ``user`` (HR): by
        default only admins change ``roles``.
        """
        self._require_org("update", "user")
        current = self._load(id)
        changes = self._parse(fields, creating=False)
        self._no_escalation(id, changes)
        if "email" in changes:
            self._email_free(changes["email"], id)
        if changes.get("manager_id") == id:
            raise ValidationError("manager_id", id, "a user cannot manage themselves")
        return self._change(current, version, "update", **changes)

    @write
    def deactivate_user(
        self, id: str, *, version: int | None = None, reassign_to: str | None = None
    ) -> User:
        """Deactivate a user and hand on their open work. Admins, and whoever may update users.

        The user can no longer open sessions. Their open leads, deals, tasks
        (and tickets) go to ``reassign_to`` if given, else to their manager,
        else to the manager of their first team that has one, else nobody
        (unassigned, for routing or a manager to pick up). Sends ``user_deactivated``.
        """
        self._require_org("update", "user")
        current = self._load(id)
        if not current.active:
            return current
        heir = (
            self._heir(current)
            if reassign_to is None
            else self._check_user("reassign_to", reassign_to)
        )
        if heir == id:
            raise ValidationError(
                "reassign_to", heir, "cannot hand work to the user being deactivated"
            )
        updated = self._change(current, version, "deactivate", active=False)
        with self._s._guard.bypass():
            for cls, field, where in OPEN_WORK:
                repo = self._s._uow.repo(cls)
                for record in repo.find(all_of([Eq(field, id), where])):
                    fields = {field: heir}
                    if hasattr(record, "assignment_reason"):
                        fields["assignment_reason"] = f"reassigned: {current.name} was deactivated"
                        fields["assigned_by"] = f"user:{self._s.actor.id}"
                    revised = self._s._revise(record, "reassign", **fields)
                    if isinstance(revised, Deal):
                        self._s.deals._sync_owner(revised)
        return updated

    def _heir(self, user: User) -> str | None:
        if user.manager_id is not None:
            manager = self._s._uow.repo(User).get(user.manager_id)
            if manager is not None and manager.active:
                return manager.id
        teams = self._s._uow.repo(Team).get_many(list(user.team_ids))
        for team_id in user.team_ids:
            team = teams.get(team_id)
            if team is not None and team.manager_id not in (None, user.id):
                manager = self._s._uow.repo(User).get(team.manager_id)
                if manager is not None and manager.active:
                    return manager.id
        return None

    @write
    def reactivate_user(self, id: str, *, version: int | None = None) -> User:
        """Let a deactivated user work again. Admins, and whoever may update users."""
        self._require_org("update", "user")
        return self._change(self._load(id), version, "update", active=True)

    # -- departments and teams ---------------------------------------------

    @write
    def create_department(self, key: str, name: str) -> Department:
        """Add a department beyond the built-in ones. Admins, and whoever may create departments."""
        self._require_org("create", "department")
        with Checks() as checks:
            clean_key = checks(_key, "key", key)
            clean_name = checks(check_text, "name", name, required=True)
        record = Department(**self._s._stamp(key=clean_key, name=clean_name))
        if not self._is_admin():
            self._s._guard.require(record, "create")
        self._s._uow.repo(Department).add(record)
        self._s._record("create", None, record)
        return record

    def departments(self) -> list[str]:
        """Every department key: the built-in ones and those created."""
        found = self._s.read(Department, quiet=True).find(order_by=[OrderBy("key")])
        created = [d.key for d in found]
        return list(dict.fromkeys([*DEPARTMENTS, *created]))

    @write
    def create_team(self, name: str, department: str, *, manager_id: str | None = None) -> Team:
        """Create a team in a department. Admins, and whoever may create teams."""
        self._require_org("create", "team")
        with Checks() as checks:
            fields = {
                "name": checks(check_text, "name", name, required=True),
                "department": checks(self._check_department, "department", department),
                "manager_id": checks(self._check_user, "manager_id", manager_id),
            }
        record = Team(**self._s._stamp(**fields))
        if not self._is_admin():
            self._s._guard.require(record, "create", [k for k, v in fields.items() if v])
        self._s._uow.repo(Team).add(record)
        self._s._record("create", None, record)
        return record

    def teams(self, *, department: str | None = None) -> list[Team]:
        """Teams, by name.

        Returns all of them: this list has no pages.
        """
        where = None if department is None else Eq("department", _key("department", department))
        return self._s.read(Team).find(where, order_by=[OrderBy("name")])

    def get_team(self, id: str) -> Team:
        """The team with ``id``."""
        team = self._s.read(Team).get(check_id("id", id))
        if team is None:
            raise NotFound("team", str(id))
        return team

    @write
    def add_to_team(self, user_id: str, team_id: str) -> User:
        """Make a user a member of a team. Admins, and whoever may update users."""
        check_id("user_id", user_id)
        check_id("team_id", team_id)
        self._require_org("update", "user")
        self.get_team(team_id)
        user = self._load(user_id)
        if team_id in user.team_ids:
            return user
        return self._change(user, None, "update", team_ids=(*user.team_ids, team_id))
