"""Every hook is documented with its exact signature, and has a test of its own.

For each hook specification in :mod:`pycrm.rules.hookspecs`:

* ``docs/plugins/hooks.md`` has a ``## <hook>`` section whose code block shows
  ``def <hook><signature>`` exactly as ``inspect.signature`` prints it, and the
  first line of the hook's docstring;
* some test module in ``tests/`` defines ``test_hook_<hook>``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pycrm.rules import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS_PAGE = ROOT / "docs" / "plugins" / "hooks.md"
TESTS = Path(__file__).resolve().parent


def hook_specs() -> dict[str, Callable[..., Any]]:
    return {
        name: value
        for name, value in vars(hookspecs).items()
        if name.startswith("pycrm_") and inspect.isfunction(value)
    }


HOOKS = hook_specs()


def sections(text: str) -> dict[str, str]:
    """``## heading`` → the text up to the next ``## `` heading."""
    parts = re.split(r"(?m)^## +", text)
    return {part.split("\n", 1)[0].strip(): part for part in parts[1:]}


def test_the_hook_specs_are_found() -> None:
    assert set(HOOKS) >= {
        "pycrm_assign_lead",
        "pycrm_assign_ticket",
        "pycrm_score_lead",
        "pycrm_followups",
        "pycrm_approvals",
    }
    for fn in HOOKS.values():
        assert hasattr(fn, f"{hookspecs.PROJECT}_spec"), f"{fn.__name__} is not a hookspec"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_its_exact_signature(name: str) -> None:
    fn = HOOKS[name]
    page = sections(HOOKS_PAGE.read_text(encoding="utf-8"))
    assert name in page, f"docs/plugins/hooks.md has no '## {name}' heading"
    section = page[name]
    signature = f"def {name}{inspect.signature(fn)}"
    assert f"```python\n{signature}\n```" in section, (
        f"docs/plugins/hooks.md, section {name}: expected the code block\n{signature}"
    )
    summary = inspect.getdoc(fn).splitlines()[0]  # type: ignore[union-attr]
    assert summary in section, f"section {name} lacks the docstring's summary {summary!r}"


def test_the_hooks_page_documents_no_hook_that_does_not_exist() -> None:
    page = sections(HOOKS_PAGE.read_text(encoding="utf-8"))
    documented = {heading for heading in page if heading.startswith("pycrm_")}
    assert documented == set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_has_a_test(name: str) -> None:
    pattern = re.compile(rf"(?m)^\s*def test_hook_{re.escape(name)}\s*\(")
    holders = [
        path.name
        for path in sorted(TESTS.rglob("test_*.py"))
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert holders, f"no test function named test_hook_{name} in tests/"
