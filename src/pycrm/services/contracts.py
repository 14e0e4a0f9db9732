"""Contracts: drafted from won deals, approved by rule, signed into receivables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import attrs

from pycrm.domain.contracts import (
    CONTRACT_MOVES,
    ApprovalStep,
    Contract,
    ContractStatus,
    Decision,
    Instalment,
    apply_discount,
    build_schedule,
    check_schedule,
    rescale_schedule,
)
from pycrm.domain.deals import Deal, DealStatus
from pycrm.domain.fields import (
    Checks,
    check_bool,
    check_choice,
    check_date,
    check_id,
    check_money,
    check_text,
)
from pycrm.domain.money import Money
from pycrm.domain.org import User
from pycrm.domain.query import Eq, Filter, OrderBy, all_of
from pycrm.errors import InvalidTransition, ValidationError
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
        "recall": "contract_recalled",
        "delegate": "approval_delegated",
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

        The amount is what the customer pays. Without ``amount`` it is the
        deal's amount, or, with a ``discount_percent``, the list price less
        the discount: the list price is ``list_amount``, else the deal's
        amount (then recorded as ``list_amount``). The discount is
        ``list × percent / 100`` rounded half-even to the currency's minor
        unit (a cent, a yen) and subtracted, so 15 % off 1,000.05 EUR is
        150.01 EUR off, 850.04 EUR to pay (see
        :func:`~pycrm.domain.contracts.apply_discount`). A given ``amount`` is
        taken as the net amount; with ``list_amount`` and a discount beside
        it, it must be exactly that.

        The payment schedule is either ``instalments`` equal parts (to the
        minor unit) ``every_months`` apart from ``first_due`` (default:
        ``start`` or today), or an explicit ``schedule`` of
        ``(due date, Money)`` that must sum exactly to the amount.
        """
        deal = self._s._uow.repo(Deal).get(check_id("deal_id", deal_id))
        if deal is None:
            raise ValidationError("deal_id", deal_id, "is not the id of a deal")
        if deal.status is not DealStatus.WON:
            raise ValidationError("deal_id", deal_id, f"the deal is {deal.status.value}, not won")
        with Checks() as checks:
            fields: dict[str, Any] = {
                "title": checks(check_text, "title", title or deal.name, required=True),
                "amount": checks(check_money, "amount", amount),
                "list_amount": checks(check_money, "list_amount", list_amount),
                "discount_percent": checks(_percent, "discount_percent", discount_percent),
                "standard_terms": checks(check_bool, "standard_terms", standard_terms),
                "terms": checks(check_text, "terms", terms, limit=20_000, multiline=True),
                "start": checks(check_date, "start", start),
                "end": checks(check_date, "end", end),
                "first_due": checks(check_date, "first_due", first_due),
            }
        total = self._net(deal.amount, fields, fields.pop("amount"))
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

    @staticmethod
    def _net(deal_amount: Money, fields: dict[str, Any], amount: Money | None) -> Money:
        """The amount to pay, from the amount given or the list price less the discount."""
        listed: Money | None = fields["list_amount"]
        percent: Decimal = fields["discount_percent"]
        if amount is None:
            if not percent:
                return deal_amount
            base = listed if listed is not None else deal_amount
            fields["list_amount"] = base
            return apply_discount(base, percent)
        if listed is not None and listed.currency != amount.currency:
            raise ValidationError("list_amount", str(listed), f"must be in {amount.currency}")
        if listed is not None and percent and amount != apply_discount(listed, percent):
            raise ValidationError(
                "amount",
                str(amount),
                f"is not list_amount less {percent}% ({apply_discount(listed, percent)})",
            )
        return amount

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

    @staticmethod
    def _pending(contract: Contract, target: str) -> Contract:
        if contract.status is not ContractStatus.PENDING_APPROVAL:
            raise InvalidTransition(
                "contract", contract.status.value, target, "it is not pending approval"
            )
        return contract

    def _step_for(self, contract: Contract, action: str, role: str | None = None) -> int:
        """The pending step the actor may decide (or hand on): by role, by delegation, as admin.

        With ``role``, that role's pending step. Raises PermissionDenied when there is none.
        """
        actor = self._s.actor
        roles = set(self._s._guard.roles)  # roles and department, as the policy sees them
        pending = [
            i
            for i, s in enumerate(contract.approvals)
            if s.decision is Decision.PENDING and (role is None or s.role == role)
        ]
        mine = [
            i
            for i in pending
            if contract.approvals[i].role in roles or contract.approvals[i].delegated_to == actor.id
        ]
        if not mine and (actor.is_system or "admin" in roles) and pending:
            mine = pending[:1]
        if not mine:
            if role is not None and not pending:
                raise ValidationError("role", role, "names no pending approval step")
            needed = ", ".join(sorted({contract.approvals[i].role for i in pending}))
            self._s._guard.deny(action, "contract", contract.id, f"needs the role {needed}")
        return mine[0]

    def _by_delegation(self, step: ApprovalStep) -> bool:
        """Whether the actor decides ``step`` only because it was handed to them."""
        return step.delegated_to == self._s.actor.id and step.role not in self._s._guard.roles

    def _decide(
        self, id: str, decision: Decision, comment: str | None
    ) -> tuple[Contract, tuple[Any, ...], bool]:
        target = "approved" if decision is Decision.APPROVED else "rejected"
        contract = self._pending(self._load(id), target)
        index = self._step_for(contract, "approve")
        note = check_text("comment", comment, limit=2000)
        steps = list(contract.approvals)
        delegated = self._by_delegation(steps[index])
        steps[index] = attrs.evolve(
            steps[index],
            decision=decision,
            decided_by=self._s.actor.id,
            decided_at=self._s._now(),
            comment=note,
        )
        return contract, tuple(steps), delegated

    @write
    def approve(self, id: str, *, comment: str | None = None) -> Contract:
        """Approve the pending step that needs one of the actor's roles (or was handed to them).

        When every step is approved the contract is approved and can be signed.
        A delegate (see :meth:`delegate`) decides on the approver's authority:
        the policy's ``approve`` grant is the approver's, not theirs.
        :raises PermissionDenied: when no pending step needs a role the actor has.
        """
        contract, steps, delegated = self._decide(id, Decision.APPROVED, comment)
        with self._s._guard.bypass() if delegated else nullcontext():
            if all(s.decision is Decision.APPROVED for s in steps):
                return self._move(contract, ContractStatus.APPROVED, "approve", approvals=steps)
            return self._change(contract, None, "approve_step", approvals=steps)

    @write
    def reject(self, id: str, *, comment: str) -> Contract:
        """Reject the contract at the actor's step (or the step handed to them), saying why."""
        check_text("comment", comment, required=True, limit=2000)
        contract, steps, delegated = self._decide(id, Decision.REJECTED, comment)
        with self._s._guard.bypass() if delegated else nullcontext():
            return self._move(contract, ContractStatus.REJECTED, "reject", approvals=steps)

    @write
    def delegate(
        self,
        id: str,
        to: str,
        *,
        role: str | None = None,
        version: int | None = None,
    ) -> Contract:
        """Hand a pending approval step to another user, e.g. while away.

        The step is the first pending one the actor may decide (or ``role``'s):
        one that needs a role of theirs, one handed to them, or, for admins,
        the next pending one. From now on ``to`` may approve or reject it too,
        on the approver's authority (holders of the role still may), and gets
        a task saying so; ``approval_delegated`` is sent. ``to`` must be an
        active user, not the actor, and able to read the contract to find it.

        :raises PermissionDenied: when no pending step is the actor's to hand on.
        """
        to_id = self._check_user("to", to)
        assert to_id is not None
        if role is not None:
            check_text("role", role, required=True, limit=40)
        contract = self._pending(self._load(id), "delegated")
        user = self._s._uow.repo(User).get(to_id)
        if user is None or not user.active:
            raise ValidationError("to", to, "is not an active user")
        if to_id == self._s.actor.id:
            raise ValidationError("to", to, "is the actor: hand the step to someone else")
        index = self._step_for(contract, "approve", role)
        steps = list(contract.approvals)
        steps[index] = attrs.evolve(
            steps[index],
            delegated_to=to_id,
            delegated_by=self._s.actor.id,
            delegated_at=self._s._now(),
        )
        handed_on = self._by_delegation(contract.approvals[index])
        with self._s._guard.bypass() if handed_on else nullcontext():
            return self._change(contract, version, "delegate", approvals=tuple(steps))

    @write
    def recall(self, id: str, *, version: int | None = None) -> Contract:
        """Take a submitted contract back to draft: its owner changed their mind.

        A contract pending approval, or approved but not yet signed, goes back
        to ``draft`` and loses its approval steps (the audit keeps them); it
        can then be revised and submitted again. Only the contract's owner
        (and the system actor) may recall it. Sends ``contract_recalled``.

        :raises PermissionDenied: for anyone but the owner.
        :raises InvalidTransition: for a draft, rejected, signed or later contract.
        """
        contract = self._load(id)
        actor = self._s.actor
        if not actor.is_system and contract.owner_id != actor.id:
            self._s._guard.deny("update", "contract", contract.id, "only its owner may recall it")
        if contract.status not in (ContractStatus.PENDING_APPROVAL, ContractStatus.APPROVED):
            raise InvalidTransition(
                "contract", contract.status.value, "draft", "only a submitted contract is recalled"
            )
        return self._change(contract, version, "recall", status=ContractStatus.DRAFT, approvals=())

    @write
    def revise(self, id: str, **changes: Any) -> Contract:
        """Take a rejected contract back to draft, or change a draft: its discount or terms.

        A new ``discount_percent`` is applied to the list price (as in
        :meth:`draft`) and the payment schedule follows the new amount
        (equal parts stay equal, other schedules keep their shares). A contract
        without a list price and with no discount so far takes its amount as
        the list price.
        """
        contract = self._load(id)
        if contract.status not in (ContractStatus.DRAFT, ContractStatus.REJECTED):
            raise InvalidTransition(
                "contract", contract.status.value, "draft", "only drafts and rejected ones change"
            )
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
        if fields.get("discount_percent", contract.discount_percent) != contract.discount_percent:
            fields.update(self._rediscount(contract, fields["discount_percent"]))
        if contract.status is ContractStatus.DRAFT:
            return self._change(contract, None, "update", **fields)
        return self._move(contract, ContractStatus.DRAFT, "update", approvals=(), **fields)

    @staticmethod
    def _rediscount(contract: Contract, percent: Decimal) -> dict[str, Any]:
        """The amount, list amount and schedule for a new discount."""
        listed = contract.list_amount
        if listed is None:
            if contract.discount_percent:
                raise ValidationError(
                    "discount_percent",
                    str(percent),
                    "the contract has no list_amount to apply it to",
                )
            listed = contract.amount  # no discount so far: the amount was the list price
        amount = apply_discount(listed, percent)
        if amount.amount <= 0:
            raise ValidationError("discount_percent", str(percent), "leaves nothing to pay")
        try:
            schedule = rescale_schedule(contract.schedule, amount)
        except ValidationError as exc:
            raise ValidationError("discount_percent", str(percent), exc.reason) from None
        return {"list_amount": listed, "amount": amount, "schedule": schedule}

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
        """Contracts pending approval, oldest first; with ``role``, those with a pending step for it.

        Returns all of them: this list has no pages.
        """
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
    due = check_date(f"schedule[{i}].due", item[0])
    amount = check_money(f"schedule[{i}].amount", item[1])
    if due is None or amount is None:
        raise ValidationError(f"schedule[{i}]", item, "needs a due date and an amount")
    return due, amount
