"""Charts of the analytics reports, fit for a slide (matplotlib: ``pip install 'pycrm[charts]'``).

Each chart has a title that says what it shows, labelled axes with units and
currency, people by name, every funnel stage, aging bucket, ticket
priority and step of the MRR bridge (empty ones too, shown as 0), and the
figure on every bar. Counts
that span more than :data:`LOG_RANGE` times use a log scale, so one won deal
stays visible beside a thousand captured leads. A report without data gets
a figure that says so instead of an empty axis.

:func:`figure` builds a :class:`matplotlib.figure.Figure` (no pyplot, no
global state); :func:`save` writes it as PNG, SVG or PDF by the file's
extension.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycrm.errors import ConfigurationError
from pycrm.reports import AGING_BUCKETS, FUNNEL_STAGES, PRIORITIES, Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "LOG_RANGE", "check_target", "figure", "save"]

#: File extension → matplotlib output format.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}

#: From this ratio of the largest to the smallest non-zero value, an axis is logarithmic.
LOG_RANGE = 50

_COLOURS = ("#1f4e79", "#2e86c1", "#85c1e9", "#e67e22", "#27ae60", "#8e44ad", "#7f8c8d")
_SIZE = (10.0, 5.6)

#: How each aging bucket reads on the axis.
_BUCKET_LABELS = {
    "current": "not yet due",
    "0-30": "0–30",
    "31-60": "31–60",
    "61-90": "61–90",
    "90+": "over 90",
}

#: Sources beyond this many are summed into "other sources".
_MOST_SOURCES = 6


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigurationError("charts need matplotlib: pip install 'pycrm[charts]'") from None


def check_target(path: Path) -> str:
    """The format for chart file ``path``, checked before any work is done.

    :raises ConfigurationError: for an extension other than .png, .svg or
        .pdf, a folder that does not exist, or matplotlib not installed.
    """
    form = FORMATS.get(path.suffix.lower())
    if form is None:
        raise ConfigurationError(f"chart file {path} must end in .png, .svg or .pdf")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigurationError(
            f"cannot write the chart {path}: the folder {folder} does not exist"
        )
    _matplotlib()
    return form


def save(report: Report, path: Path) -> None:
    """Draw ``report`` into ``path``; the extension picks PNG, SVG or PDF.

    :raises ConfigurationError: as :func:`check_target`, or when the file
        cannot be written.
    """
    form = check_target(path)
    drawn = figure(report)
    # No creation date and fixed SVG ids: the same figures give the same bytes.
    metadata: dict[str, Any] = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[
        form
    ]
    from matplotlib import rc_context

    try:
        with rc_context({"svg.hashsalt": "pycrm"}):
            drawn.savefig(path, format=form, dpi=150, metadata=metadata)
    except OSError as exc:
        raise ConfigurationError(f"cannot write the chart {path}: {exc.strerror or exc}") from None


def figure(report: Report) -> Figure:
    """The chart of ``report`` as a matplotlib Figure (titles, labels, legend, no-data state)."""
    _matplotlib()
    from matplotlib.figure import Figure

    drawn = Figure(figsize=_SIZE if report.name != "service" else (11.0, 7.0), layout="constrained")
    drawn.suptitle(report.title, fontsize=15, fontweight="bold")
    draw: dict[str, Callable[[Figure, Report], None]] = {
        "funnel": _funnel,
        "stages": _stages,
        "forecast": _forecast,
        "aging": _aging,
        "service": _service,
        "subscriptions": _subscriptions,
    }
    draw[report.name](drawn, report)
    return drawn


# -- shared pieces ---------------------------------------------------------------


def _no_data(drawn: Figure, what: str) -> None:
    axes = drawn.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, f"No data: {what}", ha="center", va="center", fontsize=14, color="#555555")


def _style(axes: Axes) -> None:
    axes.spines["top"].set_visible(False)
    axes.spines["right"].set_visible(False)
    axes.set_axisbelow(True)
    axes.grid(axis="y", color="#dddddd", linewidth=0.8)


def _short(value: float) -> str:
    """A figure for a bar: 1,121 · 18.5k · 2.4M."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:,.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:,.1f}k".replace(".0k", "k")
    if value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _scale(axes: Axes, values: Sequence[float], label: str, *, log: bool = True) -> None:
    """Label the value axis; logarithmic when the non-zero values span a wide range.

    Amounts of money stay linear (``log=False``): their bars carry their figures.
    """
    positive = [v for v in values if v > 0]
    if log and positive and max(positive) / min(positive) >= LOG_RANGE:
        axes.set_yscale("log")
        axes.set_ylim(bottom=min(positive) / 2, top=max(positive) * 3)
        _thousands(axes)  # 1, 10, 100, 1,000 rather than powers of ten
        label += " (log scale)"
    else:
        top = max(positive, default=1.0)
        axes.set_ylim(bottom=0, top=top * 1.18)
    axes.set_ylabel(label)


