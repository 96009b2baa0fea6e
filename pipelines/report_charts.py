"""The data-quality page's charts, as Bokeh figures (rendered in the browser by BokehJS, which the
page inlines once). Columns are numpy arrays of small dtypes: Bokeh ships them base64-encoded, so a
cell of the coverage heatmap costs about 16 bytes of page."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

import numpy as np
from bokeh.models import (
    ColumnDataSource,
    CustomJSHover,
    FactorRange,
    FixedTicker,
    HoverTool,
    LinearAxis,
    LinearColorMapper,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.palettes import Category20
from bokeh.plotting import figure

from pipelines.report_data import TIMEFRAMES, WIDTH, Candle, CoverageCell, ReportData

SAMPLED, FILLED, MISSING = "#2e9d5b", "#e6a817", "#d64541"
UP, DOWN, NEUTRAL = "#2e9d5b", "#d64541", "#8a8f98"
TOOLS = "xpan,xwheel_zoom,box_zoom,reset"


def _ms(values: Sequence[datetime]) -> np.ndarray:
    return np.array([value.timestamp() * 1000 for value in values], dtype=np.float64)


def coverage_rows(data: ReportData) -> list[tuple[str, str]]:
    """The heatmap's rows, top to bottom: every configured pair, 1h then 1d."""
    return [(pair, timeframe) for pair in data.pairs for timeframe in TIMEFRAMES]


def _coverage_columns(
    rows: list[tuple[str, str]], coverage: dict[tuple[str, str], list[CoverageCell]], period_ms: float
) -> dict[str, np.ndarray]:
    days = [(index, day) for index, key in enumerate(rows) for day in coverage.get(key, [])]
    # int32: a cell of a long period holds more hourly buckets than int16 counts
    buckets = np.array([d.buckets for _, d in days], dtype=np.int32)
    sampled = np.array([d.sampled for _, d in days], dtype=np.int32)
    missing = np.array([d.missing for _, d in days], dtype=np.int32)
    filled = buckets - sampled - missing
    return {
        "x": _ms([d.start for _, d in days]) + period_ms / 2,
        "y": np.array([len(rows) - 1 - index for index, _ in days], dtype=np.int16),
        "state": np.where(missing > 0, 2, np.where(filled > 0, 1, 0)).astype(np.int8),
        "buckets": buckets,
        "sampled": sampled,
        "filled": filled,
        "missing": missing,
        "share": np.round(100 * sampled / np.maximum(buckets, 1), 1).astype(np.float32),
    }


def period_text(period: timedelta) -> str:
    return "UTC day" if period.days == 1 else f"{period.days} UTC days"


def coverage_heatmap(data: ReportData) -> Any:
    """One row per pair and timeframe, one cell per UTC day (or per longer period, when all pairs'
    histories need it: ReportData.coverage_period): green when every candle in it was built from
    source points, amber when some were forward-filled, red when some lie in a gap."""
    rows = coverage_rows(data)
    labels = {len(rows) - 1 - index: f"{pair} {timeframe}" for index, (pair, timeframe) in enumerate(rows)}
    period_ms = data.coverage_period.total_seconds() * 1000
    source = ColumnDataSource(_coverage_columns(rows, data.coverage, period_ms))
    row_height = 22 if len(rows) <= 60 else 10  # many pairs: a compact row each
    plot = figure(
        x_axis_type="datetime", height=60 + row_height * len(rows), sizing_mode="stretch_width", tools=TOOLS,
        y_range=Range1d(-0.5, len(rows) - 0.5), title=f"Coverage per {period_text(data.coverage_period)}", name="coverage",
    )
    mapper = LinearColorMapper(palette=[SAMPLED, FILLED, MISSING], low=0, high=2)
    cells = plot.rect(x="x", y="y", width=period_ms, height=0.85, source=source,
                      fill_color={"field": "state", "transform": mapper}, line_color=None)
    row_label = CustomJSHover(code="return labels[value]", args={"labels": {str(k): v for k, v in labels.items()}})
    # x is a cell's middle: the tooltip shows its first day
    cell_start = CustomJSHover(code="return new Date(value - half).toISOString().slice(0, 10)", args={"half": period_ms / 2})
    plot.add_tools(HoverTool(renderers=[cells], formatters={"@x": cell_start, "@y": row_label}, tooltips=[
        ("series", "@y{custom}"), ("day" if data.coverage_period.days == 1 else "from", "@x{custom}"),
        ("sampled", "@sampled of @buckets candles (@share%)"),
        ("forward-filled", "@filled"), ("in a gap", "@missing"),
    ]))
    plot.yaxis.ticker = FixedTicker(ticks=list(labels))
    plot.yaxis.major_label_overrides = labels
    plot.ygrid.grid_line_color = None
    return plot


def _candle_columns(candles: list[Candle]) -> dict[str, Any]:
    open_, close = np.array([c.open for c in candles]), np.array([c.close for c in candles])
    filled = np.array([c.filled for c in candles])
    colour = np.where(filled, FILLED, np.where(close >= open_, UP, DOWN))
    return {
        "ts": _ms([c.ts for c in candles]),
        "open": open_, "close": close,
        "high": np.array([c.high for c in candles]), "low": np.array([c.low for c in candles]),
        "top": np.maximum(open_, close), "bottom": np.minimum(open_, close),
        "volume": np.array([c.volume if c.volume is not None else np.nan for c in candles]),
        "colour": colour.tolist(),
        "kind": np.where(filled, "forward-filled (no source point)", "sampled").tolist(),
    }


