"""Fitted matching parameters get a table of their own (``match_models``).

Each fit of the duplicate matcher stores a new version of its parameters per
record kind; a database made before has no such table, so this revision
creates it (and its index and unique constraint) from the current metadata.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _table() -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}match_models"]))
    ]
    return table


def upgrade() -> None:
    """Create the match_models table unless it is there."""
    _table().create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    """Drop the match_models table."""
    _table().drop(op.get_bind(), checkfirst=True)
