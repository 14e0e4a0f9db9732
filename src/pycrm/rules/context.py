"""What hooks receive and return: the rule context, assignments and task specs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.org import User
from pycrm.domain.query import Eq, In, all_of
from pycrm.domain.settings import SETTING_NAMES
from pycrm.domain.tasks import BehaviourEvent, TaskPriority

if TYPE_CHECKING:
    from pycrm.session import Session

__all__ = ["OPEN_LEAD_STATUSES", "Assignment", "RuleContext", "TaskSpec"]

#: Lead statuses that count as open work for load balancing and capacity.
OPEN_LEAD_STATUSES = (LeadStatus.ASSIGNED, LeadStatus.CONTACTED, LeadStatus.QUALIFIED)


@attrs.frozen
class Assignment:
    """A routing decision: who gets the record, and why."""

    owner_id: str
    """The chosen user (one of the candidates)."""
    reason: str
    """Why, in words a manager can read."""
    rule: str | None = None
    """The rule that decided (pycrm fills in the plugin's name when None)."""


@attrs.frozen
class TaskSpec:
    """A task a followups hook wants created."""

    title: str
    """What to do."""
    assignee_id: str | None = None
    """Who (or None with a department)."""
    department: str | None = None
    """The department it falls to when there is no assignee."""
    due_at: datetime | None = None
    """When it is due."""
    priority: TaskPriority = TaskPriority.NORMAL
    """How urgent."""
    kind: str = "follow_up"
    """What kind of reminder it is."""
    related_type: str | None = None
    """The kind of record it concerns."""
    related_id: str | None = None
    """The record it concerns."""
    notes: str | None = None
    """Details."""


class RuleContext:
    """What a rule may look at besides the record: the session, the time and workload."""

    def __init__(
        self, session: Session, *, kind: str = "lead", dry_run: bool = False, bulk: bool = False
    ) -> None:
        self.session = session
        """The session the rule runs in (read through its services)."""
        self.now: datetime = session._now()
        """The CRM clock's time when the rule was asked."""
        self.kind = kind
        """What is being routed or scored: ``"lead"`` or ``"ticket"``."""
        self.dry_run = dry_run
        """True during a preview: nothing the rule does is kept."""
        self.bulk = bulk
        """True during a bulk import: the records are new and not stored yet."""
        self.crm = session.crm
        """The CRM (its settings)."""
        self.memo: dict[Any, Any] = {}
        """Scratch space for one call: a rule may keep here what it read for one record
        (the applicable price lists) for the next records the same call handles."""

    def open_items(self, user_ids: Sequence[str]) -> dict[str, int]:
        """How many open items of this kind each user owns (one GROUP BY query)."""
        if not user_ids:
            return {}
        if self.kind == "lead":
            counts = self.session._uow.repo(Lead).count_by(
                "owner_id",
                all_of([In("status", OPEN_LEAD_STATUSES), In("owner_id", list(user_ids))]),
            )
        else:
            counts = self.crm._open_items(self.session, self.kind, list(user_ids))
        return {uid: counts.get(uid, 0) for uid in user_ids}

    def candidates(self, departments: Sequence[str], at: datetime | None = None) -> list[User]:
        """The users routing may choose from ``departments`` at ``at`` (default: now).

        They are active, available (not on leave, inside their working hours)
        and below their capacity of open items of this kind.
        """
        when = at or self.now
        with self.session._guard.bypass():  # routing is pycrm's own work, whatever the actor reads
            users = [
                u
                for department in departments
                for u in self.session.org.users(department=department, active=True)
                if u.available(when)
            ]
        load = self.open_items([u.id for u in users if u.capacity is not None])
        return [u for u in users if u.capacity is None or load[u.id] < u.capacity]

    def next_number(self, key: str) -> int:
        """The next value of a counter kept in the database (round-robin state)."""
        return self.session._uow.next_number(f"{self.kind}:{key}")

    def team_members(self, team: str) -> list[User]:
        """Active members of the team with this id or name."""
        with self.session._guard.bypass():  # routing is pycrm's own work
            teams = self.session.org.teams()
            match = [t for t in teams if team in (t.id, t.name)]
            if not match:
                return []
            return self.session.org.users(team_id=match[0].id, active=True)

    def behaviour(self, lead: Lead) -> list[BehaviourEvent]:
        """Behaviour events tracked for the lead."""
        return self.session._uow.repo(BehaviourEvent).find(Eq("lead_id", lead.id))

    def setting(self, name: str, default: Any = None) -> Any:
        """A setting by name: the tenant's runtime setting where it is one, else the CRM's.

        The runtime settings (``routing_rules``, ``scoring``, ``sla_policy``,
        ``default_region``; see ``s.settings``) are the tenant's stored value, or
        the one given to :func:`pycrm.connect` when none is stored.
        """
        if name in SETTING_NAMES:
            return self.session.settings._value(name)
        return getattr(self.crm, name, default)
