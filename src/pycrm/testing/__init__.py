"""Helpers for testing code that uses pycrm: a fake clock and record factories.

The pytest plugin (:mod:`pycrm.testing.pytest_plugin`, registered through the
``pytest11`` entry point) offers ready fixtures: ``crm`` (in memory, on a
``fake_clock``) and ``crm_session`` (a system-actor session on it).
"""

from pycrm.testing.clock import FakeClock
from pycrm.testing.factories import Factories

__all__ = ["FakeClock", "Factories"]
