"""``pycrm report``: analytics as terminal tables, JSON, or charts (matplotlib, optional).

:func:`build_report` runs one report in a session and keeps both its typed
rows (for JSON and charts) and the table a person reads; owners are shown
by name. :mod:`pycrm.charts` draws a :class:`Report`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.markup import escape

from pycrm.crm import connect
from pycrm.domain.tickets import Priority
from pycrm.errors import ConfigurationError, CRMError
from pycrm.serialization import converter, to_dict
from pycrm.services.analytics import ForecastRow
from pycrm.session import Session
from pycrm.terminal import actor_for, explained, print_json, table, warn_if_empty

__all__ = [
    "AGING_BUCKETS",
    "CONVERTIBLE",
    "FUNNEL_STAGES",
    "PRIORITIES",
    "REPORTS",
    "Report",
    "build_report",
    "report_rows",
    "run_report",
]

#: The funnel's stages, in order: each counts the leads that got at least that far.
FUNNEL_STAGES = ("captured", "assigned", "contacted", "qualified", "converted", "won")

#: The aging buckets (days past due), in order.
AGING_BUCKETS = ("current", "0-30", "31-60", "61-90", "90+")

#: Ticket priorities, least urgent first.
PRIORITIES = tuple(p.value for p in Priority)


@attrs.frozen
class Report:
    """One report's figures: typed rows for JSON and charts, and the table a person reads."""

    name: str
    """``funnel``, ``stages``, ``forecast``, ``aging``, ``service`` or ``subscriptions``."""
    title: str
    """What it shows, e.g. ``Lead funnel by source``."""
    tenant: str
    """The tenant it covers."""
    head: list[str]
    """The table's column names."""
    rows: list[list[Any]]
    """The table's cells, formatted for reading."""
    data: list[Any]
    """The analytics rows (:class:`~pycrm.services.analytics.FunnelRow` …)."""
    names: dict[str, str] = attrs.field(factory=dict)
    """User id → name, for the owners the rows mention."""

    def owner(self, user_id: str | None) -> str:
        """An owner's name; ``unassigned`` for none, the id for an unknown user."""
        if user_id is None:
            return "unassigned"
        return self.names.get(user_id, user_id)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data: each row's fields and derived figures."""
        rows = []
        for row in self.data:
            item = to_dict(row)
            derived_figures = (
                "conversion_rate", "conversion", "attainment", "breach_rate", "arr", "churn_rate",
            )  # fmt: skip
            for derived in derived_figures:
                if hasattr(row, derived):
                    item[derived] = converter.unstructure(getattr(row, derived))
            if isinstance(row, ForecastRow):
                item["owner_name"] = None if row.owner_id is None else self.owner(row.owner_id)
            rows.append(item)
        return {"report": self.name, "title": self.title, "tenant": self.tenant, "rows": rows}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _funnel(s: Session) -> tuple[str, list[str], list[list[Any]], list[Any]]:
    data = s.analytics.funnel(by="source")
    rows = [
        [r.group or "-", *(getattr(r, stage) for stage in FUNNEL_STAGES),
         _percent(r.conversion_rate)]
        for r in data
    ]  # fmt: skip
    return "Lead funnel by source", ["source", *FUNNEL_STAGES, "conversion"], rows, data


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _stages(s: Session) -> tuple[str, list[str], list[list[Any]], list[Any]]:
    data = s.analytics.stage_funnel()
    head = ["stage", "reached", "moved on", "conversion", "stays", "median days in stage"]
    rows = [
        [r.name, r.reached, r.advanced if r.stage != "won" else "-", _percent(r.conversion),
         r.stays if r.stage != "won" else "-", _days(r.median_days)]
        for r in data
    ]  # fmt: skip
    return "Deal-stage funnel of the default pipeline", head, rows, data


def _forecast(
    s: Session, *, converted: bool = False
) -> tuple[str, list[str], list[list[Any]], list[Any]]:
    data = s.analytics.forecast(in_reporting_currency=converted)
    head = ["month", "owner", "pipeline", "weighted", "won", "quota", "attainment"]
    rows = [
        [r.period, r.owner_id, r.pipeline, r.weighted, r.won, r.quota or "-",
         _percent(r.attainment)]
        for r in data
    ]  # fmt: skip
    return "Sales forecast by month of expected close", head, rows, data


def _aging(
    s: Session, *, converted: bool = False
) -> tuple[str, list[str], list[list[Any]], list[Any]]:
    data = s.analytics.aging(in_reporting_currency=converted)
    found = {(r.bucket, r.currency): r for r in data}
    rows = [
        [bucket, currency, found[bucket, currency].count if (bucket, currency) in found else 0,
         found[bucket, currency].outstanding if (bucket, currency) in found else "-"]
        for currency in sorted({r.currency for r in data})
        for bucket in AGING_BUCKETS
    ]  # fmt: skip
    head = ["days past due", "currency", "receivables", "outstanding"]
    return "Unpaid receivables by days past due", head, rows, data


