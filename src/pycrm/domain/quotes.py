"""Quotes: what a customer is offered, line by line, drafted from a deal.

A :class:`Quote` holds :class:`QuoteLine` entries (a product or free text,
a quantity, a unit price, a discount and a tax rate) in one currency, and
their totals. It moves through :data:`QUOTE_MOVES`: a draft is sent
(after approval where a line's discount or the margin needs it), and the
customer accepts or rejects it, or it expires. A revision is a new version
of the same quote; the one it replaces is superseded.

Lines are priced and summed by the rounding rule of :mod:`pycrm.domain.lines`
(per line, then totals): a quote's total is always the sum of its lines.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from pycrm.domain.contracts import ApprovalPolicy, ApprovalStep, BillingPeriod
from pycrm.domain.lines import QuoteLine
from pycrm.domain.money import Money
from pycrm.domain.records import Record
from pycrm.domain.states import StateMachine

__all__ = ["EDITABLE", "QUOTE_MOVES", "Quote", "QuoteLine", "QuoteStatus", "quote_steps"]


class QuoteStatus(enum.StrEnum):
    """Where a quote is in its life."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


_Q = QuoteStatus
#: draft → (pending_approval → approved →) sent → accepted | rejected | expired.
#: A draft needing no approval is sent at once; an approver who denies a step sends the
#: quote back to draft; an approved quote that is changed again is a draft again. Any
#: version not yet accepted is superseded when a revision is made from it.
QUOTE_MOVES: StateMachine[QuoteStatus] = StateMachine(
    "quote",
    {
        _Q.DRAFT: {_Q.PENDING_APPROVAL, _Q.APPROVED, _Q.SENT, _Q.SUPERSEDED},
        _Q.PENDING_APPROVAL: {_Q.APPROVED, _Q.DRAFT, _Q.SUPERSEDED},
        _Q.APPROVED: {_Q.SENT, _Q.DRAFT, _Q.SUPERSEDED},
        _Q.SENT: {_Q.ACCEPTED, _Q.REJECTED, _Q.EXPIRED, _Q.SUPERSEDED},
        _Q.REJECTED: {_Q.SUPERSEDED},
        _Q.EXPIRED: {_Q.SUPERSEDED},
    },
)

#: The states in which a quote's lines and terms may change.
EDITABLE = frozenset({QuoteStatus.DRAFT, QuoteStatus.APPROVED})


