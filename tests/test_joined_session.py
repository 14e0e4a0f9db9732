"""A session joined to the caller's own transaction: ``crm.session(actor, connection=...)``.

pycrm writes inside the caller's transaction, under a savepoint, and never
commits it. The caller's commit makes both durable together and only then are
the session's signals sent; the caller's rollback undoes both and no signal is
ever sent for that work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import pycrm
from pycrm import signals
from pycrm.domain.events import Event
from pycrm.errors import ConfigurationError
from support import snapshot


@pytest.fixture
def received() -> Iterator[list[str]]:
    """The names of the customer signals sent during the test, in order."""
    got: list[str] = []

    def receiver(sender: Any, event: Event) -> None:
        got.append(event.name)

    signal = signals.signal_for("customer_created")
    signal.connect(receiver, weak=False)
    try:
        yield got
    finally:
        signal.disconnect(receiver)


@pytest.fixture
def engine(crm: pycrm.CRM, backend: str) -> sa.Engine:
    """The CRM's engine (the SQL adapters only)."""
    if backend == "memory":
        pytest.skip("joining a caller's transaction needs a SQL adapter")
    found: sa.Engine = crm.store.engine  # type: ignore[attr-defined]
    return found


def customer_names(crm: pycrm.CRM) -> list[str]:
    with crm.session(actor=crm.system_actor) as s:
        return sorted(c.name for c in s.customers.search())


def test_signals_wait_for_the_callers_commit(
    crm: pycrm.CRM, engine: sa.Engine, received: list[str]
) -> None:
    with engine.connect() as connection:
        outer = connection.begin()
        with crm.session(actor=crm.system_actor, connection=connection) as s:
            s.customers.create("Acme GmbH")
        assert received == []  # the session ended, but the caller has not committed
        outer.commit()
        assert received == ["customer_created"]
    assert customer_names(crm) == ["Acme GmbH"]


def test_the_callers_rollback_undoes_the_work_and_drops_its_signals(
    crm: pycrm.CRM, engine: sa.Engine, received: list[str]
) -> None:
    before = snapshot(crm)
    with engine.connect() as connection:
        outer = connection.begin()
        with crm.session(actor=crm.system_actor, connection=connection) as s:
            s.customers.create("Acme GmbH")
        outer.rollback()
        # A later transaction on the same connection does not send them either.
        with connection.begin():
            connection.execute(sa.text("select 1"))
    assert received == []
    assert snapshot(crm) == before


def test_each_committed_caller_transaction_sends_only_its_own_signals(
    crm: pycrm.CRM, engine: sa.Engine, received: list[str]
) -> None:
    with engine.connect() as connection:
        with connection.begin(), crm.session(actor=crm.system_actor, connection=connection) as s:
            s.customers.create("Acme GmbH")
        assert received == ["customer_created"]
        with connection.begin():
            connection.execute(sa.text("select 1"))
        assert received == ["customer_created"]  # sent once, not again on the next commit
    assert customer_names(crm) == ["Acme GmbH"]


def test_a_session_rolled_back_inside_the_callers_transaction_leaves_the_callers_work(
    crm: pycrm.CRM, engine: sa.Engine, received: list[str]
) -> None:
    def work_then_fail(connection: sa.Connection) -> None:
        with crm.session(actor=crm.system_actor, connection=connection) as s:
            s.customers.create("Dropped GmbH")
            raise RuntimeError("the caller changed its mind")

    with engine.connect() as connection, connection.begin():
        with crm.session(actor=crm.system_actor, connection=connection) as s:
            s.customers.create("Kept GmbH")
        with pytest.raises(RuntimeError):
            work_then_fail(connection)
    assert received == ["customer_created"]
    assert customer_names(crm) == ["Kept GmbH"]


def test_the_callers_connection_stays_open_after_the_session(
    crm: pycrm.CRM, engine: sa.Engine
) -> None:
    with engine.connect() as connection, connection.begin():
        with crm.session(actor=crm.system_actor, connection=connection) as s:
            s.customers.create("Acme GmbH")
        assert not connection.closed
        assert connection.in_transaction()
        count = connection.execute(sa.text("select 1")).scalar_one()
    assert count == 1


def test_joining_needs_a_sql_adapter(crm: pycrm.CRM, backend: str) -> None:
    if backend != "memory":
        pytest.skip("the SQL adapters can join")
    with pytest.raises(ConfigurationError):
        crm.session(actor=crm.system_actor, connection=object())  # type: ignore[arg-type]
