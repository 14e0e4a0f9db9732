"""Leads: marketing captures them, sales works and converts them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from email.message import EmailMessage
from functools import partial
from typing import Any, ClassVar

import attrs

from pycrm.domain.contact_points import PointKind, search_key
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.deals import Deal
from pycrm.domain.documents import Document
from pycrm.domain.fields import (
    check_bool,
    check_choice,
    check_id,
    check_key,
    check_tags,
    check_text,
    fold_points,
)
from pycrm.domain.leads import LEAD_MOVES, Lead, LeadStatus
from pycrm.domain.money import Money
from pycrm.domain.names import NameOrder
from pycrm.domain.normalise import company_key
from pycrm.domain.org import User
from pycrm.domain.query import Eq, Filter, HasKey, OrderBy, all_of
from pycrm.domain.tickets import mail_key
from pycrm.errors import ConcurrencyError, InvalidTransition, ValidationError
from pycrm.mail import MailReceipt, clip, parse_mail
from pycrm.rules.context import Assignment, RuleContext
from pycrm.rules.engine import Decision
from pycrm.services.records import RecordService, write
from pycrm.services.search import (
    category_filter,
    check_page,
    custom_filter,
    name_filters,
    text_filter,
)

__all__ = ["AssignmentExplanation", "LeadService"]


@attrs.frozen
class AssignmentExplanation:
    """Why a lead has its owner."""

    lead_id: str
    """The lead."""
    owner_id: str | None
    """Its owner (None: unassigned)."""
    decided_by: str | None
    """``plugin:rule`` for routing (``pycrm.routing:dach``), ``user:<id>`` by hand."""
    reason: str | None
    """The rule's or person's reason."""
    assigned_at: datetime | None
    """When."""
    score: int | None
    """The lead's score then and now."""


class _Preview(Exception):
    def __init__(self, decision: Decision | None) -> None:
        self.decision = decision


def _external_id(field: str, value: Any) -> str | None:
    """The lead's id in the system it came from: exact text, 1 to 200 characters."""
    if value is None:
        return None
    key = check_key(field, value, limit=200)
    if not key.strip():
        raise ValidationError(field, value, "must not be empty")
    return key


def _source(field: str, value: Any) -> str:
    text = check_text(field, value, required=True, limit=60)
    assert text is not None
    return text.lower().replace(" ", "_")


