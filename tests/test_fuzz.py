"""Every public call refuses hostile arguments with a pycrm error, naming them, and changes nothing.

The public surface is found by introspection: every service on
:class:`~pycrm.session.Session` (each ``functools.cached_property`` whose
value is a :class:`~pycrm.services.records.Service`) and every public method
of its class. :data:`CALLS` says how to call each method with valid
arguments; a method or parameter missing from it fails
:func:`test_every_public_method_is_in_the_call_table`, so nothing new slips
past the fuzzing.

Each trial puts one hostile value in one argument (or in one item inside a
list or mapping argument), all else valid, and checks that:

- only :class:`~pycrm.errors.CRMError` subclasses escape, never
  :class:`~pycrm.errors.StorageError` (a refused value is the caller's fault,
  and no database may be handed a value it cannot bind);
- a :class:`~pycrm.errors.ValidationError` names the argument: its ``field`` is
  the argument's name, or starts with ``name.`` or ``name[``;
- the store is as it was (:func:`tests.support.snapshot`), after the session
  that saw the refusal commits.

:func:`test_hostile_arguments` tries every argument and every item in turn,
with two hostile values in rotation; :func:`test_hostile_arguments_sampled`
lets hypothesis pick the method, the place and the value (hostile or
generated). ``PYCRM_FUZZ_EXAMPLES`` sets how many examples hypothesis runs
(default 40); at 1,000 or more the enumeration tries every hostile value
everywhere too. ``nox -s fuzz`` runs it long.
"""

from __future__ import annotations

import copy
import functools
import inspect
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm.domain import RECORD_TYPES, Customer
from pycrm.domain.values import Kind, field_kinds, kind_of_type
from pycrm.errors import CRMError, StorageError, ValidationError
from pycrm.services.records import Service
from pycrm.session import Session
from support import refused, snapshot

#: Hypothesis examples per backend; at LONG or more, every hostile value goes everywhere.
EXAMPLES = int(os.environ.get("PYCRM_FUZZ_EXAMPLES", "40"))
LONG = 1000

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 2, 5, 9, 0, tzinfo=UTC)
EUR = ("1000.00", "EUR")


