"""Contracts: drafted from won deals, approved by rule, signed into receivables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import attrs

from pycrm.domain.contracts import (
    CONTRACT_MOVES,
    Contract,
    ContractStatus,
    Decision,
    Instalment,
    build_schedule,
    check_schedule,
)
from pycrm.domain.deals import Deal, DealStatus
from pycrm.domain.fields import Checks, check_bool, check_choice, check_id, check_money, check_text
from pycrm.domain.money import Money
from pycrm.domain.query import Eq, Filter, OrderBy, all_of
from pycrm.errors import InvalidTransition, ValidationError
from pycrm.services.deals import _date
from pycrm.services.records import RecordService, check_when, write
from pycrm.services.search import check_page

__all__ = ["ContractService"]


def _percent(field: str, value: Any) -> Decimal:
    if isinstance(value, bool | float):
        raise ValidationError(field, value, "give percentages as Decimal, int or string")
    try:
        number = Decimal(value) if isinstance(value, int | str | Decimal) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or not 0 <= number <= 100:
        raise ValidationError(field, value, "must be a percentage from 0 to 100")
    if -number.as_tuple().exponent > 2:  # type: ignore[operator]
        raise ValidationError(field, value, "at most two decimal places")
    return number


class ContractService(RecordService[Contract]):
    """Contracts from draft to completion, with the approval chain in between."""

    record_type = Contract
    events: ClassVar[Mapping[str, str]] = {
        "submit": "contract_submitted",
        "approve": "contract_approved",
        "reject": "contract_rejected",
        "sign": "contract_signed",
    }

    @write
    def draft(
        self,
        deal_id: str,
        *,
        title: str | None = None,
        amount: Money | None = None,
        list_amount: Money | None = None,
        discount_percent: Any = 0,
        standard_terms: bool = True,
        terms: str | None = None,
        start: date | None = None,
        end: date | None = None,
        instalments: int = 1,
        first_due: date | None = None,
        every_months: int = 1,
        schedule: Sequence[tuple[date, Money]] | None = None,
        custom: dict[str, Any] | None = None,
    ) -> Contract:
        """Draft a contract from a won deal.

        ``amount`` defaults to the deal's amount. The payment schedule is
        either ``instalments`` equal parts (to the minor unit) ``every_months``
        apart from ``first_due`` (default: ``start`` or today), or an explicit
        ``schedule`` of ``(due date, Money)`` that must sum exactly to ``amount``.
        """
        deal = self._s._uow.repo(Deal).get(check_id("deal_id", deal_id))
        if deal is None:
            raise ValidationError("deal_id", deal_id, "is not the id of a deal")
        if deal.status is not DealStatus.WON:
            raise ValidationError("deal_id", deal_id, f"the deal is {deal.status.value}, not won")
        with Checks() as checks:
            fields: dict[str, Any] = {
                "title": checks(check_text, "title", title or deal.name, required=True),
                "amount": checks(
                    check_money, "amount", amount if amount is not None else deal.amount
                ),
                "list_amount": checks(check_money, "list_amount", list_amount),
                "discount_percent": checks(_percent, "discount_percent", discount_percent),
                "standard_terms": checks(check_bool, "standard_terms", standard_terms),
                "terms": checks(check_text, "terms", terms, limit=20_000, multiline=True),
                "start": checks(_date, "start", start),
                "end": checks(_date, "end", end),
                "first_due": checks(_date, "first_due", first_due),
            }
        total: Money = fields.pop("amount")
        if total.amount <= 0:
            raise ValidationError("amount", str(total), "must be positive")
        first = fields.pop("first_due") or fields["start"] or self._s._now().date()
        if fields["start"] and fields["end"] and fields["end"] < fields["start"]:
            raise ValidationError("end", fields["end"], "is before the start")
        if schedule is not None:
            if isinstance(schedule, str | bytes) or not isinstance(schedule, Sequence):
                raise ValidationError("schedule", schedule, "must be a list of (due date, Money)")
            parts = [Instalment(i + 1, *_instalment(i, item)) for i, item in enumerate(schedule)]
            plan = check_schedule(total, parts)
        else:
            plan = build_schedule(total, instalments, first, every_months=every_months)
        return self._add(
            "draft",
            customer_id=deal.customer_id,
            deal_id=deal.id,
            owner_id=deal.owner_id,
            amount=total,
            schedule=plan,
            custom=self._custom({}, custom, creating=True),
            **fields,
        )

    def _move(
        self, contract: Contract, to: ContractStatus, action: str, **changes: Any
    ) -> Contract:
        CONTRACT_MOVES.check(contract.status, to)
        return self._change(contract, None, action, status=to, **changes)

    @write
    def submit(self, id: str) -> Contract:
        """Send a draft for approval; the approval policy decides which steps it needs.

        With no step needed, the contract is approved at once.
        """
        contract = self._load(id)
        if contract.status is not ContractStatus.DRAFT:
            CONTRACT_MOVES.check(contract.status, ContractStatus.PENDING_APPROVAL)
        self._s._guard.require(contract, "update")
        steps = tuple(self._s.crm.approval_steps(self._s, contract))
        if not steps:
            with self._s._guard.bypass():  # no approver needed: the policy approves it
                return self._move(contract, ContractStatus.APPROVED, "approve", approvals=())
        return self._move(contract, ContractStatus.PENDING_APPROVAL, "submit", approvals=steps)

    def _decide(
        self, id: str, decision: Decision, comment: str | None
    ) -> tuple[Contract, tuple[Any, ...]]:
        contract = self._load(id)
        if contract.status is not ContractStatus.PENDING_APPROVAL:
            target = "approved" if decision is Decision.APPROVED else "rejected"
            raise InvalidTransition(
                "contract", contract.status.value, target, "it is not pending approval"
            )
        actor = self._s.actor
        roles = set(self._s._guard.roles)  # roles and department, as the policy sees them
        pending = [i for i, s in enumerate(contract.approvals) if s.decision is Decision.PENDING]
        mine = [i for i in pending if contract.approvals[i].role in roles]
        if not mine and (actor.is_system or "admin" in roles) and pending:
            mine = pending[:1]
        if not mine:
            needed = ", ".join(sorted({contract.approvals[i].role for i in pending}))
            self._s._guard.deny("approve", "contract", contract.id, f"needs the role {needed}")
        note = check_text("comment", comment, limit=2000)
        steps = list(contract.approvals)
        steps[mine[0]] = attrs.evolve(
            steps[mine[0]],
            decision=decision,
            decided_by=actor.id,
            decided_at=self._s._now(),
            comment=note,
        )
        return contract, tuple(steps)

    @write
    def approve(self, id: str, *, comment: str | None = None) -> Contract:
        """Approve the pending step that needs one of the actor's roles.

        When every step is approved the contract is approved and can be signed.
        :raises PermissionDenied: when no pending step needs a role the actor has.
        """
        contract, steps = self._decide(id, Decision.APPROVED, comment)
        if all(s.decision is Decision.APPROVED for s in steps):
            return self._move(contract, ContractStatus.APPROVED, "approve", approvals=steps)
        return self._change(contract, None, "approve_step", approvals=steps)

    @write
    def reject(self, id: str, *, comment: str) -> Contract:
        """Reject the contract at the actor's step, saying why."""
        check_text("comment", comment, required=True, limit=2000)
        contract, steps = self._decide(id, Decision.REJECTED, comment)
        return self._move(contract, ContractStatus.REJECTED, "reject", approvals=steps)

    @write
    def revise(self, id: str, **changes: Any) -> Contract:
        """Take a rejected contract back to draft, optionally changing its discount or terms."""
        contract = self._load(id)
        allowed = {"discount_percent", "standard_terms", "terms"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ValidationError(unknown[0], changes[unknown[0]], "cannot be revised here")
        with Checks() as checks:
            fields: dict[str, Any] = {}
            if "discount_percent" in changes:
                fields["discount_percent"] = checks(
                    _percent, "discount_percent", changes["discount_percent"]
                )
            if "standard_terms" in changes:
                fields["standard_terms"] = checks(
                    check_bool, "standard_terms", changes["standard_terms"]
                )
            if "terms" in changes:
                fields["terms"] = checks(check_text, "terms", changes["terms"], limit=20_000)
        return self._move(contract, ContractStatus.DRAFT, "update", approvals=(), **fields)

    @write
    def sign(self, id: str, *, signed_at: datetime | None = None) -> Contract:
        """Record the customer's signature: finance gets one receivable per instalment."""
        contract = self._load(id)
        when = self._s._now() if signed_at is None else check_when("signed_at", signed_at)
        signed = self._move(contract, ContractStatus.SIGNED, "sign", signed_at=when)
        with self._s._guard.bypass():  # finance's receivables follow from the signature
            for instalment in signed.schedule:
                self._s.receivables._open_for(signed, instalment)
        return signed

    @write
    def activate(self, id: str) -> Contract:
        """The contract is in force (signed → active)."""
        return self._move(self._load(id), ContractStatus.ACTIVE, "update")

    @write
    def complete(self, id: str) -> Contract:
        """The contract ran its course (active → completed)."""
        return self._move(
            self._load(id), ContractStatus.COMPLETED, "update", ended_at=self._s._now()
        )

    @write
    def terminate(self, id: str, reason: str) -> Contract:
        """End a signed or active contract early, saying why."""
        text = check_text("reason", reason, required=True, limit=500)
        return self._move(
            self._load(id),
            ContractStatus.TERMINATED,
            "update",
            ended_at=self._s._now(),
            end_reason=text,
        )

    def awaiting(self, role: str | None = None) -> list[Contract]:
        """Contracts pending approval, oldest first; with ``role``, those with a pending step for it."""
        found = self._find(
            Eq("status", ContractStatus.PENDING_APPROVAL), order_by=[OrderBy("updated_at")]
        )
        if role is None:
            return found
        return [
            c
            for c in found
            if any(s.role == role and s.decision is Decision.PENDING for s in c.approvals)
        ]

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Contract]:
        """Every contract :meth:`list` finds with ``filters``, however many there are.

        Takes the filters of :meth:`list` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.contracts.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.list, filters, page_size)

    def list(
        self,
        *,
        customer_id: str | None = None,
        status: ContractStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Contract]:
        """Contracts, newest first, by customer and status.

        Returns the first 100 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if customer_id is not None:
            parts.append(Eq("customer_id", customer_id))
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, ContractStatus)))
        return self._find(
            all_of(parts),
            order_by=[OrderBy("created_at", descending=True)],
            limit=limit,
            offset=offset,
        )


def _instalment(i: int, item: Any) -> tuple[date, Money]:
    if not (isinstance(item, tuple | list) and len(item) == 2):
        raise ValidationError(f"schedule[{i}]", item, "must be a (due date, Money) pair")
    due = _date(f"schedule[{i}].due", item[0])
    amount = check_money(f"schedule[{i}].amount", item[1])
    if due is None or amount is None:
        raise ValidationError(f"schedule[{i}]", item, "needs a due date and an amount")
    return due, amount
