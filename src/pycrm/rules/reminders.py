"""The built-in reminders: the tasks that keep the handoffs moving.

* ``lead_assigned`` (to a new owner, status ``assigned``) → a first-contact
  task for the owner, due within the CRM's ``first_contact_within``;
* ``payment_received`` → a task telling the deal owner;
* ``receivable_overdue`` → a task for finance;
* a tracked behaviour event named in the CRM's ``followups`` → a follow-up
  task for the contact's (or its customer's) owner, else for sales.
"""

from __future__ import annotations

from collections.abc import Sequence

from pycrm.domain.customers import Contact, Customer
from pycrm.domain.events import Event
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
        return None

    def _behaviour(self, event: BehaviourEvent, ctx: RuleContext) -> list[TaskSpec] | None:
        rule = ctx.crm.followups.get(event.event)
        if rule is None or event.contact_id is None:
            return None
        uow = ctx.session._uow
        contact = uow.repo(Contact).get(event.contact_id)
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
