"""The built-in reminders: the tasks that keep the handoffs moving.

* ``lead_assigned`` (to a new owner, status ``assigned``) → a first-contact
  task for the owner, due within the CRM's ``first_contact_within``;
* ``payment_received`` → a task telling the deal owner;
* ``receivable_overdue`` → a task for finance;
* a tracked behaviour event named in the CRM's ``followups`` → a follow-up
  task: about an open lead, for the lead's owner; otherwise about the contact
  (given, or the one a converted lead became), for its (or its customer's)
  owner; for sales when nobody owns it;
* ``approval_delegated`` → a task for the delegate to decide the step;
* ``contract_renewal_due`` → a task for the subscription's owner (for sales
  when nobody owns it) to renew it, due on its last day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from pycrm.domain.customers import Contact, Customer
from pycrm.domain.events import Event
from pycrm.domain.leads import Lead
from pycrm.domain.money import Money
from pycrm.domain.tasks import BehaviourEvent, TaskPriority
from pycrm.rules.context import RuleContext, TaskSpec
from pycrm.rules.hookspecs import hookimpl

__all__ = ["Reminders"]


def _money(data: dict[str, str] | None) -> str:
    return str(Money.of(data["amount"], data["currency"])) if data else ""


class Reminders:
    """The built-in reminder rules (see the module docs)."""

    @hookimpl
    def pycrm_followups(
        self, event: Event | BehaviourEvent, ctx: RuleContext
    ) -> Sequence[TaskSpec] | None:
        """Tasks for the handoff events and configured behaviour events."""
        if isinstance(event, BehaviourEvent):
            return self._behaviour(event, ctx)
        after = event.after or {}
        if event.name == "lead_assigned" and after.get("status") == "assigned":
            label = after["name"] + (f" ({after['company']})" if after.get("company") else "")
            return [
                TaskSpec(
                    f"First contact: {label}",
                    assignee_id=after["owner_id"],
                    due_at=event.occurred_at + ctx.crm.first_contact_within,
                    priority=TaskPriority.HIGH,
                    kind="first_contact",
                    related_type="lead",
                    related_id=event.record_id,
                )
            ]
        if event.name == "payment_received" and after.get("owner_id"):
            payment = after["payments"][-1]
            return [
                TaskSpec(
                    f"Payment received: {_money(payment['amount'])} ({payment['reference']})",
                    assignee_id=after["owner_id"],
                    priority=TaskPriority.LOW,
                    kind="payment_received",
                    related_type="receivable",
                    related_id=event.record_id,
                )
            ]
        if event.name == "receivable_overdue":
            outstanding = Money.of(
                after["amount"]["amount"], after["amount"]["currency"]
            ) - Money.of(after["paid"]["amount"], after["paid"]["currency"])
            return [
                TaskSpec(
                    f"Overdue: {outstanding} due {after['due']}",
                    department="finance",
                    due_at=event.occurred_at,
                    priority=TaskPriority.HIGH,
                    kind="receivable_overdue",
                    related_type="receivable",
                    related_id=event.record_id,
                )
            ]
        if event.name == "approval_delegated":
            return _delegated(event, event.before or {}, after)
        if event.name == "contract_renewal_due":
            owner = after.get("owner_id")
            return [
                TaskSpec(
                    f"Renew: {after['title']} (ends {after['end']})",
                    assignee_id=owner,
                    department=None if owner else "sales",
                    due_at=datetime.combine(date.fromisoformat(after["end"]), time(), UTC),
                    priority=TaskPriority.HIGH,
                    kind="renewal",
                    related_type="contract",
                    related_id=event.record_id,
                )
            ]
        return None

    def _behaviour(self, event: BehaviourEvent, ctx: RuleContext) -> list[TaskSpec] | None:
        rule = ctx.crm.followups.get(event.event)
        if rule is None:
            return None
        uow = ctx.session._uow
        contact_id = event.contact_id
        lead = uow.repo(Lead).get(event.lead_id) if event.lead_id is not None else None
        if lead is not None and lead.is_open:
            # Behaviour matters most while the lead is worked: its owner follows up.
            label = lead.name + (f" ({lead.company})" if lead.company else "")
            return [
                TaskSpec(
                    rule.title.format(event=event.event, name=label),
                    assignee_id=lead.owner_id,
                    department=None if lead.owner_id else "sales",
                    due_at=event.occurred_at + rule.within,
                    priority=rule.priority,
                    kind="follow_up",
                    related_type="lead",
                    related_id=lead.id,
                )
            ]
        if contact_id is None and lead is not None:
            contact_id = lead.contact_id  # a converted lead: the contact it became
        if contact_id is None:
            return None
        contact = uow.repo(Contact).get(contact_id)
        if contact is None:
            return None
        owner = contact.owner_id
        if owner is None and contact.customer_id is not None:
            customer = uow.repo(Customer).get(contact.customer_id)
            owner = customer.owner_id if customer else None
        return [
            TaskSpec(
                rule.title.format(event=event.event, name=contact.name),
                assignee_id=owner,
                department=None if owner else "sales",
                due_at=event.occurred_at + rule.within,
                priority=rule.priority,
                kind="follow_up",
                related_type="contact",
                related_id=contact.id,
            )
        ]


def _delegated(
    event: Event, before: dict[str, Any], after: dict[str, Any]
) -> list[TaskSpec] | None:
    """The delegate's task: decide the step this event handed on.

    That is the delegated step that differs from the one before: two steps can
    be handed on at the same instant (a clock that stands still), so the latest
    ``delegated_at`` does not tell them apart.
    """
    old = before.get("approvals", ())
    handed = [
        step for step in after.get("approvals", ()) if step.get("delegated_to") and step not in old
    ]
    if not handed:
        return None
    step = handed[0]
    return [
        TaskSpec(
            f"Decide the {step['role']} approval of contract {after.get('title', '')}".strip(),
            assignee_id=step["delegated_to"],
            due_at=event.occurred_at,
            priority=TaskPriority.HIGH,
            kind="approval",
            related_type="contract",
            related_id=event.record_id,
            notes=step.get("reason"),
        )
    ]
