"""Customers are indexed by (owner_id, status), for team- and owner-scoped reads.

A team-scoped count or page filters customers by ``owner_id IN (the team)``
and ``status``; with both in one index the database answers from the index
alone instead of visiting every active customer. The new index replaces the
one on ``owner_id`` alone, which it covers.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _customers() -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}customers"]))
    ]
    return table


def upgrade() -> None:
    """Create the (owner_id, status) index and drop the owner_id one it replaces."""
    table = _customers()
    bind = op.get_bind()
    present = {ix["name"] for ix in sa.inspect(bind).get_indexes(table.name, schema=table.schema)}
    for index in table.indexes:
        if index.name not in present:
            index.create(bind)
    old = f"ix_{table.name}_owner_id"
    if old in present:
        op.drop_index(old, table_name=table.name, schema=table.schema)


def downgrade() -> None:
    """Put the owner_id index back and drop the (owner_id, status) one."""
    table = _customers()
    op.create_index(
        f"ix_{table.name}_owner_id", table.name, ["tenant_id", "owner_id"], schema=table.schema
    )
    op.drop_index(f"ix_{table.name}_owner_id_status", table_name=table.name, schema=table.schema)
