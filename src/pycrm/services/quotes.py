"""Quotes (``s.quotes``): drafted from a deal, priced line by line, approved, sent, accepted."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from pycrm.domain.contracts import ApprovalStep, BillingPeriod, Decision
from pycrm.domain.customers import Customer
from pycrm.domain.deals import Deal, DealStatus
from pycrm.domain.fields import (
    check_choice,
    check_date,
    check_id,
    check_int,
    check_money,
    check_text,
)
from pycrm.domain.lines import (
    QuoteLine,
    check_percent,
    check_quantity,
    costing,
    make_line,
    totals,
)
from pycrm.domain.money import Money, check_currency
from pycrm.domain.products import Product
from pycrm.domain.query import Eq, Filter, OrderBy, Range, all_of
from pycrm.domain.quotes import EDITABLE, QUOTE_MOVES, Quote, QuoteStatus
from pycrm.errors import InvalidTransition, NotFound, ValidationError
from pycrm.rules.context import RuleContext
from pycrm.services.approvals import Approvals
from pycrm.services.records import checked_changes, write
from pycrm.services.search import check_page

__all__ = ["QuoteService"]

#: Days a new quote stays open for acceptance unless ``valid_until`` is given.
VALID_DAYS = 30

#: The keys a line is given by (in ``draft(lines=…)``, ``add_line``, ``update_line``).
_LINE_KEYS = ("product_id", "description", "quantity", "unit_price", "discount_percent", "tax_rate")


class QuoteService(Approvals[Quote]):
    """Quotes from draft to acceptance, with versions and approval by rule."""

    record_type = Quote
    #: Costs follow the lines: a salesperson who may not see margins edits the lines.
    derived: ClassVar[frozenset[str]] = frozenset({"costs", "cost", "margin"})
    events: ClassVar[Mapping[str, str]] = {
        "submit": "quote_submitted",
        "approve": "quote_approved",
        "reject": "quote_denied",
        "send": "quote_sent",
        "accept": "quote_accepted",
        "decline": "quote_rejected",
        "expire": "quote_expired",
    }

    def _today(self) -> date:
        return self._s._now().date()

    # -- lines ----------------------------------------------------------------------

    def _tax_rate(self, category: str) -> Decimal:
        rates: Mapping[str, Decimal] = self._s.settings._value("tax_rates")
        return rates.get(category, Decimal(0))

    def _unit_cost(self, product: Product | None, currency: str) -> Money | None:
        """One unit's cost in ``currency`` (converted at today's rate), or None if unknown."""
        if product is None or product.cost is None:
            return None
        if product.cost.currency == currency:
            return product.cost
        try:
            with self._s._guard.bypass():  # the cost is kept where only its readers see it
                return self._s.rates.convert(product.cost, currency).amount
        except NotFound:
            return None

    def _pricing(self, quote: Quote | Mapping[str, Any], lines: Sequence[Any] = ()) -> _Pricing:
        """What the lines priced in one call share.

        The customer (read once, when a line is priced from the lists), a rule
        context, and the products ``lines`` name, read in one query (unreadable
        ones are left to :meth:`_line`, which refuses them naming the line).
        """
        customer_id = _get(quote, "customer_id")

        @functools.cache
        def customer() -> Customer | None:
            return None if customer_id is None else self._s.customers._load(customer_id)

        ids = [
            given["product_id"]
            for given in lines
            if isinstance(given, Mapping) and _an_id(given.get("product_id"))
        ]  # a bad one is refused by _line, naming its line
        found = self._s.products._repo.get_many(ids) if ids else {}
        readable = {k: p for k, p in found.items() if self._s._guard.allows(p, "read")}
        self._s._saw(readable.values())
        return _Pricing(customer, RuleContext(self._s), readable)

    def _line(
        self,
        quote: Quote | Mapping[str, Any],
        given: Mapping[str, Any],
        prefix: str,
        pricing: _Pricing,
    ) -> tuple[QuoteLine, Money | None]:
        """A line priced from ``given`` (see :meth:`add_line`) and its unit cost.

        Errors name ``prefix`` and the key (``lines[0].quantity``, or ``quantity``).
        """
        if not isinstance(given, Mapping):
            raise ValidationError(prefix.rstrip("."), given, "must be a mapping of line fields")
        unknown = sorted(set(given) - set(_LINE_KEYS))
        if unknown:
            raise ValidationError(f"{prefix}{unknown[0]}", given[unknown[0]], "is not a line field")
        currency = _get(quote, "currency")
        quantity = check_quantity(f"{prefix}quantity", given.get("quantity", 1))
        discount = check_percent(f"{prefix}discount_percent", given.get("discount_percent", 0))
        product = None
        if given.get("product_id") is not None:
            wanted = check_id(f"{prefix}product_id", given["product_id"])
            product = pricing.products.get(wanted) or self._s.products._load(wanted)
            if not product.active:
                raise ValidationError(
                    f"{prefix}product_id", product.id, f"{product.sku} is no longer offered"
                )
        description = check_text(
            f"{prefix}description",
            given.get("description") or (product.name if product else None),
            required=True,
            limit=2000,
            multiline=True,
        )
        assert description is not None  # required
        price_list_id = None
        unit_price = check_money(f"{prefix}unit_price", given.get("unit_price"))
        if unit_price is None:
            if product is None:
                raise ValidationError(
                    f"{prefix}unit_price", None, "is required for a line without a product"
                )
            priced = self._s.price_lists._price(
                product, quantity, pricing.customer(), currency, self._today(), pricing.ctx
            )
            unit_price, price_list_id = priced.unit_price, priced.price_list_id
        if unit_price.currency != currency:
            raise ValidationError(
                f"{prefix}unit_price",
                str(unit_price),
                f"must be in the quote's currency, {currency}",
            )
        if unit_price.amount < 0:
            raise ValidationError(f"{prefix}unit_price", str(unit_price), "cannot be negative")
        rate = given.get("tax_rate")
        tax_rate = (
            self._tax_rate(product.tax_category if product else "standard")
            if rate is None
            else check_percent(f"{prefix}tax_rate", rate)
        )
        line = make_line(
            description=description,
            quantity=quantity,
            unit_price=unit_price,
            discount_percent=discount,
            tax_rate=tax_rate,
            product_id=product.id if product else None,
            sku=product.sku if product else None,
            unit=product.unit if product else "piece",
            price_list_id=price_list_id,
        )
        return line, self._unit_cost(product, currency)

    @staticmethod
    def _sums(
        currency: str, lines: Sequence[QuoteLine], costs: Sequence[Money | None]
    ) -> dict[str, Any]:
        """The fields that follow from the lines: totals, costs, cost and margin."""
        sums = totals(lines, currency)
        cost, margin = costing(lines, costs)
        return {
            "lines": tuple(lines),
            "list_total": sums.list_total,
            "subtotal": sums.subtotal,
            "tax": sums.tax,
            "total": sums.total,
            "costs": tuple(costs),
            "cost": cost,
            "margin": margin,
        }

    def _editable(self, id: str) -> Quote:
        quote = self._load(id)
        if quote.status not in EDITABLE:
            raise InvalidTransition(
                "quote", quote.status.value, "draft", "only drafts and approved quotes change"
            )
        return quote

    def _relined(
        self,
        quote: Quote,
        version: int | None,
        lines: Sequence[QuoteLine],
        costs: Sequence[Money | None],
    ) -> Quote:
        """The quote with new lines; an approved quote that changes is a draft again."""
        changes = self._sums(quote.currency, lines, costs)
        if quote.status is QuoteStatus.APPROVED and tuple(lines) != quote.lines:
            changes.update(status=QuoteStatus.DRAFT, approvals=())
        return self._change(quote, version, "update", **changes)

    # -- drafting and editing ---------------------------------------------------------

    @write
    def draft(
        self,
        deal_id: str,
        *,
        title: str | None = None,
        currency: str | None = None,
        valid_until: date | None = None,
        notes: str | None = None,
        lines: Sequence[Mapping[str, Any]] = (),
        custom: dict[str, Any] | None = None,
        billing_period: BillingPeriod | str | None = None,
    ) -> Quote:
        """Draft a quote for an open or won deal, in the deal's currency unless ``currency``.

        :param title: default the deal's name.
        :param valid_until: the last day it may be accepted (default: in
            :data:`VALID_DAYS` days).
        :param lines: mappings as :meth:`add_line` takes them.
        :param billing_period: ``monthly``, ``quarterly`` or ``yearly`` for a
            subscription: the prices are per period (see :meth:`accept`).
        The quote belongs to the deal's owner and customer.
        """
        deal = self._s.deals._load(check_id("deal_id", deal_id))
        if deal.status is DealStatus.LOST:
            raise ValidationError("deal_id", deal_id, "the deal is lost")
        money = check_currency("currency", currency) if currency is not None else None
        wanted = money or deal.amount.currency
        day = check_date("valid_until", valid_until) or self._today() + timedelta(VALID_DAYS)
        if isinstance(lines, str | bytes) or not isinstance(lines, Sequence):
            raise ValidationError("lines", lines, "must be a list of line mappings")
        context = {"currency": wanted, "customer_id": deal.customer_id}
        pricing = self._pricing(context, lines)
        priced = [
            self._line(context, given, f"lines[{i}].", pricing) for i, given in enumerate(lines)
        ]
        fields = {
            "title": check_text("title", title or deal.name, required=True, limit=300),
            "deal_id": deal.id,
            "customer_id": deal.customer_id,
            "owner_id": deal.owner_id,
            "currency": wanted,
            "billing_period": _period(billing_period),
            "valid_until": day,
            "notes": check_text("notes", notes, limit=20_000, multiline=True),
            "custom": self._custom({}, custom, creating=True),
            **self._sums(wanted, [p[0] for p in priced], [p[1] for p in priced]),
        }
        return self._add("create", **fields)

    @write
    def add_line(
        self,
        id: str,
        product_id: str | None = None,
        *,
        quantity: Decimal | int | str = 1,
        unit_price: Money | None = None,
        description: str | None = None,
        discount_percent: Decimal | int | str = 0,
        tax_rate: Decimal | int | str | None = None,
        version: int | None = None,
    ) -> Quote:
        """Add a line: a product from the catalogue, or free text with a ``unit_price``.

        A product's unit price comes from ``s.price_lists.price`` (the
        ``pycrm_price_line`` plugins, then the price lists, for the quote's
        customer, currency and the line's quantity) unless ``unit_price`` is
        given; its description is the product's name unless ``description``.
        ``tax_rate`` defaults to the ``tax_rates`` setting's rate for the
        product's tax category (``standard`` for free text), else 0.
        The line's amounts follow the rounding rule of :mod:`pycrm.domain.lines`.
        """
        quote = self._editable(id)
        given: dict[str, Any] = {
            "product_id": product_id,
            "quantity": quantity,
            "discount_percent": discount_percent,
            "unit_price": unit_price,
            "description": description,
            "tax_rate": tax_rate,
        }
        line, cost = self._line(quote, given, "", self._pricing(quote))
        return self._relined(quote, version, (*quote.lines, line), (*quote.costs, cost))

    def _index(self, quote: Quote, line: Any) -> int:
        number = check_int("line", line, minimum=1, maximum=10_000)
        assert number is not None
        if number > len(quote.lines):
            raise ValidationError("line", line, f"the quote has {len(quote.lines)} lines")
        return number - 1

    @write
    def update_line(
        self, id: str, line: int, *, version: int | None = None, **fields: Any
    ) -> Quote:
        """Change line ``line`` (1 is the first): quantity, unit price, description, discount, tax.

        A product line priced from a price list is priced again for a new
        quantity (another quantity break may apply) unless a ``unit_price`` is given.
        """
        quote = self._editable(id)
        index = self._index(quote, line)
        unknown = sorted(set(fields) - (set(_LINE_KEYS) - {"product_id"}))
        if unknown:
            raise ValidationError(unknown[0], fields[unknown[0]], "is not a line field to change")
        old = quote.lines[index]
        given: dict[str, Any] = {
            "product_id": old.product_id,
            "description": old.description,
            "quantity": old.quantity,
            "discount_percent": old.discount_percent,
            "tax_rate": old.tax_rate,
        }
        repriced = old.price_list_id is not None and "quantity" in fields
        if not repriced:
            given["unit_price"] = old.unit_price  # the price stays: by hand, or for this quantity
        given |= fields
        new, cost = self._line(quote, given, "", self._pricing(quote))
        if not repriced and "unit_price" not in fields:
            new = attrs.evolve(new, price_list_id=old.price_list_id)
        lines, costs = list(quote.lines), list(quote.costs)
        lines[index], costs[index] = new, cost if old.product_id else costs[index]
        return self._relined(quote, version, lines, costs)

    @write
    def remove_line(self, id: str, line: int, *, version: int | None = None) -> Quote:
        """Remove line ``line`` (1 is the first); the lines after it move up."""
        quote = self._editable(id)
        index = self._index(quote, line)
        lines, costs = list(quote.lines), list(quote.costs)
        del lines[index], costs[index]
        return self._relined(quote, version, lines, costs)

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Quote:
        """Change a draft's or approved quote's title, validity, notes, custom fields or period.

        The fields are ``title``, ``valid_until``, ``notes``, ``custom`` and
        ``billing_period`` (None makes it a one-off sale again).
        """
        quote = self._editable(id)
        checkers = {
            "title": lambda f, v: check_text(f, v, required=True, limit=300),
            "valid_until": check_date,
            "notes": lambda f, v: check_text(f, v, limit=20_000, multiline=True),
            "custom": lambda f, v: self._custom(quote.custom, v, creating=False),
            "billing_period": lambda f, v: _period(v),
        }
        changes = checked_changes(fields, checkers, "quote")
        if "valid_until" in changes and changes["valid_until"] is None:
            raise ValidationError("valid_until", None, "is required")
        return self._change(quote, version, "update", **changes)

    # -- approval, sending, the customer's answer ----------------------------------

    def _sendable(self, quote: Quote, target: str) -> None:
        if not quote.lines:
            raise ValidationError("lines", (), f"a quote without lines cannot be {target}")
        if quote.valid_until is not None and quote.valid_until < self._today():
            raise ValidationError(
                "valid_until", quote.valid_until, "has passed: set a new day first"
            )

    def _steps(self, quote: Quote) -> tuple[ApprovalStep, ...]:
        return tuple(self._s.crm.approval_steps(self._s, quote))

    @write
    def submit(self, id: str) -> Quote:
        """Ask for the approvals the policy requires (a line's discount, the margin, the total).

        With no step needed, the quote is approved at once (``quote_approved``);
        else it waits for approvers (``quote_submitted``).
        """
        quote = self._load(id)
        QUOTE_MOVES.check(quote.status, QuoteStatus.PENDING_APPROVAL)
        self._sendable(quote, "submitted")
        self._s._guard.require(quote, "update")
        steps = self._steps(quote)
        if not steps:
            with self._s._guard.bypass():  # no approver needed: the policy approves it
                return self._change(
                    quote, None, "approve", status=QuoteStatus.APPROVED, approvals=()
                )
        return self._change(
            quote, None, "submit", status=QuoteStatus.PENDING_APPROVAL, approvals=steps
        )

    @write
    def approve(self, id: str, *, comment: str | None = None) -> Quote:
        """Approve the pending step that needs one of the actor's roles.

        When every step is approved the quote is approved and can be sent.
        :raises PermissionDenied: when no pending step needs a role the actor has.
        """
        quote, steps, delegated = self._decide(id, Decision.APPROVED, comment)
        with self._s._guard.bypass() if delegated else nullcontext():
            if all(s.decision is Decision.APPROVED for s in steps):
                return self._change(
                    quote, None, "approve", status=QuoteStatus.APPROVED, approvals=steps
                )
            return self._change(quote, None, "approve_step", approvals=steps)

    @write
    def deny(self, id: str, *, comment: str) -> Quote:
        """Refuse approval at the actor's step, saying why: the quote goes back to draft.

        Sends ``quote_denied``; the steps keep the decision until the quote is submitted again.
        """
        check_text("comment", comment, required=True, limit=2000)
        quote, steps, delegated = self._decide(id, Decision.REJECTED, comment)
        with self._s._guard.bypass() if delegated else nullcontext():
            return self._change(quote, None, "reject", status=QuoteStatus.DRAFT, approvals=steps)

    @write
    def send(self, id: str) -> Quote:
        """Send an approved quote, or a draft that needs no approval, to the customer.

        Sends ``quote_sent``. A draft that needs approval is refused: submit it first.
        :raises InvalidTransition: for a draft needing approval, or a quote in another state.
        """
        quote = self._load(id)
        QUOTE_MOVES.check(quote.status, QuoteStatus.SENT)
        self._sendable(quote, "sent")
        if quote.status is QuoteStatus.DRAFT:
            steps = self._steps(quote)
            if steps:
                roles = ", ".join(step.role for step in steps)
                raise InvalidTransition(
                    "quote", "draft", "sent", f"it needs approval by {roles}: submit it first"
                )
        return self._change(quote, None, "send", status=QuoteStatus.SENT, sent_at=self._s._now())

    @write
    def accept(
        self,
        id: str,
        *,
        bill_in: str | None = None,
        instalments: int = 1,
        first_due: date | None = None,
        every_months: int = 1,
        start: date | None = None,
        end: date | None = None,
        auto_renew: bool = False,
        notice_days: int = 30,
    ) -> Quote:
        """The customer accepted: the deal is won at the quote's net amount and a contract drafted.

        The deal's amount becomes the quote's subtotal (net of discounts,
        before tax) and an open deal is won (``deal_won``); the contract
        (see ``s.contracts.draft``) holds the quote's lines and its total
        (tax included) as its amount, paid in ``instalments``. With
        ``bill_in``, the contract is in that currency: the total is converted
        at the rate valid today, and the contract names the rate and its day.
        Sends ``quote_accepted``; the quote names the contract.

        A subscription's quote (``billing_period``) makes a subscription from
        ``start`` to ``end`` (default a year) that bills the total every
        period, with ``auto_renew`` and ``notice_days`` as ``s.contracts.draft``
        takes them (``instalments``, ``first_due`` and ``every_months`` do not
        apply); the deal's amount is the subtotal times the periods.

        :raises InvalidTransition: unless the quote was sent and is still valid.
        """
        quote = self._load(id)
        QUOTE_MOVES.check(quote.status, QuoteStatus.ACCEPTED)
        if quote.valid_until is not None and quote.valid_until < self._today():
            raise InvalidTransition(
                "quote", quote.status.value, "accepted", f"it was valid until {quote.valid_until}"
            )
        deal = self._s._uow.repo(Deal).get(quote.deal_id)
        if deal is None or deal.status is DealStatus.LOST:
            raise ValidationError("deal_id", quote.deal_id, "the deal is lost")
        self._s._guard.require(quote, "update")
        with self._s._guard.bypass():  # the contract and the deal follow from the answer
            contract = self._s.contracts._from_quote(
                quote,
                bill_in=bill_in,
                instalments=instalments,
                first_due=first_due,
                every_months=every_months,
                start=start,
                end=end,
                auto_renew=auto_renew,
                notice_days=notice_days,
            )
            if deal.status is DealStatus.OPEN:
                self._s._saw([deal])
                periods = len(contract.schedule) if quote.billing_period else 1
                worth = Money.of(quote.subtotal.amount * periods, quote.currency)
                if deal.amount != worth:
                    deal = self._s.deals._change(deal, None, "update", amount=worth)
                self._s.deals.win(deal.id)
        return self._change(
            quote,
            None,
            "accept",
            status=QuoteStatus.ACCEPTED,
            decided_at=self._s._now(),
            contract_id=contract.id,
        )

    @write
    def reject(self, id: str, *, reason: str) -> Quote:
        """The customer turned the quote down, saying why (``quote_rejected``)."""
        text = check_text("reason", reason, required=True, limit=500)
        quote = self._load(id)
        QUOTE_MOVES.check(quote.status, QuoteStatus.REJECTED)
        return self._change(
            quote,
            None,
            "decline",
            status=QuoteStatus.REJECTED,
            decided_at=self._s._now(),
            reject_reason=text,
        )

    @write
    def scan_expired(self) -> builtins.list[Quote]:
        """Mark every sent quote whose ``valid_until`` has passed (by the CRM clock) as expired.

        Each sends ``quote_expired``. Needs an update grant on quotes; every
        lapsed quote is marked (a day passing is no one's decision), and the
        ones the actor may read are returned.
        """
        self._s._guard.require_any("quote", "update")
        where = all_of([Eq("status", QuoteStatus.SENT), Range("valid_until", None, self._today())])
        lapsed = self._repo.find(where, order_by=[OrderBy("valid_until"), OrderBy("id")])
        with self._s._guard.bypass():
            marked = [
                self._change(
                    q, None, "expire", status=QuoteStatus.EXPIRED, decided_at=self._s._now()
                )
                for q in lapsed
            ]
        return [q for q in marked if self._s._guard.allows(q, "read")]

    # -- versions ------------------------------------------------------------------

    @write
    def revise(self, id: str, *, valid_until: date | None = None) -> Quote:
        """A new version of the quote (the same lines, as a draft); the one before is superseded.

        Made from the latest version only, in any state but accepted. The new
        version's ``revision`` is one more and its ``root_id`` names the first
        version; ``valid_until`` is renewed (:data:`VALID_DAYS` days from today)
        unless given.
        """
        quote = self._load(id)
        QUOTE_MOVES.check(quote.status, QuoteStatus.SUPERSEDED)
        day = check_date("valid_until", valid_until) or self._today() + timedelta(VALID_DAYS)
        fields = {
            f.name: getattr(quote, f.name)
            for f in attrs.fields(Quote)
            if f.name
            not in {
                "id", "tenant_id", "created_at", "created_by", "updated_at", "updated_by",
                "version", "status", "approvals", "sent_at", "decided_at", "reject_reason",
                "contract_id", "revision", "root_id", "valid_until",
            }
        }  # fmt: skip
        self._change(quote, None, "supersede", status=QuoteStatus.SUPERSEDED)
        return self._add(
            "create", **fields, revision=quote.revision + 1, root_id=quote.first_id, valid_until=day
        )

    def versions(self, id: str) -> builtins.list[Quote]:
        """Every version of the quote the actor may read, first to latest."""
        first = self._load(id).first_id
        found = self._find(Eq("root_id", first), order_by=[OrderBy("revision")])
        head = self._find(Eq("id", first), limit=1)
        return [*head, *found]

    # -- lists ----------------------------------------------------------------------

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Quote]:
        """Every quote :meth:`list` finds with ``filters``, however many there are.

        Takes the filters of :meth:`list` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order.
        """
        return self._pages(self.list, filters, page_size)

    def list(
        self,
        *,
        deal_id: str | None = None,
        customer_id: str | None = None,
        status: QuoteStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Quote]:
        """Quotes, newest first, by deal, customer and status.

        Returns the first 100 by default (``limit`` up to 1,000, ``offset`` to
        page on); :meth:`iter` goes through every one.
        """
        limit, offset = check_page(limit, offset)
        parts: builtins.list[Filter | None] = []
        if deal_id is not None:
            parts.append(Eq("deal_id", check_id("deal_id", deal_id)))
        if customer_id is not None:
            parts.append(Eq("customer_id", check_id("customer_id", customer_id)))
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, QuoteStatus)))
        return self._find(
            all_of(parts),
            order_by=[OrderBy("created_at", descending=True), OrderBy("id", descending=True)],
            limit=limit,
            offset=offset,
        )


@attrs.frozen
class _Pricing:
    """What the lines priced in one call share (see :meth:`QuoteService._pricing`)."""

    customer: Callable[[], Customer | None]
    ctx: RuleContext
    products: Mapping[str, Product]


def _an_id(value: Any) -> bool:
    try:
        check_id("product_id", value)
    except ValidationError:
        return False
    return value is not None


def _period(value: Any) -> BillingPeriod | None:
    return None if value is None else check_choice("billing_period", value, BillingPeriod)


def _get(quote: Quote | Mapping[str, Any], name: str) -> Any:
    return quote[name] if isinstance(quote, Mapping) else getattr(quote, name)
