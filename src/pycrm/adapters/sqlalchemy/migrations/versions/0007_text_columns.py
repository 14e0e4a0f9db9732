"""Text fields no index holds become ``TEXT``: any length the services allow.

Every text field was ``VARCHAR(500)``. SQLite does not enforce a length, so
there a lead's ``needs`` of 5,000 characters (which ``leads.capture``
allows) was stored, while PostgreSQL refused it with a storage error, and
the importer lost the whole chunk. Only the text columns an index holds
keep their bound; the others are ``TEXT`` in the current tables, and this
revision changes the columns of a PostgreSQL database made before (a
change of type alone: PostgreSQL rewrites no rows for ``VARCHAR`` to
``TEXT``). SQLite's columns stay as they are: it stores text of any length
whatever the declared type.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """On PostgreSQL, make each bounded column that the tables now declare ``TEXT`` so."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = context.config.attributes["pycrm_schema"]
    inspector = sa.inspect(bind)
    for table in schema.metadata.tables.values():
        if not inspector.has_table(table.name, schema=table.schema):
            continue
        stored = {c["name"]: c["type"] for c in inspector.get_columns(table.name, table.schema)}
        for column in table.columns:
            was = stored.get(column.name)
            bounded = isinstance(was, sa.String) and not isinstance(was, sa.Text) and was.length
            if isinstance(column.type, sa.Text) and bounded:
                op.alter_column(
                    table.name, column.name, type_=sa.Text(), existing_type=was, schema=table.schema
                )


def downgrade() -> None:
    """Nothing: bounding the columns again could refuse the text they hold now."""