class _Omit:
    """A parameter left at its default unless it is the one being fuzzed."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()


@dataclass(frozen=True)
class Ref:
    """A record of the world built by :func:`build_world`, by its attribute name."""

    name: str


class FixedRates:
    """A rate source with one rate."""

    name = "fixed"

    def rates(self, on: date) -> dict[tuple[str, str], Decimal]:
        return {("GBP", "EUR"): Decimal("1.17")}


@dataclass(frozen=True)
class Fresh:
    """A value made anew for each call (an open file)."""

    make: Callable[[], Any]


#: Hostile values, by label. Each is wrong for most parameters it is tried on.
HOSTILE: dict[str, Any] = {
    "nul": "a\x00b",
    "surrogate": "\ud800",
    "long": "x" * 100_000,
    "huge": 10**30,
    "negative": -1,
    "nan": float("nan"),
    "inf": float("-inf"),
    "snan": Decimal("sNaN"),
    "decimal_nan": Decimal("NaN"),
    "list": ["customer"],
    "dict": {"name": ["name"]},
    "object": object(),
    "bytes": b"\xff\x00",
    "naive": datetime(2026, 1, 5, 9, 0),
    "date": date(2026, 1, 5),
    "bool": True,
    "text": "2",
}


def _rows(**row: str) -> list[dict[str, str]]:
    return [row]


#: How to call each public method: parameter → a valid value (OMIT: left at its
#: default). For methods taking ``**fields`` or ``**options``, the extra keys are
#: ones they accept. Each valid call succeeds in the world of :func:`build_world`.
CALLS: dict[str, dict[str, Any]] = {
    # -- customers -------------------------------------------------------------
    "customers.archive": {"id": Ref("customer3"), "version": OMIT},
    "customers.as_of": {"id": Ref("customer"), "when": NOW},
    "customers.assess": {
        "id": Ref("customer"), "attribute": "grade", "value": "B", "source": "sales", "note": "ok",
    },
    "customers.assessments": {"id": Ref("customer"), "attribute": "grade"},
    "customers.consolidated": {"id": Ref("customer"), "attribute": "grade"},
    "customers.count": {"include_archived": True},
    "customers.create": {
        "name": "Omega GmbH", "industry": "retail", "size": 10, "annual_revenue": EUR,
        "grade": "A", "region": "EMEA", "website": "https://omega.example",
        "address": {"city": "Berlin", "country": "DE"}, "emails": ["o@omega.example"],
        "phones": ["+49 30 7654321"], "tags": ["vip"], "owner_id": Ref("rep"),
        "source": "web", "categories": ["sector/energy"],
        "custom": {"tier": "gold", "headcount": 5}, "on_duplicate": "allow", "lenient": False,
        "phone_region": "DE",
    },
    "customers.get": {"id": Ref("customer")},
    "customers.history": {"id": Ref("customer"), "field": "name"},
    "customers.history_of_assessments": {"id": Ref("customer")},
    "customers.restore": {"id": Ref("customer3"), "version": OMIT},
    "customers.iter": {"page_size": 10, "text": "Acme", "industry": "machinery", "include_archived": True},
    "customers.rule_for": {"attribute": "grade"},
    "customers.search": {
        "text": "Acme", "email": "info@acme.example", "phone": "+49 30 1234567", "tag": "vip",
        "industry": "machinery", "region": "EMEA", "owner_id": Ref("rep"),
        "category": "sector", "custom": {"tier": "gold"}, "include_archived": False,
        "limit": 10, "offset": 0,
    },
    "customers.timeline": {"id": Ref("customer"), "limit": 10, "before": NOW},
    "customers.update": {
        "id": Ref("customer"), "version": OMIT, "name": "Acme Two GmbH", "industry": "retail",
        "size": 12, "annual_revenue": EUR, "grade": "B", "region": "EMEA",
        "website": "https://acme.example", "address": {"city": "Bonn"},
        "emails": ["sales@acme.example"], "phones": ["+49 30 1111111"], "tags": ["key"],
        "owner_id": Ref("rep"), "source": "web", "categories": ["sector/energy"], "custom": {"tier": "silver"}, "on_duplicate": "allow",
        "lenient": False,
    },
    "customers.view": {"id": Ref("customer"), "activities": 5},
    # -- contacts --------------------------------------------------------------
    "contacts.archive": {"id": Ref("contact"), "version": OMIT},
    "contacts.as_of": {"id": Ref("contact"), "when": NOW},
    "contacts.create": {
        "name": "Otto", "customer_id": Ref("customer"), "title": "CTO",
        "emails": ["otto@acme.example"], "phones": ["+49 30 2222222"],
        "address": {"city": "Berlin"}, "tags": ["tech"], "owner_id": Ref("rep"),
        "source": "web", "categories": ["sector"],
        "on_duplicate": "allow", "lenient": False, "custom": OMIT,
        "given_name": "Otto", "family_name": "Meyer", "name_order": "given_first",
        "phone_region": "DE",
    },
    "contacts.get": {"id": Ref("contact")},
    "contacts.history": {"id": Ref("contact"), "field": "name"},
    "contacts.iter": {"page_size": 10, "text": "Anna", "email": "anna@acme.example", "customer_id": Ref("customer")},
    "contacts.search": {
        "text": "Anna", "email": "anna@acme.example", "phone": "+49 30 1234567",
        "company": "Acme", "customer_id": Ref("customer"), "tag": "tech", "category": "sector",
        "custom": OMIT, "include_archived": False, "limit": 10, "offset": 0,
        "given_name": "Anna", "family_name": "Meyer",
    },
    "contacts.timeline": {"id": Ref("contact"), "limit": 10, "before": NOW},
    "contacts.update": {
        "id": Ref("contact"), "version": OMIT, "name": "Anna B", "title": "CEO",
        "customer_id": Ref("customer2"), "emails": ["anna.b@acme.example"],
        "phones": ["+49 30 3333333"], "tags": ["x"], "owner_id": Ref("rep"),
        "on_duplicate": "allow", "lenient": False, "family_name": "Berg", "phone_region": "DE",
    },
    # -- activities ------------------------------------------------------------
    "activities.as_of": {"id": Ref("activity"), "when": NOW},
    "activities.get": {"id": Ref("activity")},
    "activities.history": {"id": Ref("activity"), "field": "subject"},
    "activities.iter": {"page_size": 10, "customer_id": Ref("customer"), "kind": "call", "before": NOW},
    "activities.list": {
        "customer_id": Ref("customer"), "contact_id": OMIT, "kind": "call", "limit": 10,
        "before": NOW,
    },
    "activities.log": {
        "kind": "call", "subject": "Follow-up", "body": "Said yes", "customer_id": Ref("customer"),
        "contact_id": Ref("contact"), "occurred_at": NOW, "private": False,
    },
    "activities.track": {
        "contact_id": Ref("contact"), "event": "viewed_pricing_page",
        "properties": {"page": "/pricing"}, "lead_id": OMIT, "occurred_at": NOW,
    },
    "activities.update": {"id": Ref("activity"), "version": OMIT, "subject": "Hi", "body": "b"},
    # -- org -------------------------------------------------------------------
    "org.add_to_team": {"user_id": Ref("rep2"), "team_id": Ref("team")},
    "org.as_of": {"id": Ref("rep"), "when": NOW},
    "org.create_department": {"key": "research", "name": "Research"},
    "org.create_team": {"name": "Service A", "department": "service", "manager_id": Ref("agent")},
    "org.create_user": {
        "name": "Uma", "email": "uma@corp.example", "department": "sales",
        "roles": ["sales_rep"], "team_ids": [Ref("team")], "manager_id": Ref("rep"),
        "skills": ["german"], "on_leave": False, "capacity": 10,
        "working_hours": {"timezone": "Europe/Berlin", "mon": "09:00-17:00"},
        "regions": ["DACH"], "languages": ["de"],
    },
    "org.deactivate_user": {"id": Ref("rep2"), "version": OMIT, "reassign_to": Ref("rep")},
    "org.departments": {},
    "org.find_user": {"email": "sam@corp.example"},
    "org.get": {"id": Ref("rep")},
    "org.get_team": {"id": Ref("team")},
    "org.get_user": {"id": Ref("rep")},
    "org.history": {"id": Ref("rep"), "field": "name"},
    "org.reactivate_user": {"id": Ref("rep2"), "version": OMIT},
    "org.teams": {"department": "sales"},
    "org.update_user": {
        "id": Ref("rep2"), "version": OMIT, "name": "Sue B", "email": "sueb@corp.example",
        "department": "service", "roles": ["agent"], "team_ids": [Ref("team")],
        "manager_id": Ref("rep"), "skills": ["french"], "on_leave": True, "capacity": 3,
        "regions": ["Nordics"], "languages": ["sv"],
    },
    "org.users": {"department": "sales", "team_id": Ref("team"), "active": True},
    # -- audit -----------------------------------------------------------------
    "audit.iter": {"page_size": 10, "record_type": "customer", "action": "create", "since": NOW},
    "audit.find": {
        "actor_id": Ref("admin"), "record_id": Ref("customer"), "record_type": "customer",
        "action": "create", "since": NOW, "until": NOW, "limit": 10, "offset": 0,
    },
    # -- dedupe ----------------------------------------------------------------
    "dedupe.check": {
        "record_type": "customer", "name": "Acme GmbH", "emails": ["info@acme.example"],
        "phones": ["+49 30 1234567"], "email": "x@acme.example", "phone": OMIT,
        "industry": "machinery",
    },
    "dedupe.cleansing_report": {"record_type": "customer"},
    "dedupe.fit": {"record_type": "customer", "identifying": {"headcount": "number"}},
    "dedupe.link": {
        "source_a": [{"name": "Acme GmbH", "emails": ["info@acme.example"]}],
        "source_b": "customer", "record_type": "customer", "threshold": 0.5, "one_to_one": True,
    },
    "dedupe.models": {"record_type": "customer"},
    "dedupe.merge": {
        "survivor_id": Ref("customer"), "duplicate_ids": [Ref("customer2")],
        "record_type": "customer", "rules": {"name": "most_recent"}, "dry_run": True,
    },
    "dedupe.scan": {"record_type": "customer", "threshold": 0.9},
    "dedupe.unmerge": {"merge_id": Ref("merge")},
    # -- leads -----------------------------------------------------------------
    "leads.archive": {"id": Ref("lead_new"), "version": OMIT},
    "leads.as_of": {"id": Ref("lead"), "when": NOW},
    "leads.assign": {"id": Ref("lead"), "owner_id": Ref("rep"), "reason": "DACH"},
    "leads.candidates": {"at": NOW},
    "mail.receive": {
        "message": b"From: a@b.example\nSubject: Help\nMessage-ID: <m2@b.example>\n\nHi\n",
        "to": "ticket", "category": "machines", "priority": "high",
        "source": OMIT, "campaign": OMIT,
    },
    "leads.receive_mail": {
        "message": b"From: Lou <lou@x.example>\nSubject: Offer\nMessage-ID: <q@x>\n\nPrices?\n",
        "source": "email", "campaign": "Spring",
    },
    "leads.capture": {
        "name": "Nina", "source": "webform", "email": "nina@n.example", "phone": "+49 30 4444444",
        "company": "Nina AG", "title": "CEO", "campaign": "Spring", "region": "DACH",
        "industry": "retail", "needs": "A lot", "tags": ["hot"],
        "categories": ["sector"], "custom": OMIT, "on_duplicate": "allow", "lenient": False,
        "given_name": "Nina", "family_name": "Roth", "name_order": "given_first",
        "phone_region": "DE",
    },
    "leads.convert": {
        "id": Ref("lead_qualified"), "customer_id": OMIT, "deal_name": "New deal", "amount": EUR,
        "expected_close": date(2026, 6, 30), "pipeline": "default",
    },
    "leads.delete": {"id": Ref("lead_new"), "version": OMIT},
    "leads.disqualify": {"id": Ref("lead"), "reason": "No budget", "version": OMIT},
    "leads.explain_assignment": {"id": Ref("lead")},
    "leads.get": {"id": Ref("lead")},
    "leads.history": {"id": Ref("lead"), "field": "status"},
    "leads.iter": {"page_size": 10, "status": "new", "source": "webform", "owner_id": Ref("rep")},
    "leads.mark_contacted": {"id": Ref("lead_assigned"), "version": OMIT},
    "leads.preview_assignment": {
        "source": "webform", "name": "Pia", "region": "DACH", "industry": "retail",
        "company": "Pia AG",
    },
    "leads.qualify": {"id": Ref("lead_contacted"), "version": OMIT},
    "leads.restore": {"id": Ref("lead_archived"), "version": OMIT},
    "leads.route": {"id": Ref("lead")},
    "leads.search": {
        "text": "Leo", "status": "new", "owner_id": Ref("rep"), "source": "webform",
        "campaign": "Spring", "region": "DACH", "tag": "hot", "category": "sector",
        "custom": OMIT, "include_archived": True, "limit": 10, "offset": 0,
        "given_name": "Leo", "family_name": "Roth",
    },
    "leads.update": {
        "id": Ref("lead"), "version": OMIT, "name": "Leo B", "company": "Leo AG",
        "region": "DACH", "needs": "More", "tags": ["warm"], "emails": ["leo.b@x.example"],
    },
    # -- deals -----------------------------------------------------------------
    "deals.as_of": {"id": Ref("deal"), "when": NOW},
    "deals.create": {
        "name": "Upsell", "customer_id": Ref("customer"), "amount": EUR, "pipeline": "default",
        "stage": OMIT, "contact_id": Ref("contact"), "lead_id": OMIT,
        "expected_close": date(2026, 6, 30), "owner_id": Ref("rep"), "probability": 50,
        "source": "web", "campaign": "Spring", "custom": OMIT,
    },
    "deals.create_pipeline": {
        "key": "enterprise", "name": "Enterprise",
        "stages": [("lead", "Lead", 10), ("proposal", "Proposal", 50)],
    },
    "deals.get": {"id": Ref("deal")},
    "deals.history": {"id": Ref("deal"), "field": "stage"},
    "deals.iter": {"page_size": 10, "customer_id": Ref("customer"), "status": "open"},
    "deals.list": {
        "customer_id": Ref("customer"), "owner_id": Ref("rep"), "status": "open", "limit": 10,
        "offset": 0,
    },
    "deals.lose": {"id": Ref("deal"), "reason": "Too expensive", "version": OMIT},
    "deals.move": {"id": Ref("deal"), "stage": "proposal", "probability": 60, "version": OMIT},
    "deals.pipeline": {"key": "default"},
    "deals.pipelines": {},
    "deals.update": {
        "id": Ref("deal"), "version": OMIT, "name": "Bigger", "amount": EUR,
        "expected_close": date(2026, 7, 31), "owner_id": Ref("rep"), "probability": 40,
    },
    "deals.win": {"id": Ref("deal"), "version": OMIT},
    # -- contracts -------------------------------------------------------------
    "contracts.activate": {"id": Ref("contract")},
    "contracts.approve": {"id": Ref("pending"), "comment": "fine"},
    "contracts.as_of": {"id": Ref("contract"), "when": NOW},
    "contracts.awaiting": {"role": "legal"},
    "contracts.complete": {"id": Ref("active")},
    "contracts.delegate": {
        "id": Ref("pending"), "to": Ref("rep"), "role": "legal", "version": OMIT,
    },
    "contracts.draft": {
        "deal_id": Ref("won"), "title": "Second", "amount": OMIT, "list_amount": EUR,
        "discount_percent": 5, "standard_terms": False, "terms": "Net 60",
        "start": date(2026, 2, 1), "end": date(2027, 1, 31), "instalments": 2,
        "first_due": date(2026, 3, 1), "every_months": 1, "schedule": OMIT, "custom": OMIT,
        "billing_period": OMIT, "recurring": OMIT, "auto_renew": False, "notice_days": 30,
    },
    "contracts.get": {"id": Ref("contract")},
    "contracts.history": {"id": Ref("contract"), "field": "status"},
    "contracts.iter": {"page_size": 10, "customer_id": Ref("customer"), "status": "signed"},
    "contracts.list": {
        "customer_id": Ref("customer"), "status": "signed", "limit": 10, "offset": 0,
    },
    "contracts.recall": {"id": Ref("pending"), "version": OMIT},
    "contracts.reject": {"id": Ref("pending"), "comment": "no"},
    "contracts.renew": {"id": Ref("subscription"), "recurring": EUR, "end": OMIT},
    "contracts.scan_renewals": {},
    "contracts.revise": {
        "id": Ref("rejected"), "discount_percent": 3, "standard_terms": True, "terms": "Net 30",
    },
    "contracts.sign": {"id": Ref("approved"), "signed_at": NOW},
    "contracts.submit": {"id": Ref("draft")},
    "contracts.terminate": {"id": Ref("contract"), "reason": "Breach"},
    # -- receivables -----------------------------------------------------------
    "receivables.as_of": {"id": Ref("receivable"), "when": NOW},
    "receivables.find_payment": {"reference": "BANK-1"},
    "receivables.get": {"id": Ref("receivable")},
    "receivables.history": {"id": Ref("receivable"), "field": "status"},
    "receivables.iter": {"page_size": 10, "customer_id": Ref("customer"), "status": "open"},
    "receivables.list": {
        "customer_id": Ref("customer"), "contract_id": Ref("contract"), "status": "open",
        "limit": 10, "offset": 0,
    },
    "receivables.record_payment": {
        "id": Ref("receivable"), "amount": ("10.00", "EUR"), "reference": "BANK-2",
        "received_at": NOW, "allow_overpayment": False,
    },
    "receivables.scan_overdue": {},
    "receivables.write_off": {"id": Ref("receivable"), "reason": "Insolvent"},
    # -- tickets ---------------------------------------------------------------
    "tickets.as_of": {"id": Ref("ticket"), "when": NOW},
    "tickets.assign": {"id": Ref("ticket"), "assignee_id": Ref("agent"), "reason": "on duty"},
    "tickets.breaches": {"at": NOW},
    "tickets.candidates": {"at": NOW},
    "tickets.close": {"id": Ref("resolved")},
    "tickets.customer_reply": {"id": Ref("ticket"), "body": "Still broken"},
    "tickets.escalate": {"at": NOW},
    "tickets.get": {"id": Ref("ticket")},
    "tickets.history": {"id": Ref("ticket"), "field": "status"},
    "tickets.link_article": {"id": Ref("ticket"), "article_id": Ref("article")},
    "tickets.iter": {"page_size": 10, "customer_id": Ref("customer"), "priority": "normal", "open_only": True},
    "tickets.list": {
        "customer_id": Ref("customer"), "assignee_id": Ref("agent"), "status": "new",
        "priority": "normal", "open_only": True, "limit": 10, "offset": 0,
    },
    "tickets.note": {"id": Ref("ticket"), "body": "Internal"},
    "tickets.open": {
        "subject": "Noise", "channel": "phone", "customer_id": Ref("customer"),
        "contact_id": Ref("contact"), "description": "Loud", "category": "hardware",
        "skills": ["german"], "priority": "high", "deal_id": OMIT, "contract_id": OMIT,
        "custom": OMIT,
    },
    "tickets.rate": {"id": Ref("resolved"), "score": 5, "comment": "Great"},
    "tickets.reopen": {"id": Ref("resolved"), "reason": "Again"},
    "tickets.receive_mail": {
        "message": b"From: a@b.example\nSubject: Help\nMessage-ID: <m1@b.example>\n\nHi\n",
        "category": "machines", "priority": "high",
    },
    "tickets.reply": {"id": Ref("ticket"), "body": "Try this", "public": True},
    "tickets.resolve": {"id": Ref("working"), "note": "Fixed"},
    "tickets.route": {"id": Ref("ticket")},
    "tickets.start": {"id": Ref("assigned")},
    "tickets.update": {
        "id": Ref("ticket"), "version": OMIT, "subject": "Loud noise", "description": "Very",
        "priority": "urgent", "category": "hardware", "channel": "phone", "skills": ["german"],
        "custom": OMIT,
    },
    "tickets.wait_on_customer": {"id": Ref("working")},
    # -- articles --------------------------------------------------------------
    "articles.as_of": {"id": Ref("article"), "when": NOW},
    "articles.create": {
        "title": "Reset", "body": "Press reset", "tags": ["howto"], "category": "hardware",
        "publish": False,
    },
    "articles.faq": {"text": "how to", "limit": 3},
    "articles.get": {"id": Ref("article")},
    "articles.history": {"id": Ref("article"), "field": "title"},
    "articles.publish": {"id": Ref("article")},
    "articles.search": {"text": "how", "tag": "x", "published_only": True, "limit": 5},
    "articles.unpublish": {"id": Ref("article")},
    "articles.update": {
        "id": Ref("article"), "version": OMIT, "title": "How to 2", "body": "Do that",
        "tags": ["y"], "category": "hardware",
    },
    # -- products --------------------------------------------------------------
    "products.activate": {"id": Ref("product")},
    "products.as_of": {"id": Ref("product"), "when": NOW},
    "products.by_external_id": {"external_id": "erp-1"},
    "products.by_sku": {"sku": "PR-100"},
    "products.create": {
        "sku": "PR-200", "name": "Press 200t", "description": "Hydraulic", "unit": "piece",
        "tax_category": "standard", "cost": EUR, "active": True, "categories": OMIT,
        "external_id": "erp-2", "custom": OMIT,
    },
    "products.deactivate": {"id": Ref("product")},
    "products.get": {"id": Ref("product")},
    "products.history": {"id": Ref("product"), "field": "name"},
    "products.list": {"text": "press", "active": True, "category": OMIT, "limit": 5, "offset": 0},
    "products.update": {
        "id": Ref("product"), "version": OMIT, "name": "Press 100t (2026)", "unit": "piece",
        "cost": EUR, "sku": "PR-101",
    },
    "products.upsert": {"sku": "PR-100", "name": "Press", "description": "Hydraulic press"},
    # -- price lists -------------------------------------------------------------
    "price_lists.activate": {"id": Ref("price_list")},
    "price_lists.as_of": {"id": Ref("price_list"), "when": NOW},
    "price_lists.create": {
        "name": "Wholesale", "currency": "EUR", "customer_group": "wholesale", "region": "DACH",
        "valid_from": date(2026, 1, 1), "valid_until": date(2026, 12, 31), "active": True,
    },
    "price_lists.deactivate": {"id": Ref("price_list")},
    "price_lists.get": {"id": Ref("price_list")},
    "price_lists.history": {"id": Ref("price_list"), "field": "name"},
    "price_lists.list": {"active": True, "limit": 5, "offset": 0},
    "price_lists.price": {
        "product_id": Ref("product"), "quantity": 3, "customer_id": Ref("customer"),
        "currency": "EUR", "on": date(2026, 3, 1),
    },
    "price_lists.prices": {"price_list_id": Ref("price_list"), "product_id": Ref("product")},
    "price_lists.set_price": {
        "price_list_id": Ref("price_list"), "product_id": Ref("product"),
        "unit_price": ("95.00", "EUR"), "min_quantity": 5,
    },
    "price_lists.update": {
        "id": Ref("price_list"), "version": OMIT, "name": "Standard 2026", "region": "DACH",
        "valid_from": date(2026, 1, 1),
    },
    # -- quotes ------------------------------------------------------------------
    "quotes.accept": {
        "id": Ref("quote_sent"), "bill_in": "USD", "instalments": 2, "first_due": date(2026, 7, 1),
        "every_months": 1, "start": date(2026, 2, 1), "end": date(2026, 12, 31),
        "auto_renew": False, "notice_days": 30,
    },
    "quotes.add_line": {
        "id": Ref("quote"), "product_id": Ref("product"), "quantity": 3, "unit_price": EUR,
        "description": "Press, installed", "discount_percent": 5, "tax_rate": 19, "version": OMIT,
    },
    "quotes.approve": {"id": Ref("quote_pending"), "comment": "fine"},
    "quotes.as_of": {"id": Ref("quote"), "when": NOW},
    "quotes.deny": {"id": Ref("quote_pending"), "comment": "too much"},
    "quotes.draft": {
        "deal_id": Ref("deal"), "title": "Offer", "currency": "EUR",
        "valid_until": date(2026, 3, 1), "notes": "Net 30",
        "lines": [{"product_id": Ref("product"), "quantity": 2, "discount_percent": 5},
                  {"description": "Setup", "unit_price": EUR, "tax_rate": 7}],
        "custom": OMIT, "billing_period": "monthly",
    },
    "quotes.get": {"id": Ref("quote")},
    "quotes.history": {"id": Ref("quote"), "field": "lines"},
    "quotes.iter": {"page_size": 10, "deal_id": Ref("deal"), "status": "draft"},
    "quotes.list": {
        "deal_id": Ref("deal"), "customer_id": Ref("customer"), "status": "draft", "limit": 5,
        "offset": 0,
    },
    "quotes.reject": {"id": Ref("quote_sent"), "reason": "Too dear"},
    "quotes.remove_line": {"id": Ref("quote"), "line": 1, "version": OMIT},
    "quotes.revise": {"id": Ref("quote_sent"), "valid_until": date(2026, 3, 1)},
    "quotes.scan_expired": {},
    "quotes.send": {"id": Ref("quote")},
    "quotes.submit": {"id": Ref("quote")},
    "quotes.update": {
        "id": Ref("quote"), "version": OMIT, "title": "Offer 2", "valid_until": date(2026, 3, 1),
        "notes": "Net 60", "billing_period": "yearly",
    },
    "quotes.update_line": {
        "id": Ref("quote"), "line": 1, "version": OMIT, "quantity": 5, "unit_price": EUR,
        "description": "Two presses", "discount_percent": 5, "tax_rate": 7,
    },
    "quotes.versions": {"id": Ref("quote")},
    # -- rates -------------------------------------------------------------------
    "rates.as_of": {"id": Ref("rate"), "when": NOW},
    "rates.convert": {"money": Fresh(lambda: pycrm.Money.of("100", "USD")), "to": "EUR",
                      "on": date(2026, 3, 1)},
    "rates.fetch": {"source": Fresh(lambda: FixedRates()), "on": date(2026, 3, 1)},
    "rates.get": {"id": Ref("rate")},
    "rates.history": {"id": Ref("rate"), "field": "rate"},
    "rates.list": {"base": "USD", "quote": "EUR", "limit": 5, "offset": 0},
    "rates.set": {"base": "USD", "quote": "EUR", "rate": "0.93", "on": date(2026, 2, 1),
                  "source": "manual"},
    "rates.to_reporting": {"money": Fresh(lambda: pycrm.Money.of("100", "USD")),
                           "on": date(2026, 3, 1)},
    # -- analytics -------------------------------------------------------------
    "analytics.aging": {
        "as_of": date(2026, 8, 1), "in_reporting_currency": True, "rates_on": date(2026, 3, 1),
    },
    "analytics.forecast": {
        "period": "month", "owner_id": Ref("rep"), "custom": OMIT,
        "in_reporting_currency": True, "rates_on": date(2026, 3, 1),
    },
    "analytics.funnel": {
        "by": "source", "since": NOW, "until": NOW, "period": "month", "custom": OMIT,
    },
    "analytics.rfm": {
        "as_of": date(2026, 8, 1), "in_reporting_currency": True, "rates_on": date(2026, 3, 1),
    },
    "analytics.subscriptions": {
        "as_of": date(2026, 8, 1), "in_reporting_currency": True, "rates_on": date(2026, 3, 1),
    },
    "analytics.service": {"by": "priority", "since": NOW, "until": NOW, "custom": OMIT},
    "analytics.stage_funnel": {
        "pipeline": "default", "by": "owner", "since": NOW, "until": LATER, "period": "month",
    },
    "analytics.set_quota": {
        "period": "2026-04", "amount": EUR, "owner_id": Ref("rep"), "team_id": OMIT,
    },
    "analytics.sources": {
        "by": "source", "in_reporting_currency": True, "rates_on": date(2026, 3, 1),
    },
    "analytics.win_rate": {
        "by": "owner", "since": NOW, "until": NOW, "custom": OMIT,
        "in_reporting_currency": True, "rates_on": date(2026, 3, 1),
    },
    # -- campaigns -------------------------------------------------------------
    "campaigns.as_of": {"id": Ref("campaign"), "when": NOW},
    "campaigns.by_name": {"name": "Spring"},
    "campaigns.campaign_members": {"id": Ref("campaign")},
    "campaigns.compile": {
        "target": "customer",
        "rule": {"all": [
            {"field": "industry", "op": "in", "value": ["machinery", "retail"]},
            {"field": "customer_since", "op": "gte", "value": date(2025, 1, 1)},
            {"not": {"field": "tag", "op": "has", "value": "do not contact"}},
        ]},
    },
    "campaigns.count": {"segment": "Machinery", "purpose": OMIT, "channel": "email"},
    "campaigns.create": {
        "name": "Autumn", "channel": "email", "budget": EUR, "start": date(2026, 9, 1),
        "end": date(2026, 9, 30), "segment": "Machinery",
    },
    "campaigns.create_segment": {
        "name": "Retail", "target": "customer",
        "rule": {"any": [
            {"field": "industry", "op": "eq", "value": "retail"},
            {"field": "total_order_amount", "op": "gte", "value": ["500", "EUR"]},
        ]},
        "description": "Shops",
    },
    "campaigns.finish": {"id": Ref("campaign")},
    "campaigns.get": {"id": Ref("campaign")},
    "campaigns.history": {"id": Ref("campaign"), "field": "status"},
    "campaigns.members": {
        "segment": "Buyers", "limit": 10, "offset": 0, "purpose": "marketing", "channel": "email",
    },
    "campaigns.record_response": {
        "id": Ref("running"), "response": "clicked", "customer_id": Ref("customer"),
        "contact_id": OMIT,
    },
    "campaigns.segments": {},
    "campaigns.snapshot": {"id": Ref("campaign"), "purpose": OMIT, "channel": "email"},
    # -- consent ---------------------------------------------------------------
    "consent.allows": {"subject_id": Ref("contact"), "purpose": "marketing", "channel": "sms"},
    "consent.current": {"subject_id": Ref("contact")},
    "consent.grant": {
        "subject_id": Ref("lead"), "purpose": "marketing", "channel": "email", "method": "form",
        "proof": {"form": "contact-us", "ip": "203.0.113.9"}, "at": NOW,
    },
    "consent.history": {"subject_id": Ref("lead")},
    "consent.withdraw": {
        "subject_id": Ref("contact"), "purpose": "profiling", "channel": "any", "method": "call",
        "proof": {"call": "2026-01-05"}, "at": NOW,
    },
    # -- privacy ---------------------------------------------------------------
    "privacy.access_request": {"subject_id": Ref("contact")},
    "privacy.erase": {"subject_id": Ref("lead"), "reason": "asked by letter"},
    "privacy.erase_many": {"subject_ids": [Ref("lead"), Ref("contact")], "reason": "asked by letter"},
    "privacy.hold": {"subject_id": Ref("contact"), "reason": "case 2026-17"},
    "privacy.on_hold": {"subject_id": Ref("lead")},
    "privacy.release": {"subject_id": Ref("held"), "reason": "case closed"},
    # -- fields and categories -------------------------------------------------
    "fields.as_of": {"id": Ref("tier"), "when": NOW},
    "fields.define": {
        "entity": "deal", "key": "region_code", "type": "text", "label": "Region code",
        "required": False, "pattern": "[A-Z]{2}", "group": "geo", "searchable": True,
        "readable_by": ["sales"], "writable_by": ["sales"], "default": OMIT, "minimum": OMIT,
        "maximum": OMIT, "choices": OMIT, "reference": OMIT, "personal": False,
    },
    "fields.definitions": {"entity": "customer", "include_retired": True},
    "fields.get": {"id": Ref("tier")},
    "fields.get_definition": {"entity": "customer", "key": "tier"},
    "fields.history": {"id": Ref("tier"), "field": "label"},
    "fields.redefine": {
        "entity": "customer", "key": "headcount", "migrate": OMIT, "label": "Staff",
        "maximum": 100_000, "minimum": 0, "group": "size",
    },
    "fields.retire": {"entity": "customer", "key": "headcount"},
    "fields.typed": {"record": Ref("customer_record")},
    "categories.as_of": {"id": Ref("sector"), "when": NOW},
    "categories.by_path": {"path": "sector/energy"},
    "categories.check_paths": {"field": "categories", "value": ["sector", "sector/energy"]},
    "categories.create": {"key": "water", "name": "Water", "parent": "sector", "taxonomy": OMIT},
    "categories.get": {"id": Ref("sector")},
    "categories.history": {"id": Ref("sector"), "field": "name"},
    "categories.tree": {"taxonomy": "sector"},
    # -- documents -------------------------------------------------------------
    "documents.as_of": {"id": Ref("document"), "when": NOW},
    "documents.attach": {
        "record_type": "customer", "record_id": Ref("customer"), "name": "offer.pdf",
        "data": b"%PDF-1.4", "content_type": "application/pdf",
        "readable_by": ["legal", "sales_rep", Ref("rep")],
    },
    "documents.get": {"id": Ref("document")},
    "documents.history": {"id": Ref("document"), "field": "name"},
    "documents.list": {"record_type": "customer", "record_id": Ref("customer")},
    "documents.new_version": {"document_key": Ref("document_key"), "data": b"v2", "name": "b.txt"},
    "documents.orphans": {},
    "documents.read": {"id": Ref("document")},
    "documents.share": {"document_key": Ref("document_key"), "readable_by": ["legal", Ref("rep")]},
    "documents.versions": {"document_key": Ref("document_key")},
    # -- importer --------------------------------------------------------------
    "importer.contacts": {
        "rows": _rows(name="Anna", email="anna@acme.example", customer="Acme GmbH"),
        "mapping": {"name": "name"}, "default_region": "DE", "on_duplicate": "skip",
        "external_id": OMIT, "chunk_size": 100, "rejects": OMIT, "lenient": False,
        "start_line": 2, "progress": OMIT,
    },
    "importer.customers": {
        "rows": _rows(name="Acme GmbH", email="info@acme.example"),
        "mapping": {"name": "name", "email": "email"}, "default_region": "DE",
        "on_duplicate": "skip", "external_id": OMIT, "chunk_size": 100, "rejects": OMIT,
        "lenient": False, "start_line": 2, "progress": OMIT,
    },
    "importer.leads": {
        "rows": _rows(name="Leo", email="leo@x.example"),
        "mapping": {"name": "name", "email": "email"}, "default_region": "DE",
        "on_duplicate": "skip", "source": "fair", "campaign": "Spring", "external_id": OMIT,
        "chunk_size": 100, "rejects": OMIT, "lenient": False, "start_line": 2, "progress": OMIT,
    },
    # -- export ----------------------------------------------------------------
    "export.csv": {
        "kind": "customers", "target": Fresh(io.StringIO), "since": NOW, "until": LATER,
        "fields": ["id", "name"],
    },
    "export.jsonl": {
        "kind": "deals", "target": Fresh(io.StringIO), "since": NOW, "until": LATER,
        "fields": ["id", "name", "amount"],
    },
    "export.rows": {"kind": "leads", "since": NOW, "until": LATER, "fields": ["id", "name"]},
    # -- runtime settings ------------------------------------------------------
    "settings.get": {"name": "routing_rules"},
    "settings.list": {},
    "settings.reset": {"name": "default_region", "version": OMIT},
    "settings.set": {"name": "routing_rules", "value": [{"name": "all", "pick": "first"}], "version": OMIT},
    # -- retention -------------------------------------------------------------
    "retention.preview": {"rule_name": OMIT, "limit": 10},
    "retention.rules": {},
    "retention.run": {"rule_name": OMIT, "batch": 50, "dry_run": True},
    "retention.set_rules": {
        "rules": [{
            "name": "stale-leads", "record_type": "lead", "action": "erase", "after": "24 months",
            "measured_from": "last_activity", "when": {"status": ["new", "disqualified"]},
        }],
        "version": OMIT,
    },
    # -- tasks -----------------------------------------------------------------
    "tasks.as_of": {"id": Ref("task"), "when": NOW},
    "tasks.cancel": {"id": Ref("task"), "version": OMIT},
    "tasks.complete": {"id": Ref("task"), "version": OMIT},
    "tasks.agenda": {"user_id": Ref("rep"), "day": NOW.date()},
    "tasks.create": {
        "title": "Send offer", "assignee_id": Ref("rep"), "department": "sales", "due_at": NOW,
        "priority": "high", "related_type": "customer", "related_id": Ref("customer"),
        "notes": "Before Friday", "kind": "todo",
    },
    "tasks.get": {"id": Ref("task")},
    "tasks.history": {"id": Ref("task"), "field": "status"},
    "tasks.iter": {"page_size": 10, "assignee_id": Ref("rep"), "status": "open"},
    "tasks.list": {
        "assignee_id": Ref("rep"), "department": "sales", "status": "open",
        "related_id": Ref("customer"), "kind": "todo", "limit": 10,
    },
    "tasks.scan_overdue": {"at": LATER},
}  # fmt: skip


#: Where a method names a refused argument otherwise: method → argument → the name it uses.
NAMED_AS: dict[str, dict[str, str]] = {
    # check_paths checks a field of its caller's, named by its ``field`` argument.
    "categories.check_paths": {"value": "categories"},
}

#: Methods whose accepted calls change the store whatever their session does: imports
#: commit chunk by chunk, exports audit themselves in a transaction of their own.
SELF_COMMITTING = frozenset(
    {"importer.leads", "importer.contacts", "importer.customers"}
    | {"export.csv", "export.jsonl", "export.rows"}
    | {"retention.run"}  # batch by batch, and audited in a transaction of its own
)


# -- the public surface, by introspection --------------------------------------------


def public_methods() -> dict[str, inspect.Signature]:
    """``service.method`` → signature, for every public method of every service on a session."""
    crm = pycrm.connect("memory://")
    methods: dict[str, inspect.Signature] = {}
    s = crm.session(actor=crm.system_actor)
    try:
        for owner in Session.__mro__:
            for name, attr in vars(owner).items():
                if name.startswith("_") or not isinstance(attr, functools.cached_property):
                    continue
                service = getattr(s, name)
                if not isinstance(service, Service):
                    continue
                for method in dir(type(service)):
                    found = inspect.getattr_static(type(service), method)
                    if isinstance(found, staticmethod | classmethod):
                        found = found.__func__
                    if not method.startswith("_") and inspect.isfunction(found):
                        methods[f"{name}.{method}"] = inspect.signature(found)
    finally:
        s.rollback()
    return methods


METHODS = public_methods()


def _named(signature: inspect.Signature) -> set[str]:
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in signature.parameters.values() if p.kind in plain} - {"self"}


def _takes_any(signature: inspect.Signature) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def test_every_public_method_is_in_the_call_table() -> None:
    """A public method or parameter the fuzz test cannot call fails here, saying what to add."""
    assert len(METHODS) > 150, "the introspection found too few methods to be right"
    missing = sorted(set(METHODS) - set(CALLS))
    assert not missing, (
        f"public methods missing from CALLS in tests/test_fuzz.py: {missing}; "
        "add each with a valid value for every parameter"
    )
    stale = sorted(set(CALLS) - set(METHODS))
    assert not stale, f"CALLS in tests/test_fuzz.py names methods that do not exist: {stale}"
    problems = []
    for name, signature in METHODS.items():
        spec = set(CALLS[name])
        if _named(signature) - spec:
            problems.append(f"{name} needs a value for {sorted(_named(signature) - spec)}")
        if not _takes_any(signature) and spec - _named(signature):
            problems.append(f"{name} has no parameters {sorted(spec - _named(signature))}")
    assert not problems, "fix CALLS in tests/test_fuzz.py: " + "; ".join(problems)


def test_a_field_name_has_one_type_in_every_record_kind() -> None:
    """Filters check a value by its field's name (pycrm.domain.values): that needs one type per name."""
    import typing

    import attrs

    seen: dict[str, dict[Kind, str]] = {}
    for cls in RECORD_TYPES:
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            kind = kind_of_type(hints[field.name])
            seen.setdefault(field.name, {}).setdefault(kind, cls.__name__)
    mixed = {name: kinds for name, kinds in seen.items() if len(kinds) > 1}
    assert not mixed, f"a field name with two types weakens the filter check: {mixed}"
    assert field_kinds()["customer_id"] is Kind.TEXT
    assert field_kinds()["due"] is Kind.DATE
    assert field_kinds()["occurred_at"] is Kind.DATETIME


