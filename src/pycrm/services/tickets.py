"""The service desk: tickets with SLAs, escalation and satisfaction; the knowledge base."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, ClassVar

import attrs

from pycrm.domain.audit import AuditEntry
from pycrm.domain.contact_points import email_point, search_key
from pycrm.domain.contracts import Contract
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.deals import Deal
from pycrm.domain.fields import (
    Checks,
    check_bool,
    check_choice,
    check_id,
    check_int,
    check_tags,
    check_text,
)
from pycrm.domain.org import User
from pycrm.domain.query import (
    AnyKey,
    Contains,
    Eq,
    Filter,
    HasKey,
    In,
    Or,
    OrderBy,
    Range,
    all_of,
)
from pycrm.domain.tasks import TaskPriority
from pycrm.domain.tickets import (
    OPEN_TICKET_STATUSES,
    TICKET_MOVES,
    Article,
    ArticleStatus,
    Channel,
    Message,
    Priority,
    SlaPolicy,
    Ticket,
    TicketStatus,
    mail_key,
)
from pycrm.errors import InvalidTransition, ValidationError
from pycrm.mail import InboundMail, MailReceipt, clip, parse_mail
from pycrm.rules.context import RuleContext
from pycrm.services.mail import acknowledge
from pycrm.services.records import RecordService, check_when, checked_changes, write
from pycrm.services.search import check_page, referenced

__all__ = ["ArticleService", "Breach", "TicketService"]


@attrs.frozen
class Breach:
    """A ticket past one of its SLA targets."""

    ticket_id: str
    """The ticket."""
    kind: str
    """``first_response`` or ``resolution``."""
    due: datetime
    """When it was due."""
    late_by: timedelta
    """How late it is, in SLA time."""


class TicketService(RecordService[Ticket]):
    """Tickets from opening to closing, measured against the CRM's SLA policy."""

    record_type = Ticket
    events: ClassVar[Mapping[str, str]] = {
        "open": "ticket_opened",
        "assign": "ticket_assigned",
        "escalate": "ticket_escalated",
        "resolve": "ticket_resolved",
        "close": "ticket_closed",
        "reopen": "ticket_reopened",
        "rate": "satisfaction_recorded",
    }

    # -- opening and routing -------------------------------------------------

    @write
    def open(
        self,
        subject: str,
        *,
        channel: Channel | str,
        customer_id: str | None = None,
        contact_id: str | None = None,
        description: str | None = None,
        category: str | None = None,
        skills: Sequence[str] = (),
        priority: Priority | str = Priority.NORMAL,
        deal_id: str | None = None,
        contract_id: str | None = None,
        custom: dict[str, Any] | None = None,
    ) -> Ticket:
        """Open a ticket; its SLA due times are set and routing picks an agent.

        When only ``contact_id`` is given, the contact's customer is filled in.
        """
        return self._open(
            subject,
            channel=channel,
            customer_id=customer_id,
            contact_id=contact_id,
            description=description,
            category=category,
            skills=skills,
            priority=priority,
            deal_id=deal_id,
            contract_id=contract_id,
            custom=custom,
        )

    def _open(
        self,
        subject: str,
        *,
        channel: Channel | str,
        customer_id: str | None = None,
        contact_id: str | None = None,
        description: str | None = None,
        category: str | None = None,
        skills: Sequence[str] = (),
        priority: Priority | str = Priority.NORMAL,
        deal_id: str | None = None,
        contract_id: str | None = None,
        custom: dict[str, Any] | None = None,
        mail_ids: tuple[str, ...] = (),
    ) -> Ticket:
        """:meth:`open`, with the ids of the email that opened it (``mail_ids``)."""
        with Checks() as checks:
            fields: dict[str, Any] = {
                "subject": checks(check_text, "subject", subject, required=True, limit=300),
                "channel": checks(check_choice, "channel", channel, Channel),
                "description": checks(
                    check_text, "description", description, limit=20_000, multiline=True
                ),
                "category": checks(check_text, "category", category, limit=80),
                "skills": checks(check_tags, "skills", skills),
                "priority": checks(check_choice, "priority", priority, Priority),
            }
        referenced(self._s, Deal, "deal_id", deal_id)
        referenced(self._s, Contract, "contract_id", contract_id)
        customer = referenced(self._s, Customer, "customer_id", customer_id)
        contact = referenced(self._s, Contact, "contact_id", contact_id)
        if contact is not None and customer is None and contact.customer_id is not None:
            customer_id = contact.customer_id
            customer = referenced(self._s, Customer, "customer_id", customer_id)
        now = self._s._now()
        policy = self._s.settings._sla_policy()
        target = policy.target(fields["priority"], customer.grade if customer else None)
        ticket = self._add(
            "open",
            customer_id=customer_id,
            contact_id=contact_id,
            deal_id=deal_id,
            contract_id=contract_id,
            opened_at=now,
            custom=self._custom({}, custom, creating=True),
            first_response_due=policy.add(now, target.first_response),
            resolution_due=policy.add(now, target.resolution),
            mail_ids=mail_ids,
            **fields,
        )
        return self._route(ticket)

    # -- email ------------------------------------------------------------------

    @write
    def receive_mail(
        self,
        message: bytes | str | EmailMessage,
        *,
        category: str | None = None,
        priority: Priority | str = Priority.NORMAL,
    ) -> MailReceipt:
        """An email to the service desk: a reply to the ticket it answers, or a new ticket.

        The message (RFC 5322 bytes or text, or an ``email`` Message; see
        :mod:`pycrm.mail`) threads to a ticket by a ``[#T-<id>]`` token in its
        subject (:func:`pycrm.mail.ticket_token`), else by ``In-Reply-To`` and
        ``References`` naming an email the ticket was opened or answered by.
        A reply is added as the customer's message (a resolved or closed
        ticket is reopened first); otherwise a ticket is opened on the
        ``email`` channel for the contact whose email the sender's is, with
        ``category`` and ``priority``. Attachments become documents on the
        ticket. Auto-replies, bounces and list mail are ignored, and an email
        received before (the same ``Message-ID``) does nothing: intake can
        run twice over the same mailbox. With a ``mail_sender`` on the CRM, a
        ticket it opens is acknowledged to the customer after the commit
        (hook ``pycrm_mail_acknowledgement``).
        """
        mail = parse_mail(message)
        if mail.automatic is not None:
            return MailReceipt("ignored", None, mail.automatic)
        repeat = self._by_mail([mail.message_id] if mail.message_id else [])
        if repeat is not None:
            return MailReceipt("duplicate", repeat, f"{mail.message_id} was received before")
        received = (mail.message_id,) if mail.message_id else ()
        ticket, how = self._thread(mail)
        body = clip(mail.text or mail.subject or "(empty email)", 20_000)
        if ticket is None:
            contact = self._sender(mail.sender)
            ticket = self._open(
                clip(mail.subject or "(no subject)", 300),
                channel=Channel.EMAIL,
                contact_id=contact.id if contact else None,
                description=body,
                category=category,
                priority=priority,
                mail_ids=received,
            )
            outcome, how = "opened", None if contact else f"no contact has {mail.sender}"
            acknowledge(self._s, ticket, mail)  # sent after the commit, if at all
        else:
            if ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
                ticket = self.reopen(ticket.id, reason="the customer wrote again by email")
            ticket = self._customer_reply(ticket.id, body, received)
            outcome = "replied"
        documents = tuple(
            self._s.documents.attach(
                "ticket",
                ticket.id,
                clip(a.filename, 255),
                a.data,
                content_type=clip(a.content_type, 255),
            ).id
            for a in mail.attachments
        )
        return MailReceipt(outcome, self._s._guard.redact(ticket), how, documents)

    def _by_mail(self, message_ids: Sequence[str]) -> Ticket | None:
        """The readable ticket that holds one of these emails, oldest first."""
        if not message_ids:
            return None
        keys = sorted({mail_key(m) for m in message_ids})
        found = self._s.read(Ticket, quiet=True).find(
            AnyKey("mail", keys), order_by=[OrderBy("opened_at")], limit=1
        )
        return found[0] if found else None

    def _thread(self, mail: InboundMail) -> tuple[Ticket | None, str | None]:
        """The ticket ``mail`` answers, and how it was found."""
        token = mail.token
        if token is not None:
            ticket = self._repo.get(token)
            if ticket is not None and self._s._guard.allows(ticket, "read"):
                self._s._saw([ticket])
                return ticket, f"the subject names ticket {token}"
        ticket = self._by_mail(mail.thread_ids)
        if ticket is not None:
            return ticket, "it answers an email of the ticket"
        return None, None

    def _sender(self, address: str | None) -> Contact | None:
        """The active contact whose email is ``address`` (the first one made), or None."""
        if address is None:
            return None
        try:
            key = email_point(address).match_key()
        except ValidationError:
            return None
        found = self._s.read(Contact, quiet=True).find(
            all_of([AnyKey("email", [key]), Eq("status", "active")]),
            order_by=[OrderBy("created_at")],
            limit=1,
        )
        return found[0] if found else None

    def candidates(self, at: datetime | None = None) -> list[User]:
        """Agents routing may give a ticket now: available and under capacity.

        Only the users the actor may read are listed.
        """
        return self._s._guard.readable(self._candidates(at))

    def _candidates(self, at: datetime | None) -> list[User]:
        return RuleContext(self._s, kind="ticket").candidates(self._s.crm.ticket_departments, at)

    def _route(self, ticket: Ticket) -> Ticket:
        with self._s._guard.bypass():  # routing is pycrm's rule, not the actor's edit
            ctx = RuleContext(self._s, kind="ticket")
            decision = self._s.crm.rules.assign(
                "pycrm_assign_ticket", ticket, self._candidates(ctx.now), ctx
            )
            if decision is None:
                return ticket
            return self._assign(
                ticket,
                decision.assignment.owner_id,
                decision.decided_by,
                decision.assignment.reason,
            )

    def _assign(self, ticket: Ticket, assignee_id: str, decided_by: str, reason: str) -> Ticket:
        agent = self._check_user("assignee_id", assignee_id)
        if not ticket.is_open:
            raise InvalidTransition("ticket", ticket.status.value, "assigned", "reopen it first")
        status = TicketStatus.ASSIGNED if ticket.status is TicketStatus.NEW else ticket.status
        return self._change(
            ticket,
            None,
            "assign",
            assignee_id=agent,
            status=status,
            assigned_by=decided_by,
            assignment_reason=reason,
        )

    @write
    def assign(self, id: str, assignee_id: str, *, reason: str | None = None) -> Ticket:
        """Give a ticket to an agent by hand."""
        ticket = self._load(id)
        text = check_text("reason", reason, limit=500) or "assigned by hand"
        return self._assign(ticket, assignee_id, f"user:{self._s.actor.id}", text)

    @write
    def route(self, id: str) -> Ticket:
        """Run the routing rules for a ticket that is still ``new``."""
        ticket = self._load(id)
        if ticket.status is not TicketStatus.NEW:
            raise InvalidTransition(
                "ticket", ticket.status.value, "assigned", "only new tickets are routed"
            )
        self._s._guard.require(ticket, "update")
        return self._route(ticket)

    # -- working it ----------------------------------------------------------

    def _move(self, ticket: Ticket, to: TicketStatus, action: str, **changes: Any) -> Ticket:
        TICKET_MOVES.check(ticket.status, to)
        now = self._s._now()
        if ticket.paused_since is not None and to is not TicketStatus.WAITING_ON_CUSTOMER:
            changes.update(self._resume_clock(ticket, now))
        return self._change(ticket, None, action, status=to, **changes)

    def _resume_clock(self, ticket: Ticket, now: datetime) -> dict[str, Any]:
        """Push the due times back by the SLA time spent waiting on the customer."""
        assert ticket.paused_since is not None
        policy = self._s.settings._sla_policy()
        waited = policy.elapsed(ticket.paused_since, now)
        changes: dict[str, Any] = {"paused_since": None}
        if ticket.first_response_at is None and ticket.first_response_due is not None:
            changes["first_response_due"] = policy.add(ticket.first_response_due, waited)
        if ticket.resolution_due is not None:
            changes["resolution_due"] = policy.add(ticket.resolution_due, waited)
        return changes

    def _effective_due(
        self, ticket: Ticket, due: datetime | None, now: datetime
    ) -> datetime | None:
        """``due`` pushed back by the SLA time the ticket has been waiting on the customer so far."""
        if due is None or ticket.paused_since is None:
            return due
        policy = self._s.settings._sla_policy()
        return policy.add(due, policy.elapsed(ticket.paused_since, now))

    @write
    def start(self, id: str) -> Ticket:
        """The agent starts working on it (→ in_progress)."""
        return self._move(self._load(id), TicketStatus.IN_PROGRESS, "update")

    @write
    def wait_on_customer(self, id: str) -> Ticket:
        """Waiting for the customer's answer: the SLA clock stops until work resumes."""
        ticket = self._load(id)
        return self._move(
            ticket, TicketStatus.WAITING_ON_CUSTOMER, "update", paused_since=self._s._now()
        )

    @write
    def reply(self, id: str, body: str, *, public: bool = True) -> Ticket:
        """Add an agent's message: a public reply or an internal note.

        The first public reply meets (or breaches) the first-response target.
        """
        check_bool("public", public)
        ticket = self._load(id)
        text = check_text("body", body, required=True, limit=20_000, multiline=True)
        now = self._s._now()
        changes: dict[str, Any] = {
            "messages": (*ticket.messages, Message(self._s.actor.id, text or "", public, now))
        }
        if public and ticket.first_response_at is None:
            changes["first_response_at"] = now
            due = self._effective_due(ticket, ticket.first_response_due, now)
            changes["first_response_breached"] = ticket.first_response_breached or (
                due is not None and now > due
            )
        return self._change(ticket, None, "reply" if public else "note", **changes)

    @write
    def note(self, id: str, body: str) -> Ticket:
        """Add an internal note (never shown to the customer)."""
        return self.reply(id, body, public=False)

    @write
    def customer_reply(self, id: str, body: str) -> Ticket:
        """Record the customer's answer; a ticket waiting on the customer goes back to in_progress."""
        return self._customer_reply(id, body)

    def _customer_reply(self, id: str, body: str, mail_ids: tuple[str, ...] = ()) -> Ticket:
        """:meth:`customer_reply`, adding the ids of the email it came by in the same update."""
        ticket = self._load(id)
        text = check_text("body", body, required=True, limit=20_000, multiline=True)
        messages = (*ticket.messages, Message("customer", text or "", True, self._s._now()))
        changes = {"mail_ids": (*ticket.mail_ids, *mail_ids)} if mail_ids else {}
        if ticket.status is TicketStatus.WAITING_ON_CUSTOMER:
            return self._move(
                ticket, TicketStatus.IN_PROGRESS, "update", messages=messages, **changes
            )
        return self._change(ticket, None, "update", messages=messages, **changes)

    @write
    def resolve(self, id: str, *, note: str | None = None) -> Ticket:
        """Mark it resolved (the resolution target is met or breached now)."""
        ticket = self._load(id)
        now = self._s._now()
        changes: dict[str, Any] = {"resolved_at": now, "resolutions": ticket.resolutions + 1}
        if note is not None:
            text = check_text("note", note, required=True, limit=20_000)
            changes["messages"] = (
                *ticket.messages,
                Message(self._s.actor.id, text or "", False, now),
            )
        due = self._effective_due(ticket, ticket.resolution_due, now)
        if due is not None and now > due:
            changes["resolution_breached"] = True
        return self._move(ticket, TicketStatus.RESOLVED, "resolve", **changes)

    @write
    def close(self, id: str) -> Ticket:
        """Close a resolved ticket."""
        return self._move(self._load(id), TicketStatus.CLOSED, "close", closed_at=self._s._now())

    @write
    def reopen(self, id: str, *, reason: str | None = None) -> Ticket:
        """Reopen a resolved or closed ticket; a new resolution target starts now."""
        ticket = self._load(id)
        if ticket.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            raise InvalidTransition(
                "ticket", ticket.status.value, "reopened", "only resolved or closed tickets reopen"
            )
        now = self._s._now()
        policy = self._s.settings._sla_policy()
        customer = (
            self._s._uow.repo(Customer).get(ticket.customer_id) if ticket.customer_id else None
        )
        target = policy.target(ticket.priority, customer.grade if customer else None)
        changes: dict[str, Any] = {
            "resolution_due": policy.add(now, target.resolution),
            "resolution_breached": False,
            "closed_at": None,
        }
        if reason is not None:
            text = check_text("reason", reason, required=True, limit=2000)
            changes["messages"] = (
                *ticket.messages,
                Message(self._s.actor.id, text or "", False, now),
            )
        reopened = self._move(ticket, TicketStatus.ASSIGNED, "reopen", **changes)
        if reopened.assignee_id is None:
            return self._route(reopened)
        return reopened

    @write
    def rate(self, id: str, score: int, *, comment: str | None = None) -> Ticket:
        """Record the customer's satisfaction (1-5) with the latest resolution; once per resolution."""
        ticket = self._load(id)
        value = check_int("score", score, minimum=1, maximum=5)
        if value is None:
            raise ValidationError("score", score, "is required (1-5)")
        if ticket.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            raise InvalidTransition(
                "ticket", ticket.status.value, "rated", "only resolved tickets are rated"
            )
        if ticket.csat_resolution == ticket.resolutions:
            raise ValidationError("score", score, "this resolution was rated already")
        text = check_text("comment", comment, limit=5000)
        return self._change(
            ticket,
            None,
            "rate",
            csat_score=value,
            csat_comment=text,
            csat_resolution=ticket.resolutions,
        )

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Ticket:
        """Correct a ticket's subject, description, priority, category, channel, skills or custom.

        ``custom`` holds custom field values, merged key by key. Needs the policy's ``update`` grant on the ticket (by default service's:
        sales reads tickets but does not change them, marketing neither). Pass
        ``version`` to refuse the write if the ticket changed since.

        A new priority moves the SLA due times that are still running, as if
        the ticket had been opened (or, for the resolution target, last
        reopened) with that priority: the first-response due time until the
        first public reply, the resolution due time while the ticket is open.
        The SLA time it spent waiting on the customer still counts in its
        favour. A breach already recorded (``*_breached``) stays recorded.

        :raises ValidationError: naming the bad or unknown field.
        :raises PermissionDenied: without the ``update`` grant on the ticket.
        """
        ticket = self._load(id)
        checkers: dict[str, Any] = {
            "subject": lambda f, v: check_text(f, v, required=True, limit=300),
            "description": lambda f, v: check_text(f, v, limit=20_000, multiline=True),
            "priority": lambda f, v: check_choice(f, v, Priority),
            "category": lambda f, v: check_text(f, v, limit=80),
            "channel": lambda f, v: check_choice(f, v, Channel),
            "skills": check_tags,
            "custom": lambda f, v: self._custom(ticket.custom, v, creating=False),
        }
        changes = checked_changes(fields, checkers, "ticket")
        priority = changes.get("priority", ticket.priority)
        if priority is not ticket.priority:
            changes.update(self._retarget(ticket, priority))
        return self._change(ticket, version, "update", **changes)

    def _retarget(self, ticket: Ticket, priority: Priority) -> dict[str, datetime]:
        """The due times still running, moved to the SLA target of ``priority``."""
        policy: SlaPolicy = self._s.settings._sla_policy()
        customer = (
            self._s._uow.repo(Customer).get(ticket.customer_id) if ticket.customer_id else None
        )
        grade = customer.grade if customer else None
        old, new = policy.target(ticket.priority, grade), policy.target(priority, grade)

        def moved(start: datetime, due: datetime, was: timedelta, now: timedelta) -> datetime:
            # ``due`` is ``start`` + ``was`` + the SLA time spent waiting on the customer.
            waited = max(policy.elapsed(start, due) - was, timedelta(0))
            return policy.add(start, now + waited)

        changes: dict[str, datetime] = {}
        if ticket.first_response_at is None and ticket.first_response_due is not None:
            changes["first_response_due"] = moved(
                ticket.opened_at, ticket.first_response_due, old.first_response, new.first_response
            )
        if ticket.is_open and ticket.resolution_due is not None:
            changes["resolution_due"] = moved(
                self._resolution_clock_start(ticket),
                ticket.resolution_due,
                old.resolution,
                new.resolution,
            )
        return changes

    def _resolution_clock_start(self, ticket: Ticket) -> datetime:
        """When the resolution target started to run: the opening, or the last reopening."""
        if not ticket.resolutions:
            return ticket.opened_at
        reopened = self._s._uow.repo(AuditEntry).find(
            all_of([Eq("record_id", ticket.id), Eq("action", "reopen")]),
            order_by=[OrderBy("at", descending=True)],
            limit=1,
        )
        return reopened[0].at if reopened else ticket.opened_at

    # -- SLA -------------------------------------------------------------------

    def breaches(self, at: datetime | None = None) -> list[Breach]:
        """Open tickets past a due time at ``at`` (default: now), most overdue first.

        Returns all of them: this list has no pages.

        Tickets waiting on the customer are not counted: their clock is stopped.
        """
        when = self._s._now() if at is None else check_when("at", at)
        found = [
            breach for ticket in self._overdue(when) for breach in self._breaches_of(ticket, when)
        ]
        return sorted(found, key=lambda b: (-b.late_by, b.due, b.ticket_id))

    def _overdue(self, when: datetime) -> list[Ticket]:
        active = In(
            "status", [s for s in OPEN_TICKET_STATUSES if s is not TicketStatus.WAITING_ON_CUSTOMER]
        )
        late = all_of([active, Range("resolution_due", None, when)])
        unanswered = all_of(
            [active, Eq("first_response_at", None), Range("first_response_due", None, when)]
        )
        either = Or((late, unanswered)) if late is not None and unanswered is not None else late
        return self._find(either, order_by=[OrderBy("opened_at")])

    def _breaches_of(self, ticket: Ticket, when: datetime) -> list[Breach]:
        policy = self._s.settings._sla_policy()
        found = []
        if (
            ticket.first_response_at is None
            and ticket.first_response_due
            and ticket.first_response_due < when
        ):
            found.append(
                Breach(
                    ticket.id,
                    "first_response",
                    ticket.first_response_due,
                    policy.elapsed(ticket.first_response_due, when),
                )
            )
        if ticket.resolution_due and ticket.resolution_due < when:
            found.append(
                Breach(
                    ticket.id,
                    "resolution",
                    ticket.resolution_due,
                    policy.elapsed(ticket.resolution_due, when),
                )
            )
        return found

    @write
    def escalate(self, at: datetime | None = None) -> list[Ticket]:
        """Escalate every new SLA breach and send ``ticket_escalated`` for each.

        The breach is marked on the ticket, and the ticket goes to the agent's
        manager (with no manager, the service department gets a task). A
        breach is escalated once; returns the tickets escalated by this run.
        """
        when = self._s._now() if at is None else check_when("at", at)
        escalated: list[Ticket] = []
        for ticket in self._overdue(when):
            kinds = {b.kind for b in self._breaches_of(ticket, when)}
            fresh = {
                "first_response": not ticket.first_response_breached,
                "resolution": not ticket.resolution_breached,
            }
            if not any(fresh[k] for k in kinds):
                continue
            ticket = self._repo.get(ticket.id) or ticket
            changes: dict[str, Any] = {"escalation_level": ticket.escalation_level + 1}
            if "first_response" in kinds:
                changes["first_response_breached"] = True
            if "resolution" in kinds:
                changes["resolution_breached"] = True
            manager = self._manager_of(ticket.assignee_id)
            with self._s._guard.bypass():
                if manager is not None and manager != ticket.assignee_id:
                    changes.update(
                        assignee_id=manager,
                        assigned_by="pycrm.escalation",
                        assignment_reason=f"SLA breached ({', '.join(sorted(kinds))}): to the manager",
                    )
                else:
                    self._s.tasks.create(
                        f"SLA breached on ticket: {ticket.subject}",
                        department=self._s.crm.ticket_departments[0],
                        due_at=when,
                        priority=TaskPriority.URGENT,
                        related_type="ticket",
                        related_id=ticket.id,
                        kind="ticket_escalated",
                    )
                escalated.append(self._change(ticket, None, "escalate", **changes))
        return escalated

    def _manager_of(self, user_id: str | None) -> str | None:
        if user_id is None:
            return None
        user = self._s._uow.repo(User).get(user_id)
        if user is None or user.manager_id is None:
            return None
        manager = self._s._uow.repo(User).get(user.manager_id)
        return manager.id if manager is not None and manager.active else None

    # -- reading ---------------------------------------------------------------

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Ticket]:
        """Every ticket :meth:`list` finds with ``filters``, however many there are.

        Takes the filters of :meth:`list` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.tickets.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.list, filters, page_size)

    def list(
        self,
        *,
        customer_id: str | None = None,
        assignee_id: str | None = None,
        status: TicketStatus | str | None = None,
        priority: Priority | str | None = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """Tickets, newest first, filtered by customer, agent, status, priority.

        Returns the first 100 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if customer_id is not None:
            parts.append(Eq("customer_id", customer_id))
        if assignee_id is not None:
            parts.append(Eq("assignee_id", assignee_id))
        if status is not None:
            parts.append(Eq("status", check_choice("status", status, TicketStatus)))
        if priority is not None:
            parts.append(Eq("priority", check_choice("priority", priority, Priority)))
        if open_only:
            parts.append(In("status", OPEN_TICKET_STATUSES))
        return self._find(
            all_of(parts),
            order_by=[OrderBy("opened_at", descending=True)],
            limit=limit,
            offset=offset,
        )

    @write
    def link_article(self, id: str, article_id: str) -> Ticket:
        """Link a knowledge-base article to the ticket (e.g. the answer sent)."""
        check_id("article_id", article_id)
        ticket = self._load(id)
        self._s.articles.get(article_id)
        if article_id in ticket.article_ids:
            return ticket
        return self._change(ticket, None, "update", article_ids=(*ticket.article_ids, article_id))


