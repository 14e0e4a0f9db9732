"""pytest fixtures for code that uses pycrm (loaded through the ``pytest11`` entry point).

* ``fake_clock``: a :class:`~pycrm.testing.FakeClock`;
* ``crm``: an in-memory CRM on that clock;
* ``crm_session``: a system-actor session on ``crm``, committed at the end of the test;
* ``make``: :class:`~pycrm.testing.Factories` on ``crm_session``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pycrm
from pycrm.session import Session
from pycrm.testing.clock import FakeClock
from pycrm.testing.factories import Factories


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that stands still until the test moves it."""
    return FakeClock()


@pytest.fixture
def crm(fake_clock: FakeClock) -> Iterator[pycrm.CRM]:
    """A fresh in-memory CRM using ``fake_clock``."""
    instance = pycrm.connect("memory://", clock=fake_clock)
    yield instance
    instance.close()


@pytest.fixture
def crm_session(crm: pycrm.CRM) -> Iterator[Session]:
    """A session as the system actor."""
    with crm.session(actor=crm.system_actor) as session:
        yield session


@pytest.fixture
def make(crm_session: Session) -> Factories:
    """Factories on ``crm_session``."""
    return Factories(crm_session)
