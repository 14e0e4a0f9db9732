"""The demo runs the whole flow and each department sees its part."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

import pycrm
from pycrm.demo import run_demo


def test_the_demo_walks_a_customer_from_lead_to_cash_on_every_backend(crm: pycrm.CRM) -> None:
    out = io.StringIO()
    figures = run_demo(crm, "demo-test", Console(file=out, width=120))
    assert figures["receivables"] == 3
    assert figures["outstanding"] == {"EUR": pycrm.Money.of("120000", "EUR")}
    assert figures["service_sees_activities"] == 1  # the rep's private note is hidden from service
    assert figures["service_sees_receivables"] == 0  # receivables are finance's
    assert figures["tickets"] == 1
    assert figures["satisfaction"] == 5.0
    handoffs = [n for n in figures["signals"] if n not in ("user_created", "task_created")]
    assert (
        handoffs.index("lead_captured")
        < handoffs.index("lead_converted")
        < handoffs.index("deal_won")
    )
    assert (
        handoffs.index("deal_won")
        < handoffs.index("contract_submitted")
        < handoffs.index("contract_approved")
        < handoffs.index("contract_signed")
        < handoffs.index("payment_received")
    )
    assert (
        handoffs.index("quote_sent")
        < handoffs.index("quote_accepted")
        < handoffs.index("contract_signed", handoffs.index("quote_accepted"))
    )
    assert handoffs.count("receivable_created") == 3 + 12  # the machines, then 12 months
    # The plan: 3 × 450 less 5 % and 90 = 1,372.50 net; 19 % tax per line
    # (243.675 → 243.68 half-even, and 17.10) makes 1,633.28 a month.
    assert figures["quote_total"] == pycrm.Money.of("1633.28", "EUR")
    start, end, months = figures["subscription"]
    assert (months, (end - start).days in (364, 365)) == (12, True)
    assert figures["mrr"] == {"EUR": pycrm.Money.of("1633.28", "EUR")}
    assert figures["pending_outbox"] == len(figures["signals"])
    # The trade-show list: Jonas is new, Anna is already a lead, Jonas again is a
    # duplicate of an earlier row, and Petra's phone cannot exist.
    assert figures["imported"] == (1, 2, 1)
    assert figures["custom"] == {"headcount": 420, "tier": "gold"}
    funnel = {row[0]: row[1:7] for row in figures["funnel"]}
    # captured, assigned, contacted, qualified, converted, won per source
    assert funnel == {"trade_show": [2, 1, 1, 1, 1, 1], "webform": [2, 1, 0, 0, 0, 0]}
    assert [row[1] for row in figures["service"]] == [1]
    text = out.getvalue()
    for heading in ("Marketing", "Sales", "Legal", "Finance", "Service", "Managers", "Handoffs"):
        assert heading in text


def test_pycrm_demo_runs_twice_on_the_same_sqlite_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'pycrm.db'}"
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "pycrm.cli", "demo", "--db", db],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "Finance: receivables" in done.stdout
