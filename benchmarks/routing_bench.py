"""How much the pluggy hook chain costs when routing leads.

Routes the same lead, with the same candidates and rule context, two or three
ways in one run on the memory adapter:

* **hook chain** — ``crm.rules.assign("pycrm_assign_lead", …)``: the
  RuleEngine asks every plugin in order (two no-op plugins that abstain, then
  the built-in ``pycrm.routing`` RuleBook) and checks the answer;
* **RuleBook.route** — the built-in routing plugin called directly;
* **RoutingRule.choose** — only the winning rule's pick, on the pool the
  earlier rules narrowed to.

and prints leads routed per second and the hook chain's overhead as a ratio
(target: at most 3× RuleBook.route).

Run it with ``python benchmarks/routing_bench.py`` (``--quick`` for a
few-second run, ``--check`` to exit 1 when the ratio is above the target).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

import pycrm
from pycrm.domain.leads import Lead
from pycrm.domain.org import User
from pycrm.rules import Assignment, RuleBook, RuleContext, hookimpl
from pycrm.testing import FakeClock

TARGET = 3.0
RULES = [
    {"name": "dach", "when": {"region": "DACH"}, "team": "Sales DACH"},  # narrows
    {"name": "machinery", "when": {"industry": "machinery"}, "skills": ["machinery"]},
    {"name": "rr", "pick": "round_robin"},  # decides
]


class Abstains:
    """A plugin that looks at the lead and leaves it to the others."""

    def __init__(self, industry: str) -> None:
        self.industry = industry

    @hookimpl
    def pycrm_assign_lead(
        self, lead: Lead, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        if lead.industry == self.industry:  # never true here
            return Assignment(candidates[0].id, "special")
        return None


def measure(call: Callable[[], Any], seconds: float) -> float:
    """Seconds per call: run batches until ``seconds`` have passed."""
    batch, calls, spent = 200, 0, 0.0
    while spent < seconds:
        start = time.perf_counter()
        for _ in range(batch):
            call()
        spent += time.perf_counter() - start
        calls += batch
    return spent / calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run")
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET}×")
    args = parser.parse_args(argv)
    seconds, rounds = (0.25, 3) if args.quick else (1.5, 5)
    console = Console()

    crm = pycrm.connect("memory://", clock=FakeClock(), routing_rules=RULES, load_plugins=False)
    with crm.session(crm.system_actor) as s:
        dach = s.org.create_team("Sales DACH", "sales")
        for n in range(12):
            s.org.create_user(
                f"Seller {n:02}",
                f"seller{n}@example.com",
                "sales",
                team_ids=[dach.id] if n < 8 else [],
                skills=["machinery"] if n % 2 else ["retail"],
            )
    crm.plugins.register(Abstains("aerospace"), name="noop_one")
    crm.plugins.register(Abstains("shipping"), name="noop_two")

    session = crm.session(crm.system_actor)
    try:
        lead = session.leads.capture(
            "Jo Meier", source="webform", region="DACH", industry="machinery", company="Meier"
        )
        ctx = RuleContext(session)
        candidates = session.leads.candidates()
        book = crm.plugins.get_plugin("pycrm.routing")
        assert isinstance(book, RuleBook)
        winner = book.rules[-1]
        pool = book.rules[1].narrow(book.rules[0].narrow(candidates, ctx), ctx)

        decision = crm.rules.assign("pycrm_assign_lead", lead, candidates, ctx)
        assert decision is not None
        assert decision.decided_by == "pycrm.routing:rr"
        assert book.route(lead, candidates, ctx) is not None

        paths: dict[str, Callable[[], Any]] = {
            "hook chain: RuleEngine.assign": lambda: crm.rules.assign(
                "pycrm_assign_lead", lead, candidates, ctx
            ),
            "direct: RuleBook.route": lambda: book.route(lead, candidates, ctx),
            "direct: RoutingRule.choose": lambda: winner.choose(pool, ctx),
        }
        best = dict.fromkeys(paths, float("inf"))
        with console.status("measuring…"):
            for _ in range(rounds):  # interleaved rounds, best of each
                for name, call in paths.items():
                    best[name] = min(best[name], measure(call, seconds))
    finally:
        session.rollback()
        crm.close()

    names = list(paths)
    chain, book_time = best[names[0]], best[names[1]]
    table = Table(
        title=f"Lead routing, memory adapter: {len(candidates)} candidates, {len(RULES)} rules, "
        f"best of {rounds} × {seconds:g}s",
        caption="hook chain = 2 abstaining plugins + the built-in RuleBook, answer checked; "
        "RoutingRule.choose = the winning pick only, on the already narrowed pool",
    )
    table.add_column("path")
    table.add_column("leads/s", justify="right")
    table.add_column("µs/lead", justify="right")
    table.add_column("hook chain ÷ this", justify="right")
    for name in names:
        table.add_row(
            name, f"{1 / best[name]:,.0f}", f"{best[name] * 1e6:,.1f}", f"{chain / best[name]:.2f}×"
        )
    console.print(table)

    ratio = chain / book_time
    ok = ratio <= TARGET
    colour = "green" if ok else "red"
    console.print(
        f"hook chain vs RuleBook.route: [bold {colour}]{ratio:.2f}×[/] "
        f"(target ≤ {TARGET:g}×, {'within' if ok else 'ABOVE'} target); "
        f"overhead {(chain - book_time) * 1e6:,.1f} µs per lead"
    )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
