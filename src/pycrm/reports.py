"""``pycrm report``: analytics as terminal tables, or as PNG charts (matplotlib, optional)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pycrm.crm import connect
from pycrm.errors import ConfigurationError
from pycrm.session import Session

__all__ = ["REPORTS", "report_rows", "run_report"]


def _funnel(s: Session) -> tuple[list[str], list[list[Any]]]:
    rows = s.analytics.funnel(by="source")
    head = [
        "source",
        "captured",
        "assigned",
        "contacted",
        "qualified",
        "converted",
        "won",
        "conversion",
    ]
    return head, [
        [
            r.group or "-",
            r.captured,
            r.assigned,
            r.contacted,
            r.qualified,
            r.converted,
            r.won,
            f"{r.conversion_rate:.0%}",
        ]
        for r in rows
    ]


def _forecast(s: Session) -> tuple[list[str], list[list[Any]]]:
    rows = s.analytics.forecast()
    head = ["period", "owner", "pipeline", "weighted", "won", "quota", "attainment"]
    return head, [
        [r.period, r.owner_id or "-", r.pipeline, r.weighted, r.won, r.quota or "-",
         "-" if r.attainment is None else f"{r.attainment:.0%}"]
        for r in rows
    ]  # fmt: skip


def _aging(s: Session) -> tuple[list[str], list[list[Any]]]:
    rows = s.analytics.aging()
    return ["bucket (days past due)", "receivables", "outstanding"], [
        [r.bucket, r.count, r.outstanding] for r in rows
    ]


def _service(s: Session) -> tuple[list[str], list[list[Any]]]:
    rows = s.analytics.service(by="priority")
    head = [
        "priority",
        "tickets",
        "resolved",
        "first response h",
        "resolution h",
        "breach rate",
        "CSAT",
    ]
    return head, [
        [r.group or "-", r.tickets, r.resolved, r.avg_first_response_hours, r.avg_resolution_hours,
         f"{r.breach_rate:.0%}", r.avg_csat]
        for r in rows
    ]  # fmt: skip


#: Report name → function giving its header and rows.
REPORTS: dict[str, Callable[[Session], tuple[list[str], list[list[Any]]]]] = {
    "funnel": _funnel,
    "forecast": _forecast,
    "aging": _aging,
    "service": _service,
}

#: Which columns a chart draws: (label column, value columns).
_CHARTS = {
    "funnel": (0, [1, 3, 5, 6]),
    "forecast": (0, [2, 3, 4]),
    "aging": (0, [2]),
    "service": (0, [1, 2]),
}


def report_rows(session: Session, name: str) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of report ``name``."""
    if name not in REPORTS:
        raise ConfigurationError(f"unknown report {name!r}; choose from {', '.join(REPORTS)}")
    return REPORTS[name](session)


def _number(value: Any) -> float:
    amount = getattr(value, "amount", value)
    try:
        return float(amount)
    except (TypeError, ValueError):
        return 0.0


def draw(name: str, head: list[str], rows: list[list[Any]], path: Path) -> None:
    """Draw report ``name`` as a grouped bar chart in a PNG file."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError("--png needs matplotlib: pip install 'pycrm[charts]'") from None
    label, values = _CHARTS[name]
    labels = [str(r[label]) for r in rows]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(values), 1)
    for n, column in enumerate(values):
        positions = [i + n * width for i in range(len(rows))]
        axes.bar(positions, [_number(r[column]) for r in rows], width, label=head[column])
    axes.set_xticks([i + width * (len(values) - 1) / 2 for i in range(len(rows))], labels)
    axes.set_title(f"pycrm {name}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_report(args: argparse.Namespace, console: Console) -> int:
    """Print (and maybe draw) the report the command line asks for."""
    with connect(args.db) as crm:
        actor: Any = crm.system_actor if args.actor in (None, "system") else args.actor
        if isinstance(actor, str) and "@" in actor:
            from pycrm.importing import _actor

            actor = _actor(crm, actor, args.tenant)
        with crm.session(actor=actor, tenant=args.tenant) as s:
            head, rows = report_rows(s, args.report)
    table = Table(*head, title=f"pycrm {args.report}", title_justify="left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
    if args.png:
        draw(args.report, head, rows, Path(args.png))
        console.print(f"Chart written to {args.png}")
    return 0
