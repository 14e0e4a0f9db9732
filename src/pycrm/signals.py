"""Signals: how one department hears that another has done its part.

pycrm's signals live in one private blinker namespace. A signal is sent only
after the unit of work that caused it has committed (never for rolled-back
work), with the :class:`~pycrm.CRM` as sender and one frozen
:class:`~pycrm.domain.events.Event` as the ``event`` keyword::

    from pycrm import signals

    @signals.customer_created.connect
    def welcome(crm, event):
        print("new customer", event.record_id, event.after["name"])

A receiver that raises is logged and skipped: it cannot undo committed work
or keep other receivers from running.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

from pycrm.domain.events import Event

__all__ = [
    "activity_logged",
    "approval_delegated",
    "consent_changed",
    "contact_archived",
    "contact_created",
    "contact_updated",
    "contacts_merged",
    "contract_approved",
    "contract_recalled",
    "contract_renewal_due",
    "contract_renewed",
    "contract_rejected",
    "contract_signed",
    "contract_submitted",
    "customer_archived",
    "customer_created",
    "customer_updated",
    "customers_merged",
    "deal_lost",
    "deal_stage_changed",
    "deal_won",
    "dispatch",
    "erasure_completed",
    "lead_archived",
    "lead_assigned",
    "lead_captured",
    "lead_converted",
    "lead_deleted",
    "lead_disqualified",
    "leads_merged",
    "merge_undone",
    "payment_received",
    "quote_accepted",
    "quote_approved",
    "quote_denied",
    "quote_expired",
    "quote_rejected",
    "quote_sent",
    "quote_submitted",
    "receivable_created",
    "receivable_overdue",
    "satisfaction_recorded",
    "settings_changed",
    "signal_for",
    "task_created",
    "task_overdue",
    "ticket_assigned",
    "ticket_closed",
    "ticket_escalated",
    "ticket_opened",
    "ticket_reopened",
    "ticket_resolved",
    "user_created",
    "user_deactivated",
]

log = logging.getLogger("pycrm.signals")

_signals = Namespace()


def _signal(name: str, doc: str) -> Signal:
    return _signals.signal(name, doc=doc)


# Foundation: customers, contacts, activities, users.
customer_created = _signal("customer_created", "A customer was created. ``after``: the customer.")
customer_updated = _signal(
    "customer_updated", "A customer changed. ``before``/``after``: the customer."
)
customer_archived = _signal("customer_archived", "A customer was archived.")
contact_created = _signal("contact_created", "A contact was created. ``after``: the contact.")
contact_updated = _signal(
    "contact_updated", "A contact changed. ``before``/``after``: the contact."
)
contact_archived = _signal("contact_archived", "A contact was archived.")
activity_logged = _signal(
    "activity_logged",
    "A call, email, meeting or note was recorded (private ones are not announced).",
)
user_created = _signal("user_created", "A user was created. ``after``: the user.")
user_deactivated = _signal("user_deactivated", "A user was deactivated. ``after``: the user.")

# Marketing → sales.
lead_captured = _signal("lead_captured", "Marketing captured a lead. ``after``: the lead.")
lead_assigned = _signal(
    "lead_assigned",
    "A lead was given to a salesperson. ``after.owner_id``: who; ``after.assignment_reason``: why.",
)
lead_converted = _signal(
    "lead_converted",
    "A lead became a customer, contact and deal. ``after``: the lead with ``customer_id``, "
    "``contact_id`` and ``deal_id``.",
)
lead_disqualified = _signal(
    "lead_disqualified", "A lead was disqualified. ``after.disqualify_reason``: why."
)
lead_archived = _signal(
    "lead_archived", "A lead was archived: out of lists, kept for history. ``after``: the lead."
)
lead_deleted = _signal(
    "lead_deleted",
    "A lead was deleted. ``before``: the lead as it was; ``after`` is None. The audit keeps it.",
)

# Sales.
deal_stage_changed = _signal(
    "deal_stage_changed", "A deal moved to another stage. ``before``/``after``: the deal."
)
deal_won = _signal(
    "deal_won", "A deal was won: legal/finance may draft the contract. ``after``: the deal."
)
deal_lost = _signal("deal_lost", "A deal was lost. ``after.lost_reason``: why.")

# Sales → legal → finance.
contract_submitted = _signal(
    "contract_submitted",
    "A contract awaits approval. ``after.approvals``: the steps, with the roles that decide.",
)
contract_approved = _signal(
    "contract_approved", "Every approval step passed; the contract may be signed."
)
contract_rejected = _signal(
    "contract_rejected", "An approver rejected the contract. ``after.approvals``: who and why."
)
contract_recalled = _signal(
    "contract_recalled",
    "The owner took a submitted contract back to draft; its approval steps are dropped.",
)
approval_delegated = _signal(
    "approval_delegated",
    "An approver handed a pending approval step to another user "
    "(``after.approvals``: the step's ``delegated_to``); the delegate is given a task.",
)
contract_signed = _signal(
    "contract_signed", "The customer signed: finance now holds one receivable per instalment."
)
contract_renewal_due = _signal(
    "contract_renewal_due",
    "A subscription ends within its notice and does not renew itself: its owner is given a "
    "task to renew it. ``after``: the contract (``end``, ``notice_days``).",
)
contract_renewed = _signal(
    "contract_renewed",
    "A subscription was renewed: ``after`` is the next term's contract, signed, with its "
    "receivables; ``after.renewal_of`` names the term before.",
)

# Sales → the customer: quotes.
quote_submitted = _signal(
    "quote_submitted",
    "A quote needs approval before it is sent. ``after.approvals``: the steps and their roles.",
)
quote_approved = _signal(
    "quote_approved",
    "A quote's last approval step was approved, or it needed none: it can be sent.",
)
quote_denied = _signal(
    "quote_denied",
    "An approver refused a quote's step; it is a draft again. ``after.approvals`` says why.",
)
quote_sent = _signal(
    "quote_sent", "A quote went to the customer. ``after``: the quote and its lines."
)
quote_accepted = _signal(
    "quote_accepted",
    "The customer accepted a quote: its deal is won and ``after.contract_id`` names the contract.",
)
quote_rejected = _signal(
    "quote_rejected", "The customer turned a quote down. ``after.reject_reason`` says why."
)
quote_expired = _signal(
    "quote_expired",
    "A sent quote passed its ``valid_until`` day unanswered (``s.quotes.scan_expired``).",
)

# Finance → sales.
receivable_created = _signal(
    "receivable_created", "Finance has a new receivable. ``after``: the receivable."
)
payment_received = _signal(
    "payment_received",
    "A payment was applied. ``after``: the receivable; the deal owner is told by a task.",
)
receivable_overdue = _signal("receivable_overdue", "A receivable passed its due date unpaid.")

# Service.
ticket_opened = _signal(
    "ticket_opened", "A ticket was opened. ``after``: the ticket with its SLA due times."
)
ticket_assigned = _signal(
    "ticket_assigned",
    "A ticket was given to an agent (``after.assignee_id``, ``after.assignment_reason``).",
)
ticket_escalated = _signal(
    "ticket_escalated",
    "A ticket breached its SLA and was escalated (``after.escalation_level``, breach flags).",
)
ticket_resolved = _signal("ticket_resolved", "A ticket was resolved; the customer may now rate it.")
ticket_closed = _signal("ticket_closed", "A resolved ticket was closed.")
ticket_reopened = _signal("ticket_reopened", "A resolved or closed ticket was reopened.")
satisfaction_recorded = _signal(
    "satisfaction_recorded", "A customer rated a resolution (``after.csat_score``)."
)

# Data stewards.
customers_merged = _signal(
    "customers_merged",
    "Duplicate customers were merged. ``after``: the merge (survivor_id, merged_ids, changes).",
)
contacts_merged = _signal(
    "contacts_merged", "Duplicate contacts were merged. ``after``: the merge."
)
leads_merged = _signal("leads_merged", "Duplicate leads were merged. ``after``: the merge.")
merge_undone = _signal(
    "merge_undone", "A merge was undone; the records are as they were before it."
)

# Privacy.
consent_changed = _signal(
    "consent_changed",
    "A lead or contact granted or withdrew consent (``s.consent``). ``after``: the consent "
    "(``subject_type``, ``subject_id``, ``purpose``, ``channel``, ``granted``, ``at``, ``method``).",
)
erasure_completed = _signal(
    "erasure_completed",
    "A person was erased (``s.privacy.erase``): erase your own copies. The event's record is "
    "the lead or contact named; ``after``: ``person_ids`` (every lead and contact that is the "
    "same person) and ``counts``. It carries none of the erased values.",
)

# Everyone.
task_created = _signal("task_created", "A task or reminder was created. ``after``: the task.")
task_overdue = _signal(
    "task_overdue",
    "The overdue sweep found an open task past its due time (``after.overdue_at``).",
)

# Admins.
settings_changed = _signal(
    "settings_changed",
    "A runtime setting was set or reset (``s.settings``). ``after``: the setting, its "
    "``name`` and ``config`` (``{'value': …}``, None after a reset); ``before``: the old config.",
)


def signal_for(name: str) -> Signal:
    """The signal called ``name``."""
    return _signals.signal(name)


def dispatch(sender: Any, events: list[Event]) -> None:
    """Send each event to its signal's receivers; log and skip a receiver that raises."""
    for event in events:
        signal = signal_for(event.name)
        for receiver in list(signal.receivers_for(sender)):
            try:
                receiver(sender, event=event)
            except Exception:
                log.exception(
                    "receiver %r of %s failed for event %s", receiver, event.name, event.id
                )