def _service(s: Session) -> tuple[str, list[str], list[list[Any]], list[Any]]:
    found = s.analytics.service(by="priority")
    order = {p: n for n, p in enumerate(PRIORITIES)}
    data = sorted(found, key=lambda r: (order.get(r.group or "", len(order)), r.group or ""))
    head = ["priority", "tickets", "resolved", "first response h", "resolution h",
            "breach rate", "CSAT"]  # fmt: skip
    rows = [
        [r.group or "-", r.tickets, r.resolved, _hours(r.avg_first_response_hours),
         _hours(r.avg_resolution_hours), _percent(r.breach_rate),
         "-" if r.avg_csat is None else f"{r.avg_csat:.1f}"]
        for r in data
    ]  # fmt: skip
    return "Service desk by priority", head, rows, data


def _subscriptions(
    s: Session, *, converted: bool = False
) -> tuple[str, list[str], list[list[Any]], list[Any]]:
    # ARR (12 × MRR) is in the JSON: eight columns would not fit 80 characters
    data = s.analytics.subscriptions(in_reporting_currency=converted)
    head = ["currency", "running", "MRR", "a month ago", "new", "churned", "churn"]
    rows = [
        [r.currency, r.subscriptions, *(f"{m.amount:,}" for m in
         (r.mrr, r.start_mrr, r.new_mrr, r.churned_mrr)), _percent(r.churn_rate)]
        for r in data
    ]  # fmt: skip
    return "Recurring revenue (MRR) and churn over the last month", head, rows, data


#: Report name → the function that runs it in a session.
REPORTS: dict[str, Callable[..., tuple[str, list[str], list[list[Any]], list[Any]]]] = {
    "funnel": _funnel,
    "stages": _stages,
    "forecast": _forecast,
    "aging": _aging,
    "service": _service,
    "subscriptions": _subscriptions,
}


def _names(session: Session, data: list[Any]) -> dict[str, str]:
    ids = {r.owner_id for r in data if isinstance(r, ForecastRow) and r.owner_id}
    if not ids:
        return {}
    try:
        return {u.id: u.name for u in session.org.users() if u.id in ids}
    except CRMError:  # a reader who may not list users sees ids
        return {}


#: The reports that can convert every currency into the reporting currency.
CONVERTIBLE = ("forecast", "aging", "subscriptions")


def build_report(session: Session, name: str, *, in_reporting_currency: bool = False) -> Report:
    """Run report ``name`` in ``session`` (over what its actor may read).

    With ``in_reporting_currency``, a report of :data:`CONVERTIBLE` converts
    every currency into the tenant's reporting currency at today's rates.

    :raises ConfigurationError: for an unknown report name, or
        ``in_reporting_currency`` for a report that cannot convert.
    :raises NotFound: when a currency has no rate to the reporting currency.
    """
    if name not in REPORTS:
        raise ConfigurationError(f"unknown report {name!r}; choose from {', '.join(REPORTS)}")
    if in_reporting_currency:
        if name not in CONVERTIBLE:
            raise ConfigurationError(
                f"the {name} report has no reporting currency; only {', '.join(CONVERTIBLE)}"
            )
        title, head, rows, data = REPORTS[name](session, converted=True)
        title = f"{title}, in {session.rates.reporting_currency}"
    else:
        title, head, rows, data = REPORTS[name](session)
    names = _names(session, data)
    if name == "forecast":
        for row in rows:
            row[1] = "unassigned" if row[1] is None else names.get(row[1], row[1])
    return Report(name, title, session.tenant_id, head, rows, data, names)


def report_rows(session: Session, name: str) -> tuple[list[str], list[list[Any]]]:
    """The header and table rows of report ``name`` (see :func:`build_report`)."""
    report = build_report(session, name)
    return report.head, report.rows


def run_report(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Print (and maybe draw) the report the command line asks for; return the exit status."""
    target = args.chart or args.png
    if target:
        from pycrm.charts import check_target

        check_target(Path(target))  # before the report runs: a bad path fails fast
    with connect(args.db) as crm, explained(crm, args.tenant):
        warn_if_empty(crm, args.tenant, err)
        actor = actor_for(crm, args.actor, args.tenant)
        with crm.session(actor=actor, tenant=args.tenant) as s:
            report = build_report(s, args.report, in_reporting_currency=args.in_reporting_currency)
    if args.json:
        print_json(report.to_json())
    else:
        title = f"{report.title} (tenant {report.tenant})"
        out.print(table(title, report.head, report.rows))
        if not report.rows:
            out.print("No data for this report yet.", highlight=False)
    if target:
        from pycrm.charts import save

        save(report, Path(target))
        err.print(f"Chart written to {escape(target)}", soft_wrap=True, highlight=False)
    return 0
