"""Tickets remember the emails they came from, so replies by email find them.

``tickets`` gets ``mail_ids`` (the ``Message-ID`` of each email a ticket was
opened or answered by; their lookup keys go to ``match_keys``). Tickets
stored before get an empty list.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _tickets() -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}tickets"]))
    ]
    return table


def upgrade() -> None:
    """Add ``mail_ids`` unless it is there, and fill it with [] for older tickets."""
    bind = op.get_bind()
    tickets = _tickets()
    present = {c["name"] for c in sa.inspect(bind).get_columns(tickets.name, tickets.schema)}
    if "mail_ids" not in present:
        op.add_column(
            tickets.name,
            sa.Column("mail_ids", tickets.c.mail_ids.type, nullable=True),
            schema=tickets.schema,
        )
    bind.execute(sa.update(tickets).where(tickets.c.mail_ids.is_(None)).values(mail_ids=[]))


def downgrade() -> None:
    """Drop ``mail_ids``."""
    tickets = _tickets()
    with op.batch_alter_table(tickets.name, schema=tickets.schema) as batch:
        batch.drop_column("mail_ids")
