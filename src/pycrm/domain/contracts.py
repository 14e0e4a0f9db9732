"""Contracts: drafted from won deals, approved by rule, signed, paid by instalments."""

from __future__ import annotations

import calendar
import enum
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from pycrm.domain.lines import QuoteLine
from pycrm.domain.money import Money
from pycrm.domain.records import Record
from pycrm.domain.states import StateMachine
from pycrm.errors import ValidationError

__all__ = [
    "CONTRACT_MOVES",
    "ApprovalPolicy",
    "ApprovalStep",
    "BillingPeriod",
    "Contract",
    "ContractStatus",
    "Decision",
    "Instalment",
    "add_months",
    "apply_discount",
    "build_schedule",
    "check_schedule",
    "rescale_schedule",
    "subscription_schedule",
    "term_end",
    "term_periods",
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


class BillingPeriod(enum.StrEnum):
    """How often a subscription bills its recurring amount."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"

    @property
    def months(self) -> int:
        """The period's length in months (1, 3, 12)."""
        return {"monthly": 1, "quarterly": 3, "yearly": 12}[self.value]


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
    quote_id: str | None = None
    """The accepted quote it was drafted from."""
    lines: tuple[QuoteLine, ...] = ()
    """The accepted quote's lines, discounts applied, in the quote's currency."""
    exchange_rate: Decimal | None = None
    """Where the quote was in another currency: the rate its total was converted at
    (units of the contract's currency per unit of the quote's)."""
    rate_date: date | None = None
    """The day that rate was valid from."""
    billing_period: BillingPeriod | None = None
    """Set on a subscription: it bills :attr:`recurring` every period from :attr:`start`
    to :attr:`end`, a whole number of periods (None: a one-off contract)."""
    recurring: Money | None = None
    """A subscription's amount per billing period; :attr:`amount` is this × the periods."""
    auto_renew: bool = False
    """Renew a subscription for another term of the same length when the reminder is due."""
    notice_days: int = 30
    """Remind (or auto-renew) this many days before a subscription's end."""
    renewal_of: str | None = None
    """The previous term's contract, on a renewal."""
    renewed_by: str | None = None
    """The next term's contract, once renewed."""
    reminded_at: datetime | None = None
    """When the renewal reminder went out (see ``s.contracts.scan_renewals``)."""

    @property
    def mrr(self) -> Money | None:
        """A subscription's monthly recurring revenue (:attr:`recurring` per month, rounded)."""
        if self.billing_period is None or self.recurring is None:
            return None
        months = self.billing_period.months
        return Money.of(self.recurring.amount / months, self.recurring.currency)


@attrs.frozen
class ApprovalPolicy:
    """The built-in approval rule: who must approve a contract before it can be signed.

    * a discount above ``discount_threshold`` percent needs ``discount_role``;
    * non-standard terms need ``terms_role``;
    * an amount at or above ``amount_threshold`` (if set, same currency) needs ``amount_role``.

    Quotes are approved by the same policy before they are sent (see
    :func:`pycrm.domain.quotes.quote_steps`): a line's discount, a margin
    below ``margin_floor``, a total at or above ``amount_threshold``.
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
    margin_floor: Decimal | None = Decimal(15)
    """Quotes whose margin (where costs are known) is below this many percent need
    ``margin_role`` (None: margins need no approval)."""
    margin_role: str = "sales_manager"
    """Who approves a thin margin."""

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


def add_months(day: date, months: int) -> date:
    """``day`` moved ``months`` on (or back), on the month's last day where it is shorter."""
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
            Instalment(i + 1, add_months(first_due, i * every_months), part)
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


def term_end(start: date, period: BillingPeriod, periods: int) -> date:
    """The last day of ``periods`` billing periods from ``start`` (the day before the next)."""
    months = period.months * periods
    try:
        return add_months(start, months) - timedelta(days=1)
    except (OverflowError, ValueError):
        if _months_to_end(start) == months:  # the term ends on the last day there is
            return date.max
        raise ValidationError("end", start, "the term runs past the year 9999") from None


def _months_to_end(start: date) -> int | None:
    """The months from ``start`` to 10000-01-01, if ``start`` is the first of a month."""
    if start.day != 1:
        return None
    return (9999 - start.year) * 12 + 13 - start.month


def term_periods(start: date, end: date, period: BillingPeriod) -> int:
    """How many whole billing periods run from ``start`` to ``end`` (both days included).

    :raises ValidationError: (``end``) unless the term is at least one and a whole
        number of periods: a monthly term from 15 January ends on the 14th of a month.
    """
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    count = months // period.months
    near = 1
    for n in (count - 1, count, count + 1):
        if n < 1:
            continue
        try:
            last = term_end(start, period, n)
        except ValidationError:  # ends after 9999-12-31
            break
        if last == end:
            return n
        if n > near and last < end:
            near = n
    raise ValidationError(
        "end",
        end,
        f"must end a whole number of {period.value} periods from {start}"
        f" (e.g. {term_end(start, period, near)})",
    )


def subscription_schedule(
    recurring: Money, start: date, period: BillingPeriod, periods: int
) -> tuple[Instalment, ...]:
    """One instalment of ``recurring`` at the start of each billing period."""
    return tuple(
        Instalment(i + 1, add_months(start, i * period.months), recurring) for i in range(periods)
    )
