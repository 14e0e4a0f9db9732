"""Engines, connection settings and schema creation/migration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from pycrm.adapters.sqlalchemy.store import LAZY_BEGIN, SqlStore, translate_errors
from pycrm.adapters.sqlalchemy.tables import Schema, build_schema
from pycrm.errors import ConfigurationError, StorageError

__all__ = ["LAZY_BEGIN", "alembic_config", "ensure_schema", "open_store"]

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_begin(conn: Any) -> None:
    # pycrm's own units of work begin at their first write, with BEGIN IMMEDIATE
    # (see SqlUnitOfWork); an application's connection begins as it always did.
    if not conn.get_execution_options().get(LAZY_BEGIN):
        conn.exec_driver_sql("BEGIN")


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # pysqlite's own transaction handling defeats SAVEPOINT; let SQLAlchemy emit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Write-ahead logging: readers never block a writer's commit (a long read such as an
    # import's own session, or a report, would otherwise stall every writer).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def configure_sqlite(engine: Engine) -> None:
    """Make savepoints work on a pysqlite engine (idempotent)."""
    if engine.dialect.name != "sqlite":
        return
    if not sa.event.contains(engine, "connect", _sqlite_connect):
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)


#: The databases pycrm runs on, by SQLAlchemy backend name.
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _not_a_url(url: str, exc: Exception) -> str:
    """Why ``url`` cannot be read, with the URL the user probably meant."""
    if "://" not in url and url.strip():
        path = Path(url).expanduser()
        target = path.as_posix() if path.is_absolute() else path.as_posix().removeprefix("./")
        return (
            f"database URL {url!r} is not a URL: for the SQLite file {target} "
            f"write sqlite:///{target}"
        )
    return f"cannot read database URL {url!r}: {exc}"


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _make_engine(url: str) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(_not_a_url(url, exc)) from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise ConfigurationError(
            f"cannot use database URL {shown!r}: pycrm runs on SQLite (sqlite:///FILE) "
            f"and PostgreSQL (postgresql+psycopg://USER@HOST/DATABASE), not {backend}"
        )
    # JSON columns (audit entries, outbox payloads, contact points) written
    # without padding and with non-ASCII letters as they are: a tenth of an
    # imported lead's bytes were spaces and \u escapes.
    kwargs: dict[str, Any] = {"json_serializer": _compact_json}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(f"cannot create the folder for {url!r}: {exc}") from None
        else:
            kwargs["poolclass"] = sa.pool.StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return sa.create_engine(parsed, **kwargs)
    except ImportError as exc:
        hint = (
            "install it with pip install 'pycrm[postgresql]' and write postgresql+psycopg://"
            if backend == "postgresql"
            else "install it"
        )
        raise ConfigurationError(
            f"cannot use database URL {shown!r}: its driver {parsed.get_driver_name()} "
            f"is not installed ({exc}); {hint}"
        ) from None
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"cannot use database URL {shown!r}: {exc}") from None


def alembic_config(schema: Schema, connection: sa.Connection) -> Config:
    """An alembic Config that migrates pycrm's tables on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["pycrm_schema"] = schema
    return config


def _version_opts(schema: Schema) -> dict[str, Any]:
    return {
        "version_table": f"{schema.prefix}alembic_version",
        "version_table_schema": schema.metadata.schema,
    }


def ensure_schema(engine: Engine, schema: Schema) -> None:
    """Create pycrm's tables on a new database, or migrate an older one to the head revision.

    A new database gets the current tables directly and is stamped at head
    (alembic's recipe for building a database from scratch); an existing one
    at an older revision runs the migrations in between.
    """
    with translate_errors("cannot connect"):
        connection = engine.connect()
    with connection, translate_errors("create or migrate pycrm's tables"), connection.begin():
        if schema.metadata.schema and engine.dialect.name != "sqlite":
            connection.execute(sa.schema.CreateSchema(schema.metadata.schema, if_not_exists=True))
        context = MigrationContext.configure(connection, opts=_version_opts(schema))
        current = context.get_current_revision()
        config = alembic_config(schema, connection)
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head()
        if current is None:
            schema.metadata.create_all(connection)
            context.stamp(script, "head")
        elif current != head:
            from alembic import command

            command.upgrade(config, "head")


def open_store(
    target: str | Engine, *, schema: str | None = None, table_prefix: str = "pycrm_"
) -> SqlStore:
    """Open (and create or migrate, if needed) a pycrm database."""
    owns = isinstance(target, str)
    engine = _make_engine(target) if isinstance(target, str) else target
    configure_sqlite(engine)
    tables = build_schema(schema=schema, prefix=table_prefix)
    try:
        ensure_schema(engine, tables)
    except StorageError as exc:
        if owns:
            engine.dispose()
        shown = engine.url.render_as_string(hide_password=True)
        said = " ".join(str(exc).split())  # drivers' messages run over several lines
        raise ConfigurationError(f"cannot open the pycrm database at {shown}: {said}") from exc
    return SqlStore(engine, tables, owns_engine=owns)