@attrs.frozen(kw_only=True)
class Quote(Record):
    """An offer to a customer, drafted from a deal: lines, totals, a state and a version."""

    resource: ClassVar[str] = "quote"
    owner_field: ClassVar[str] = "owner_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("deal_id",),
        ("customer_id",),
        ("status",),
        ("root_id",),
    )

    title: str
    """What is offered (the deal's name by default)."""
    deal_id: str
    """The deal it was drafted from."""
    customer_id: str
    """The customer it is for."""
    owner_id: str | None = None
    """The salesperson responsible (the deal's owner)."""
    currency: str
    """The currency of every line and total."""
    price_list_id: str | None = None
    """The price list products are priced from (None: the most specific for the customer)."""
    lines: tuple[QuoteLine, ...] = ()
    """The lines, in the order the customer reads them."""
    billing_period: BillingPeriod | None = None
    """Set on a subscription's quote: the lines' prices and the totals are per period,
    and the accepted quote becomes a subscription (None: a one-off sale)."""
    list_total: Money
    """The lines' list amounts summed: the price before discounts."""
    subtotal: Money
    """The lines' net amounts summed (after discounts, before tax)."""
    tax: Money
    """The lines' taxes summed."""
    total: Money
    """Subtotal plus tax: what the customer pays."""
    costs: tuple[Money | None, ...] = ()
    """What one unit of each line costs the company (None: not known), in the quote's
    currency. The default policy shows costs and margins to finance and sales managers only."""
    cost: Money | None = None
    """The cost of the lines whose cost is known (None: of none)."""
    margin: Money | None = None
    """The net of the lines whose cost is known, less that cost."""
    valid_until: date | None = None
    """The last day the customer may accept it; after it, the quote expires."""
    notes: str | None = None
    """Terms and remarks printed on the quote."""
    status: QuoteStatus = QuoteStatus.DRAFT
    """See :data:`QUOTE_MOVES`."""
    approvals: tuple[ApprovalStep, ...] = ()
    """The approval steps set on submission."""
    revision: int = 1
    """1 for the first version, 2 for its first revision …"""
    root_id: str | None = None
    """The id of the first version (None on the first version itself)."""
    sent_at: datetime | None = None
    """When it was sent to the customer."""
    decided_at: datetime | None = None
    """When the customer accepted or rejected it, or it expired."""
    reject_reason: str | None = None
    """Why the customer rejected it."""
    contract_id: str | None = None
    """The contract drafted when it was accepted."""
    custom: dict[str, Any] = attrs.field(factory=dict)
    """Custom field values."""

    @property
    def margin_percent(self) -> Decimal | None:
        """The margin as a percentage of the net of the lines whose cost is known, to 0.01.

        None when no cost is known or that net is 0 or less (see :meth:`below_margin`).
        """
        if self.margin is None or self.cost is None:
            return None
        net = self.margin.amount + self.cost.amount
        if net <= 0:
            return None
        return (self.margin.amount * 100 / net).quantize(Decimal("0.01"))

    def below_margin(self, floor: Decimal) -> bool:
        """Whether the margin on the costed lines is below ``floor`` %, compared unrounded.

        A costed line given away (the costed lines' net is 0 or less) is below
        any floor when it costs something; with no known cost, nothing is below.
        """
        if self.margin is None or self.cost is None:
            return False
        net = self.margin.amount + self.cost.amount
        if net <= 0:
            return self.cost.amount > 0
        return self.margin.amount * 100 < floor * net

    @property
    def amount(self) -> Money:
        """The total (as a contract's ``amount``, for approval rules written for contracts)."""
        return self.total

    @property
    def discount_percent(self) -> Decimal:
        """The largest line discount (as a contract's ``discount_percent``)."""
        return max((line.discount_percent for line in self.lines), default=Decimal(0))

    @property
    def standard_terms(self) -> bool:
        """Always True: a quote's notes are not contract terms (legal reviews the contract)."""
        return True

    @property
    def first_id(self) -> str:
        """The id every version of this quote shares: the first version's."""
        return self.root_id or self.id


def quote_steps(policy: ApprovalPolicy, quote: Quote) -> list[ApprovalStep]:
    """The approval steps ``quote`` needs under ``policy``, in the order to decide them.

    * a line discount above ``discount_threshold`` % needs ``discount_role``;
    * a margin below ``margin_floor`` % (where a cost is known) needs ``margin_role``;
    * a total at or above ``amount_threshold`` (same currency) needs ``amount_role``.
    """
    steps: list[ApprovalStep] = []
    over = [
        (i + 1, line.discount_percent)
        for i, line in enumerate(quote.lines)
        if line.discount_percent > policy.discount_threshold
    ]
    if over:
        named = ", ".join(f"line {n} {pct}%" for n, pct in over)
        steps.append(
            ApprovalStep(
                policy.discount_role, f"discount above {policy.discount_threshold}%: {named}"
            )
        )
    floor = policy.margin_floor
    if floor is not None and quote.below_margin(floor):
        shown = "none" if quote.margin_percent is None else f"{quote.margin_percent}%"
        steps.append(ApprovalStep(policy.margin_role, f"margin {shown} below {floor}%"))
    threshold = policy.amount_threshold
    if threshold is not None and threshold.currency == quote.currency and quote.total >= threshold:
        steps.append(ApprovalStep(policy.amount_role, f"total {quote.total} ≥ {threshold}"))
    return _one_per_role(steps)


def _one_per_role(steps: Iterable[ApprovalStep]) -> list[ApprovalStep]:
    """One step per role, its reasons joined (a manager decides discount and margin at once)."""
    by_role: dict[str, ApprovalStep] = {}
    for step in steps:
        had = by_role.get(step.role)
        by_role[step.role] = (
            step if had is None else attrs.evolve(had, reason=f"{had.reason}; {step.reason}")
        )
    return list(by_role.values())
