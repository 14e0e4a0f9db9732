"""Embed pycrm in an existing application: one engine, one transaction.

An ERP already has its own tables on its own SQLAlchemy engine. pycrm joins
that engine, and a CRM session can run inside the ERP's open transaction, so
an order and the customer it creates are committed (or rolled back) together.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa

import pycrm

# The ERP's own table, owned and migrated by the ERP, not by pycrm.
erp = sa.MetaData()
orders = sa.Table(
    "erp_orders",
    erp,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.String(40), nullable=False),  # pycrm's customer id
    sa.Column("total_cents", sa.BigInteger, nullable=False),
)


class Abort(Exception):
    """Stands for whatever makes the ERP give up on an order (stock, credit check...)."""


def count(conn: sa.Connection, table: sa.TableClause) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = sa.create_engine(f"sqlite:///{Path(tmp) / 'erp.db'}")
        try:
            run(engine)
        finally:
            engine.dispose()  # release the file before the directory is removed (Windows)


def run(engine: sa.Engine) -> None:
    erp.create_all(engine)  # the ERP was there first
    # SQLite has no schemas without ATTACH, so pycrm's tables get a name prefix
    # and sit beside the ERP's. On PostgreSQL you would rather keep them apart:
    #   pycrm.connect(engine, schema="crm")
    crm = pycrm.connect(engine, table_prefix="crm_")  # creates crm_* tables if missing
    customers = sa.table("crm_customers")  # prefix + plural resource name

    # 1. Commit: the ERP's write and pycrm's write become durable together.
    with engine.begin() as conn:
        with crm.session(actor=crm.system_actor, connection=conn) as s:
            acme = s.customers.create("Acme GmbH", source="erp", tags=["wholesale"])
        conn.execute(sa.insert(orders).values(customer_id=acme.id, total_cents=129_900))

    with engine.connect() as conn:
        assert count(conn, orders) == 1
        assert count(conn, customers) == 1
    with crm.session(actor=crm.system_actor) as s:  # pycrm sees it in its own sessions too
        assert s.customers.get(acme.id).name == "Acme GmbH"
    print(f"committed: order for {acme.name} ({acme.id}) and the customer, together")

    # 2. Roll back: pycrm's session ended cleanly, but the ERP's transaction
    # fails afterwards; pycrm only released a savepoint, so its customer goes too.
    try:
        with engine.begin() as conn:
            with crm.session(actor=crm.system_actor, connection=conn) as s:
                globex = s.customers.create("Globex Corp", source="erp")
            conn.execute(sa.insert(orders).values(customer_id=globex.id, total_cents=5_000))
            raise Abort("credit check failed")
    except Abort as exc:
        print(f"rolled back: {exc}")

    with engine.connect() as conn:
        assert count(conn, orders) == 1, "the aborted order must not exist"
        assert count(conn, customers) == 1, "the aborted order's customer must not exist"
    with crm.session(actor=crm.system_actor) as s:
        assert s.customers.search("Globex") == []
    print("after rollback: 1 order, 1 customer (Globex left no trace)")

    # The engine is the ERP's: crm.close() leaves it open for the ERP to dispose.
    crm.close()


if __name__ == "__main__":
    main()
