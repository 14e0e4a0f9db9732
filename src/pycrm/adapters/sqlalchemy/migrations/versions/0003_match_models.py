"""Fitted matching parameters get a table of their own; match keys are recomputed.

Each fit of the duplicate matcher stores a new version of its parameters per
record kind; a database made before has no such table, so this revision
creates it (and its index and unique constraint) from the current metadata.

Customers, contacts and leads also have new match keys (how a name sounds,
the building) and the email key now folds provider rules (Gmail dots,
googlemail.com), so their keys are recomputed from the stored records.

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


def _rekey() -> None:
    from pycrm.domain import Contact, Customer, Lead

    schema = context.config.attributes["pycrm_schema"]
    bind = op.get_bind()
    keys = schema.match_keys
    for cls in (Customer, Contact, Lead):
        codec = schema.codecs[cls]
        bind.execute(keys.delete().where(keys.c.record_type == cls.resource))
        # Only the columns this revision's table has: later revisions add some (read as None).
        table = codec.table
        present = {c["name"] for c in sa.inspect(bind).get_columns(table.name, table.schema)}
        missing = {c.name: None for c in table.c if c.name not in present}
        rows = bind.execute(sa.select(*[c for c in table.c if c.name in present])).mappings()
        while batch := rows.fetchmany(1000):
            new = [
                {
                    "tenant_id": record.tenant_id,
                    "record_type": cls.resource,
                    "record_id": record.id,
                    "kind": kind,
                    "key": key[:500],
                }
                for record in (codec.from_row({**missing, **row}) for row in batch)
                for kind, key in sorted({(k, v) for k, v in record.match_keys() if v})
            ]
            if new:
                bind.execute(keys.insert(), new)


def upgrade() -> None:
    """Create the match_models table unless it is there; recompute the match keys."""
    _table().create(op.get_bind(), checkfirst=True)
    _rekey()


def downgrade() -> None:
    """Drop the match_models table (the recomputed match keys stay: older code reads them)."""
    _table().drop(op.get_bind(), checkfirst=True)
