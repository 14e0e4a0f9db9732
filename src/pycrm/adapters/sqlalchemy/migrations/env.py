"""Alembic environment for pycrm's own tables.

Run through :func:`pycrm.adapters.sqlalchemy.engine.ensure_schema` (or
``pycrm db upgrade``), which passes the connection and pycrm's table schema.
"""

from __future__ import annotations

from alembic import context

config = context.config
schema = config.attributes["pycrm_schema"]
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    version_table=f"{schema.prefix}alembic_version",
    version_table_schema=schema.metadata.schema,
)
with context.begin_transaction():
    context.run_migrations()
