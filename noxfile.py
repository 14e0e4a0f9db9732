"""Developer tasks: ``nox -s tests lint typecheck docs examples bench``.

The PostgreSQL tests need ``PYCRM_TEST_POSTGRES_URL`` (see ``../shared/ci`` for
a throwaway server); without it they are skipped.
"""

from __future__ import annotations

import glob
import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs", "examples"]
nox.options.reuse_existing_virtualenvs = True

DEV = ".[dev]"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on memory, SQLite and (if configured) PostgreSQL."""
    session.install("-e", DEV)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check")
    session.run("ruff", "format", "--check")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the benchmarks."""
    session.install("-e", DEV)
    session.run("mypy")
    session.run("mypy", "--strict", *sorted(glob.glob("benchmarks/*.py")))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.install("-e", DEV)
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example script."""
    session.install("-e", DEV)
    for path in sorted(glob.glob("examples/*.py")):
        session.run("python", os.path.abspath(path))


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and print their ratios (not part of the default sessions)."""
    session.install("-e", DEV)
    for path in sorted(glob.glob("benchmarks/*_bench.py")):
        session.run("python", path, *session.posargs)
