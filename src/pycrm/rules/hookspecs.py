"""The hooks plugin authors implement to add their own rules.

A plugin is any object (a module, a class instance) with functions named like
these hooks and marked with :data:`pycrm.rules.hookimpl`. Register it at
runtime with ``crm.plugins.register(obj)``, or ship it in a package with an
entry point in the group ``pycrm``::

    [project.entry-points.pycrm]
    my_rules = "my_package.rules"

pycrm's own rules are plugins too (named ``pycrm.routing``, ``pycrm.scoring``,
``pycrm.reminders``, ``pycrm.approvals``, ``pycrm.pricing`` and, with a mail sender,
``pycrm.acknowledgement``), so they can be unregistered or
outranked (``tryfirst=True``). The most recently registered plugin is asked
first.

A plugin that raises, or returns something these specs do not allow, makes
the call fail with :class:`~pycrm.errors.ConfigurationError` naming the
plugin: a broken rule never silently misroutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from datetime import date
    from decimal import Decimal
    from email.message import EmailMessage

    from pycrm.domain.contracts import ApprovalStep, Contract
    from pycrm.domain.customers import Customer
    from pycrm.domain.events import Event
    from pycrm.domain.leads import Lead
    from pycrm.domain.org import User
    from pycrm.domain.products import PriceLine, Product
    from pycrm.domain.quotes import Quote
    from pycrm.domain.tasks import BehaviourEvent
    from pycrm.domain.tickets import Ticket
    from pycrm.mail import InboundMail
    from pycrm.rules.context import Assignment, RuleContext, TaskSpec

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "pycrm"
"""The pluggy project name, and the entry-point group plugins are loaded from."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Mark a plugin's function as a hook implementation: ``@hookimpl`` or ``@hookimpl(tryfirst=True)``."""


@hookspec(firstresult=True)
def pycrm_assign_lead(
    lead: Lead, candidates: Sequence[User], ctx: RuleContext
) -> Assignment | None:
    """Choose who works a lead.

    Called when a lead is captured (and by ``s.leads.preview_assignment`` and
    ``s.leads.route``), before the lead is assigned.

    :param lead: the lead, already stored with status ``new`` (and its score).
    :param candidates: the users who may get it: active, not on leave, inside
        their working hours and under their capacity. Return one of them.
    :param ctx: the session, the time, open-item counts and round-robin counters.
    :returns: an :class:`~pycrm.rules.Assignment` naming the owner and why,
        or None to let the next plugin decide. When every plugin returns
        None the lead stays ``new`` and unassigned.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def pycrm_assign_ticket(
    ticket: object, candidates: Sequence[User], ctx: RuleContext
) -> Assignment | None:
    """Choose who handles a service ticket.

    Called when a ticket is opened or re-routed, before it is assigned.

    :param ticket: the ticket.
    :param candidates: available users (as for :func:`pycrm_assign_lead`).
    :param ctx: the rule context.
    :returns: an :class:`~pycrm.rules.Assignment`, or None to let the next
        plugin decide (None from all: the ticket stays unassigned).

    Stops at first non-None result.
    """


@hookspec
def pycrm_score_lead(lead: Lead, ctx: RuleContext) -> int | None:
    """Score a lead: how promising it is.

    Called when a lead is captured or changes, and when a behaviour event is
    tracked for it. Every plugin's score is added up; the total is stored on
    the lead (``lead.score``) and routing rules may use it.

    :param lead: the lead.
    :param ctx: the rule context (``ctx.behaviour`` lists the lead's tracked events).
    :returns: points (may be negative), or None to abstain.
    """


@hookspec
def pycrm_followups(event: Event | BehaviourEvent, ctx: RuleContext) -> Sequence[TaskSpec] | None:
    """Say which tasks an event should create (reminders, follow-ups).

    Called for every domain event a session emits (``lead_assigned``,
    ``payment_received``, ``receivable_overdue`` …) and for every behaviour
    event tracked with ``s.activities.track``. The tasks of every plugin are
    created, in the same unit of work as the event.

    :param event: a domain :class:`~pycrm.domain.events.Event` or a
        :class:`~pycrm.domain.tasks.BehaviourEvent`.
    :param ctx: the rule context.
    :returns: task specifications, or None (or an empty list) for none.
    """


@hookspec
def pycrm_approvals(contract: Contract | Quote, ctx: RuleContext) -> Sequence[ApprovalStep] | None:
    """Say which approvals a contract needs before it can be signed, or a quote before it is sent.

    Called when a contract or a quote is submitted (``contract.resource`` is
    ``"contract"`` or ``"quote"``; a quote also answers ``amount``,
    ``discount_percent``, its largest line discount, and ``standard_terms``,
    so a rule written for contracts reads it too). The steps of every plugin
    are concatenated (a role asked twice is asked once); no steps at all
    means the contract or quote is approved on submission.

    :param contract: the contract or quote in ``draft``.
    :param ctx: the rule context.
    :returns: approval steps, or None for none.
    """


@hookspec(firstresult=True)
def pycrm_price_line(
    product: Product,
    quantity: Decimal,
    customer: Customer | None,
    currency: str | None,
    on: date,
    ctx: RuleContext,
) -> PriceLine | None:
    """Price a product: an ERP's own prices, a customer's contract price.

    Called by ``s.price_lists.price`` (and everything that prices a line).
    The built-in plugin ``pycrm.pricing`` answers from the price lists, after
    every other plugin abstained.

    :param product: the product.
    :param quantity: how many units (a positive Decimal).
    :param customer: who buys (None: no one in particular).
    :param currency: the currency wanted (None: any).
    :param on: the day the price is for.
    :param ctx: the rule context.
    :returns: a :class:`~pycrm.domain.products.PriceLine` for this product
        and quantity (in ``currency`` when one is given), or None to let the
        next plugin price it.
    """


@hookspec(firstresult=True)
def pycrm_mail_acknowledgement(
    ticket: Ticket, mail: InboundMail, ctx: RuleContext
) -> EmailMessage | None:
    """Write the acknowledgement of an email that opened a ticket.

    Called by email intake (``s.mail.receive``, ``s.tickets.receive_mail``)
    when an email opens a new ticket and the CRM has a ``mail_sender``;
    never for a reply to a ticket, a duplicate, or a machine's mail
    (auto-replies, bounces, lists), and never for mail from the sender's
    own ``from_address``. The built-in plugin ``pycrm.acknowledgement``
    (:class:`pycrm.mail.MailAcknowledgement`) answers last.

    pycrm completes the message: ``To`` (the customer's address), ``From``
    (the sender's ``from_address``), the ticket's ``[#T-<id>]`` token in the
    subject, ``In-Reply-To`` and ``References`` (the customer's email, so
    their reply threads back), ``Auto-Submitted: auto-replied``,
    ``Date`` and ``Message-ID``. It is sent after the session commits, never
    for work that is rolled back; a send that fails is logged (logger
    ``pycrm.mail``) and the ticket stays.

    :param ticket: the ticket the email opened (routed already).
    :param mail: the email, parsed (:class:`pycrm.mail.InboundMail`).
    :param ctx: the rule context (``ctx.session`` reads as the intake's actor).
    :returns: an :class:`email.message.EmailMessage` to send, or None to let
        the next plugin decide (None from all: nothing is sent).

    Stops at first non-None result.
    """
