"""Privacy: legal holds, the register of access requests and erasures, personal custom fields.

``legal_holds`` keeps one row per lead or contact a hold was placed on
(unique by ``subject_id``); ``privacy_requests`` keeps every access request
and erasure handled (indexed by ``subject_id``). ``field_definitions`` gets
``personal``, which marks a custom field an erasure removes; definitions
stored before are not personal.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("legal_holds", "privacy_requests")


def _table(name: str) -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}{name}"]))
    ]
    return table


def upgrade() -> None:
    """Create the privacy tables unless they are there; add ``personal`` to field definitions."""
    bind = op.get_bind()
    for name in TABLES:
        _table(name).create(bind, checkfirst=True)
    fields = _table("field_definitions")
    present = {c["name"] for c in sa.inspect(bind).get_columns(fields.name, fields.schema)}
    if "personal" not in present:
        op.add_column(
            fields.name,
            sa.Column("personal", fields.c.personal.type, nullable=True),
            schema=fields.schema,
        )
    bind.execute(sa.update(fields).where(fields.c.personal.is_(None)).values(personal=False))


def downgrade() -> None:
    """Drop them, and the column."""
    fields = _table("field_definitions")
    with op.batch_alter_table(fields.name, schema=fields.schema) as batch:
        batch.drop_column("personal")
    for name in reversed(TABLES):
        _table(name).drop(op.get_bind(), checkfirst=True)
