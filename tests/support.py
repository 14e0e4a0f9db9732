"""Helpers the contract tests share: store snapshots, refused-call checks, money, outbox names."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

import pycrm
from pycrm.domain import RECORD_TYPES
from pycrm.domain.audit import AuditEntry
from pycrm.session import Session

Call = Callable[[Session], object]


def snapshot(crm: pycrm.CRM) -> dict[str, list[Any]]:
    """Every stored row (the audit of refused attempts aside), for before/after checks.

    The records of every record type, and the tables beside them: a SQL
    store's match keys and counters, the memory store's counters (its match
    keys are computed from the records).
    """
    uow = crm.store.begin("default")
    try:
        rows: dict[str, list[Any]] = {}
        for cls in RECORD_TYPES:
            found: list[Any] = uow.repo(cls).find()
            if cls is AuditEntry:
                found = [e for e in found if not e.action.startswith("denied:")]
            rows[cls.__name__] = found
    finally:
        uow.rollback()
    store: Any = crm.store
    schema = getattr(store, "schema", None)
    if schema is None:
        rows["counters"] = sorted(store._counters.items())
        return rows
    with store.engine.connect() as connection:
        for table in (schema.match_keys, schema.counters):
            rows[table.name] = sorted(tuple(row) for row in connection.execute(sa.select(table)))
    return rows


def refused(crm: pycrm.CRM, actor: Any, *cases: tuple[type[Exception], Call]) -> list[Exception]:
    """Run each call in one session, expect its error, and check the store did not change."""
    before = snapshot(crm)
    errors: list[Exception] = []
    with crm.session(actor=actor) as s:
        for error, call in cases:
            with pytest.raises(error) as info:
                call(s)
            errors.append(info.value)
    assert snapshot(crm) == before
    return errors


def eur(amount: str) -> pycrm.Money:
    return pycrm.Money.of(amount, "EUR")


def outbox_names(crm: pycrm.CRM) -> list[str]:
    return [e.name for e in crm.outbox.pending(limit=1000)]


def add_user(crm: pycrm.CRM, name: str, department: str = "sales", **fields: Any) -> str:
    """Create a user (email ``<name>@corp.example``) as the system actor; return the id."""
    with crm.session(actor=crm.system_actor) as s:
        return s.org.create_user(name, f"{name.lower()}@corp.example", department, **fields).id


def staff(crm: pycrm.CRM, **people: str | tuple[str, list[str]]) -> SimpleNamespace:
    """Users by nickname, ``staff(crm, mia="marketing", max=("sales", ["sales_manager"]))``.

    Each is named after the nickname, with the email ``<nickname>@corp.example``.
    """
    made: dict[str, Any] = {}
    with crm.session(actor=crm.system_actor) as s:
        for nick, spec in people.items():
            department, roles = (spec, []) if isinstance(spec, str) else spec
            made[nick] = s.org.create_user(
                name=nick.title(), email=f"{nick}@corp.example", department=department, roles=roles
            )
    return SimpleNamespace(**made)
