"""The SQLAlchemy adapter: SQLite (the embedded default) and PostgreSQL (psycopg 3)."""

from pycrm.adapters.sqlalchemy.engine import open_store
from pycrm.adapters.sqlalchemy.store import SqlStore
from pycrm.adapters.sqlalchemy.tables import Schema, build_schema

__all__ = ["Schema", "SqlStore", "build_schema", "open_store"]
