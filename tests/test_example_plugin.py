"""The example plugin package (examples/plugin) is found through its entry point and used.

Install it with ``pip install -e examples/plugin``. Without it these tests skip,
except in CI (``PYCRM_REQUIRE_POSTGRES=1``), where they fail.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import pycrm
from pycrm.rules import PROJECT
from pycrm.testing import FakeClock

PLUGIN = "example_routing"


@pytest.fixture(autouse=True)
def _require_example_plugin() -> None:
    names = {entry.name for entry in importlib.metadata.entry_points(group=PROJECT)}
    if PLUGIN in names:
        return
    message = f"the example plugin is not installed: pip install -e examples/plugin ({PLUGIN!r} not in {sorted(names)})"
    if os.environ.get("PYCRM_REQUIRE_POSTGRES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=["memory", "sqlite"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'crm.db'}"


@pytest.fixture
def crm(target: str) -> Iterator[pycrm.CRM]:
    instance = pycrm.connect(
        target,
        clock=FakeClock(),
        routing_rules=[{"name": "everyone", "pick": "round_robin"}],
    )
    yield instance
    instance.close()


def test_connect_loads_the_installed_plugin(crm: pycrm.CRM) -> None:
    import pycrm_example_routing

    assert crm.plugins.get_plugin(PLUGIN) is pycrm_example_routing
    assert crm.plugins.get_plugin("pycrm.routing") is not None  # the built-ins stay


def test_an_aerospace_lead_goes_to_the_least_busy_aerospace_specialist(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        s.org.create_user("Aaron", "aaron@example.com", "sales")
        astrid = s.org.create_user("Astrid", "astrid@example.com", "sales", skills=["Aerospace"])
        boris = s.org.create_user("Boris", "boris@example.com", "sales", skills=["aerospace"])
        s.org.create_user(
            "Ada Away", "ada@example.com", "sales", skills=["aerospace"], on_leave=True
        )

    with crm.session(crm.system_actor) as s:
        first = s.leads.capture("Orbit buyer", source="webform", industry="aerospace")
        second = s.leads.capture("Rocket buyer", source="webform", industry="Aerospace")
        why = s.leads.explain_assignment(first.id)
        preview = s.leads.preview_assignment(industry="aerospace")

    assert first.owner_id == astrid.id  # both at 0 open leads: Astrid by name
    assert second.owner_id == boris.id  # now Boris has fewer
    assert why.decided_by is not None
    assert why.decided_by.startswith(PLUGIN)
    assert why.decided_by == "example_routing:aerospace"
    assert why.reason == "aerospace specialist with the fewest open leads (0) of 2"
    assert preview is not None
    assert preview.rule == "example_routing:aerospace"
    assert preview.owner_id == astrid.id  # 1 each: by name again


def test_other_leads_are_left_to_the_built_in_rules(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        s.org.create_user("Astrid", "astrid@example.com", "sales", skills=["aerospace"])
        lead = s.leads.capture("Bakery owner", source="webform", industry="food")
        assert s.leads.explain_assignment(lead.id).decided_by == "pycrm.routing:everyone"
        # no specialist available: the built-in rules decide aerospace leads too
        s.org.update_user(s.org.users()[0].id, on_leave=True)
        s.org.create_user("Bert", "bert@example.com", "sales")
        orphan = s.leads.capture("Glider maker", source="webform", industry="aerospace")
        assert s.leads.explain_assignment(orphan.id).decided_by == "pycrm.routing:everyone"


def test_the_plugin_adds_to_the_score_of_aerospace_leads_only(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        aero = s.leads.capture("A", source="import", industry="aerospace")
        food = s.leads.capture("B", source="import", industry="food")
    assert aero.score == food.score + 25  # type: ignore[operator]


def test_load_plugins_false_leaves_it_out(tmp_path: Path) -> None:
    for target in ("memory://", f"sqlite:///{tmp_path / 'off.db'}"):
        with pycrm.connect(target, load_plugins=False) as crm:
            assert crm.plugins.get_plugin(PLUGIN) is None
            assert crm.plugins.get_plugin("pycrm.routing") is not None
            with crm.session(crm.system_actor) as s:
                s.org.create_user("Astrid", "astrid@example.com", "sales", skills=["aerospace"])
                lead = s.leads.capture("Orbit buyer", source="import", industry="aerospace")
                assert lead.owner_id is None  # no routing rules, no plugin: stays new
                assert lead.score == 5 + 5  # import + industry, no bonus
