"""Contracts: drafted from won deals, approved by rule, signed, paid by instalments."""

from __future__ import annotations

import calendar
import enum
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from pycrm.domain.money import Money
from pycrm.domain.records import Record
from pycrm.domain.states import StateMachine
from pycrm.errors import ValidationError

__all__ = [
    "CONTRACT_MOVES",
    "ApprovalPolicy",
    "ApprovalStep",
    "Contract",
    "ContractStatus",
    "Decision",
    "Instalment",
    "apply_discount",
    "build_schedule",
    "check_schedule",
    "rescale_schedule",
]


class ContractStatus(enum.StrEnum):
    """Where a contract is in its life."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    SIGNED = "signed"
    ACTIVE = "active"
    COMPLETED = "completed"
    TERMINATED = "terminated"


_C = ContractStatus
#: draft → pending_approval → approved | rejected → signed → active → completed | terminated.
#: A rejected contract may be revised (back to draft); a draft needing no approval is approved
#: on submission; the owner may recall a contract pending approval, or approved but not yet
#: signed, back to draft.
CONTRACT_MOVES: StateMachine[ContractStatus] = StateMachine(
    "contract",
    {
        _C.DRAFT: {_C.PENDING_APPROVAL, _C.APPROVED},
        _C.PENDING_APPROVAL: {_C.APPROVED, _C.REJECTED, _C.DRAFT},
        _C.REJECTED: {_C.DRAFT},
        _C.APPROVED: {_C.SIGNED, _C.DRAFT},
        _C.SIGNED: {_C.ACTIVE, _C.TERMINATED},
        _C.ACTIVE: {_C.COMPLETED, _C.TERMINATED},
    },
)


class Decision(enum.StrEnum):
    """An approver's answer."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@attrs.frozen
class ApprovalStep:
    """One approval a contract needs, and its outcome."""

    role: str
    """The role that may decide it, e.g. ``"sales_manager"`` or ``"legal"``."""
    reason: str
    """Why it is needed, e.g. ``"discount 15% above 10%"``."""
    decision: Decision = Decision.PENDING
    """Pending, approved or rejected."""
    decided_by: str | None = None
    """Who decided."""
    decided_at: datetime | None = None
    """When."""
    comment: str | None = None
    """The approver's comment."""
    delegated_to: str | None = None
    """A user the step was handed to (who may decide it besides the role's holders)."""
    delegated_by: str | None = None
    """Who handed it on."""
    delegated_at: datetime | None = None
    """When."""


@attrs.frozen
class Instalment:
    """One payment the customer owes under a contract."""

    number: int
    """1, 2, 3 … in due order."""
    due: date
    """When it is due."""
    amount: Money
    """How much."""


@attrs.frozen(kw_only=True)
class Contract(Record):
    """A contract with a customer, usually from a won deal."""

    resource: ClassVar[str] = "contract"
    owner_field: ClassVar[str] = "owner_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("customer_id",),
        ("deal_id",),
        ("status",),
    )

    title: str
    """What the contract is for."""
    customer_id: str
    """The customer."""
    deal_id: str | None = None
    """The won deal it was drafted from."""
    owner_id: str | None = None
    """The salesperson responsible (the deal owner)."""
    amount: Money
    """Total contract value; the schedule sums to it exactly."""
    list_amount: Money | None = None
    """The price before discount, where one was given."""
    discount_percent: Decimal = Decimal(0)
    """Discount granted, in percent: with a :attr:`list_amount`, :attr:`amount` is the list
    amount less this discount (see :func:`apply_discount`)."""
    standard_terms: bool = True
    """False when the terms deviate from the company's standard (legal must review)."""
    terms: str | None = None
    """Special terms, in words."""
    start: date | None = None
    """First day of the contract."""
    end: date | None = None
    """Last day of the contract."""
    status: ContractStatus = ContractStatus.DRAFT
    """See :data:`CONTRACT_MOVES`."""
    approvals: tuple[ApprovalStep, ...] = ()
    """The approval chain set on submission."""
    schedule: tuple[Instalment, ...] = ()
    """Payment schedule; sums exactly to :attr:`amount`."""
    signed_at: datetime | None = None
    """When it was signed."""
    ended_at: datetime | None = None
    """When it was completed or terminated."""
    end_reason: str | None = None
    """Why it was terminated."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values by key, in their JSON form (see :mod:`pycrm.domain.custom_fields`)."""


