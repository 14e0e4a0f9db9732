"""Leads: marketing captures them, sales works and converts them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from functools import partial
from typing import Any, ClassVar

from pycrm.domain.contact_points import PointKind, search_key
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.deals import Deal
from pycrm.domain.fields import check_choice, check_text
from pycrm.domain.leads import LEAD_MOVES, Lead, LeadStatus
from pycrm.domain.money import Money
from pycrm.domain.query import Eq, Filter, HasKey, OrderBy, all_of
from pycrm.domain.tasks import TaskPriority, TaskStatus
from pycrm.errors import ValidationError
from pycrm.services.records import RecordService, write
from pycrm.services.search import check_page, text_filter

__all__ = ["LeadService"]


def _source(field: str, value: Any) -> str:
    text = check_text(field, value, required=True, limit=60)
    assert text is not None
    return text.lower().replace(" ", "_")


class LeadService(RecordService[Lead]):
    """Capture, assign, work, convert or disqualify leads."""

    record_type = Lead
    events: ClassVar[Mapping[str, str]] = {
        "capture": "lead_captured",
        "assign": "lead_assigned",
        "convert": "lead_converted",
        "disqualify": "lead_disqualified",
    }

    def _checkers(self) -> dict[str, Callable[[str, Any], Any]]:
        return {
            "name": partial(check_text, required=True),
            "company": check_text,
            "title": check_text,
            "source": _source,
            "campaign": check_text,
            "region": check_text,
            "industry": check_text,
            "needs": partial(check_text, limit=5000),
        }

    @write
    def capture(
        self,
        name: str,
        *,
        source: str,
        email: str | None = None,
        phone: str | None = None,
        **fields: Any,
    ) -> Lead:
        """Capture a lead from a form, an import or an API.

        :param name: the person's name.
        :param source: where it came from (``webform``, ``import``, ``trade_show`` …).
        :param email: one email (or pass ``emails=[...]``).
        :param phone: one phone; without a country code the CRM's default region applies
            (or pass ``phones=[...]``).
        :param fields: ``company``, ``title``, ``campaign``, ``region``, ``industry``, ``needs``.

        When the CRM has a lead router, the lead is assigned at once.
        """
        values: dict[str, Any] = {"name": name, "source": source, **fields}
        emails = list(values.pop("emails", ()) or ())
        phones = list(values.pop("phones", ()) or ())
        if email is not None:
            emails.insert(0, email)
        if phone is not None:
            phones.insert(0, phone)
        values.update(emails=emails, phones=phones)
        lead = self._add("capture", **self._parse(values, creating=True))
        router = self._s.crm.lead_router
        if router is not None:
            decision = router(self._s, lead)
            if decision is not None:
                owner_id, reason = decision
                lead = self._assign(lead, owner_id, reason)
        return lead

    def _assign(self, lead: Lead, owner_id: str, reason: str) -> Lead:
        owner = self._check_user("owner_id", owner_id)
        if not lead.is_open:
            LEAD_MOVES.check(lead.status, LeadStatus.ASSIGNED)
        status = LeadStatus.ASSIGNED if lead.status is LeadStatus.NEW else lead.status
        now = self._s.now()
        updated = self._change(
            lead,
            None,
            "assign",
            owner_id=owner,
            status=status,
            assigned_at=now,
            assignment_reason=reason,
        )
        for task in self._s.tasks.list(related_id=lead.id, kind="first_contact"):
            self._s.tasks.cancel(task.id)
        if lead.status in (LeadStatus.NEW, LeadStatus.ASSIGNED):
            self._s.tasks.create(
                f"First contact: {lead.name}" + (f" ({lead.company})" if lead.company else ""),
                assignee_id=owner,
                due_at=now + self._s.crm.first_contact_within,
                priority=TaskPriority.HIGH,
                related_type="lead",
                related_id=lead.id,
                kind="first_contact",
            )
        return updated

    @write
    def assign(self, id: str, owner_id: str, *, reason: str | None = None) -> Lead:
        """Give a lead to a salesperson (new → assigned; an open lead may be reassigned).

        Creates a first-contact task for the owner, due within the CRM's
        ``first_contact_within``.
        """
        lead = self.get(id)
        text = check_text("reason", reason, limit=500) or f"assigned by {self._s.actor.id}"
        return self._assign(lead, owner_id, text)

    def _move(self, id: str, to: LeadStatus, version: int | None, **changes: Any) -> Lead:
        lead = self.get(id)
        LEAD_MOVES.check(lead.status, to)
        action = "disqualify" if to is LeadStatus.DISQUALIFIED else "update"
        return self._change(lead, version, action, status=to, **changes)

    @write
    def mark_contacted(self, id: str, *, version: int | None = None) -> Lead:
        """The owner reached the lead (assigned → contacted); closes the first-contact task."""
        lead = self._move(id, LeadStatus.CONTACTED, version)
        for task in self._s.tasks.list(related_id=id, kind="first_contact"):
            self._s.tasks.complete(task.id)
        return lead

    @write
    def qualify(self, id: str, *, version: int | None = None) -> Lead:
        """The lead has a real need and budget (contacted → qualified)."""
        return self._move(id, LeadStatus.QUALIFIED, version)

    @write
    def disqualify(self, id: str, reason: str, *, version: int | None = None) -> Lead:
        """Stop working the lead, saying why (from any open status)."""
        text = check_text("reason", reason, required=True, limit=500)
        lead = self._move(id, LeadStatus.DISQUALIFIED, version, disqualify_reason=text)
        for task in self._s.tasks.list(related_id=id):
            self._s.tasks.cancel(task.id)
        return lead

    @write
    def convert(
        self,
        id: str,
        *,
        customer_id: str | None = None,
        deal_name: str | None = None,
        amount: Money | None = None,
        expected_close: date | None = None,
        pipeline: str = "default",
    ) -> tuple[Customer, Contact, Deal]:
        """Turn a qualified lead into a customer, a contact and a deal.

        The customer is ``customer_id`` if given, else an active customer whose
        name matches the lead's company (ignoring case and spacing), else a new
        one. The contact is an existing contact with one of the lead's emails
        or phones, else a new one. The deal starts in the pipeline's first
        stage, owned by the lead's owner.
        """
        lead = self.get(id)
        LEAD_MOVES.check(lead.status, LeadStatus.CONVERTED)
        customer = self._customer_for(lead, customer_id)
        contact = self._contact_for(lead, customer)
        deal = self._s.deals.create(
            deal_name or f"{customer.name}: {lead.needs or 'new business'}"[:200],
            customer_id=customer.id,
            amount=amount if amount is not None else Money.zero(self._s.crm.currency),
            contact_id=contact.id,
            lead_id=lead.id,
            pipeline=pipeline,
            expected_close=expected_close,
            owner_id=lead.owner_id,
        )
        self._change(
            lead,
            None,
            "convert",
            status=LeadStatus.CONVERTED,
            customer_id=customer.id,
            contact_id=contact.id,
            deal_id=deal.id,
            converted_at=self._s.now(),
        )
        for task in self._s.tasks.list(related_id=id, status=TaskStatus.OPEN):
            self._s.tasks.complete(task.id)
        return customer, contact, deal

    def _customer_for(self, lead: Lead, customer_id: str | None) -> Customer:
        if customer_id is not None:
            return self._s.customers.get(customer_id)
        name = lead.company or lead.name
        key = search_key(name)
        existing = self._s.uow.repo(Customer).find(
            all_of([Eq("name_key", key), Eq("status", RecordStatus.ACTIVE)]), limit=1
        )
        if existing:
            return existing[0]
        return self._s.customers.create(
            name,
            industry=lead.industry,
            region=lead.region,
            owner_id=lead.owner_id,
        )

    def _contact_for(self, lead: Lead, customer: Customer) -> Contact:
        repo = self._s.uow.repo(Contact)
        for point in lead.contact_points:
            found = repo.find(
                all_of(
                    [HasKey(point.kind.value, point.match_key()), Eq("customer_id", customer.id)]
                ),
                limit=1,
            )
            if found:
                return found[0]
        return self._s.contacts.create(
            lead.name,
            customer_id=customer.id,
            title=lead.title,
            emails=[p for p in lead.contact_points if p.kind is PointKind.EMAIL],
            phones=[p for p in lead.contact_points if p.kind is PointKind.PHONE],
            owner_id=lead.owner_id,
        )

    def search(
        self,
        text: str | None = None,
        *,
        status: LeadStatus | str | None = None,
        owner_id: str | None = None,
        source: str | None = None,
        campaign: str | None = None,
        region: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Lead]:
        """Leads, newest first, filtered by name text, status, owner, source, campaign, region."""
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = [text_filter("text", text)]
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, LeadStatus)))
        if source is not None:
            parts.append(Eq("source", _source("source", source)))
        for field, value in (("owner_id", owner_id), ("campaign", campaign), ("region", region)):
            if value is not None:
                parts.append(Eq(field, check_text(field, value, required=True)))
        return self._repo.find(
            all_of(parts),
            order_by=[OrderBy("created_at", descending=True)],
            limit=limit,
            offset=offset,
        )

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Lead:
        """Correct a lead's details (not its status: use the status calls)."""
        lead = self.get(id)
        if not lead.is_open:
            raise ValidationError("status", lead.status.value, "a closed lead cannot be edited")
        changes = self._parse(fields, creating=False)
        if "contact_points" in changes:
            changes["contact_points"] = self._replace_points(
                lead.contact_points, fields, changes["contact_points"]
            )
        return self._change(lead, version, "update", **changes)
