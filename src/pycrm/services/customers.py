"""Customers: companies, their timeline, their 360 view and their assessments."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

import attrs

from pycrm.domain.activities import Activity
from pycrm.domain.assessments import Assessment, ConsolidationRule, latest
from pycrm.domain.contact_points import search_key
from pycrm.domain.contracts import Contract
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.deals import Deal
from pycrm.domain.documents import Document
from pycrm.domain.fields import Checks, check_int, check_key, check_money, check_tags, check_text
from pycrm.domain.leads import Lead
from pycrm.domain.money import Money
from pycrm.domain.query import Eq, Filter, HasKey, Not, OrderBy, all_of
from pycrm.domain.quotes import Quote, QuoteStatus
from pycrm.domain.receivables import Receivable
from pycrm.domain.tickets import Ticket
from pycrm.services.records import RecordService, check_address, write
from pycrm.services.search import (
    MAX_PAGE,
    category_filter,
    check_page,
    custom_filter,
    point_filter,
    text_filter,
)

__all__ = ["Customer360", "CustomerService"]


#: Quote states still waiting for a decision (the company's or the customer's).
_OPEN_QUOTES = ("draft", "pending_approval", "approved", "sent")


@attrs.frozen
class Customer360:
    """Everything known about one customer, loaded in a constant number of queries.

    It prints as one line of counts; ``rich.print(view)`` shows it as a table.
    """

    customer: Customer
    """The company."""
    contacts: tuple[Contact, ...]
    """Its active contacts, by name."""
    activities: tuple[Activity, ...]
    """Its most recent activities (of the company and its contacts), newest first,
    without other users' private notes."""
    assessments: tuple[Assessment, ...]
    """Current rating per attribute and source."""
    leads: tuple[Lead, ...] = ()
    """Leads converted into (or linked to) this customer, newest first (archived ones and
    duplicates merged away left out)."""
    deals: tuple[Deal, ...] = ()
    """Its deals, newest first."""
    contracts: tuple[Contract, ...] = ()
    """Its contracts (the purchase history), newest first."""
    quotes: tuple[Quote, ...] = ()
    """Its quotes, newest first: each quote's latest version (superseded ones left out)."""
    receivables: tuple[Receivable, ...] = ()
    """What it owes or has paid, by due date."""
    tickets: tuple[Ticket, ...] = ()
    """Its service tickets, newest first, with their satisfaction scores."""
    documents: tuple[Document, ...] = ()
    """The files attached to it (latest versions), oldest first: those the reader may read."""

    @property
    def satisfaction(self) -> float | None:
        """Mean CSAT (1-5) over its rated tickets, or None."""
        scores = [t.csat_score for t in self.tickets if t.csat_score is not None]
        return round(sum(scores) / len(scores), 2) if scores else None

    @property
    def subscriptions(self) -> tuple[Contract, ...]:
        """Its subscriptions: the latest signed or active term of each.

        A renewed term gives way to its renewal.
        """
        return tuple(
            c
            for c in self.contracts
            if c.billing_period is not None
            and c.status in ("signed", "active")
            and c.renewed_by is None
        )

    @property
    def mrr(self) -> dict[str, Money]:
        """Monthly recurring revenue of its running subscriptions, per currency."""
        totals: dict[str, Money] = {}
        for c in self.subscriptions:
            monthly = c.mrr  # None where a field rule hides the recurring amount
            if monthly is not None:
                zero = Money.zero(monthly.currency)
                totals[monthly.currency] = totals.get(monthly.currency, zero) + monthly
        return totals

    @property
    def outstanding(self) -> dict[str, Money]:
        """Unpaid amounts per currency (open, partially paid and overdue receivables)."""
        totals: dict[str, Money] = {}
        for r in self.receivables:
            # A field hidden from the reader is None: such a receivable adds nothing.
            if r.status in ("open", "partially_paid", "overdue") and r.amount is not None:
                zero = Money.zero(r.amount.currency)
                totals[r.amount.currency] = totals.get(r.amount.currency, zero) + r.outstanding
        return totals

    def _figures(self) -> dict[str, str]:
        """What the view holds, in words: one entry per kind of related record it has."""
        open_deals = sum(d.status == "open" for d in self.deals)
        open_quotes = sum(q.status in _OPEN_QUOTES for q in self.quotes)
        open_tickets = sum(t.status not in ("resolved", "closed", None) for t in self.tickets)
        figures = {
            "contacts": ", ".join(c.name for c in self.contacts[:5])
            + (f" and {len(self.contacts) - 5} more" if len(self.contacts) > 5 else ""),
            "deals": f"{len(self.deals)} ({open_deals} open)" if self.deals else "",
            "quotes": f"{len(self.quotes)} ({open_quotes} open)" if self.quotes else "",
            "contracts": str(len(self.contracts)) if self.contracts else "",
            "subscriptions": (
                str(len(self.subscriptions))
                + (f" (MRR {', '.join(map(str, self.mrr.values()))})" if self.mrr else "")
                if self.subscriptions
                else ""
            ),
            "outstanding": ", ".join(str(m) for m in self.outstanding.values()),
            "tickets": f"{len(self.tickets)} ({open_tickets} open)" if self.tickets else "",
            "satisfaction": "" if self.satisfaction is None else f"{self.satisfaction} / 5",
            "last activity": (
                f"{self.activities[0].subject} ({self.activities[0].occurred_at:%Y-%m-%d})"
                if self.activities and self.activities[0].occurred_at is not None
                else ""
            ),
        }
        return {name: text for name, text in figures.items() if text}

    def __repr__(self) -> str:
        counts = [
            f"{len(self.contacts)} contacts",
            f"{len(self.deals)} deals",
            f"{len(self.tickets)} tickets",
            f"{len(self.activities)} activities",
        ]
        owed = self._figures().get("outstanding")
        if owed:
            counts.append(f"{owed} outstanding")
        return f"<Customer360 {self.customer.id} {self.customer.name!r}: {', '.join(counts)}>"

    def __rich__(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(self.customer.name, style="bold"), show_header=False, box=None)
        table.add_column(style="dim")
        table.add_column()
        for name, text in self._figures().items():
            table.add_row(name, Text(text))
        return table