class LeadService(RecordService[Lead]):
    """Capture, assign, work, convert or disqualify leads."""

    record_type = Lead
    screened = True
    events: ClassVar[Mapping[str, str]] = {
        "capture": "lead_captured",
        "assign": "lead_assigned",
        "convert": "lead_converted",
        "disqualify": "lead_disqualified",
        "archive": "lead_archived",
        "delete": "lead_deleted",
    }

    def _checkers(self) -> dict[str, Callable[[str, Any], Any]]:
        return {
            "name": partial(check_text, required=True),
            "given_name": partial(check_text, limit=100),
            "family_name": partial(check_text, limit=100),
            "name_order": partial(check_choice, choices=NameOrder),
            "company": check_text,
            "title": check_text,
            "source": _source,
            "campaign": check_text,
            "region": check_text,
            "industry": check_text,
            "needs": partial(check_text, limit=5000, multiline=True),
            "external_id": _external_id,
            "tags": check_tags,
            "categories": self._s.categories.check_paths,
        }

    @write
    def capture(
        self,
        name: str | None = None,
        *,
        source: str,
        email: str | None = None,
        phone: str | None = None,
        **fields: Any,
    ) -> Lead:
        """Capture a lead from a form, an import or an API.

        :param name: the person's name; made from ``given_name`` and
            ``family_name`` when only they are given (in the person's name order).
        :param source: where it came from (``webform``, ``import``, ``trade_show`` …).
        :param email: one email (or pass ``emails=[...]``).
        :param phone: one phone; without a country code the tenant's default region
            applies, or ``phone_region=`` (or pass ``phones=[...]``).
        :param fields: ``given_name``, ``family_name``, ``name_order``, ``company``,
            ``title``, ``campaign``, ``region`` (the sales territory), ``industry``,
            ``needs``, ``tags``, ``categories``, ``phone_region``, ``external_id``
            (the lead's id in the system it came from: a form submission, an
            email, a shop; look it up with ``HasKey("external_id", …)`` before
            capturing again).

        When the CRM has a lead router, the lead is assigned at once.
        """
        values: dict[str, Any] = {"name": name, "source": source, **fields}
        values.update(email=email, phone=phone, emails=values.get("emails") or [])
        values.setdefault("phones", [])
        fold_points(values)
        lead = self._create(values, "capture")
        if lead.status is not LeadStatus.NEW:  # merged into an existing lead
            return lead
        return self._route(lead)

    @write
    def receive_mail(
        self,
        message: bytes | str | EmailMessage,
        *,
        source: str = "email",
        campaign: str | None = None,
    ) -> MailReceipt:
        """An email to a sales address, captured as a lead (``captured``, see :meth:`capture`).

        The sender's name and address become the lead's name and email, the
        email's text (or its subject) its ``needs``; attachments become
        documents on it. Auto-replies, bounces and list mail are ``ignored``;
        an email captured before (the same ``Message-ID``, kept as the lead's
        ``external_id`` ``mail:<id>``, see :func:`~pycrm.domain.tickets.mail_key`) is a ``duplicate``, so a mailbox can be read twice.
        A sender already known as a lead goes through the duplicate policy,
        as any capture does.

        :raises ValidationError: (``message``) when the sender has no usable address.
        """
        mail = parse_mail(message)
        if mail.automatic is not None:
            return MailReceipt("ignored", None, mail.automatic)
        external = None
        if mail.message_id:
            external = f"mail:{mail_key(mail.message_id)}"
            seen = self._s.read(Lead, quiet=True).find(HasKey("external_id", external), limit=1)
            if seen:
                return MailReceipt("duplicate", seen[0], f"{mail.message_id} was captured before")
        if mail.sender is None:
            raise ValidationError("message", None, "the email has no sender address")
        name = mail.sender_name or mail.sender.partition("@")[0]
        needs = mail.text or mail.subject or None
        lead = self.capture(
            clip(name, 200),
            source=source,
            email=mail.sender,
            campaign=campaign,
            needs=None if needs is None else clip(needs, 5000),
            external_id=external,
        )
        documents = tuple(
            self._s.documents.attach(
                "lead",
                lead.id,
                clip(a.filename, 255),
                a.data,
                content_type=clip(a.content_type, 255),
            ).id
            for a in mail.attachments
        )
        return MailReceipt("captured", self._s._guard.redact(lead), None, documents)

    def _route(self, lead: Lead) -> Lead:
        # Scoring and routing are pycrm's own rules at work, not the actor's edits.
        with self._s._guard.bypass():
            lead = self._rescore(lead)
            decision = self._decide(lead, dry_run=False)
            if decision is None:
                return lead
            return self._assign(
                lead, decision.assignment.owner_id, decision.decided_by, decision.assignment.reason
            )

    def _rescore(self, lead: Lead) -> Lead:
        score, _ = self._s.crm.rules.score_lead(lead, RuleContext(self._s))
        if score == lead.score:
            return lead
        return self._change(lead, None, "score", score=score)

    def candidates(self, at: datetime | None = None) -> list[User]:
        """Users routing may give a new lead now: in the lead departments, available, under capacity.

        Only the users the actor may read are listed.
        """
        return self._s._guard.readable(self._candidates(at))

    def _candidates(self, at: datetime | None) -> list[User]:
        return RuleContext(self._s).candidates(self._s.crm.lead_departments, at)

    def _decide(self, lead: Lead, *, dry_run: bool) -> Decision | None:
        ctx = RuleContext(self._s, dry_run=dry_run)
        return self._s.crm.rules.assign("pycrm_assign_lead", lead, self._candidates(ctx.now), ctx)

    def _assign(self, lead: Lead, owner_id: str, decided_by: str, reason: str) -> Lead:
        owner = self._check_user("owner_id", owner_id)
        if not lead.is_open:
            LEAD_MOVES.check(lead.status, LeadStatus.ASSIGNED)
        self._close_tasks(lead.id, "first_contact", done=False)
        status = LeadStatus.ASSIGNED if lead.status is LeadStatus.NEW else lead.status
        return self._change(
            lead,
            None,
            "assign",
            owner_id=owner,
            status=status,
            assigned_at=self._s._now(),
            assigned_by=decided_by,
            assignment_reason=reason,
        )

    @write
    def route(self, id: str) -> Lead:
        """Run the routing rules again for a lead that is still ``new`` (e.g. after a rule change)."""
        lead = self._load(id)
        if lead.status is not LeadStatus.NEW:
            raise InvalidTransition(
                "lead", lead.status.value, "assigned", "only new leads are routed"
            )
        self._s._guard.require(lead, "update")
        return self._route(lead)

    def _close_tasks(self, lead_id: str, kind: str | None, *, done: bool) -> None:
        """Complete (or cancel) the lead's open tasks: housekeeping, not the actor's edit."""
        with self._s._guard.bypass():
            for task in self._s.tasks.list(related_id=lead_id, kind=kind):
                (self._s.tasks.complete if done else self._s.tasks.cancel)(task.id)

    def preview_assignment(self, *, source: str = "preview", **fields: Any) -> Assignment | None:
        """Who would get a lead with these fields, and why, without writing anything.

        Takes the fields :meth:`capture` takes. Round-robin turns are not used up.
        """
        values: dict[str, Any] = {"name": fields.pop("name", "Preview"), "source": source, **fields}
        for one, many in (("email", "emails"), ("phone", "phones")):
            if one in values:
                values[many] = [values.pop(one), *values.get(many, ())]
        lead = Lead(**self._s._stamp(**self._parse(values, creating=True)))
        try:
            with self._s._atomic():
                score, _ = self._s.crm.rules.score_lead(lead, RuleContext(self._s, dry_run=True))
                decision = self._decide(attrs.evolve(lead, score=score), dry_run=True)
                raise _Preview(decision)
        except _Preview as done:
            result = done.decision
        if result is None:
            return None
        return Assignment(
            result.assignment.owner_id, result.assignment.reason, rule=result.decided_by
        )

    def explain_assignment(self, id: str) -> AssignmentExplanation:
        """Who owns the lead, who decided (rule, plugin or user) and why.

        Fields hidden from the actor (the score, say) are None here too.
        """
        lead = self.get(id)
        return AssignmentExplanation(
            lead_id=lead.id,
            owner_id=lead.owner_id,
            decided_by=lead.assigned_by,
            reason=lead.assignment_reason,
            assigned_at=lead.assigned_at,
            score=lead.score,
        )

    @write
    def assign(self, id: str, owner_id: str, *, reason: str | None = None) -> Lead:
        """Give a lead to a salesperson (new → assigned; an open lead may be reassigned).

        The built-in reminders give the owner a first-contact task, due within
        the CRM's ``first_contact_within``.
        """
        lead = self._load(id)
        text = check_text("reason", reason, limit=500) or "assigned by hand"
        return self._assign(lead, owner_id, f"user:{self._s.actor.id}", text)

    def _move(self, id: str, to: LeadStatus, version: int | None, **changes: Any) -> Lead:
        lead = self._load(id)
        LEAD_MOVES.check(lead.status, to)
        action = "disqualify" if to is LeadStatus.DISQUALIFIED else "update"
        return self._change(lead, version, action, status=to, **changes)

    @write
    def mark_contacted(self, id: str, *, version: int | None = None) -> Lead:
        """The owner reached the lead (assigned → contacted); closes the first-contact task."""
        lead = self._move(id, LeadStatus.CONTACTED, version)
        self._close_tasks(id, "first_contact", done=True)
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
        self._close_tasks(id, None, done=False)
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
        stage, owned by the lead's owner. The consents in force for the lead
        are copied to the contact (see :meth:`ConsentService.grant
        <pycrm.services.consent.ConsentService.grant>`), their proof naming
        the lead (``from_lead``).
        """
        if customer_id is not None:
            check_id("customer_id", customer_id)
        check_text("deal_name", deal_name)
        lead = self._load(id)
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
            source=lead.source,
            campaign=lead.campaign,
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
            converted_at=self._s._now(),
        )
        self._s.consent._copy(lead, contact)
        self._close_tasks(id, None, done=True)
        return customer, contact, deal

    def _customer_for(self, lead: Lead, customer_id: str | None) -> Customer:
        if customer_id is not None:
            return self._s.customers.get(customer_id)
        name = lead.company or lead.name
        # Link only to a customer the actor may read; otherwise a new one (a steward merges).
        existing = self._s.read(Customer, quiet=True).find(
            all_of([HasKey("company", company_key(name)), Eq("status", RecordStatus.ACTIVE)]),
            order_by=[OrderBy("created_at")],
            limit=1,
        )
        if existing:
            return existing[0]
        return self._s.customers.create(
            name,
            industry=lead.industry,
            region=lead.region,
            owner_id=lead.owner_id,
            source=lead.source,
            on_duplicate="allow",
        )

    def _contact_for(self, lead: Lead, customer: Customer) -> Contact:
        repo = self._s.read(Contact, quiet=True)
        for point in lead.contact_points:
            if self._s._guard.hides_key(Contact, point.kind.value):
                continue
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
            source=lead.source,
            on_duplicate="allow",
            lenient=True,
        )

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Lead]:
        """Every lead :meth:`search` finds with ``filters``, however many there are.

        Takes the filters of :meth:`search` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.leads.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.search, filters, page_size)

    def search(
        self,
        text: str | None = None,
        *,
        status: LeadStatus | str | None = None,
        owner_id: str | None = None,
        source: str | None = None,
        campaign: str | None = None,
        region: str | None = None,
        given_name: str | None = None,
        family_name: str | None = None,
        tag: str | None = None,
        category: str | None = None,
        custom: dict[str, Any] | None = None,
        include_archived: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Lead]:
        """Leads, newest first, filtered by name text, status, owner, source, campaign, region.

        Returns the first 50 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.

        Archived leads are left out unless ``include_archived``.
        ``given_name`` and ``family_name`` find people whose name is known in
        those parts (ignoring case).
        """
        limit, offset = check_page(limit, offset)
        check_bool("include_archived", include_archived)
        parts: list[Filter | None] = [text_filter("text", text)]
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, LeadStatus)))
        if source is not None:
            parts.append(Eq("source", _source("source", source)))
        for field, value in (("owner_id", owner_id), ("campaign", campaign), ("region", region)):
            if value is not None:
                parts.append(Eq(field, check_text(field, value, required=True)))
        if tag is not None:
            parts.append(HasKey("tag", search_key(check_text("tag", tag, required=True))))
        parts += category_filter(self._s, category)
        parts += custom_filter(self._s, "lead", custom)
        parts += name_filters(given_name, family_name)
        if not include_archived:
            parts.append(Eq("archived_at", None))
        return self._find(
            all_of(parts),
            order_by=[OrderBy("created_at", descending=True)],
            limit=limit,
            offset=offset,
        )

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Lead:
        """Correct a lead's details (not its status: use the status calls)."""
        lead = self._load(id)
        if not lead.is_open:
            raise ValidationError("status", lead.status.value, "a closed lead cannot be edited")
        updated = self._update(lead, version, fields)
        with self._s._guard.bypass():
            return self._rescore(updated)

    @write
    def archive(self, id: str, *, version: int | None = None) -> Lead:
        """Archive a lead: it leaves searches and lists (unless asked for), its history stays.

        Needs the policy's ``delete`` grant on the lead (by default marketing's,
        while nobody in sales works the lead yet; and admins'). An archived lead
        is still counted in analytics. Sends ``lead_archived``; :meth:`restore`
        brings it back.
        """
        lead = self._load(id)
        if lead.archived_at is not None:
            return lead
        return self._change(lead, version, "archive", archived_at=self._s._now())

    @write
    def restore(self, id: str, *, version: int | None = None) -> Lead:
        """Bring an archived lead back into searches and lists (needs the ``delete`` grant too)."""
        lead = self._load(id)
        if lead.archived_at is None:
            return lead
        return self._change(lead, version, "restore", archived_at=None)

    @write
    def delete(self, id: str, *, version: int | None = None) -> None:
        """Delete a lead: it is gone from every read path; the audit keeps what it was.

        Needs the policy's ``delete`` grant on the lead. In the default policy
        marketing owns that: it deletes the leads it captured as long as nobody
        in sales works them (status ``new``), and sales never deletes
        marketing's original lead; admins may delete any. A converted lead is
        history (a customer, a contact and a deal came from it) and is refused:
        archive it instead. A merged-away lead is refused too (undo the merge).

        The audit entry (action ``delete``) holds the lead as it was; the lead's
        open tasks are cancelled and its documents deleted with it (their
        entries stay in the audit too). Sends ``lead_deleted`` with the lead as
        ``before``. A later ``get`` raises NotFound.

        :raises PermissionDenied: without the ``delete`` grant on the lead.
        :raises InvalidTransition: for a converted or merged lead.
        """
        lead = self._load(id)
        if lead.status in (LeadStatus.CONVERTED, LeadStatus.MERGED):
            raise InvalidTransition(
                "lead", lead.status.value, "deleted", "it is history: archive it instead"
            )
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int):
                raise ValidationError("version", version, "must be a whole number")
            if version != lead.version:
                raise ConcurrencyError("lead", lead.id, version, lead.version)
        self._s._guard.require(lead, "delete")
        self._close_tasks(id, None, done=False)
        with self._s._guard.bypass():  # documents follow their record
            for document in self._s._uow.repo(Document).find(
                all_of([Eq("record_type", "lead"), Eq("record_id", id)])
            ):
                self._s._delete(document)
        self._s._delete(lead, "delete", event=self.events["delete"])
