"""docs/permissions.md shows DEFAULT_POLICY exactly, so the guide cannot drift from the code.

The tables between ``<!-- policy-table:start -->`` and ``<!-- policy-table:end -->``
are generated from ``DEFAULT_POLICY.to_dict()``. After changing the policy, run::

    python tests/test_docs_policy_table.py --write
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pycrm.domain.activities import Activity
from pycrm.domain.audit import AuditEntry
from pycrm.domain.contracts import Contract
from pycrm.domain.customers import Contact, Customer
from pycrm.domain.deals import Deal
from pycrm.domain.leads import Lead
from pycrm.domain.org import User
from pycrm.domain.permissions import ACTIONS, DEFAULT_POLICY, Policy
from pycrm.domain.receivables import Receivable
from pycrm.domain.tasks import Task
from pycrm.domain.tickets import Ticket

DOC = Path(__file__).resolve().parent.parent / "docs" / "permissions.md"
START = "<!-- policy-table:start -->"
END = "<!-- policy-table:end -->"


def _names(values: list[str]) -> str:
    return ", ".join("everyone" if v == "*" else f"`{v}`" for v in values)


def _everything(values: list[str], what: str) -> str:
    return f"every {what}" if values == ["*"] else ", ".join(f"`{v}`" for v in values)


def _condition(grant: Mapping[str, Any]) -> str:
    parts = [f"when `{k}` is `{v}`" for k, v in grant.get("when", {}).items()]
    parts += [f"unless `{k}` is `{v}`" for k, v in grant.get("unless", {}).items()]
    return "; ".join(parts)


def render(policy: Mapping[str, Any]) -> str:
    """The markdown tables for a policy given as data (what ``Policy.to_dict`` returns)."""
    lines = [
        "| # | roles | resources | actions | scope | condition |",
        "|---|---|---|---|---|---|",
    ]
    for number, grant in enumerate(policy["grants"], 1):
        lines.append(
            f"| {number} | {_names(grant['roles'])} | {_everything(grant['resources'], 'kind')}"
            f" | {_everything(grant['actions'], 'action')} | {grant['scope']}"
            f" | {_condition(grant)} |"
        )
    lines += [
        "",
        "| resource | field | rule | except for |",
        "|---|---|---|---|",
    ]
    for rule in policy["fields"]:
        kind = "hidden" if rule["hidden"] else "read-only" if rule["read_only"] else "none"
        lines.append(
            f"| `{rule['resource']}` | `{rule['field']}` | {kind} | {_names(rule['allowed'])} |"
        )
    return "\n".join(lines)


_BLOCK = re.compile(re.escape(START) + r"\n(.*?)\n" + re.escape(END), re.DOTALL)


def _block(text: str) -> str:
    match = _BLOCK.search(text)
    assert match is not None, f"{DOC} has no {START} … {END} block"
    return match.group(1).strip("\n")


def test_the_guide_shows_the_default_policy_exactly() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(START) == 1
    assert text.count(END) == 1
    assert _block(text) == render(DEFAULT_POLICY.to_dict()), (
        "docs/permissions.md is out of date: run python tests/test_docs_policy_table.py --write"
    )


def test_the_table_round_trips_the_policy() -> None:
    """Every grant and field rule gets one row, and the data behind it reads back the same."""
    data = DEFAULT_POLICY.to_dict()
    rows = [line for line in render(data).splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(DEFAULT_POLICY.grants)
    assert Policy.from_dict(data) == DEFAULT_POLICY
    assert set(ACTIONS) >= {a for g in data["grants"] for a in g["actions"] if a != "*"}


def test_render_shows_conditions_and_field_rules() -> None:
    policy = Policy.from_dict(
        {
            "grants": [
                {"roles": ["service"], "resources": ["deal"], "actions": ["update"],
                 "scope": "all", "unless": {"status": "won"}},
                {"roles": "*", "resources": "*", "actions": "*", "scope": "own",
                 "when": {"region": "EMEA"}},
            ],
            "fields": [{"resource": "user", "field": "capacity", "read_only": True,
                        "allowed": ["admin"]}],
        }
    )  # fmt: skip
    assert render(policy.to_dict()).splitlines() == [
        "| # | roles | resources | actions | scope | condition |",
        "|---|---|---|---|---|---|",
        "| 1 | `service` | `deal` | `update` | all | unless `status` is `won` |",
        "| 2 | everyone | every kind | every action | own | when `region` is `EMEA` |",
        "",
        "| resource | field | rule | except for |",
        "|---|---|---|---|",
        "| `user` | `capacity` | read-only | `admin` |",
    ]


OWNERS = (Customer, Contact, Activity, Lead, Deal, Contract, Receivable, Task, Ticket, User,
          AuditEntry)  # fmt: skip


def test_the_guide_names_each_kinds_owner_field() -> None:
    text = DOC.read_text(encoding="utf-8")
    for cls in OWNERS:
        assert f"| `{cls.resource}` | `{cls.owner_field}` |" in text, cls.resource


def write() -> None:
    """Regenerate the block in docs/permissions.md."""
    text = DOC.read_text(encoding="utf-8")
    fresh = f"{START}\n\n{render(DEFAULT_POLICY.to_dict())}\n\n{END}"
    DOC.write_text(_BLOCK.sub(lambda _: fresh, text), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(render(DEFAULT_POLICY.to_dict()))