class CustomerService(RecordService[Customer]):
    """Companies the business sells to."""

    record_type = Customer
    screened = True
    events: ClassVar[Mapping[str, str]] = {
        "create": "customer_created",
        "update": "customer_updated",
        "archive": "customer_archived",
    }

    def _checkers(self) -> dict[str, Callable[[str, Any], Any]]:
        return {
            "name": partial(check_text, required=True),
            "industry": check_text,
            "size": partial(check_int, maximum=10**9),
            "annual_revenue": check_money,
            "grade": partial(check_text, limit=100),
            "region": check_text,
            "website": partial(check_text, limit=500),
            "address": check_address,
            "tags": check_tags,
            "owner_id": self._check_user,
            "source": partial(check_text, limit=60),
            "categories": self._s.categories.check_paths,
        }

    @write
    def create(self, name: str, **fields: Any) -> Customer:
        """Create a customer.

        :param name: the company's display name (required).
        :param fields: ``industry``, ``size`` (headcount), ``annual_revenue``
            (Money), ``grade``, ``region``, ``website``, ``address`` (a mapping
            of Address parts), ``emails`` and ``phones`` (lists of strings or
            ``(value, label)`` pairs; phones without a country code use the
            CRM's ``default_region``), ``tags``, ``owner_id``.
        :raises ValidationError: naming every bad field.
        """
        return self._create({"name": name, **fields})

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Customer:
        """Change fields of a customer; pass ``version`` to refuse the write if someone else changed it.

        ``emails`` or ``phones`` replace the list of that kind. Raises
        ConcurrencyError on a stale ``version``, NotFound, ValidationError.
        """
        return self._update(self._load(id), version, fields)

    @write
    def archive(self, id: str, *, version: int | None = None) -> Customer:
        """Archive a customer: it leaves searches (unless asked for) but keeps its history."""
        current = self._load(id)
        if current.status is RecordStatus.ARCHIVED:
            return current
        return self._change(
            current, version, "archive", status=RecordStatus.ARCHIVED, archived_at=self._s._now()
        )

    @write
    def restore(self, id: str, *, version: int | None = None) -> Customer:
        """Bring an archived customer back."""
        current = self._load(id)
        return self._change(
            current, version, "update", status=RecordStatus.ACTIVE, archived_at=None
        )

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Customer]:
        """Every customer :meth:`search` finds with ``filters``, however many there are.

        Takes the filters of :meth:`search` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.customers.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.search, filters, page_size)

    def search(
        self,
        text: str | None = None,
        *,
        email: str | None = None,
        phone: str | None = None,
        tag: str | None = None,
        industry: str | None = None,
        region: str | None = None,
        owner_id: str | None = None,
        category: str | None = None,
        custom: dict[str, Any] | None = None,
        include_archived: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Customer]:
        """Find customers, ordered by name.

        Returns the first 50 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.

        ``text`` matches anywhere in the name, ignoring case. ``email``,
        ``phone`` and ``tag`` are exact (after normalisation) and use an
        index; ``category`` finds the category and everything under it;
        ``custom`` matches custom field values. Every given criterion must hold.
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = [text_filter("text", text)]
        parts += point_filter(email, phone, self._s.settings._default_region())
        if tag is not None:
            parts.append(HasKey("tag", search_key(check_text("tag", tag, required=True))))
        for field, value in (("industry", industry), ("region", region), ("owner_id", owner_id)):
            if value is not None:
                parts.append(Eq(field, check_text(field, value, required=True)))
        parts += category_filter(self._s, category)
        parts += custom_filter(self._s, "customer", custom)
        if not include_archived:
            parts.append(Eq("status", RecordStatus.ACTIVE))
        return self._find(all_of(parts), order_by=[OrderBy("name_key")], limit=limit, offset=offset)

    def count(self, *, include_archived: bool = False) -> int:
        """How many customers there are (counted in the database)."""
        return self._s.read(Customer).count(
            None if include_archived else Eq("status", RecordStatus.ACTIVE)
        )

    def timeline(
        self, id: str, *, limit: int = 50, before: datetime | None = None
    ) -> list[Activity]:
        """The customer's activities, newest first (other users' private notes left out).

        Returns the 50 newest by default (``limit`` up to 1,000); for the next page pass
        the last one's ``occurred_at`` as ``before``.
        """
        self._load(id)
        return self._s.activities.list(customer_id=id, limit=limit, before=before)

    def view(self, id: str, *, activities: int = 20) -> Customer360:
        """The customer 360 view: the company, its contacts, recent activities and assessments.

        Loaded in a constant number of queries, however much related data there is.
        """
        check_int("activities", activities, minimum=1, maximum=MAX_PAGE)
        customer = self.get(id)
        contacts = self._s.read(Contact, quiet=True).find(
            all_of([Eq("customer_id", id), Eq("status", RecordStatus.ACTIVE)]),
            order_by=[OrderBy("name_key")],
        )
        recent = self._s.activities.list(customer_id=id, limit=activities)
        by_customer = Eq("customer_id", id)
        newest = [OrderBy("created_at", descending=True)]
        read = partial(self._s.read, quiet=True)
        return Customer360(
            customer=customer,
            contacts=tuple(contacts),
            activities=tuple(recent),
            assessments=tuple(self._current_assessments(id, None)),
            leads=tuple(
                read(Lead).find(
                    all_of([by_customer, Eq("archived_at", None), Not(Eq("status", "merged"))]),
                    order_by=newest,
                )
            ),
            deals=tuple(read(Deal).find(by_customer, order_by=newest)),
            contracts=tuple(read(Contract).find(by_customer, order_by=newest)),
            quotes=tuple(
                read(Quote).find(
                    all_of([by_customer, Not(Eq("status", QuoteStatus.SUPERSEDED))]),
                    order_by=newest,
                )
            ),
            receivables=tuple(
                read(Receivable).find(by_customer, order_by=[OrderBy("due"), OrderBy("instalment")])
            ),
            tickets=tuple(
                read(Ticket).find(by_customer, order_by=[OrderBy("opened_at", descending=True)])
            ),
            documents=tuple(
                read(Document).find(
                    all_of(
                        [Eq("record_type", "customer"), Eq("record_id", id), Eq("latest", True)]
                    ),
                    order_by=[OrderBy("created_at")],
                )
            ),
        )

    # -- assessments -------------------------------------------------------

    @write
    def assess(
        self,
        id: str,
        attribute: str,
        value: str,
        *,
        source: str | None = None,
        note: str | None = None,
    ) -> Assessment:
        """Record one source's rating of an attribute (default source: the actor's department).

        The customer's own field of that name (``grade``) is then set to the
        consolidated value given by the CRM's rule for the attribute.
        """
        customer = self._load(id)
        with Checks() as checks:
            fields = {
                "attribute": checks(check_text, "attribute", attribute, required=True, limit=40),
                "value": checks(check_text, "value", value, required=True, limit=100),
                "source": checks(
                    check_text,
                    "source",
                    source or self._s.actor.department,
                    required=True,
                    limit=40,
                ),
                "note": checks(check_text, "note", note, limit=2000, multiline=True),
            }
        assessment = Assessment(
            **self._s._stamp(customer_id=id, assessed_at=self._s._now(), **fields)
        )
        attribute = assessment.attribute
        self._s._guard.require(assessment, "create")
        self._s._uow.repo(Assessment).add(assessment)
        self._s._record("assess", None, assessment)
        if attribute in attrs.fields_dict(Customer) and attribute in (
            "grade",
            "industry",
            "region",
        ):
            current = self._current_assessments(id, attribute)
            consolidated = self.rule_for(attribute)(current)
            with self._s._guard.bypass():  # derived from the ratings just recorded
                self._change(customer, None, "update", **{attribute: consolidated})
        return assessment

    def rule_for(self, attribute: str) -> ConsolidationRule:
        """The rule that consolidates ``attribute`` (the CRM's ``assessment_rules``, else latest)."""
        return self._s.crm.assessment_rules.get(check_key("attribute", attribute), latest)

    def assessments(self, id: str, attribute: str | None = None) -> list[Assessment]:
        """The current rating of each source (for one attribute, or all), latest first.

        Returns all of them: this list has no pages.
        """
        self._load(id)
        return self._current_assessments(id, attribute)

    def consolidated(self, id: str, attribute: str) -> str | None:
        """The consolidated value of ``attribute`` under the configured rule (None if unrated)."""
        current = self.assessments(id, attribute)
        return self.rule_for(attribute)(current) if current else None

    def _current_assessments(self, id: str, attribute: str | None) -> list[Assessment]:
        where = all_of(
            [Eq("customer_id", id), None if attribute is None else Eq("attribute", attribute)]
        )
        rows = self._s.read(Assessment).find(
            where,
            order_by=[OrderBy("assessed_at", descending=True), OrderBy("id", descending=True)],
        )
        seen: set[tuple[str, str]] = set()
        current: list[Assessment] = []
        for row in rows:
            if (row.attribute, row.source) not in seen:
                seen.add((row.attribute, row.source))
                current.append(row)
        return current

    def history_of_assessments(self, id: str) -> Sequence[Assessment]:
        """Every rating ever given, oldest first."""
        self._load(id)
        return self._s.read(Assessment).find(
            Eq("customer_id", id), order_by=[OrderBy("assessed_at"), OrderBy("id")]
        )