# -- the world -----------------------------------------------------------------------


def build_world(crm: pycrm.CRM) -> SimpleNamespace:
    """A small world of records, one of each kind, for valid arguments to refer to."""
    w = SimpleNamespace()
    money = pycrm.Money.of
    with crm.session(actor=crm.system_actor) as s:
        w.admin = s.org.create_user("Ada", "ada@corp.example", "admin", roles=["admin"]).id
        w.team = s.org.create_team("Sales", "sales").id
        w.rep = s.org.create_user(
            "Sam", "sam@corp.example", "sales", roles=["sales_rep"], team_ids=[w.team]
        ).id
        w.rep2 = s.org.create_user("Sue", "sue@corp.example", "sales").id
        w.agent = s.org.create_user("Li", "li@corp.example", "service").id
        w.tier = s.fields.define(
            "customer", "tier", "choice", choices=["gold", "silver"], searchable=True
        ).id
        s.fields.define("customer", "headcount", "number", minimum=0)
        w.sector = s.categories.create("sector", "Sector").id
        s.categories.create("energy", "Energy", parent="sector")
        w.customer = s.customers.create(
            "Acme GmbH",
            industry="machinery",
            emails=["info@acme.example"],
            phones=["+49 30 1234567"],
            custom={"tier": "gold"},
        ).id
        w.customer2 = s.customers.create("Beta AG", emails=["info@beta.example"]).id
        w.customer3 = s.customers.create("Gamma AG").id
        w.contact = s.contacts.create(
            "Anna", customer_id=w.customer, emails=["anna@acme.example"]
        ).id
        w.activity = s.activities.log("call", "Hello", customer_id=w.customer).id
        s.customers.assess(w.customer, "grade", "A")
        w.lead = s.leads.capture("Leo", source="webform", email="leo@x.example").id
        w.held = s.leads.capture("Hal", source="webform", email="hal@x.example").id
        s.privacy.hold(w.held, reason="case 2026-16")
        lead = functools.partial(s.leads.capture, source="webform")
        w.lead_assigned = lead("Lia", email="lia@x.example").id
        s.leads.assign(w.lead_assigned, w.rep)
        w.lead_contacted = lead("Lou", email="lou@x.example").id
        s.leads.assign(w.lead_contacted, w.rep)
        s.leads.mark_contacted(w.lead_contacted)
        w.lead_qualified = lead("Lars", email="lars@x.example").id
        s.leads.assign(w.lead_qualified, w.rep)
        s.leads.mark_contacted(w.lead_qualified)
        s.leads.qualify(w.lead_qualified)
        w.lead_new = lead("Nora", email="nora@x.example").id
        w.lead_archived = lead("Arno", email="arno@x.example").id
        s.leads.archive(w.lead_archived)
        w.deal = s.deals.create("Big", customer_id=w.customer, amount=money("1000", "EUR")).id
        w.won = s.deals.create("Won", customer_id=w.customer, amount=money("1200", "EUR")).id
        s.deals.win(w.won)
        contract = s.contracts.draft(w.won, instalments=2, first_due=date(2026, 7, 1))
        w.contract = s.contracts.submit(contract.id).id
        s.contracts.sign(w.contract)
        won2 = s.deals.create("Won2", customer_id=w.customer, amount=money("500", "EUR")).id
        s.deals.win(won2)
        w.draft = s.contracts.draft(won2).id
        w.approved = s.contracts.submit(s.contracts.draft(won2).id).id
        terms = functools.partial(s.contracts.draft, won2, standard_terms=False, terms="Net 90")
        w.pending = s.contracts.submit(terms().id).id
        w.rejected = s.contracts.submit(terms().id).id
        s.contracts.reject(w.rejected, comment="no")
        w.active = s.contracts.submit(s.contracts.draft(won2).id).id
        s.contracts.sign(w.active)
        s.contracts.activate(w.active)
        monthly = money("100", "EUR")
        sub = s.contracts.draft(won2, billing_period="monthly", recurring=monthly)
        w.subscription = s.contracts.submit(sub.id).id
        s.contracts.sign(w.subscription)
        w.receivable = s.receivables.list(contract_id=w.contract)[0].id
        w.ticket = s.tickets.open("Broken", channel="email", customer_id=w.customer).id
        ticket = functools.partial(s.tickets.open, channel="email", customer_id=w.customer)
        w.assigned = ticket("Assigned").id
        s.tickets.assign(w.assigned, w.agent)
        w.working = ticket("Working").id
        s.tickets.assign(w.working, w.agent)
        s.tickets.start(w.working)
        w.resolved = ticket("Resolved").id
        s.tickets.assign(w.resolved, w.agent)
        s.tickets.start(w.resolved)
        s.tickets.resolve(w.resolved)
        w.article = s.articles.create("How to", "Do this", tags=["x"], publish=True).id
        w.product = s.products.create("PR-100", "Press 100t", external_id="erp-1").id
        w.rate = s.rates.set("USD", "EUR", "0.92", on=date(2026, 1, 1)).id
        w.price_list = s.price_lists.create("Standard EUR", "EUR").id
        s.price_lists.set_price(w.price_list, w.product, money("100", "EUR"))
        s.rates.set("EUR", "USD", "1.08", on=date(2026, 1, 1))
        line = {"product_id": w.product, "quantity": 2}
        w.quote = s.quotes.draft(w.deal, lines=[line]).id
        w.quote_sent = s.quotes.send(s.quotes.draft(w.deal, lines=[line]).id).id
        cheap = {**line, "discount_percent": 25}
        w.quote_pending = s.quotes.submit(s.quotes.draft(w.deal, lines=[cheap]).id).id
        w.task = s.tasks.create("Call back", assignee_id=w.rep).id
        rule = {"field": "industry", "op": "eq", "value": "machinery"}
        w.segment = s.campaigns.create_segment("Machinery", "customer", rule).id
        w.campaign = s.campaigns.create("Spring", channel="email", segment="Machinery").id
        w.running = s.campaigns.create("Summer", channel="email", segment="Machinery").id
        buyers = {"field": "status", "op": "eq", "value": "active"}
        s.campaigns.create_segment("Buyers", "contact", buyers)
        s.consent.grant(w.contact, "marketing", channel="any", method="double_opt_in")
        s.campaigns.snapshot(w.running)
        document = s.documents.attach("customer", w.customer, "a.txt", b"hello")
        w.document, w.document_key = document.id, document.document_key
        s.analytics.set_quota("2026-03", money("100", "EUR"), owner_id=w.rep)
        keep = s.customers.create("Delta AG").id
        gone = s.customers.create("Delta AG", on_duplicate="allow").id
        w.merge = s.dedupe.merge(keep, [gone]).merge_id
        w.customer_record = s.customers.get(w.customer)
    return w


