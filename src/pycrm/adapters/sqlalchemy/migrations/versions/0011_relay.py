"""The outbox learns to be relayed by several workers, with retries and dead letters.

``outbox_messages`` gets ``record_id`` (events about one record are relayed in
order), the retry state (``next_attempt_at``, ``last_error``, ``sent_to``),
the dead-letter mark (``dead_at``) and the worker's lease (``claimed_by``,
``claimed_until``), plus indexes on ``(delivered, id)`` and ``(record_id, delivered, id)``
for claiming. Messages stored before get their ``record_id`` from their payload
and an empty ``sent_to``.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = (
    "record_id",
    "next_attempt_at",
    "last_error",
    "sent_to",
    "dead_at",
    "claimed_by",
    "claimed_until",
)
BATCH = 1_000


def _outbox() -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}outbox_messages"]))
    ]
    return table


def upgrade() -> None:
    """Add the columns and indexes that are missing; fill older messages' ``record_id``."""
    bind = op.get_bind()
    table = _outbox()
    inspector = sa.inspect(bind)
    present = {c["name"] for c in inspector.get_columns(table.name, table.schema)}
    for name in COLUMNS:
        if name not in present:
            column = table.c[name]
            op.add_column(
                table.name, sa.Column(name, column.type, nullable=True), schema=table.schema
            )
    indexes = {ix["name"] for ix in inspector.get_indexes(table.name, schema=table.schema)}
    for index in table.indexes:
        if index.name not in indexes:
            index.create(bind)
    bind.execute(sa.update(table).where(table.c.sent_to.is_(None)).values(sent_to=[]))
    while True:  # in batches: an outbox can be large
        rows = bind.execute(
            sa.select(table.c.tenant_id, table.c.id, table.c.payload)
            .where(table.c.record_id.is_(None))
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for tenant_id, id, payload in rows:
            bind.execute(
                sa.update(table)
                .where(table.c.tenant_id == tenant_id, table.c.id == id)
                .values(record_id=str((payload or {}).get("record_id") or id))
            )


def downgrade() -> None:
    """Drop the relay columns and indexes."""
    table = _outbox()
    bind = op.get_bind()
    indexes = {ix["name"] for ix in sa.inspect(bind).get_indexes(table.name, schema=table.schema)}
    for name in (f"ix_{table.name}_delivered_id", f"ix_{table.name}_record_id_delivered_id"):
        if name in indexes:
            op.drop_index(name, table_name=table.name, schema=table.schema)
    with op.batch_alter_table(table.name, schema=table.schema) as batch:
        for name in COLUMNS:
            batch.drop_column(name)