def _thousands(axes: Axes) -> None:
    from matplotlib.ticker import FuncFormatter

    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def _bars(
    axes: Axes,
    positions: Sequence[float],
    values: Sequence[float | None],
    width: float,
    colour: str,
    label: str | None,
    text: Callable[[float], str] = _short,
    missing: str = "–",
) -> None:
    """Bars with their figures on top; a zero or missing value still gets its figure."""
    heights = [v or 0.0 for v in values]
    axes.bar(positions, heights, width, color=colour, label=label)
    log = axes.get_yscale() == "log"
    for x, value in zip(positions, values, strict=True):
        said = missing if value is None else text(value)
        if value is None or value <= 0 or (log and value <= 0):
            # At the foot of the axis: a log axis has no zero to stand on.
            axes.annotate(
                said, (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                textcoords="offset points", ha="center", va="bottom", fontsize=8, color="#555555",
            )  # fmt: skip
        else:
            axes.annotate(
                said, (x, value), xytext=(0, 2), textcoords="offset points",
                ha="center", va="bottom", fontsize=8,
            )  # fmt: skip


def _money_axes(
    drawn: Figure, currencies: Sequence[str], amounts: Sequence[float], label: str, many: str
) -> tuple[Axes, float]:
    """An axes for ``amounts`` of money (linear, in thousands) and each currency's bar width.

    The y label names the currency when there is one (``label (EUR)``), else reads ``many``.
    """
    axes = drawn.add_subplot()
    _style(axes)
    name = f"{label} ({currencies[0]})" if len(currencies) == 1 else many
    _scale(axes, amounts, name, log=False)
    _thousands(axes)
    return axes, 0.8 / len(currencies)


def _money_finish(
    drawn: Figure,
    axes: Axes,
    report: Report,
    labels: Sequence[str],
    xlabel: str,
    counted: tuple[int, str],
) -> None:
    """The x ticks and label, a title counting ``counted``'s noun, a legend of currencies."""
    axes.set_xticks(range(len(labels)), list(labels))
    axes.set_xlabel(xlabel)
    count, noun = counted
    axes.set_title(
        f"Tenant {report.tenant}: {count:,} {noun}{'s' if count != 1 else ''}",
        fontsize=10,
        loc="left",
    )
    if len({row.currency for row in report.data}) > 1:
        drawn.legend(loc="outside right upper", frameon=False, title="Currency")


def _label(value: str | None, missing: str) -> str:
    """A stored key as words: ``trade_show`` → ``trade show``."""
    return missing if not value else value.replace("_", " ")


def _spread(axes: Axes, groups: int, least: int = 4) -> None:
    """Keep a few groups from stretching into bars as wide as the chart."""
    pad = max(0.0, (least - groups) / 2)
    axes.set_xlim(-0.6 - pad, groups - 0.4 + pad)


def _offsets(count: int, width: float) -> list[float]:
    """Offsets that centre ``count`` bars of ``width`` on their tick."""
    return [(n - (count - 1) / 2) * width for n in range(count)]


def _month(period: str) -> str:
    """``2026-12`` → ``Dec 2026``; other periods (``2026-Q4``) as they are."""
    try:
        return date.fromisoformat(f"{period}-01").strftime("%b %Y")
    except ValueError:
        return period


# -- the charts ------------------------------------------------------------------


def _funnel(drawn: Figure, report: Report) -> None:
    rows = sorted(report.data, key=lambda r: (-r.captured, r.group or ""))
    if not rows or not any(r.captured for r in rows):
        _no_data(drawn, f"no leads captured in tenant {report.tenant}")
        return
    series = [(_label(r.group, "no source"), [getattr(r, s) for s in FUNNEL_STAGES]) for r in rows]
    if len(series) > _MOST_SOURCES:
        rest = series[_MOST_SOURCES - 1 :]
        summed = [sum(values[n] for _, values in rest) for n in range(len(FUNNEL_STAGES))]
        series = [*series[: _MOST_SOURCES - 1], (f"{len(rest)} other sources", summed)]
    axes = drawn.add_subplot()
    _style(axes)
    total = sum(r.captured for r in rows)
    won = sum(r.won for r in rows)
    axes.set_title(
        f"Tenant {report.tenant}: {total:,} leads captured, {won:,} won", fontsize=10, loc="left"
    )
    _scale(axes, [v for _, values in series for v in values], "Leads")
    width = 0.8 / len(series)
    for n, ((name, values), offset) in enumerate(
        zip(series, _offsets(len(series), width), strict=True)
    ):
        converted = values[FUNNEL_STAGES.index("converted")] / values[0] if values[0] else 0.0
        _bars(
            axes,
            [i + offset for i in range(len(FUNNEL_STAGES))],
            [float(v) for v in values],
            width,
            _COLOURS[n % len(_COLOURS)],
            f"{name} ({converted:.0%} converted)",
        )
    axes.set_xticks(range(len(FUNNEL_STAGES)), [s.capitalize() for s in FUNNEL_STAGES])
    axes.set_xlabel("Stage reached (each lead counts in every stage it got to)")
    if axes.get_yscale() != "log":
        from matplotlib.ticker import MaxNLocator

        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    drawn.legend(loc="outside lower center", ncols=min(len(series), 3), frameon=False,
                 title="Lead source")  # fmt: skip


def _stages(drawn: Figure, report: Report) -> None:
    rows = sorted(report.data, key=lambda r: r.position)
    if not rows or not rows[0].reached:
        _no_data(drawn, f"no deals in the default pipeline of tenant {report.tenant}")
        return
    counts, times = drawn.subplots(1, 2, width_ratios=(3, 2))
    for axes in (counts, times):
        _style(axes)
    x = list(range(len(rows)))
    reached = [float(r.reached) for r in rows]
    _scale(counts, reached, "Deals")
    _bars(counts, x, reached, 0.6, _COLOURS[0], None)
    for i, r in enumerate(rows[:-1]):
        if r.conversion is not None:
            counts.annotate(
                f"→ {r.conversion:.0%}", (i + 0.5, 0.93), xycoords=("data", "axes fraction"),
                ha="center", fontsize=8, color="#555555",
            )  # fmt: skip
    counts.set_xticks(x, [r.name for r in rows], rotation=20, ha="right")
    counts.set_xlabel("Stage reached (a deal that skipped a stage passed it)")
    counts.set_title(
        f"Tenant {report.tenant}: {rows[0].reached:,} deal{'' if rows[0].reached == 1 else 's'}, "
        f"{rows[-1].reached:,} won",
        fontsize=10, loc="left",
    )  # fmt: skip
    if counts.get_yscale() != "log":
        from matplotlib.ticker import MaxNLocator

        counts.yaxis.set_major_locator(MaxNLocator(integer=True))
    open_stages = rows[:-1]
    medians = [r.median_days for r in open_stages]
    _scale(times, [m for m in medians if m is not None], "Median days in stage", log=False)
    _bars(
        times, list(range(len(open_stages))), medians, 0.6, _COLOURS[3], None,
        text=lambda v: f"{v:,.1f}", missing="n/a",
    )  # fmt: skip
    times.set_xticks(
        range(len(open_stages)), [r.name for r in open_stages], rotation=20, ha="right"
    )
    times.set_title("Time in stage (completed stays)", fontsize=10, loc="left")


def _forecast(drawn: Figure, report: Report) -> None:
    if not report.data:
        _no_data(drawn, f"no deals with an expected close date in tenant {report.tenant}")
        return
    currencies = sorted({r.currency for r in report.data})
    measures = (("pipeline", "open pipeline"), ("weighted", "weighted forecast"), ("won", "won"))
    grid = drawn.subplots(len(currencies), 1, squeeze=False)
    for axes, currency in zip((row[0] for row in grid), currencies, strict=True):
        _style(axes)
        rows = sorted(
            (r for r in report.data if r.currency == currency),
            key=lambda r: (r.period, report.owner(r.owner_id)),
        )
        values = [float(getattr(r, m).amount) for r in rows for m, _ in measures]
        quotas = [float(r.quota.amount) for r in rows if r.quota is not None]
        _scale(axes, values + quotas, f"Amount ({currency})", log=False)
        _thousands(axes)
        width = 0.26
        for n, ((measure, label), offset) in enumerate(
            zip(measures, _offsets(len(measures), width), strict=True)
        ):
            _bars(
                axes,
                [i + offset for i in range(len(rows))],
                [float(getattr(r, measure).amount) for r in rows],
                width,
                _COLOURS[n],
                label if axes is grid[0][0] else None,
            )
        for i, row in enumerate(rows):
            if row.quota is not None:
                axes.hlines(
                    float(row.quota.amount), i - 0.45, i + 0.45, colors="#c0392b",
                    linestyles="--", label="quota" if i == 0 and axes is grid[0][0] else None,
                )  # fmt: skip
        labels = [f"{_month(r.period)}\n{report.owner(r.owner_id)}" for r in rows]
        axes.set_xticks(range(len(rows)), labels, rotation=30 if len(rows) > 8 else 0)
        _spread(axes, len(rows))
        axes.set_xlabel("Month of expected close, and deal owner")
        if len(currencies) > 1:
            axes.set_title(f"Deals in {currency}", fontsize=10, loc="left")
    if len(currencies) == 1:
        grid[0][0].set_title(
            f"Tenant {report.tenant}: weighted = open amount × stage probability",
            fontsize=10,
            loc="left",
        )
    handles, labels = grid[0][0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda n: labels[n] == "quota")  # the bars first
    drawn.legend(
        [handles[n] for n in order],
        [labels[n] for n in order],
        loc="outside lower center",
        ncols=4,
        frameon=False,
    )


def _aging(drawn: Figure, report: Report) -> None:
    if not report.data:
        _no_data(drawn, f"no unpaid receivables in tenant {report.tenant}")
        return
    currencies = sorted({r.currency for r in report.data})
    found = {(r.bucket, r.currency): r for r in report.data}
    amounts = [float(r.outstanding.amount) for r in report.data]
    axes, width = _money_axes(drawn, currencies, amounts, "Outstanding", "Outstanding amount")
    for n, (currency, offset) in enumerate(
        zip(currencies, _offsets(len(currencies), width), strict=True)
    ):
        rows = [found.get((bucket, currency)) for bucket in AGING_BUCKETS]
        amount = [0.0 if r is None else float(r.outstanding.amount) for r in rows]
        counts = {i: (0 if r is None else r.count) for i, r in enumerate(rows)}
        positions = [i + offset for i in range(len(AGING_BUCKETS))]
        axes.bar(positions, amount, width, color=_COLOURS[n], label=currency)
        for i, (x, value) in enumerate(zip(positions, amount, strict=True)):
            count = counts[i]
            said = f"{_short(value)}\n{count} receivable{'s' if count != 1 else ''}"
            axes.annotate(
                said if count else "none", (x, value if value > 0 else 0),
                xycoords=("data", "data") if value > 0 else ("data", "axes fraction"),
                xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8,
            )  # fmt: skip
    labels = [_BUCKET_LABELS[b] for b in AGING_BUCKETS]
    total = sum(r.count for r in report.data)
    _money_finish(drawn, axes, report, labels, "Days past due", (total, "unpaid receivable"))


def _service(drawn: Figure, report: Report) -> None:
    rows = {r.group: r for r in report.data}
    if not any(r.tickets for r in report.data):
        _no_data(drawn, f"no tickets in tenant {report.tenant}")
        return
    groups = [*PRIORITIES, *sorted(g for g in rows if g not in PRIORITIES and g is not None)]
    picked = [rows.get(g) for g in groups]
    grid = drawn.subplots(2, 2, sharex=True)
    x = list(range(len(groups)))
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    counts, hours = grid[0]
    breaches, csat = grid[1]
    for axes in (counts, hours, breaches, csat):
        _style(axes)

    def values(field: str) -> list[float | None]:
        return [None if r is None else getattr(r, field) for r in picked]

    opened = [float(r.tickets) if r else 0.0 for r in picked]
    resolved = [float(r.resolved) if r else 0.0 for r in picked]
    _scale(counts, opened + resolved, "Tickets")
    if counts.get_yscale() != "log":
        counts.yaxis.set_major_locator(MaxNLocator(integer=True))
    width = 0.38
    left, right = _offsets(2, width)
    _bars(counts, [i + left for i in x], opened, width, _COLOURS[0], "opened")
    _bars(counts, [i + right for i in x], resolved, width, _COLOURS[2], "resolved")
    counts.set_title("Tickets", loc="left", fontsize=11)
    counts.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False, fontsize=8)

    first = values("avg_first_response_hours")
    solved = values("avg_resolution_hours")
    _scale(hours, [v for v in first + solved if v is not None], "Mean hours")
    _bars(
        hours, [i + left for i in x], first, width, _COLOURS[1], "to first response", missing="n/a"
    )
    _bars(hours, [i + right for i in x], solved, width, _COLOURS[3], "to resolution", missing="n/a")
    hours.set_title("Response times", loc="left", fontsize=11)
    hours.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False, fontsize=8)

    rate = [None if r is None or not r.tickets else r.breach_rate * 100 for r in picked]
    breaches.set_ylim(0, 110)
    breaches.yaxis.set_major_formatter(PercentFormatter())
    _bars(breaches, x, rate, 0.6, "#c0392b", None, text=lambda v: f"{v:.0f}%", missing="no tickets")
    breaches.set_ylabel("Tickets that breached a target")
    breaches.set_title("SLA breach rate", loc="left", fontsize=11)

    score = values("avg_csat")
    csat.set_ylim(0, 5.5)
    csat.set_yticks([0, 1, 2, 3, 4, 5])
    _bars(csat, x, score, 0.6, _COLOURS[4], None, text=lambda v: f"{v:.1f}", missing="not rated")
    csat.set_ylabel("Mean CSAT (1 = poor, 5 = great)")
    csat.set_title("Customer satisfaction (CSAT)", loc="left", fontsize=11)

    for axes in (breaches, csat):
        axes.set_xticks(x, [g.capitalize() for g in groups])
        axes.set_xlabel("Ticket priority")
    for axes in (counts, hours):
        axes.tick_params(labelbottom=True)
        axes.set_xticks(x, [g.capitalize() for g in groups])


