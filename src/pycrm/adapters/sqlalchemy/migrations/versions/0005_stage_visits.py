"""The deal-stage funnel's table (``stage_visits``), lead archive and merge, task sweep, sharing.

* ``stage_visits``: one row per stay of a deal in a stage, so the funnel is a
  plain SQL aggregate over indexed columns (a deal's ``stage_history`` is a
  JSON list that SQL can neither index nor aggregate without dialect-specific
  JSON table functions). The table is created and filled from every deal's
  stored stage history.
* ``leads.archived_at`` and ``leads.merged_into``: archived leads leave lists;
  merged ones point at their survivor.
* ``tasks.overdue_at`` and an index on ``tasks (status, due_at)``: the overdue
  sweep marks each task once and finds due ones without a scan.
* ``documents.readable_by``: the readers a document is shared with; every
  document stored before gets the match key ``("reader", "*")`` (shared with
  whoever reads its record), so the read filter is one index probe.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from pycrm.domain.deals import StageChange, StageVisit, stays_of
from pycrm.domain.documents import EVERYONE
from pycrm.domain.ids import new_id

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: (table, column) pairs this revision adds.
COLUMNS = (
    ("leads", "archived_at"),
    ("leads", "merged_into"),
    ("tasks", "overdue_at"),
    ("documents", "readable_by"),
)
INDEX = ("tasks", "ix_{prefix}tasks_status_due_at")


def _schema() -> Any:
    return context.config.attributes["pycrm_schema"]


def _table(name: str) -> sa.Table:
    schema = _schema()
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}{name}"]))
    ]
    return table


def _columns(table: sa.Table) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table.name, table.schema)}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _when(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _backfill() -> None:
    """A visit row for every stay in every stored deal's stage history."""
    bind = op.get_bind()
    deals, pipelines = _table("deals"), _table("pipelines")
    codec = _schema().codec(StageVisit)
    stages = {
        (row.tenant_id, row.id): [s["key"] for s in _json(row.stages) or ()]
        for row in bind.execute(
            sa.select(pipelines.c.tenant_id, pipelines.c.id, pipelines.c.stages)
        )
    }
    query = sa.select(
        deals.c.tenant_id,
        deals.c.id,
        deals.c.pipeline_id,
        deals.c.owner_id,
        deals.c.created_at,
        deals.c.stage_history,
    )
    batch: list[dict[str, Any]] = []
    for row in bind.execute(query):
        history = [
            StageChange(item["stage"], _when(item["at"]), item["by"])
            for item in _json(row.stage_history) or ()
        ]
        opened = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        for stay in stays_of(history, stages.get((row.tenant_id, row.pipeline_id), [])):
            visit = StageVisit(
                id=new_id(),
                tenant_id=row.tenant_id,
                created_at=stay["entered_at"],
                created_by="system",
                updated_at=stay["entered_at"],
                updated_by="system",
                deal_id=row.id,
                pipeline_id=row.pipeline_id,
                owner_id=row.owner_id,
                opened_at=opened,
                **stay,
            )
            batch.append(codec.to_row(visit))
        if len(batch) >= 5000:
            bind.execute(sa.insert(codec.table), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(codec.table), batch)


def upgrade() -> None:
    """Add the columns and the index, create the stage_visits table and fill it."""
    bind = op.get_bind()
    for name, column in COLUMNS:
        table = _table(name)
        if column not in _columns(table):
            op.add_column(
                table.name,
                sa.Column(column, table.c[column].type, nullable=True),
                schema=table.schema,
            )
    tasks = _table(INDEX[0])
    wanted = INDEX[1].format(prefix=_schema().prefix)
    present = {ix["name"] for ix in sa.inspect(bind).get_indexes(tasks.name, schema=tasks.schema)}
    for index in tasks.indexes:
        if index.name == wanted and index.name not in present:
            index.create(bind)
    visits = _table("stage_visits")
    if not sa.inspect(bind).has_table(visits.name, schema=visits.schema):
        visits.create(bind)
        _backfill()
    _reader_keys()


def _reader_keys() -> None:
    """The ``("reader", "*")`` match key of every document stored before sharing existed."""
    bind = op.get_bind()
    keys, documents = _schema().match_keys, _table("documents")
    shared = sa.select(keys.c.record_id).where(
        keys.c.record_type == "document", keys.c.kind == "reader"
    )
    rows = bind.execute(
        sa.select(documents.c.tenant_id, documents.c.id).where(documents.c.id.not_in(shared))
    )
    while batch := rows.fetchmany(5000):
        bind.execute(
            sa.insert(keys),
            [
                {
                    "tenant_id": tenant,
                    "record_type": "document",
                    "record_id": id,
                    "kind": "reader",
                    "key": EVERYONE,
                }
                for tenant, id in batch
            ],
        )


def downgrade() -> None:
    """Drop the stage_visits table, the index, the columns and the reader keys."""
    bind = op.get_bind()
    keys = _schema().match_keys
    bind.execute(keys.delete().where(keys.c.record_type == "document", keys.c.kind == "reader"))
    _table("stage_visits").drop(bind, checkfirst=True)
    tasks = _table(INDEX[0])
    op.drop_index(
        INDEX[1].format(prefix=_schema().prefix), table_name=tasks.name, schema=tasks.schema
    )
    for name, column in COLUMNS:
        table = _table(name)
        with op.batch_alter_table(table.name, schema=table.schema) as batch:
            batch.drop_column(column)
