"""Activities: calls, emails, meetings and notes on the timeline."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from pycrm.domain.activities import Activity, ActivityKind
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.fields import Checks, check_bool, check_choice, check_json, check_text
from pycrm.domain.leads import Lead
from pycrm.domain.query import Eq, Filter, OrderBy, Range, all_of
from pycrm.domain.tasks import BehaviourEvent
from pycrm.errors import ValidationError
from pycrm.rules.context import RuleContext
from pycrm.services.records import RecordService, check_when, write
from pycrm.services.search import check_page, referenced

__all__ = ["ActivityService"]


def _kind(field: str, value: Any) -> ActivityKind:
    return check_choice(field, value, ActivityKind)


class ActivityService(RecordService[Activity]):
    """Interactions with customers and contacts, public or private to their author."""

    record_type = Activity
    events: ClassVar[Mapping[str, str]] = {"create": "activity_logged"}

    @write
    def log(
        self,
        kind: ActivityKind | str,
        subject: str,
        *,
        body: str | None = None,
        customer_id: str | None = None,
        contact_id: str | None = None,
        occurred_at: datetime | None = None,
        private: bool = False,
    ) -> Activity:
        """Record a call, email, meeting or note about a customer and/or contact.

        When only ``contact_id`` is given, the contact's customer is filled in,
        so the activity shows on the company's timeline too. A ``private``
        activity is visible to its author only.
        """
        with Checks() as checks:
            fields: dict[str, Any] = {
                "kind": checks(_kind, "kind", kind),
                "subject": checks(check_text, "subject", subject, required=True, limit=300),
                "body": checks(check_text, "body", body, limit=20_000, multiline=True),
                "private": checks(check_bool, "private", private),
                "occurred_at": self._s._now()
                if occurred_at is None
                else checks(check_when, "occurred_at", occurred_at),
            }
        if customer_id is None and contact_id is None:
            raise ValidationError("customer_id", None, "an activity needs a customer or a contact")
        referenced(self._s, Customer, "customer_id", customer_id)
        contact = referenced(self._s, Contact, "contact_id", contact_id)
        if contact is not None:
            if customer_id is None:
                customer_id = contact.customer_id
            elif contact.customer_id not in (None, customer_id):
                raise ValidationError("contact_id", contact_id, "works for another customer")
        record = Activity(
            **self._s._stamp(
                customer_id=customer_id,
                contact_id=contact_id,
                author_id=self._s.actor.id,
                **fields,
            )
        )
        self._repo.add(record)
        self._s._record("create", None, record, event=None if record.private else "activity_logged")
        return record

    @write
    def update(
        self, id: str, *, version: int | None = None, subject: Any = ..., body: Any = ...
    ) -> Activity:
        """Correct an activity's subject or body. Only its author may."""
        current = self._load(id)
        if current.author_id != self._s.actor.id and not self._s.actor.is_system:
            self._s._guard.deny("update", "activity", current.id, "only its author may")
        changes: dict[str, Any] = {}
        with Checks() as checks:
            if subject is not ...:
                changes["subject"] = checks(
                    check_text, "subject", subject, required=True, limit=300
                )
            if body is not ...:
                changes["body"] = checks(check_text, "body", body, limit=20_000, multiline=True)
        return self._change(current, version, "update", **changes)

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Activity]:
        """Every activity :meth:`list` finds with ``filters``, however many there are.

        Takes the filters of :meth:`list` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.activities.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.list, filters, page_size)

    def list(
        self,
        *,
        customer_id: str | None = None,
        contact_id: str | None = None,
        kind: ActivityKind | str | None = None,
        limit: int = 50,
        before: datetime | None = None,
    ) -> list[Activity]:
        """Activities, newest first, in one query; other users' private ones are never loaded.

        Returns the 50 newest by default (``limit`` up to 1,000); for the next page pass
        the last one's ``occurred_at`` as ``before``, or use :meth:`iter` for every one.
        """
        limit, _ = check_page(limit, 0)
        parts: list[Filter | None] = []
        if customer_id is not None:
            parts.append(Eq("customer_id", customer_id))
        if contact_id is not None:
            parts.append(Eq("contact_id", contact_id))
        if kind is not None:
            parts.append(Eq("kind", _kind("kind", kind)))
        if before is not None:
            parts.append(Range("occurred_at", None, check_when("before", before)))
        return self._find(
            all_of(parts),
            order_by=[OrderBy("occurred_at", descending=True), OrderBy("id", descending=True)],
            limit=limit,
        )

    @write
    def track(
        self,
        contact_id: str | None,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        lead_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> BehaviourEvent:
        """Record something a contact or lead did (``"viewed_pricing_page"``).

        The ``pycrm_followups`` hooks decide which tasks it creates: by
        default, when the CRM's ``followups`` name the event, a follow-up task
        goes to the owner of the open lead it names (a lead not yet routed:
        to sales), else to the owner of the contact (given, or the one a
        converted lead became; else its customer's owner, else sales). A
        lead's score is recomputed.
        """
        contact = referenced(self._s, Contact, "contact_id", contact_id)
        referenced(self._s, Lead, "lead_id", lead_id)
        if contact is None and lead_id is None:
            raise ValidationError("contact_id", None, "track needs a contact or a lead")
        name = check_text("event", event, required=True, limit=80)
        assert name is not None
        if properties is not None and not isinstance(properties, Mapping):
            raise ValidationError("properties", properties, "must be a mapping")
        props = check_json("properties", dict(properties or {}))
        when = self._s._now() if occurred_at is None else check_when("occurred_at", occurred_at)
        record = BehaviourEvent(
            **self._s._stamp(
                contact_id=contact_id,
                lead_id=lead_id,
                event=name,
                properties=props,
                occurred_at=when,
            )
        )
        self._s._uow.repo(BehaviourEvent).add(record)
        self._s._record("track", None, record)
        self._s._create_tasks(self._s.crm.rules.followups(record, RuleContext(self._s)))
        if record.lead_id is not None:
            lead = self._s._uow.repo(Lead).get(record.lead_id)
            if lead is not None and lead.is_open:
                with self._s._guard.bypass():
                    self._s.leads._rescore(lead)
        return record
