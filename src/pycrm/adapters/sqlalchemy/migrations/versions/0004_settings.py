"""Runtime settings get a table of their own (``settings``).

A tenant's routing rules, scoring weights, SLA policy and default phone
region are stored as records (``s.settings``), so every process reads the
same ones and an admin changes them without a redeploy; a database made
before has no such table, so this revision creates it (with its unique
constraint) from the current metadata.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _table() -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}settings"]))
    ]
    return table


def upgrade() -> None:
    """Create the settings table unless it is there."""
    _table().create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    """Drop the settings table."""
    _table().drop(op.get_bind(), checkfirst=True)
