"""Charts a manager would put in a slide: inspected as figures, never as pixels.

Each test builds a report from analytics rows, draws it, and reads the
figure back: its titles, axis labels and scale, tick labels with people's
names, every funnel stage, aging bucket and priority, and the no-data state.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pycrm.charts import check_target, figure, save
from pycrm.domain.money import Money
from pycrm.errors import ConfigurationError
from pycrm.reports import Report
from pycrm.services.analytics import (
    AgingRow,
    ForecastRow,
    FunnelRow,
    ServiceRow,
    StageFunnelRow,
    SubscriptionRow,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"

SAM, MAX = "01SAMSAMSAMSAMSAMSAMSAMSAM", "01MAXMAXMAXMAXMAXMAXMAXMAX"


def report(name: str, data: list[Any], names: dict[str, str] | None = None) -> Report:
    return Report(name, f"The {name}", "acme", [], [], data, names or {})


def texts(drawn: Figure) -> list[str]:
    found = [t.get_text() for t in drawn.texts]
    for axes in drawn.axes:
        found += [t.get_text() for t in axes.texts]
    return found


def ticks(axes: Axes) -> list[str]:
    return [t.get_text() for t in axes.get_xticklabels()]


def bars(axes: Axes) -> list[Rectangle]:
    return [p for p in axes.patches if isinstance(p, Rectangle)]


def legend(drawn: Figure) -> list[str]:
    found = [t.get_text() for legend in drawn.legends for t in legend.get_texts()]
    for axes in drawn.axes:
        if axes.get_legend() is not None:
            found += [t.get_text() for t in axes.get_legend().get_texts()]
    return found


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


# -- the funnel ----------------------------------------------------------------------------


def test_the_funnel_shows_every_stage_and_a_log_scale_when_one_won_sits_beside_a_thousand() -> None:
    rows = [
        FunnelRow("trade_show", 1121, 900, 40, 12, 3, 0, 1),
        FunnelRow("webform", 35, 30, 20, 10, 5, 2, 0),
    ]
    drawn = figure(report("funnel", rows))
    (axes,) = drawn.axes

    assert drawn.get_suptitle() == "The funnel"
    assert ticks(axes) == ["Captured", "Assigned", "Contacted", "Qualified", "Converted", "Won"]
    assert axes.get_yscale() == "log"
    assert axes.get_ylabel() == "Leads (log scale)"
    assert axes.get_xlabel().startswith("Stage reached")
    assert legend(drawn) == ["trade show (0% converted)", "webform (14% converted)"]
    shown = texts(drawn)
    assert {"1,121", "900", "1", "5", "0"} <= set(shown)  # every bar has its figure, zeros too
    assert "Tenant acme: 1,156 leads captured, 1 won" in axes.get_title(loc="left")
    low, _ = axes.get_ylim()
    assert 0 < low <= 1  # the one won deal stands above the axis foot


def test_a_narrow_funnel_keeps_a_linear_count_axis_with_whole_numbers() -> None:
    drawn = figure(report("funnel", [FunnelRow("webform", 6, 5, 4, 3, 2, 1, 1)]))
    (axes,) = drawn.axes
    assert axes.get_yscale() == "linear"
    assert axes.get_ylabel() == "Leads"
    assert all(float(t).is_integer() for t in axes.get_yticks())


def test_many_sources_are_summed_into_other_sources() -> None:
    rows = [FunnelRow(f"s{n}", 10 + n, 5, 4, 3, 2, 1, 1) for n in range(9)]
    labels = legend(figure(report("funnel", rows)))
    assert len(labels) == 6
    assert labels[-1].startswith("4 other sources")


# -- the forecast --------------------------------------------------------------------------


def test_the_forecast_names_owners_labels_the_currency_and_centres_each_group_on_its_tick() -> None:
    rows = [
        ForecastRow(
            "2026-12", SAM, "EUR", eur("50000"), eur("20000"), eur("180000"), eur("150000")
        ),
        ForecastRow("2027-01", MAX, "EUR", eur("90000"), eur("40000"), eur("0"), None),
        ForecastRow("2027-01", None, "EUR", eur("10000"), eur("1000"), eur("0"), None),
    ]
    drawn = figure(report("forecast", rows, {SAM: "Sam Weber", MAX: "Max Bauer"}))
    (axes,) = drawn.axes

    assert ticks(axes) == ["Dec 2026\nSam Weber", "Jan 2027\nMax Bauer", "Jan 2027\nunassigned"]
    assert not any(SAM in t or MAX in t for t in ticks(axes))
    assert axes.get_ylabel() == "Amount (EUR)"
    assert axes.get_xlabel() == "Month of expected close, and deal owner"
    assert legend(drawn) == ["open pipeline", "weighted forecast", "won", "quota"]
    centres = sorted(b.get_x() + b.get_width() / 2 for b in bars(axes))
    for tick, group in zip(
        axes.get_xticks(), (centres[0:3], centres[3:6], centres[6:9]), strict=True
    ):
        assert sum(group) / 3 == pytest.approx(tick)  # pipeline, weighted, won around the tick
    assert "180k" in texts(drawn)
    assert axes.yaxis.get_major_formatter()(150000, 0) == "150,000"


def test_forecasts_in_two_currencies_get_a_panel_each() -> None:
    usd = Money.of("1000", "USD")
    rows = [
        ForecastRow("2026-12", SAM, "EUR", eur("5"), eur("2"), eur("1"), None),
        ForecastRow("2026-12", SAM, "USD", usd, usd, usd, None),
    ]
    drawn = figure(report("forecast", rows, {SAM: "Sam Weber"}))
    assert [a.get_ylabel() for a in drawn.axes] == ["Amount (EUR)", "Amount (USD)"]


# -- aging -----------------------------------------------------------------------------------


def test_aging_shows_every_bucket_with_its_count_and_keeps_the_legend_off_the_bars() -> None:
    rows = [
        AgingRow("61-90", "EUR", 2, eur("60000")),
        AgingRow("current", "USD", 1, Money.of("500", "USD")),
    ]
    drawn = figure(report("aging", rows))
    (axes,) = drawn.axes

    assert ticks(axes) == ["not yet due", "0–30", "31–60", "61–90", "over 90"]
    assert axes.get_xlabel() == "Days past due"
    assert axes.get_ylabel().startswith("Outstanding")
    assert legend(drawn) == ["EUR", "USD"]
    assert "60k\n2 receivables" in texts(drawn)
    drawn.draw_without_rendering()
    box = drawn.legends[0].get_window_extent()
    assert not any(box.overlaps(b.get_window_extent()) for b in bars(axes))


def test_one_currency_is_named_on_the_axis() -> None:
    drawn = figure(report("aging", [AgingRow("90+", "EUR", 1, eur("10"))]))
    (axes,) = drawn.axes
    assert axes.get_ylabel() == "Outstanding (EUR)"
    assert texts(drawn).count("none") == 4  # the four empty buckets say so


# -- subscriptions ---------------------------------------------------------------------------


def test_the_mrr_bridge_shows_each_step_per_currency_with_its_figure() -> None:
    usd = Money.of
    rows = [
        SubscriptionRow("EUR", 3, eur("1500"), eur("1200"), eur("400"), eur("100")),
        SubscriptionRow("USD", 1, usd("90", "USD"), usd("0", "USD"), usd("90", "USD"),
                        usd("0", "USD")),
    ]  # fmt: skip
    drawn = figure(report("subscriptions", rows))
    (axes,) = drawn.axes
    assert ticks(axes) == ["a month ago", "new", "churned", "now"]
    assert axes.get_ylabel() == "Monthly recurring revenue"
    assert legend(drawn) == ["EUR", "USD"]
    heights = [round(b.get_height()) for b in bars(axes)]
    assert heights == [1200, 400, 100, 1500, 0, 90, 0, 90]
    assert texts(drawn).count("none") == 2  # USD: nothing a month ago, nothing churned
    assert axes.get_title(loc="left") == "Tenant acme: 4 running subscriptions"


def test_one_currencys_mrr_is_named_on_the_axis() -> None:
    row = SubscriptionRow("EUR", 1, eur("10"), eur("10"), eur("0"), eur("0"))
    (axes,) = figure(report("subscriptions", [row])).axes
    assert axes.get_ylabel() == "MRR (EUR)"


# -- service ---------------------------------------------------------------------------------


def test_service_shows_counts_hours_breach_rate_and_csat_for_every_priority() -> None:
    rows = [
        ServiceRow("high", 12, 10, 1.5, 30.0, 3, 8, 4.2),
        ServiceRow("low", 3, 3, 20.0, 96.0, 0, 0, None),
    ]
    drawn = figure(report("service", rows))
    counts, hours, breaches, csat = drawn.axes

    assert drawn.get_suptitle() == "The service"
    for axes in drawn.axes:
        assert ticks(axes) == ["Low", "Normal", "High", "Urgent"]
    assert counts.get_ylabel() == "Tickets"
    assert all(float(t).is_integer() for t in counts.get_yticks())  # counts, not 0..1
    assert counts.get_ylim()[1] > 12
    assert hours.get_ylabel().startswith("Mean hours")
    assert breaches.get_ylabel() == "Tickets that breached a target"
    assert breaches.get_ylim() == (0, 110)
    assert csat.get_ylabel() == "Mean CSAT (1 = poor, 5 = great)"
    assert [a.get_title(loc="left") for a in drawn.axes] == [
        "Tickets",
        "Response times",
        "SLA breach rate",
        "Customer satisfaction (CSAT)",
    ]
    shown = texts(drawn)
    assert {"12", "10", "1.5", "30", "25%", "4.2", "not rated", "no tickets"} <= set(shown)


# -- no data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        ("funnel", [], "No data: no leads captured in tenant acme"),
        ("funnel", [FunnelRow("web", 0, 0, 0, 0, 0, 0, 0)], "No data: no leads captured in tenant acme"),
        ("stages", [], "No data: no deals in the default pipeline of tenant acme"),
        ("forecast", [], "No data: no deals with an expected close date in tenant acme"),
        ("aging", [], "No data: no unpaid receivables in tenant acme"),
        ("service", [], "No data: no tickets in tenant acme"),
    ],
)  # fmt: skip
def test_a_report_without_data_says_so_instead_of_drawing_an_empty_axis(
    name: str, data: list[Any], said: str
) -> None:
    drawn = figure(report(name, data))
    assert drawn.get_suptitle() == f"The {name}"
    assert said in texts(drawn)
    assert all(not axes.axison for axes in drawn.axes)


# -- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_save_writes_the_format_the_extension_names(
    tmp_path: Path, suffix: str, magic: bytes
) -> None:
    target = tmp_path / f"funnel{suffix}"
    save(report("funnel", [FunnelRow("web", 3, 2, 1, 1, 1, 0, 0)]), target)
    assert target.read_bytes().startswith(magic)


def test_the_same_figures_give_the_same_file(tmp_path: Path) -> None:
    data = [AgingRow("0-30", "EUR", 1, eur("10"))]
    for n in (1, 2):
        save(report("aging", data), tmp_path / f"{n}.svg")
    assert (tmp_path / "1.svg").read_bytes() == (tmp_path / "2.svg").read_bytes()


def test_a_bad_chart_path_is_refused_with_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("must end in .png, .svg or .pdf")):
        check_target(tmp_path / "chart.jpeg")
    with pytest.raises(ConfigurationError, match=r"the folder .* does not exist"):
        check_target(tmp_path / "missing" / "chart.png")


# -- the guide's images -------------------------------------------------------------------


def test_the_analytics_guide_shows_each_chart_built_by_the_script_in_the_repository(
    tmp_path: Path,
) -> None:
    import runpy

    script = runpy.run_path(str(DOCS / "_ext" / "chart_images.py"))
    written = script["draw"](tmp_path)
    assert [p.name for p in written] == [
        "funnel.png",
        "stages.png",
        "forecast.png",
        "aging.png",
        "service.png",
        "subscriptions.png",
    ]
    guide = (DOCS / "analytics.md").read_text(encoding="utf-8")
    for path in written:
        assert f"](images/charts/{path.name})" in guide
        assert (DOCS / "images" / "charts" / path.name).is_file()


def test_the_stage_funnel_shows_every_stage_its_conversion_and_time_in_stage() -> None:
    rows = [
        StageFunnelRow(None, "qualification", "Qualification", 0, 40, 30, 35, 2.5),
        StageFunnelRow(None, "proposal", "Proposal", 1, 30, 12, 20, 6.0),
        StageFunnelRow(None, "negotiation", "Negotiation", 2, 12, 9, 0, None),
        StageFunnelRow(None, "won", "Won", 3, 9, 0, 0, None),
    ]
    drawn = figure(report("stages", rows))
    shown = texts(drawn)
    assert {"40", "30", "12", "9", "2.5", "6.0", "n/a", "→ 75%", "→ 40%"} <= set(shown)
    labels = [t.get_text() for axes in drawn.axes for t in axes.get_xticklabels()]
    assert labels[:4] == ["Qualification", "Proposal", "Negotiation", "Won"]
