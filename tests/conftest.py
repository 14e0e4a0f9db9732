"""Fixtures shared by the test suite.

``crm`` is parametrised over the three backends, so every test that uses it
is a contract test: memory, SQLite (a file of its own per test) and PostgreSQL
(a schema of its own per test, empty when the test starts, on the server named
by ``PYCRM_TEST_POSTGRES_URL``).
PostgreSQL tests skip when no server is configured, unless
``PYCRM_REQUIRE_POSTGRES=1`` (set by CI), in which case they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings

import pycrm
from pycrm.adapters.sqlalchemy.tables import build_schema as pycrm_tables
from pycrm.session import Session
from pycrm.testing import Factories, FakeClock

BACKENDS = ("memory", "sqlite", "postgresql")
PG_URL = os.environ.get("PYCRM_TEST_POSTGRES_URL")
PG_REQUIRED = os.environ.get("PYCRM_REQUIRE_POSTGRES") == "1"

# ``PYCRM_HYPOTHESIS_PROFILE=mutation`` (set by ``nox -s mutants``): every test
# runs once per mutant, so property tests try few examples, in a fixed order and
# without the example database, and each mutant gets the same verdict every run.
# Tests that set their own ``max_examples`` keep it.
settings.register_profile("mutation", max_examples=10, derandomize=True, database=None)
settings.load_profile(os.environ.get("PYCRM_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[sa.Engine]:
    """One engine on the test PostgreSQL server for the whole run."""
    if not PG_URL:
        if PG_REQUIRED:
            pytest.fail("PYCRM_REQUIRE_POSTGRES=1 but PYCRM_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server: set PYCRM_TEST_POSTGRES_URL (see the README)")
    engine = sa.create_engine(PG_URL, pool_size=5)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} does not answer: {exc}")
    yield engine
    with engine.begin() as connection:  # the schemas kept for reuse go with the run
        for name in _EMPTIED_SCHEMAS:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    _EMPTIED_SCHEMAS.clear()
    engine.dispose()


@pytest.fixture
def pg_schema(pg_engine: sa.Engine) -> Iterator[str]:
    """A fresh schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with pg_engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


#: Schemas holding pycrm's tables, emptied after use, for :func:`pg_pycrm_schema`.
_EMPTIED_SCHEMAS: list[str] = []


@pytest.fixture
def pg_pycrm_schema(pg_engine: sa.Engine) -> Iterator[str]:
    """A schema that holds no rows (pycrm's tables, once a test has made them).

    Creating pycrm's tables took most of a PostgreSQL test's time, so a schema
    is emptied after the test and handed to the next one (and dropped at the
    end of the run). A schema holding tables other than pycrm's is dropped
    at once instead.
    """
    name = _EMPTIED_SCHEMAS.pop() if _EMPTIED_SCHEMAS else f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with pg_engine.begin() as connection:
        tables = connection.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": name},
        ).scalars()
        emptied = sorted(t for t in tables if t != "pycrm_alembic_version")
        if set(emptied) == _PYCRM_TABLES:
            listed = ", ".join(f'"{name}"."{t}"' for t in emptied)
            connection.execute(sa.text(f"TRUNCATE {listed}"))
            _EMPTIED_SCHEMAS.append(name)
        else:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


#: The tables of pycrm's default prefix, as its schema defines them.
_PYCRM_TABLES = {t.name for t in pycrm_tables().metadata.tables.values()}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file holding pycrm's tables and no rows, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "crm.db"
    pycrm.connect(f"sqlite:///{path}").close()
    return path


ConnectFn = Callable[..., pycrm.CRM]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name under test."""
    name: str = request.param
    if name == "postgresql":
        request.node.add_marker(pytest.mark.postgres)
    return name


@pytest.fixture
def connect_crm(
    backend: str, tmp_path: Path, fake_clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[ConnectFn]:
    """A function that connects a CRM on the backend under test (same data on every call)."""
    opened: list[pycrm.CRM] = []
    target: Any
    options: dict[str, Any] = {}
    if backend == "memory":
        store = pycrm.connect("memory://").store

        def make(**kwargs: Any) -> pycrm.CRM:
            return pycrm.CRM(store, **{"clock": fake_clock, **kwargs})

        yield make
        return
    if backend == "sqlite":
        # A copy of an empty database: the same tables as a new one, without the DDL.
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "crm.db")
        target = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        target = request.getfixturevalue("pg_engine")
        options["schema"] = request.getfixturevalue("pg_pycrm_schema")

    def make_sql(**kwargs: Any) -> pycrm.CRM:
        instance = pycrm.connect(target, **{"clock": fake_clock, **options, **kwargs})
        opened.append(instance)
        return instance

    yield make_sql
    for instance in opened:
        instance.close()


@pytest.fixture
def crm(connect_crm: ConnectFn) -> pycrm.CRM:
    """A CRM on the backend under test, with a fake clock and German default phone region."""
    return connect_crm(default_region="DE")


@pytest.fixture
def system(crm: pycrm.CRM) -> Iterator[Session]:
    """A system-actor session, committed at the end of the test."""
    with crm.session(actor=crm.system_actor) as session:
        yield session


@pytest.fixture
def make(system: Session) -> Factories:
    """Factories on the system session."""
    return Factories(system)


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that stands still until the test moves it."""
    return FakeClock()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Count the skipped tests per reason: one line each, not one per test.

    Without a PostgreSQL server every PostgreSQL test skips for the same
    reason; the README says how to run them.
    """
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skipped tests, by reason", sep="-")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count} skipped: {reason}")
