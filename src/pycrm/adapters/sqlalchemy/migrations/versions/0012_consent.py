"""Consent gets tables of its own: the records, and the state campaigns ask.

``consents`` keeps every grant and withdrawal (who, what purpose, which
channel, when, how, the proof), indexed by ``(subject_id, purpose, channel,
at)``; ``consent_states`` keeps, per person, purpose and channel, the record
that decides now (unique by ``(subject_id, purpose, channel)``), so that a
campaign for a purpose skips people without consent inside its query. A
database made before has neither table, so this revision creates both (with
their indexes and unique constraints) from the current metadata.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("consents", "consent_states")


def _table(name: str) -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}{name}"]))
    ]
    return table


def upgrade() -> None:
    """Create the consent tables unless they are there."""
    for name in TABLES:
        _table(name).create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    """Drop them."""
    for name in reversed(TABLES):
        _table(name).drop(op.get_bind(), checkfirst=True)
