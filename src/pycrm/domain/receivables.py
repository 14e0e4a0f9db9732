"""Receivables: what a customer owes for one instalment, and the payments against it."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import date, datetime
from typing import ClassVar

import attrs

from pycrm.domain.money import Money
from pycrm.domain.records import Record
from pycrm.errors import ValidationError

__all__ = ["Payment", "Receivable", "ReceivableStatus", "apply_payment", "status_for"]


class ReceivableStatus(enum.StrEnum):
    """Where a receivable stands."""

    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    OVERDUE = "overdue"
    WRITTEN_OFF = "written_off"


@attrs.frozen
class Payment:
    """Money received against a receivable."""

    reference: str
    """The payment's reference (bank transaction id): recording it twice counts once."""
    amount: Money
    """How much was received (may exceed what was due only as a recorded overpayment)."""
    received_at: datetime
    """When it was received."""
    recorded_by: str
    """Who recorded it."""


@attrs.frozen(kw_only=True)
class Receivable(Record):
    """One instalment a customer owes."""

    resource: ClassVar[str] = "receivable"
    owner_field: ClassVar[str] = "owner_id"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("contract_id",),
        ("customer_id",),
        ("status", "due"),
    )

    contract_id: str
    """The contract."""
    customer_id: str
    """Who owes it."""
    deal_id: str | None = None
    """The deal the contract came from."""
    owner_id: str | None = None
    """The deal owner, told when money comes in."""
    instalment: int
    """Which instalment of the contract's schedule."""
    amount: Money
    """What is owed."""
    due: date
    """When it is due."""
    paid: Money
    """What has been received and applied (never more than :attr:`amount`)."""
    overpaid: Money | None = None
    """Money received beyond :attr:`amount`, recorded explicitly for refund or credit."""
    payments: tuple[Payment, ...] = ()
    """Every payment, in the order recorded."""
    status: ReceivableStatus = ReceivableStatus.OPEN
    """Open, partially paid, paid, overdue or written off."""
    written_off_reason: str | None = None
    """Why it was written off."""

    @property
    def outstanding(self) -> Money:
        """What is still owed."""
        return self.amount - self.paid

    def match_keys(self) -> Iterable[tuple[str, str]]:
        """Payment references, so a reference is found without a scan."""
        for payment in self.payments:
            yield "payment_ref", payment.reference


def status_for(receivable: Receivable, today: date) -> ReceivableStatus:
    """The status a receivable's amounts imply after a payment.

    A receivable becomes ``overdue`` only through the overdue scan (which
    announces it and gives finance a task); a payment keeps it overdue while
    money is still owed.
    """
    if receivable.status is ReceivableStatus.WRITTEN_OFF:
        return ReceivableStatus.WRITTEN_OFF
    if receivable.paid >= receivable.amount:
        return ReceivableStatus.PAID
    if receivable.status is ReceivableStatus.OVERDUE:
        return ReceivableStatus.OVERDUE
    if receivable.paid.amount > 0:
        return ReceivableStatus.PARTIALLY_PAID
    return ReceivableStatus.OPEN


def apply_payment(
    receivable: Receivable, payment: Payment, today: date, *, allow_overpayment: bool = False
) -> Receivable:
    """Return the receivable with ``payment`` applied.

    A payment whose reference was already applied changes nothing. A payment
    larger than what is outstanding is refused unless ``allow_overpayment``,
    in which case the excess is kept in :attr:`Receivable.overpaid`.
    """
    if any(p.reference == payment.reference for p in receivable.payments):
        return receivable
    if receivable.status is ReceivableStatus.WRITTEN_OFF:
        raise ValidationError("receivable", receivable.id, "is written off; it takes no payments")
    if payment.amount.currency != receivable.amount.currency:
        raise ValidationError(
            "amount", str(payment.amount), f"must be in {receivable.amount.currency}"
        )
    if payment.amount.amount <= 0:
        raise ValidationError("amount", str(payment.amount), "must be positive")
    outstanding = receivable.outstanding
    applied, excess = payment.amount, Money.zero(payment.amount.currency)
    if payment.amount > outstanding:
        if not allow_overpayment:
            raise ValidationError(
                "amount",
                str(payment.amount),
                f"exceeds the {outstanding} outstanding; pass allow_overpayment=True to record the excess",
            )
        applied, excess = outstanding, payment.amount - outstanding
    overpaid = receivable.overpaid
    if excess.amount > 0:
        overpaid = excess if overpaid is None else overpaid + excess
    updated = attrs.evolve(
        receivable,
        paid=receivable.paid + applied,
        overpaid=overpaid,
        payments=(*receivable.payments, payment),
    )
    return attrs.evolve(updated, status=status_for(updated, today))
