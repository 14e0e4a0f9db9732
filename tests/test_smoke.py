"""The first thing a user does works on every backend."""

from __future__ import annotations

import pycrm


def test_a_customer_created_in_one_session_is_found_in_the_next(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        created = s.customers.create("Acme Ltd", phones=["030 1234567"])
    with crm.session(actor=crm.system_actor) as s:
        assert s.customers.get(created.id) == created
        assert s.customers.search(phone="+49 30 1234567") == [created]
