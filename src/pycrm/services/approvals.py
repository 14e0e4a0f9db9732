"""Approval steps, as contracts and quotes share them: who may decide which step."""

from __future__ import annotations

from typing import Protocol, TypeVar

import attrs

from pycrm.domain.contracts import ApprovalStep, Decision
from pycrm.domain.fields import check_text
from pycrm.domain.records import Record
from pycrm.errors import InvalidTransition, ValidationError
from pycrm.services.records import RecordService

__all__ = ["Approvals"]


class _Approvable(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def resource(self) -> str: ...

    @property
    def approvals(self) -> tuple[ApprovalStep, ...]: ...


A = TypeVar("A", bound=Record)


class Approvals(RecordService[A]):
    """A record service whose records carry a ``status`` and a chain of approval steps."""

    @staticmethod
    def _pending(record: A, target: str) -> A:
        """``record``, if it is pending approval; else InvalidTransition to ``target``."""
        status = record.status  # type: ignore[attr-defined]
        if status.value != "pending_approval":
            raise InvalidTransition(
                record.resource, status.value, target, "it is not pending approval"
            )
        return record

    def _step_for(self, record: _Approvable, action: str, role: str | None = None) -> int:
        """The pending step the actor may decide (or hand on): by role, by delegation, as admin.

        With ``role``, that role's pending step. Raises PermissionDenied when there is none.
        """
        actor = self._s.actor
        roles = set(self._s._guard.roles)  # roles and department, as the policy sees them
        steps = record.approvals
        pending = [
            i
            for i, s in enumerate(steps)
            if s.decision is Decision.PENDING and (role is None or s.role == role)
        ]
        mine = [i for i in pending if steps[i].role in roles or steps[i].delegated_to == actor.id]
        if not mine and (actor.is_system or "admin" in roles) and pending:
            mine = pending[:1]
        if not mine:
            if role is not None and not pending:
                raise ValidationError("role", role, "names no pending approval step")
            needed = ", ".join(sorted({steps[i].role for i in pending}))
            self._s._guard.deny(action, record.resource, record.id, f"needs the role {needed}")
        return mine[0]

    def _by_delegation(self, step: ApprovalStep) -> bool:
        """Whether the actor decides ``step`` only because it was handed to them."""
        return step.delegated_to == self._s.actor.id and step.role not in self._s._guard.roles

    def _decide(
        self, id: str, decision: Decision, comment: str | None
    ) -> tuple[A, tuple[ApprovalStep, ...], bool]:
        """The record, its steps with the actor's step decided, and whether by delegation."""
        target = "approved" if decision is Decision.APPROVED else "rejected"
        record = self._pending(self._load(id), target)
        approvable: _Approvable = record  # type: ignore[assignment]
        index = self._step_for(approvable, "approve")
        note = check_text("comment", comment, limit=2000)
        steps = list(approvable.approvals)
        delegated = self._by_delegation(steps[index])
        steps[index] = attrs.evolve(
            steps[index],
            decision=decision,
            decided_by=self._s.actor.id,
            decided_at=self._s._now(),
            comment=note,
        )
        return record, tuple(steps), delegated