@attrs.frozen
class ApprovalPolicy:
    """The built-in approval rule: who must approve a contract before it can be signed.

    * a discount above ``discount_threshold`` percent needs ``discount_role``;
    * non-standard terms need ``terms_role``;
    * an amount at or above ``amount_threshold`` (if set, same currency) needs ``amount_role``.
    """

    discount_threshold: Decimal = Decimal(10)
    """Discounts above this many percent need approval."""
    discount_role: str = "sales_manager"
    """Who approves a large discount."""
    terms_role: str = "legal"
    """Who approves non-standard terms."""
    amount_threshold: Money | None = None
    """Contracts at or above this value need ``amount_role``."""
    amount_role: str = "finance_manager"
    """Who approves large contracts."""

    def steps(self, contract: Contract) -> list[ApprovalStep]:
        """The approval steps ``contract`` needs, in the order they should be decided."""
        steps: list[ApprovalStep] = []
        if contract.discount_percent > self.discount_threshold:
            steps.append(
                ApprovalStep(
                    self.discount_role,
                    f"discount {contract.discount_percent}% above {self.discount_threshold}%",
                )
            )
        if not contract.standard_terms:
            steps.append(ApprovalStep(self.terms_role, "non-standard terms"))
        threshold = self.amount_threshold
        if (
            threshold is not None
            and threshold.currency == contract.amount.currency
            and contract.amount >= threshold
        ):
            steps.append(ApprovalStep(self.amount_role, f"amount {contract.amount} ≥ {threshold}"))
        return steps


def apply_discount(list_amount: Money, percent: Decimal) -> Money:
    """``list_amount`` less ``percent`` % of it, exactly, in the currency's minor units.

    The discount is ``list_amount × percent / 100`` rounded half-even to the
    minor unit (a cent for EUR, a yen for JPY), and subtracted: 15 % off
    1,000.05 EUR is a discount of 150.0075 → 150.01 EUR, leaving 850.04 EUR;
    12.5 % off 1 JPY is 0.125 → 0 JPY, leaving 1 JPY.
    """
    discount = Money.of(list_amount.amount * percent / 100, list_amount.currency)
    return list_amount - discount


def rescale_schedule(schedule: Sequence[Instalment], amount: Money) -> tuple[Instalment, ...]:
    """``schedule`` (same due dates) summing exactly to the new ``amount``.

    A schedule of equal parts (as :func:`build_schedule` makes them) stays
    equal parts; any other keeps each instalment's share of the total, in
    whole minor units, the first instalments taking the remainder.
    """
    if not schedule:
        return ()
    old = [part.amount.minor for part in schedule]
    total, count = sum(old), len(schedule)
    current = Money.from_minor(total, amount.currency)
    if [p.amount for p in schedule] == list(current.allocate(count)) or total <= 0:
        parts = [p.minor for p in amount.allocate(count)]
    else:
        parts = [amount.minor * share // total for share in old]
        for i in range(amount.minor - sum(parts)):
            parts[i % count] += 1
    if any(part <= 0 for part in parts):
        raise ValidationError("schedule", str(amount), "would leave an instalment with nothing")
    return tuple(
        Instalment(p.number, p.due, Money.from_minor(minor, amount.currency))
        for p, minor in zip(schedule, parts, strict=True)
    )


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def build_schedule(
    amount: Money, count: int, first_due: date, *, every_months: int = 1
) -> tuple[Instalment, ...]:
    """``count`` instalments ``every_months`` apart that sum exactly to ``amount``.

    Amounts differ by at most one minor unit; the first ones carry the remainder.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 600:
        raise ValidationError("instalments", count, "must be a whole number from 1 to 600")
    if (
        isinstance(every_months, bool)
        or not isinstance(every_months, int)
        or not 1 <= every_months <= 120
    ):
        raise ValidationError("every_months", every_months, "must be a whole number from 1 to 120")
    if not isinstance(first_due, date):
        raise ValidationError("first_due", first_due, "must be a date")
    parts = amount.allocate(count)
    try:
        return tuple(
            Instalment(i + 1, _add_months(first_due, i * every_months), part)
            for i, part in enumerate(parts)
        )
    except (OverflowError, ValueError):
        raise ValidationError(
            "first_due", first_due, "the schedule runs past the year 9999"
        ) from None


def check_schedule(amount: Money, instalments: Sequence[Instalment]) -> tuple[Instalment, ...]:
    """Accept a hand-made schedule only if it is ordered, positive and sums exactly to ``amount``."""
    if not instalments:
        raise ValidationError("schedule", instalments, "needs at least one instalment")
    total = Money.zero(amount.currency)
    for i, part in enumerate(instalments):
        if part.amount.currency != amount.currency:
            raise ValidationError(
                f"schedule[{i}].amount", part.amount, f"must be in {amount.currency}"
            )
        if part.amount.amount <= 0:
            raise ValidationError(f"schedule[{i}].amount", part.amount, "must be positive")
        if i and part.due < instalments[i - 1].due:
            raise ValidationError(
                f"schedule[{i}].due", part.due, "instalments must be in due order"
            )
        total += part.amount
    if total != amount:
        raise ValidationError(
            "schedule", str(total), f"sums to {total}, not the contract amount {amount}"
        )
    return tuple(Instalment(i + 1, p.due, p.amount) for i, p in enumerate(instalments))
