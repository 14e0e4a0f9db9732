"""People's names in parts, and what routing reads about users.

* ``contacts`` and ``leads`` get ``given_name``, ``family_name`` and
  ``name_order``: a person's name known in parts (search and matching use
  them; a display name is made from them when none is given).
* ``users`` get ``regions`` and ``languages``: what an organisation records
  about its people for routing rules to read, beside ``skills``.

The name columns stay None for the records stored before; the users' lists
are filled with empty lists.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: (table, column) pairs this revision adds.
COLUMNS = (
    ("contacts", "given_name"),
    ("contacts", "family_name"),
    ("contacts", "name_order"),
    ("leads", "given_name"),
    ("leads", "family_name"),
    ("leads", "name_order"),
    ("users", "regions"),
    ("users", "languages"),
)


def _schema() -> Any:
    return context.config.attributes["pycrm_schema"]


def _table(name: str) -> sa.Table:
    schema = _schema()
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}{name}"]))
    ]
    return table


#: Columns holding a list: rows stored before get an empty one.
LISTS = frozenset({("users", "regions"), ("users", "languages")})


def upgrade() -> None:
    """Add each column that is not there yet, and empty lists in the users' new ones."""
    bind = op.get_bind()
    for name, column in COLUMNS:
        table = _table(name)
        present = {c["name"] for c in sa.inspect(bind).get_columns(table.name, table.schema)}
        if column not in present:
            op.add_column(
                table.name,
                sa.Column(column, table.c[column].type, nullable=True),
                schema=table.schema,
            )
        if (name, column) in LISTS:
            bind.execute(sa.update(table).where(table.c[column].is_(None)).values({column: []}))


def downgrade() -> None:
    """Drop the columns again."""
    for name, column in COLUMNS:
        table = _table(name)
        with op.batch_alter_table(table.name, schema=table.schema) as batch:
            batch.drop_column(column)