@pytest.fixture(autouse=True)
def _scratch_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile text taken as a file path (an export's target) lands in a scratch directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def world(crm: pycrm.CRM) -> SimpleNamespace:
    """The world of :func:`build_world` on the backend under test."""
    return build_world(crm)


def resolve(value: Any, world: SimpleNamespace) -> Any:
    """``value`` with every :class:`Ref` replaced by the world's record (fresh copies)."""
    if isinstance(value, Ref):
        return getattr(world, value.name)
    if isinstance(value, Fresh):
        return value.make()
    if isinstance(value, list):
        return [resolve(v, world) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, world) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, world) for k, v in value.items()}
    return copy.deepcopy(value)


def valid_arguments(method: str, world: SimpleNamespace) -> dict[str, Any]:
    """The valid keyword arguments of ``method`` (OMIT ones left out)."""
    return {k: resolve(v, world) for k, v in CALLS[method].items() if v is not OMIT}


# -- trials ----------------------------------------------------------------------------

Place = tuple[Any, ...]

#: An unknown keyword, tried on every method that takes ``**fields`` or ``**options``.
UNKNOWN = "unknown_option"


@dataclass(frozen=True)
class Case:
    """One place for a hostile value: an argument, or an item inside one (``path``)."""

    method: str
    param: str
    path: Place = ()

    def __str__(self) -> str:
        inner = "".join(f"[{p!r}]" for p in self.path)
        return f"{self.method}({self.param}{inner}=…)"


