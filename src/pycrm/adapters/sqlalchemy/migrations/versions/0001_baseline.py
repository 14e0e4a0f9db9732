"""Baseline: the schema as first released.

A new database is built from the current table definitions and stamped at head,
so this revision has nothing to do; later revisions alter tables from here.

Revision ID: 0001
Revises:
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: the baseline tables are created from the metadata."""


def downgrade() -> None:
    """Nothing to undo."""