#: The MRR bridge's steps, as they read on the axis.
_BRIDGE = (
    ("start_mrr", "a month ago"),
    ("new_mrr", "new"),
    ("churned_mrr", "churned"),
    ("mrr", "now"),
)


def _subscriptions(drawn: Figure, report: Report) -> None:
    if not report.data:
        _no_data(drawn, f"no subscriptions in tenant {report.tenant}")
        return
    currencies = [r.currency for r in report.data]
    values = [float(getattr(r, field).amount) for r in report.data for field, _ in _BRIDGE]
    axes, width = _money_axes(drawn, currencies, values, "MRR", "Monthly recurring revenue")
    for n, (row, offset) in enumerate(
        zip(report.data, _offsets(len(currencies), width), strict=True)
    ):
        amounts = [float(getattr(row, field).amount) for field, _ in _BRIDGE]
        positions = [i + offset for i in range(len(_BRIDGE))]
        axes.bar(positions, amounts, width, color=_COLOURS[n], label=row.currency)
        for x, value in zip(positions, amounts, strict=True):
            axes.annotate(
                _short(value) if value else "none", (x, value),
                xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8,
            )  # fmt: skip
    labels = [label for _, label in _BRIDGE]
    total = sum(r.subscriptions for r in report.data)
    xlabel = "Monthly recurring revenue over the last month"
    _money_finish(drawn, axes, report, labels, xlabel, (total, "running subscription"))