def _paths(value: Any, prefix: Place = ()) -> Iterator[Place]:
    """The places in a valid value where a hostile one can go: itself and every item."""
    yield prefix
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))


def _put(value: Any, path: Place, hostile: Any) -> Any:
    if not path:
        return hostile
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _put(value[head], rest, hostile)}
    items = list(value)
    items[head] = _put(items[head], rest, hostile)
    return tuple(items) if isinstance(value, tuple) else items


CASES: list[Case] = [
    Case(method, param, path)
    for method, spec in CALLS.items()
    for param, valid in spec.items()
    for path in _paths(None if valid is OMIT else valid)
] + [Case(method, UNKNOWN) for method, signature in METHODS.items() if _takes_any(signature)]


def _call(s: Session, method: str, arguments: dict[str, Any]) -> Any:
    service, name = method.split(".")
    return getattr(getattr(s, service), name)(**arguments)


def _names(field: str, param: str) -> bool:
    return field == param or field.startswith((f"{param}.", f"{param}["))


def attempt(
    crm: pycrm.CRM, world: SimpleNamespace, case: Case, label: str, hostile: Any, actor: Any
) -> tuple[str | None, bool]:
    """Make one hostile call as ``actor``: what went wrong (or None), and if it was refused.

    A refused call's session is committed, so a snapshot shows whatever the
    call left behind; an accepted call's session is rolled back.
    """
    where = f"{case} with {label}"
    arguments = valid_arguments(case.method, world)
    arguments[case.param] = _put(arguments.get(case.param), case.path, hostile)
    s = crm.session(actor=actor)
    try:
        _call(s, case.method, arguments)
    except StorageError as exc:
        s.rollback()
        return f"{where}: StorageError {exc}", True
    except CRMError as exc:
        try:
            s.commit()  # a refused call undid its own writes: the session goes on
        except CRMError as late:
            return f"{where}: refused ({exc!r}), then the commit failed: {late!r}", True
        name = NAMED_AS.get(case.method, {}).get(case.param, case.param)
        if isinstance(exc, ValidationError) and not _names(exc.field, name):
            return f"{where}: ValidationError names {exc.field!r}, not {name!r}: {exc}", True
        return None, True
    except Exception as exc:  # what the test looks for: a foreign error
        s.rollback()
        return f"{where}: {type(exc).__name__}: {exc}", True
    s.rollback()
    return None, False