class ArticleService(RecordService[Article]):
    """The knowledge base: articles agents write and customers search."""

    record_type = Article

    @write
    def create(
        self,
        title: str,
        body: str,
        *,
        tags: Sequence[str] = (),
        category: str | None = None,
        publish: bool = False,
    ) -> Article:
        """Write an article (a draft unless ``publish``)."""
        with Checks() as checks:
            fields: dict[str, Any] = {
                "title": checks(check_text, "title", title, required=True, limit=300),
                "body": checks(
                    check_text, "body", body, required=True, limit=100_000, multiline=True
                ),
                "tags": checks(check_tags, "tags", tags),
                "category": checks(check_text, "category", category, limit=80),
            }
        status = ArticleStatus.PUBLISHED if publish else ArticleStatus.DRAFT
        return self._add("create", status=status, **fields)

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Article:
        """Change an article's title, body, tags or category."""
        article = self._load(id)
        checkers = {
            "title": lambda f, v: check_text(f, v, required=True, limit=300),
            "body": lambda f, v: check_text(f, v, required=True, limit=100_000, multiline=True),
            "tags": check_tags,
            "category": lambda f, v: check_text(f, v, limit=80),
        }
        unknown = sorted(set(fields) - set(checkers))
        if unknown:
            raise ValidationError(unknown[0], fields[unknown[0]], "is not an article field")
        with Checks() as checks:
            changes = {k: checks(checkers[k], k, v) for k, v in fields.items()}
        return self._change(article, version, "update", **changes)

    @write
    def publish(self, id: str) -> Article:
        """Make an article visible to self-service search."""
        return self._change(self._load(id), None, "update", status=ArticleStatus.PUBLISHED)

    @write
    def unpublish(self, id: str) -> Article:
        """Take an article back to draft."""
        return self._change(self._load(id), None, "update", status=ArticleStatus.DRAFT)

    def search(
        self,
        text: str | None = None,
        *,
        tag: str | None = None,
        published_only: bool = False,
        limit: int = 20,
    ) -> list[Article]:
        """Articles containing every word of ``text`` (title, tags, category, body), newest first.

        Returns the first 20 by default (``limit`` up to 1,000).
        """
        limit, _ = check_page(limit, 0)
        parts: list[Filter | None] = []
        words = search_key(check_text("text", text, limit=300)).split() if text else []
        parts += [Contains("search_text", word) for word in words[:10]]
        if tag is not None:
            parts.append(HasKey("tag", search_key(check_text("tag", tag, required=True))))
        if published_only:
            parts.append(Eq("status", ArticleStatus.PUBLISHED))
        return self._find(
            all_of(parts), order_by=[OrderBy("updated_at", descending=True)], limit=limit
        )

    def faq(self, text: str, *, limit: int = 5) -> list[Article]:
        """Self-service: published articles answering ``text``.

        Returns the best 5 by default (``limit`` up to 1,000).
        """
        return self.search(text, published_only=True, limit=limit)