def candle_chart(pair: str, timeframe: str, candles: list[Candle]) -> Any:
    """Candlesticks with the volume as translucent bars below; forward-filled candles in amber with
    a marker above them."""
    width_ms = WIDTH[timeframe].total_seconds() * 1000
    source = ColumnDataSource(_candle_columns(candles))
    lows, highs = min(c.low for c in candles), max(c.high for c in candles)
    pad = (highs - lows) * 0.08 or abs(highs) * 0.01 or 1.0
    plot = figure(
        x_axis_type="datetime", height=300, sizing_mode="stretch_width", tools=TOOLS, name=f"candles-{timeframe}-{pair}",
        title=f"{pair} {timeframe}", y_range=Range1d(lows - 4 * pad, highs + 2 * pad),
    )
    volume = [c.volume for c in candles if c.volume is not None]
    plot.extra_y_ranges = {"volume": Range1d(0, (max(volume) if volume else 1.0) * 4 or 1.0)}
    plot.add_layout(LinearAxis(y_range_name="volume", axis_label="24h volume", formatter=NumeralTickFormatter(format="0.0a")), "right")
    plot.vbar(x="ts", width=0.8 * width_ms, top="volume", bottom=0, y_range_name="volume", source=source,
              fill_color="#9aa5b1", fill_alpha=0.35, line_color=None)
    plot.segment(x0="ts", y0="low", x1="ts", y1="high", color="colour", source=source)
    bodies = plot.vbar(x="ts", width=0.7 * width_ms, top="top", bottom="bottom", fill_color="colour",
                       line_color="colour", source=source)
    filled = [i for i, c in enumerate(candles) if c.filled]
    if filled:
        marks = ColumnDataSource({"ts": source.data["ts"][filled], "y": source.data["high"][filled] + pad})
        plot.scatter(x="ts", y="y", marker="inverted_triangle", size=7, color=FILLED, source=marks,
                     legend_label="forward-filled")
        plot.legend.location = "top_left"
    plot.add_tools(HoverTool(renderers=[bodies], formatters={"@ts": "datetime"}, tooltips=[
        ("bucket", "@ts{%F %H:%M} UTC"), ("open", "@open{0,0.[0000]}"), ("high", "@high{0,0.[0000]}"),
        ("low", "@low{0,0.[0000]}"), ("close", "@close{0,0.[0000]}"), ("24h volume", "@volume{0.00a}"), ("", "@kind"),
    ]))
    plot.yaxis[0].axis_label = "price"
    plot.yaxis[0].formatter = NumeralTickFormatter(format="0,0.[0000]")
    return plot


def _run_label(run: dict[str, Any]) -> str:
    return f"#{run['run_id']} {run['command']} {run['started_at']:%m-%d %H:%M}"


def _exit_text(run: dict[str, Any]) -> str:
    return "killed" if run["status"] == "abandoned" else "running" if run["status"] == "running" else str(run["exit_code"])


def run_history_chart(runs: list[dict[str, Any]]) -> Any:
    """The last runs, oldest left: each bar stacks its steps' durations; above it, the exit code
    (green 0, red otherwise, grey for a run that did not finish)."""
    runs = list(reversed(runs))
    labels = [_run_label(run) for run in runs]
    names: list[str] = []
    for run in runs:
        names.extend(step["step"] for step in run["steps"] if step["step"] not in names)
    fields = [f"step_{index}" for index in range(len(names))]  # step names may clash with "run"
    columns: dict[str, Any] = {"run": labels}
    for name, column in zip(names, fields):
        columns[column] = [sum(s["seconds"] for s in run["steps"] if s["step"] == name) for run in runs]
    totals = [sum(s["seconds"] for s in run["steps"]) for run in runs]
    plot = figure(x_range=FactorRange(*labels), height=340, sizing_mode="stretch_width", tools="reset",
                  title="Last runs: step durations (s) and exit codes", name="run-history")
    palette = Category20[20]
    bars = plot.vbar_stack(fields, x="run", width=0.8, source=ColumnDataSource(columns),
                           color=[palette[i % 20] for i in range(len(names))], legend_label=names)
    for bar, name, column in zip(bars, names, fields):
        plot.add_tools(HoverTool(renderers=[bar], tooltips=[("run", "@run"), ("step", name), ("seconds", f"@{column}{{0.0}}")]))
    codes = ColumnDataSource({
        "run": labels, "y": [total * 1.04 + 0.2 for total in totals], "code": [_exit_text(run) for run in runs],
        "colour": [NEUTRAL if run["status"] != "finished" else UP if run["exit_code"] == 0 else DOWN for run in runs],
    })
    plot.scatter(x="run", y="y", size=12, color="colour", source=codes)
    plot.text(x="run", y="y", text="code", source=codes, text_align="center", y_offset=-10, text_font_size="9pt")
    plot.y_range = Range1d(0, max(totals, default=0) * 1.3 + 1)  # room for the exit codes above the bars
    plot.xaxis.major_label_orientation = 0.9
    plot.add_layout(plot.legend[0], "right")
    plot.legend.click_policy = "hide"
    return plot
