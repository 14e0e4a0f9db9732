"""Receivables and payments: finance's part of the flow."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any, ClassVar

from pycrm.domain.contracts import Contract, Instalment
from pycrm.domain.fields import check_bool, check_choice, check_money, check_text
from pycrm.domain.money import Money
from pycrm.domain.query import Eq, Filter, HasKey, In, OrderBy, Range, all_of
from pycrm.domain.receivables import (
    Payment,
    Receivable,
    ReceivableStatus,
    apply_payment,
)
from pycrm.errors import DuplicateError, InvalidTransition, ValidationError
from pycrm.services.records import RecordService, check_when, write
from pycrm.services.search import check_page

__all__ = ["ReceivableService"]

_UNPAID = (ReceivableStatus.OPEN, ReceivableStatus.PARTIALLY_PAID, ReceivableStatus.OVERDUE)


class ReceivableService(RecordService[Receivable]):
    """What customers owe, and the payments that settle it."""

    record_type = Receivable
    events: ClassVar[Mapping[str, str]] = {
        "create": "receivable_created",
        "pay": "payment_received",
        "overdue": "receivable_overdue",
    }

    def _require_finance(self, action: str) -> None:
        actor = self._s.actor
        if not (
            actor.is_system or actor.department in ("finance", "admin") or "admin" in actor.roles
        ):
            self._s._guard.deny(action, "receivable", None, "finance owns receivables")

    def _open_for(self, contract: Contract, instalment: Instalment) -> Receivable:
        return self._add(
            "create",
            contract_id=contract.id,
            customer_id=contract.customer_id,
            deal_id=contract.deal_id,
            owner_id=contract.owner_id,
            instalment=instalment.number,
            amount=instalment.amount,
            due=instalment.due,
            paid=Money.zero(instalment.amount.currency),
        )

    @write
    def record_payment(
        self,
        id: str,
        amount: Any,
        *,
        reference: str,
        received_at: datetime | None = None,
        allow_overpayment: bool = False,
    ) -> Receivable:
        """Apply a payment. Finance (and admins) only.

        Idempotent by ``reference``: recording the same payment again changes
        nothing. A reference already used on another receivable raises
        DuplicateError. More than what is outstanding is refused unless
        ``allow_overpayment``, which records the excess as an overpayment.
        The built-in reminders tell the deal owner with a task.
        """
        self._require_finance("update")
        receivable = self._load(id)
        ref = check_text("reference", reference, required=True, limit=120)
        assert ref is not None
        money = check_money("amount", amount)
        if money is None:
            raise ValidationError("amount", amount, "is required")
        when = self._s._now() if received_at is None else check_when("received_at", received_at)
        check_bool("allow_overpayment", allow_overpayment)
        if any(p.reference == ref for p in receivable.payments):
            existing = next(p for p in receivable.payments if p.reference == ref)
            if existing.amount != money:
                raise DuplicateError(
                    f"payment {ref!r} was recorded with {existing.amount}, not {money}",
                    [receivable.id],
                )
            return receivable
        elsewhere = self._repo.find(HasKey("payment_ref", ref), limit=1)
        if elsewhere:
            raise DuplicateError(
                f"payment {ref!r} was applied to another receivable", [elsewhere[0].id]
            )
        payment = Payment(ref, money, when, self._s.actor.id)
        applied = apply_payment(
            receivable, payment, self._today(), allow_overpayment=allow_overpayment
        )
        changes = {f: getattr(applied, f) for f in ("paid", "overpaid", "payments", "status")}
        return self._change(receivable, None, "pay", **changes)

    @write
    def write_off(self, id: str, reason: str) -> Receivable:
        """Give up on collecting what is outstanding, saying why. Finance only."""
        self._require_finance("update")
        receivable = self._load(id)
        text = check_text("reason", reason, required=True, limit=500)
        if receivable.status not in _UNPAID:
            raise InvalidTransition("receivable", receivable.status.value, "written_off")
        return self._change(
            receivable,
            None,
            "write_off",
            status=ReceivableStatus.WRITTEN_OFF,
            written_off_reason=text,
        )

    def _today(self) -> date:
        return self._s._now().date()

    @write
    def scan_overdue(self) -> list[Receivable]:
        """Mark every unpaid receivable past its due date (by the CRM clock) as overdue.

        Each newly overdue receivable sends ``receivable_overdue`` (the
        built-in reminders give finance a task). Returns the receivables that became
        overdue and that the actor may read (a policy may let someone update
        receivables they may not read: those are marked, not shown).
        """
        self._require_finance("update")
        today = self._today()
        due = self._repo.find(
            all_of(
                [
                    In("status", [ReceivableStatus.OPEN, ReceivableStatus.PARTIALLY_PAID]),
                    Range("due", None, today),
                ]
            ),
            order_by=[OrderBy("due")],
        )
        marked = [
            self._change(receivable, None, "overdue", status=ReceivableStatus.OVERDUE)
            for receivable in due
        ]
        return [r for r in marked if self._s._guard.allows(r, "read")]

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Receivable]:
        """Every receivable :meth:`list` finds with ``filters``, however many there are.

        Takes the filters of :meth:`list` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.receivables.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.list, filters, page_size)

    def list(
        self,
        *,
        customer_id: str | None = None,
        contract_id: str | None = None,
        status: ReceivableStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Receivable]:
        """Receivables by due date, filtered by customer, contract and status.

        Returns the first 100 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if customer_id is not None:
            parts.append(Eq("customer_id", customer_id))
        if contract_id is not None:
            parts.append(Eq("contract_id", contract_id))
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, ReceivableStatus)))
        return self._find(
            all_of(parts),
            order_by=[OrderBy("due"), OrderBy("instalment")],
            limit=limit,
            offset=offset,
        )

    def find_payment(self, reference: str) -> Receivable | None:
        """The receivable a payment reference was applied to, if any (an index lookup)."""
        ref = check_text("reference", reference, required=True, limit=120)
        assert ref is not None
        found = self._find(HasKey("payment_ref", ref), limit=1)
        return found[0] if found else None
