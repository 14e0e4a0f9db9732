"""The customer 360 view runs a constant number of SQL statements (no N+1), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import pycrm
from pycrm.domain.activities import Activity, ActivityKind
from pycrm.domain.customers import Contact
from pycrm.session import Session


@pytest.fixture
def sql_crm(crm: pycrm.CRM, backend: str) -> pycrm.CRM:
    if backend == "memory":
        pytest.skip("the memory adapter runs no SQL")
    return crm


@contextmanager
def counting(engine: sa.Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def customer_with(s: Session, name: str, contacts: int, activities: int, author: str) -> str:
    """A customer with that many contacts and activities, bulk-inserted."""
    customer = s.customers.create(name)
    people = [
        Contact(**s._stamp(name=f"{name} person {n:03}", customer_id=customer.id))
        for n in range(contacts)
    ]
    s._uow.repo(Contact).add_many(people)
    start = s._now()
    s._uow.repo(Activity).add_many(
        [
            Activity(
                **s._stamp(
                    kind=ActivityKind.CALL,
                    subject=f"call {n}",
                    customer_id=customer.id,
                    contact_id=people[n % contacts].id,
                    occurred_at=start - timedelta(minutes=n),
                    author_id=author,
                    private=n % 7 == 0,
                )
            )
            for n in range(activities)
        ]
    )
    for source in ("sales", "service"):
        s.customers.assess(customer.id, "grade", "B", source=source)
    return customer.id


def statements_for_view(
    crm: pycrm.CRM, actor: Any, customer_id: str
) -> tuple[int, pycrm.Customer360]:
    with crm.session(actor=actor) as s:
        s.customers.get(customer_id)  # warm up whatever the session loads once
        with counting(crm.engine) as statements:
            view = s.customers.view(customer_id)
    return len(statements), view


def test_the_360_view_runs_as_many_statements_for_a_big_customer_as_for_a_small_one(
    sql_crm: pycrm.CRM,
) -> None:
    crm = sql_crm
    with crm.session(actor=crm.system_actor) as s:
        rep = s.org.create_user("Rep", "rep@example.com", "sales", roles=["sales_rep"])
        small = customer_with(s, "Small", contacts=1, activities=1, author=rep.id)
        big = customer_with(s, "Big", contacts=50, activities=500, author=rep.id)
    for actor in (crm.system_actor, rep.id):
        small_count, small_view = statements_for_view(crm, actor, small)
        big_count, big_view = statements_for_view(crm, actor, big)
        assert len(small_view.contacts) == 1
        assert len(big_view.contacts) == 50
        assert len(big_view.activities) == 20
        assert len(big_view.assessments) == 2
        assert 0 < small_count == big_count, (actor, small_count, big_count)
        assert big_count <= 15, big_count


def test_more_activities_on_the_view_cost_no_extra_statements(sql_crm: pycrm.CRM) -> None:
    crm = sql_crm
    with crm.session(actor=crm.system_actor) as s:
        big = customer_with(s, "Big", contacts=10, activities=200, author="system")
    with crm.session(actor=crm.system_actor) as s, counting(crm.engine) as few:
        assert len(s.customers.view(big, activities=1).activities) == 1
    with crm.session(actor=crm.system_actor) as s, counting(crm.engine) as many:
        assert len(s.customers.view(big, activities=200).activities) == 200
    assert len(few) == len(many)


def test_a_quote_costs_one_statement_per_product_line_not_five(sql_crm: pycrm.CRM) -> None:
    """The products are read in one query and the price lists once per draft; what each
    product line adds is the query for its prices (quantity breaks)."""
    euros = pycrm.Money.of
    with sql_crm.session(actor=sql_crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH", tags=["wholesale"])
        deal = s.deals.create("Order", customer_id=acme.id, amount=euros("1", "EUR"))
        prices = s.price_lists.create("EUR", "EUR")
        products = [s.products.create(f"P-{n}", f"Part {n}") for n in range(30)]
        for product in products:
            s.price_lists.set_price(prices.id, product.id, euros("10", "EUR"))
    counts = {}
    for size in (5, 30):
        lines = [{"product_id": p.id, "quantity": 2} for p in products[:size]]
        with (
            sql_crm.session(actor=sql_crm.system_actor) as s,
            counting(sql_crm.store.engine) as sql,
        ):  # type: ignore[attr-defined]
            quote = s.quotes.draft(deal.id, lines=lines)
        assert len(quote.lines) == size
        counts[size] = len(sql)
    assert counts[30] - counts[5] == 25  # one per line more
