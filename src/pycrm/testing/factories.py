"""Factories that create valid records with little typing.

Each factory takes overrides for any field and fills the rest with distinct,
valid values, so tests state only what matters to them::

    make = Factories(session)
    acme = make.customer(industry="machinery")
    ada = make.contact(customer_id=acme.id)
"""

from __future__ import annotations

import itertools
from typing import Any

from pycrm.domain.activities import Activity, ActivityKind
from pycrm.domain.assessments import Assessment
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.org import Department, Team, User
from pycrm.session import Session

__all__ = ["Factories"]


class Factories:
    """Record factories on one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._n = itertools.count(1)

    def _next(self) -> int:
        return next(self._n)

    def user(self, **overrides: Any) -> User:
        """A user in sales (override ``department``, ``roles`` …)."""
        n = self._next()
        fields: dict[str, Any] = {
            "name": f"User {n}",
            "email": f"user{n}-{id(self)}@example.com",
            "department": "sales",
        }
        fields.update(overrides)
        return self.session.org.create_user(**fields)

    def department(self, **overrides: Any) -> Department:
        """A custom department."""
        n = self._next()
        fields: dict[str, Any] = {"key": f"dept_{n}", "name": f"Department {n}"}
        fields.update(overrides)
        return self.session.org.create_department(**fields)

    def team(self, **overrides: Any) -> Team:
        """A sales team."""
        n = self._next()
        fields: dict[str, Any] = {"name": f"Team {n}", "department": "sales"}
        fields.update(overrides)
        return self.session.org.create_team(**fields)

    def customer(self, **overrides: Any) -> Customer:
        """A customer with an email and a phone."""
        n = self._next()
        fields: dict[str, Any] = {
            "name": f"Company {n} GmbH",
            "industry": "machinery",
            "emails": [f"info{n}@company{n}.example"],
            "phones": [f"+49 30 {1000000 + n}"],
        }
        fields.update(overrides)
        return self.session.customers.create(**fields)

    def contact(self, **overrides: Any) -> Contact:
        """A contact (of a new customer unless ``customer_id`` is given)."""
        n = self._next()
        fields: dict[str, Any] = {
            "name": f"Person {n}",
            "emails": [f"person{n}@example.com"],
        }
        fields.update(overrides)
        if "customer_id" not in fields:
            fields["customer_id"] = self.customer().id
        return self.session.contacts.create(**fields)

    def activity(self, **overrides: Any) -> Activity:
        """A call on a new customer unless ``customer_id``/``contact_id`` is given."""
        n = self._next()
        fields: dict[str, Any] = {"kind": ActivityKind.CALL, "subject": f"Call {n}"}
        fields.update(overrides)
        if "customer_id" not in fields and "contact_id" not in fields:
            fields["customer_id"] = self.customer().id
        return self.session.activities.log(**fields)

    def assessment(self, customer_id: str, **overrides: Any) -> Assessment:
        """A grade rating by the actor's department."""
        fields: dict[str, Any] = {"attribute": "grade", "value": "A"}
        fields.update(overrides)
        return self.session.customers.assess(customer_id, **fields)
