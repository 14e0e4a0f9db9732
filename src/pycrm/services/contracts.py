"""Contracts: drafted from won deals, approved by rule, signed into receivables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from pycrm.domain.contracts import (
    CONTRACT_MOVES,
    ApprovalStep,
    BillingPeriod,
    Contract,
    ContractStatus,
    Decision,
    Instalment,
    apply_discount,
    build_schedule,
    check_schedule,
    rescale_schedule,
    subscription_schedule,
    term_end,
    term_periods,
)
from pycrm.domain.deals import Deal, DealStatus
from pycrm.domain.fields import (
    Checks,
    check_bool,
    check_choice,
    check_date,
    check_id,
    check_int,
    check_money,
    check_text,
)
from pycrm.domain.lines import check_percent
from pycrm.domain.money import MAX_AMOUNT, Money, check_currency
from pycrm.domain.org import User
from pycrm.domain.query import Eq, Filter, In, IsNull, Not, OrderBy, Range, all_of
from pycrm.domain.quotes import Quote
from pycrm.errors import InvalidTransition, ValidationError
from pycrm.services.approvals import Approvals
from pycrm.services.records import check_when, write
from pycrm.services.search import check_page

__all__ = ["ContractService"]

#: The longest notice a subscription may give before its end (``notice_days``).
MAX_NOTICE_DAYS = 365
#: What a subscription's price is, instead of the one-off contract's parameters.
_ONE_OFF = {
    "amount": None,
    "list_amount": None,
    "discount_percent": 0,
    "schedule": None,
    "instalments": 1,
    "first_due": None,
    "every_months": 1,
}


class ContractService(Approvals[Contract]):
    """Contracts from draft to completion, with the approval chain in between."""

    record_type = Contract
    events: ClassVar[Mapping[str, str]] = {
        "submit": "contract_submitted",
        "approve": "contract_approved",
        "reject": "contract_rejected",
        "sign": "contract_signed",
        "recall": "contract_recalled",
        "delegate": "approval_delegated",
        "renew": "contract_renewed",
        "remind": "contract_renewal_due",
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
        billing_period: BillingPeriod | str | None = None,
        recurring: Money | None = None,
        auto_renew: bool = False,
        notice_days: int = 30,
    ) -> Contract:
        """Draft a contract from a won deal: a one-off sale, or a subscription.

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

        A **subscription** has a ``billing_period`` (``monthly``, ``quarterly``,
        ``yearly``) and a ``recurring`` amount per period instead of an amount,
        discount or schedule: its term runs from ``start`` (default today) to
        ``end`` (default a year on), a whole number of periods; its amount is
        ``recurring`` × the periods, due at the start of each. ``notice_days``
        (0–365) before the end, :meth:`scan_renewals` reminds the owner, or
        renews it when ``auto_renew``.
        """
        deal = self._s._uow.repo(Deal).get(check_id("deal_id", deal_id))
        if deal is None:
            raise ValidationError("deal_id", deal_id, "is not the id of a deal")
        if deal.status is not DealStatus.WON:
            raise ValidationError("deal_id", deal_id, f"the deal is {deal.status.value}, not won")
        renewal = self._renewal_terms(billing_period, recurring, auto_renew, notice_days)
        if renewal["billing_period"] is not None:
            given = {
                "amount": amount,
                "list_amount": list_amount,
                "discount_percent": discount_percent,
                "schedule": schedule,
                "instalments": instalments,
                "first_due": first_due,
                "every_months": every_months,
            }
            self._no_one_off(given)
            with Checks() as checks:
                sub: dict[str, Any] = {
                    "title": checks(check_text, "title", title or deal.name, required=True),
                    "standard_terms": checks(check_bool, "standard_terms", standard_terms),
                    "terms": checks(check_text, "terms", terms, limit=20_000, multiline=True),
                    "start": checks(check_date, "start", start),
                    "end": checks(check_date, "end", end),
                }
            days = sub.pop("start"), sub.pop("end")
            term = self._term(renewal["billing_period"], renewal["recurring"], *days)
            return self._add(
                "draft",
                customer_id=deal.customer_id,
                deal_id=deal.id,
                owner_id=deal.owner_id,
                custom=self._custom({}, custom, creating=True),
                **sub,
                **renewal,
                **term,
            )
        with Checks() as checks:
            fields: dict[str, Any] = {
                "title": checks(check_text, "title", title or deal.name, required=True),
                "amount": checks(check_money, "amount", amount),
                "list_amount": checks(check_money, "list_amount", list_amount),
                "discount_percent": checks(check_percent, "discount_percent", discount_percent),
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

    def _from_quote(
        self,
        quote: Quote,
        *,
        bill_in: str | None,
        instalments: int,
        first_due: date | None,
        every_months: int,
        start: date | None,
        end: date | None,
        auto_renew: bool = False,
        notice_days: int = 30,
    ) -> Contract:
        """The contract of an accepted quote: its lines, its total (converted to ``bill_in``).

        A subscription's quote (with a ``billing_period``) makes a subscription
        whose ``recurring`` amount is the quote's total (see :meth:`draft`).
        """
        with Checks() as checks:
            target = checks(check_currency, "bill_in", bill_in or quote.currency)
            days: dict[str, Any] = {
                "start": checks(check_date, "start", start),
                "end": checks(check_date, "end", end),
                "first_due": checks(check_date, "first_due", first_due),
            }
        if days["start"] and days["end"] and days["end"] < days["start"]:
            raise ValidationError("end", days["end"], "is before the start")
        amount, rate, rate_date = quote.total, None, None
        if target != quote.currency:
            conversion = self._s.rates.convert(quote.total, target)
            amount, rate, rate_date = conversion.amount, conversion.rate, conversion.rate_date
        if amount.amount <= 0:
            raise ValidationError("total", str(amount), "must be positive for a contract")
        period = quote.billing_period
        renewal = self._renewal_terms(period, amount if period else None, auto_renew, notice_days)
        first = days.pop("first_due")
        if period is not None:
            self._no_one_off(
                {"instalments": instalments, "first_due": first, "every_months": every_months}
            )
            priced = self._term(period, amount, days["start"], days["end"])
        else:
            first = first or days["start"] or self._s._now().date()
            plan = build_schedule(amount, instalments, first, every_months=every_months)
            priced = {"amount": amount, "schedule": plan, **days}
        return self._add(
            "draft",
            title=quote.title,
            customer_id=quote.customer_id,
            deal_id=quote.deal_id,
            owner_id=quote.owner_id,
            quote_id=quote.id,
            lines=quote.lines,
            exchange_rate=rate,
            rate_date=rate_date,
            **renewal,
            **priced,
        )

    @staticmethod
    def _renewal_terms(
        billing_period: Any, recurring: Any, auto_renew: Any, notice_days: Any
    ) -> dict[str, Any]:
        """The checked subscription fields: all None (but the defaults) for a one-off contract."""
        with Checks() as checks:
            period = (
                None
                if billing_period is None
                else checks(check_choice, "billing_period", billing_period, BillingPeriod)
            )
            price = checks(check_money, "recurring", recurring)
            renew = checks(check_bool, "auto_renew", auto_renew)
            notice = checks(
                check_int, "notice_days", notice_days, minimum=0, maximum=MAX_NOTICE_DAYS
            )
        if notice is None:
            raise ValidationError("notice_days", None, "is required (0 to 365)")
        if period is None:
            if price is not None:
                raise ValidationError("recurring", str(price), "needs a billing_period")
            if renew:
                raise ValidationError("auto_renew", renew, "needs a billing_period")
        elif price is None:
            raise ValidationError("recurring", None, "is required for a subscription")
        elif price.amount <= 0:
            raise ValidationError("recurring", str(price), "must be positive")
        return {
            "billing_period": period,
            "recurring": price,
            "auto_renew": renew,
            "notice_days": notice,
        }

    @staticmethod
    def _no_one_off(given: Mapping[str, Any]) -> None:
        """Refuse a one-off contract's price parameters on a subscription, naming the first."""
        for name, default in _ONE_OFF.items():
            value = given.get(name, default)
            if value is not default and value != default:
                raise ValidationError(
                    name, value, "a subscription is priced by recurring per billing_period"
                )

    def _term(
        self, period: BillingPeriod, recurring: Money, start: date | None, end: date | None
    ) -> dict[str, Any]:
        """A subscription's term (default a year from today), amount and schedule."""
        first = start or self._s._now().date()
        last = end or term_end(first, period, 12 // period.months)
        if last < first:
            raise ValidationError("end", last, "is before the start")
        periods = term_periods(first, last, period)
        if periods > 600:
            raise ValidationError("end", last, "a term has at most 600 billing periods")
        total = recurring.amount * periods
        if total >= MAX_AMOUNT:
            raise ValidationError(
                "recurring", str(recurring), f"makes a term of {MAX_AMOUNT:,} or more"
            )
        return {
            "start": first,
            "end": last,
            "amount": Money.of(total, recurring.currency),
            "schedule": subscription_schedule(recurring, first, period, periods),
        }

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
        if contract.billing_period is not None and "discount_percent" in changes:
            raise ValidationError(
                "discount_percent",
                changes["discount_percent"],
                "a subscription is priced by recurring per billing_period",
            )
        with Checks() as checks:
            fields: dict[str, Any] = {}
            if "discount_percent" in changes:
                fields["discount_percent"] = checks(
                    check_percent, "discount_percent", changes["discount_percent"]
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

    # -- subscriptions --------------------------------------------------------------

    @write
    def renew(
        self,
        id: str,
        *,
        recurring: Money | None = None,
        end: date | None = None,
    ) -> Contract:
        """The subscription's next term: a signed contract from the day after its end.

        The next term has the same length (unless ``end``), billing period,
        terms and ``recurring`` amount (unless a new one in the same currency
        is given, e.g. a price rise: then it keeps no quote lines, which no
        longer add up to it). The next term is signed at once, so finance
        holds its receivables; at a lower amount (a discount) it waits instead
        for the approval policy's ``discount_role`` (sales managers by
        default) to approve it (``awaiting``, ``approve``), and is then signed
        as any contract. It names the term before in ``renewal_of``; the term
        before names it in ``renewed_by``. Sends ``contract_renewed``.

        :raises ValidationError: (``id``) for a contract that is not a subscription.
        :raises InvalidTransition: unless it is signed, active or completed and not renewed yet.
        """
        old = self._load(id)
        self._s._guard.require(old, "update")
        period, price = old.billing_period, old.recurring
        if period is None or price is None or old.start is None or old.end is None:
            raise ValidationError("id", id, "is not a subscription: it has no billing_period")
        if old.renewed_by is not None:
            raise InvalidTransition(
                "contract", old.status.value, "renewed", f"it was renewed by {old.renewed_by}"
            )
        if old.status not in (
            ContractStatus.SIGNED,
            ContractStatus.ACTIVE,
            ContractStatus.COMPLETED,
        ):
            raise InvalidTransition(
                "contract", old.status.value, "renewed", "only a signed subscription renews"
            )
        new_price = check_money("recurring", recurring) or price
        if new_price.currency != price.currency:
            raise ValidationError("recurring", str(new_price), f"must be in {price.currency}")
        if new_price.amount <= 0:
            raise ValidationError("recurring", str(new_price), "must be positive")
        if old.end == date.max:
            raise ValidationError("id", id, "its term ends on 9999-12-31: there is no next term")
        start = old.end + timedelta(days=1)
        last = check_date("end", end) or term_end(
            start, period, term_periods(old.start, old.end, period)
        )
        term = self._term(period, new_price, start, last)
        same = new_price == price
        if new_price < price:  # a price cut is a discount: the discount approver decides it
            role = self._s.crm.approval_policy.discount_role
            why = f"renewal at {new_price} a period, below {price}"
            state: dict[str, Any] = {
                "status": ContractStatus.PENDING_APPROVAL,
                "approvals": (ApprovalStep(role, why),),
            }
        else:
            state = {"status": ContractStatus.SIGNED, "signed_at": self._s._now()}
        with self._s._guard.bypass():  # the next term follows from this one's grant
            renewed = self._add(
                "renew",
                title=old.title,
                customer_id=old.customer_id,
                deal_id=old.deal_id,
                owner_id=old.owner_id,
                standard_terms=old.standard_terms,
                terms=old.terms,
                **state,
                quote_id=old.quote_id if same else None,
                lines=old.lines if same else (),
                exchange_rate=old.exchange_rate if same else None,
                rate_date=old.rate_date if same else None,
                billing_period=period,
                recurring=new_price,
                auto_renew=old.auto_renew,
                notice_days=old.notice_days,
                renewal_of=old.id,
                custom=dict(old.custom),
                **term,
            )
            for instalment in renewed.schedule if renewed.signed_at else ():
                self._s.receivables._open_for(renewed, instalment)
            self._change(old, None, "update", renewed_by=renewed.id)
        return renewed

    @write
    def scan_renewals(self) -> list[Contract]:
        """Remind the owners of subscriptions ending within their notice, or renew them.

        A signed or active subscription not renewed yet whose ``end`` is at
        most ``notice_days`` away (by the CRM clock) is, with ``auto_renew``,
        renewed (see :meth:`renew`: ``contract_renewed``); without, its owner
        gets a task to renew it and ``contract_renewal_due`` is sent. Either
        way ``reminded_at`` is set, so each term is handled once (one that
        cannot renew itself, e.g. past the year 9999, is reminded). Needs an
        update grant on contracts; every due subscription is handled (time
        passing is no one's decision) and the ones the actor may read are
        returned, as they are now (``renewed_by`` names a new term).
        """
        self._s._guard.require_any("contract", "update")
        today = self._s._now().date()
        notice = timedelta(days=MAX_NOTICE_DAYS + 1)
        horizon = today + notice if today < date.max - notice else None  # None: no bound
        where = all_of(
            [
                In("status", [ContractStatus.SIGNED, ContractStatus.ACTIVE]),
                Not(IsNull("billing_period")),
                IsNull("renewed_by"),
                IsNull("reminded_at"),
                Range("end", None, horizon),
            ]
        )
        found = self._repo.find(where, order_by=[OrderBy("end"), OrderBy("id")])
        due = [c for c in found if c.end and c.end - timedelta(days=c.notice_days) <= today]
        handled = []
        with self._s._guard.bypass():
            for contract in due:
                action = "remind"
                if contract.auto_renew:
                    try:
                        self.renew(contract.id)
                    except ValidationError:
                        pass  # it cannot renew itself (the term would pass 9999): remind
                    else:
                        contract = self._load(contract.id)
                        action = "update"
                handled.append(self._change(contract, None, action, reminded_at=self._s._now()))
        return [c for c in handled if self._s._guard.allows(c, "read")]

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
