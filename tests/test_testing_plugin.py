"""pycrm.testing: the pytest plugin (loaded through the pytest11 entry point) and FakeClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pycrm.errors import ValidationError
from pycrm.testing import FakeClock

pytest_plugins = ["pytester"]

USER_TESTS = """
from datetime import timedelta

import pycrm
from pycrm.session import Session
from pycrm.testing import Factories, FakeClock


def test_the_fixtures_fit_together(crm, crm_session, make, fake_clock):
    assert isinstance(crm, pycrm.CRM)
    assert isinstance(crm_session, Session)
    assert isinstance(make, Factories)
    assert isinstance(fake_clock, FakeClock)
    assert crm.clock is fake_clock
    assert crm_session.crm is crm
    assert make.session is crm_session
    acme = make.customer(name="Acme")
    assert acme.created_at == fake_clock.now()
    fake_clock.advance(hours=1)
    renamed = crm_session.customers.update(acme.id, name="Acme Corp")
    assert renamed.updated_at == acme.created_at + timedelta(hours=1)
    person = make.contact(customer_id=acme.id)
    call = make.activity(contact_id=person.id)
    assert call.customer_id == acme.id
    assert crm_session.customers.search("acme") == [renamed]


def test_every_test_gets_a_fresh_crm_in_memory(crm, crm_session):
    assert crm_session.customers.count() == 0
    assert getattr(crm.store, "engine", None) is None


def test_the_session_commits_at_the_end(crm, crm_session, make):
    make.customer(name="Kept")
    with crm.session(actor=crm.system_actor) as other:
        assert other.customers.search("kept") == []


def test_a_wrong_expectation_fails(make, crm_session):
    make.customer(name="Acme")
    assert crm_session.customers.count() == 2
"""


def test_the_plugins_fixtures_work_in_a_users_test_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_suite=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rf")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_user_suite.py::test_a_wrong_expectation_fails*"])


def test_the_plugin_is_registered_under_the_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "pycrm"]
    assert entry.value == "pycrm.testing.pytest_plugin"
    module = entry.load()
    for fixture in ("crm", "crm_session", "make", "fake_clock"):
        assert hasattr(module, fixture)


# -- FakeClock ------------------------------------------------------------------------


def test_a_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock()
    assert clock.now() == clock.now() == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_advance_moves_forward_by_a_delta_or_keywords_and_returns_the_new_time() -> None:
    start = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    clock = FakeClock(start)
    assert clock.advance(timedelta(minutes=5)) == start + timedelta(minutes=5)
    assert clock.advance(hours=1, seconds=30) == start + timedelta(hours=1, minutes=5, seconds=30)
    assert clock.advance(days=0.5) == start + timedelta(hours=13, minutes=5, seconds=30)
    assert clock.advance(timedelta(0)) == clock.now()
    assert clock.now() == start + timedelta(hours=13, minutes=5, seconds=30)
    with pytest.raises(ValidationError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValidationError):
        clock.advance(minutes=-1)
    assert clock.now() == start + timedelta(hours=13, minutes=5, seconds=30)


def test_set_jumps_anywhere_and_time_is_reported_in_utc() -> None:
    clock = FakeClock()
    clock.set(datetime(2020, 2, 29, 23, 59, tzinfo=UTC))
    assert clock.now() == datetime(2020, 2, 29, 23, 59, tzinfo=UTC)
    berlin = timezone(timedelta(hours=1))
    clock.set(datetime(2027, 1, 1, 10, 0, tzinfo=berlin))
    assert clock.now() == datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    assert clock.advance(hours=1) == datetime(2027, 1, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValidationError):
        clock.set(datetime(2027, 1, 1))
    with pytest.raises(ValidationError):
        FakeClock(datetime(2027, 1, 1))
    assert clock.now() == datetime(2027, 1, 1, 10, 0, tzinfo=UTC)
