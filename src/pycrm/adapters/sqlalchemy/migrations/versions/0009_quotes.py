"""Quotes get a table; contracts remember their quote and may be subscriptions.

* ``quotes`` holds ``s.quotes``: each version of a quote with its lines, totals,
  costs, state and approval steps.
* ``contracts`` get ``quote_id``, ``lines`` (the accepted quote's lines),
  ``exchange_rate`` and ``rate_date`` (the conversion of a quote billed in
  another currency), and the subscription columns ``billing_period``,
  ``recurring``, ``auto_renew``, ``notice_days``, ``renewal_of``,
  ``renewed_by`` and ``reminded_at``. Contracts stored before get an empty
  list of lines, ``auto_renew`` false, ``notice_days`` 30 and None for the rest.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: The contracts' new columns.
COLUMNS = (
    "quote_id",
    "lines",
    "exchange_rate",
    "rate_date",
    "billing_period",
    "recurring_minor",
    "recurring_currency",
    "auto_renew",
    "notice_days",
    "renewal_of",
    "renewed_by",
    "reminded_at",
)


def _table(name: str) -> sa.Table:
    schema = context.config.attributes["pycrm_schema"]
    table: sa.Table = schema.metadata.tables[
        ".".join(filter(None, [schema.metadata.schema, f"{schema.prefix}{name}"]))
    ]
    return table


def upgrade() -> None:
    """Create the quotes' table and add the contracts' columns that are not there yet."""
    bind = op.get_bind()
    _table("quotes").create(bind, checkfirst=True)
    contracts = _table("contracts")
    present = {c["name"] for c in sa.inspect(bind).get_columns(contracts.name, contracts.schema)}
    for column in COLUMNS:
        if column not in present:
            op.add_column(
                contracts.name,
                sa.Column(column, contracts.c[column].type, nullable=True),
                schema=contracts.schema,
            )
    c = contracts.c
    bind.execute(sa.update(contracts).where(c.lines.is_(None)).values(lines=[]))
    bind.execute(sa.update(contracts).where(c.auto_renew.is_(None)).values(auto_renew=False))
    bind.execute(sa.update(contracts).where(c.notice_days.is_(None)).values(notice_days=30))


def downgrade() -> None:
    """Drop the contracts' columns and the quotes' table."""
    contracts = _table("contracts")
    with op.batch_alter_table(contracts.name, schema=contracts.schema) as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
    _table("quotes").drop(op.get_bind(), checkfirst=True)
