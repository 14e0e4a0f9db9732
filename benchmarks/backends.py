"""The databases the benchmarks run on: a fresh SQLite file, or a fresh PostgreSQL schema.

Both open pycrm without entry-point plugins, so an installed plugin cannot change
what is measured.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import pycrm


@contextmanager
def sqlite_crm(**options: Any) -> Iterator[pycrm.CRM]:
    """pycrm on a new SQLite file in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        crm = pycrm.connect(f"sqlite:///{Path(tmp) / 'bench.db'}", load_plugins=False, **options)
        try:
            yield crm
        finally:
            crm.close()


@contextmanager
def postgres_crm(url: str, **options: Any) -> Iterator[pycrm.CRM]:
    """pycrm on PostgreSQL at ``url``, in a new schema dropped afterwards."""
    schema = f"pycrm_bench_{uuid.uuid4().hex[:8]}"
    crm = None
    try:
        crm = pycrm.connect(url, schema=schema, load_plugins=False, **options)
        yield crm
    finally:
        if crm is not None:
            crm.close()
        address = sa.engine.make_url(url)
        if address.drivername == "postgresql":
            address = address.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(address)
        with engine.begin() as conn:  # also after a failed connect(), which may have begun it
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
