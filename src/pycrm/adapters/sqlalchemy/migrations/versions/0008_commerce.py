"""The catalogue, its prices and the exchange rates get tables of their own.

``s.products`` keeps products and services by SKU (unique per tenant),
``s.price_lists`` price lists (unique by name) and their prices (one per
list, product and quantity break), and ``s.rates`` dated exchange rates
(unique per currency pair and day); a database made before has none of
these tables, so this revision creates them (with their indexes and unique
constraints) from the current metadata.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("products", "price_lists", "prices", "exchange_rates")


def _table(name: str) -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}{name}"]))
    ]
    return table


def upgrade() -> None:
    """Create the catalogue's, prices' and rates' tables unless they are there."""
    for name in TABLES:
        _table(name).create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    """Drop them."""
    for name in reversed(TABLES):
        _table(name).drop(op.get_bind(), checkfirst=True)