def run(
    crm: pycrm.CRM,
    world: SimpleNamespace,
    trials: list[tuple[Case, str, Any]],
    actor: Any = None,
) -> list[str]:
    """Run the trials; return every problem, a store changed by refused calls included.

    The store is compared once per service (and once per call of a method
    that commits on its own); when it moved, the trials are replayed one by
    one to name the culprit. The actor is the system actor unless given.
    """
    actor = crm.system_actor if actor is None else actor
    problems: list[str] = []
    batches: dict[str, list[tuple[Case, str, Any]]] = {}
    for trial in trials:
        method = trial[0].method
        key = method if method in SELF_COMMITTING else method.split(".")[0]
        batches.setdefault(key, []).append(trial)
    for key, batch in batches.items():
        groups = [[t] for t in batch] if key in SELF_COMMITTING else [batch]
        for group in groups:
            # The store as the last check left it: nothing since may have changed it.
            before = world.__dict__.pop("stored", None) or snapshot(crm)
            refused = False
            for case, label, hostile in group:
                problem, was_refused = attempt(crm, world, case, label, hostile, actor)
                refused = refused or was_refused
                if problem:
                    problems.append(" ".join(problem.split())[:300])
            if key in SELF_COMMITTING and not refused:
                continue  # it may have changed the store: the next group takes a snapshot
            after = snapshot(crm)
            world.stored = after
            if after != before:
                changed = sorted(k for k in after if after[k] != before.get(k))
                culprits = _culprits(crm, world, group, actor)
                world.__dict__.pop("stored", None)
                problems.append(f"calls to {key} left changes in {changed}: {culprits}")
    return problems


def _culprits(
    crm: pycrm.CRM, world: SimpleNamespace, group: list[tuple[Case, str, Any]], actor: Any
) -> list[str]:
    found = []
    for case, label, hostile in group:
        before = snapshot(crm)
        attempt(crm, world, case, label, hostile, actor)
        if snapshot(crm) != before:
            found.append(f"{case} with {label}")
    return found


# -- the tests -------------------------------------------------------------------------


def test_the_valid_calls_succeed(crm: pycrm.CRM, world: SimpleNamespace) -> None:
    """Every call in CALLS works as written, so in a trial the hostile value is what is wrong."""
    problems = []
    for method in CALLS:
        s = crm.session(actor=crm.system_actor)
        try:
            _call(s, method, valid_arguments(method, world))
        except Exception as exc:  # any refusal means the table is wrong
            problems.append(f"{method}: {type(exc).__name__}: {exc}")
        finally:
            s.rollback()
    assert not problems, "valid calls in CALLS that fail:\n" + "\n".join(problems)


def test_hostile_arguments(crm: pycrm.CRM, world: SimpleNamespace) -> None:
    """Every argument and every item of every public method, with hostile values in rotation."""
    labels = list(HOSTILE)
    width = len(labels) if EXAMPLES >= LONG else 2
    trials = [
        (case, label, HOSTILE[label])
        for i, case in enumerate(CASES)
        for label in (labels[(i * width + j) % len(labels)] for j in range(width))
    ]
    problems = run(crm, world, trials)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


#: Values hypothesis makes up besides the hostile ones: text with any character
#: (NUL bytes and lone surrogates included), numbers of every size, odd shapes.
GENERATED = st.one_of(
    st.sampled_from(list(HOSTILE)).map(lambda label: (label, HOSTILE[label])),
    st.one_of(
        st.text(st.characters(exclude_categories=()), max_size=30),
        st.integers(),
        st.floats(),
        st.decimals(),
        st.binary(max_size=10),
        st.dates(),
        st.datetimes(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        st.tuples(st.text(max_size=5), st.integers()),
    ).map(lambda value: (f"generated {value!r:.60}", value)),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=st.sampled_from(CASES), value=GENERATED, as_admin=st.booleans())
def test_hostile_arguments_sampled(
    crm: pycrm.CRM, world: SimpleNamespace, case: Case, value: tuple[str, Any], as_admin: bool
) -> None:
    """Hypothesis picks the method, the place, the value, and the system actor or an admin user.

    An admin user's calls go through the permission guard, which the system
    actor's skip.
    """
    label, hostile = value
    problems = run(crm, world, [(case, label, hostile)], world.admin if as_admin else None)
    assert not problems, "\n".join(problems)


# -- the escapes reported before this test existed --------------------------------------

LEAD_ROWS = [{"name": "Nina", "email": "nina@n.example"}]


@pytest.fixture
def pair(crm: pycrm.CRM) -> SimpleNamespace:
    """Two customers."""
    with crm.session(actor=crm.system_actor) as s:
        return SimpleNamespace(
            customer=s.customers.create("Acme GmbH").id, customer2=s.customers.create("Beta AG").id
        )


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s, w: s.dedupe.merge(w.customer, 5), "duplicate_ids"),
        (
            lambda s, w: s.dedupe.merge(w.customer, [w.customer2], record_type=["customer"]),
            "record_type",
        ),
        (lambda s, w: s.dedupe.check(["lead"]), "record_type"),
        (lambda s, w: s.campaigns.compile(["customer"], {}), "target"),
        (
            lambda s, w: s.campaigns.compile(
                "customer", {"field": ["industry"], "op": "eq", "value": "x"}
            ),
            "rule.field",
        ),
        (lambda s, w: s.importer.leads(LEAD_ROWS, start_line="2"), "start_line"),
        (lambda s, w: s.importer.leads(LEAD_ROWS, mapping={"name": ["name"]}), "mapping.name"),
        (lambda s, w: s.customers.search("a\x00b"), "text"),
        (lambda s, w: s.customers.search(category="a\x00b"), "category"),
        (lambda s, w: s.tickets.list(customer_id="a\x00b"), "customer_id"),
        (lambda s, w: s.deals.list(owner_id="a\x00b"), "owner_id"),
        (lambda s, w: s.tasks.list(related_id="a\x00b"), "related_id"),
        (lambda s, w: s.deals.list(customer_id=5), "customer_id"),
        (lambda s, w: s.audit.find(action=pycrm.Money.of("5", "EUR")), "action"),
        (lambda s, w: s.customers.rule_for(Decimal("sNaN")), "attribute"),
        (lambda s, w: s.receivables.list(contract_id=Decimal("sNaN")), "contract_id"),
    ],
    ids=lambda value: "" if callable(value) else value,
)
def test_reported_escapes_are_refused_naming_the_argument(
    crm: pycrm.CRM,
    pair: SimpleNamespace,
    call: Callable[[Session, SimpleNamespace], Any],
    field: str,
) -> None:
    """Each was a TypeError, AttributeError or StorageError (on some backend) when reported."""
    (error,) = refused(crm, crm.system_actor, (ValidationError, lambda s: call(s, pair)))
    assert isinstance(error, ValidationError)
    assert error.field == field


def test_a_segment_rule_with_dates_and_money_is_saved_alike_on_every_backend(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    """It was stored as given in memory, a StorageError on SQLite and a TypeError on PostgreSQL."""
    rule = {
        "all": [
            {"field": "customer_since", "op": "gte", "value": date(2025, 1, 1)},
            {"field": "last_activity", "op": "lt", "value": datetime(2027, 1, 1, tzinfo=UTC)},
            {"field": "total_order_amount", "op": "gte", "value": pycrm.Money.of("100", "EUR")},
        ]
    }
    with crm.session(actor=crm.system_actor) as s:
        saved = s.campaigns.create_segment("Since 2025", "customer", rule)
    assert saved.rule == {
        "all": [
            {"field": "customer_since", "op": "gte", "value": "2025-01-01"},
            {"field": "last_activity", "op": "lt", "value": "2027-01-01T00:00:00+00:00"},
            {"field": "total_order_amount", "op": "gte", "value": ["100.00", "EUR"]},
        ]
    }
    with crm.session(actor=crm.system_actor) as s:
        members = s.campaigns.members("Since 2025")
        direct = s.read(Customer).find(s.campaigns.compile("customer", rule))
    assert [m.id for m in members] == [c.id for c in direct] == [world.customer]
