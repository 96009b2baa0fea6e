"""`alphadb report --html [PATH]`: the data-quality page, one self-contained HTML file.

Status of the last run, coverage heatmap, open gaps and freshness, candlestick charts of a bounded
selection of pairs (problems first), run history and the last dbt test results (see
pipelines/report_data.py for what is read and how it stays bounded with many pairs). The page
inlines BokehJS once and carries its data in the page: it opens from file:// with no network.
It is written atomically (a temporary file renamed into place), so a browser never reads half a page.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bokeh
from bokeh.document import Document
from bokeh.embed import components
from bokeh.resources import Resources
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pipelines import report_charts, runlog
from pipelines.config import Settings
from pipelines.database import Connection, connect
from pipelines.errors import EXIT_DATABASE, AlphaDBError
from pipelines.report import format_lag
from pipelines.report_data import CANDLE_WINDOWS, TIMEFRAMES, ReportData, collect

PAGE_NAME = "data-quality.html"
NAMED_PAIRS = 10  # the header names the pairs up to this many
TEMPLATES = Path(__file__).resolve().parent / "templates"


def default_path(settings: Settings) -> Path:
    return settings.home / "report" / PAGE_NAME


def _stamp(value: datetime | None, timeframe: str = "1h") -> str:
    if value is None:
        return ""
    value = value.astimezone(timezone.utc)
    return f"{value:%Y-%m-%d}" if timeframe == "1d" else f"{value:%Y-%m-%d %H:%M}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


def _run_seconds(run: dict[str, Any]) -> float | None:
    return (run["ended_at"] - run["started_at"]).total_seconds() if run["ended_at"] else None


def _outcome(run: dict[str, Any]) -> tuple[str, str]:
    if run["status"] == "abandoned":
        return "did not finish (killed)", "gone"
    if run["status"] == "running":
        return "still running", "warn"
    return ("succeeded", "ok") if run["exit_code"] == 0 else (f"failed (exit {run['exit_code']})", "bad")


@dataclass(frozen=True)
class Banner:
    kind: str
    css: str
    text: str
    items: tuple[str, ...] = ()


def status_view(data: ReportData) -> dict[str, Any]:
    if not data.runs:
        return {"started": "", "command": "no run recorded", "outcome": "—", "css": "", "exit_code": "—",
                "duration": "—", "last_success": _stamp(data.last_success)}
    last = data.runs[0]
    outcome, css = _outcome(last)
    return {
        "started": _stamp(last["started_at"]), "command": f"alphadb {last['command']} {last['arguments']}".strip(),
        "outcome": outcome, "css": css, "exit_code": "—" if last["exit_code"] is None else last["exit_code"],
        "duration": _duration(_run_seconds(last)), "last_success": _stamp(data.last_success),
    }


def banners(data: ReportData) -> list[Banner]:
    """What needs saying before any chart: no runs, one run, a failed or killed last run, no candles."""
    found: list[Banner] = []
    if not data.runs:
        found.append(Banner("no-runs", "info", "No run recorded yet in ops.runs: the status and run history fill in after the first `alphadb run`."))
    elif len(data.runs) == 1:
        found.append(Banner("one-run", "info", "Only one run recorded so far: the run history shows a trend from the second run on."))
    if data.runs and data.runs[0]["status"] == "finished" and data.runs[0]["exit_code"] != 0:
        last = data.runs[0]
        found.append(Banner("last-run-failed", "bad", f"The last run (#{last['run_id']}, alphadb {last['command']}) failed with exit code {last['exit_code']}:",
                            tuple(last["failures"] or ["(no message recorded)"])))
    if data.runs and data.runs[0]["status"] == "abandoned":
        found.append(Banner("last-run-killed", "bad", f"The last run (#{data.runs[0]['run_id']}) did not finish: it was killed or lost its database connection."))
    if not data.candles_available:
        found.append(Banner("no-candles", "warn", NO_CANDLES))
    return found


NO_CANDLES = "No candle relations yet (public.ohlcv, public.gaps, public.pairs): run `alphadb run` to load and build them."


def freshness_view(data: ReportData) -> list[dict[str, Any]]:
    rows = []
    for pair in data.pairs:
        for timeframe in TIMEFRAMES:
            summary = data.summaries.get((pair, timeframe))
            limit = data.max_age[timeframe]
            row: dict[str, Any] = {"pair": pair, "timeframe": timeframe, "limit": format_lag(limit)}
            if summary is None:
                rows.append({**row, "candles": 0, "first": "", "latest": "", "latest_sampled": "", "filled": 0,
                             "age": "", "status": "no data", "css": "bad"})
                continue
            age = summary.age(timeframe, data.generated_at)
            status, css = ("stale", "bad") if summary.stale(timeframe, data.generated_at, limit) else ("fresh", "ok")
            rows.append({
                **row, "candles": summary.candles, "first": _stamp(summary.first, timeframe),
                "latest": _stamp(summary.latest, timeframe), "latest_sampled": _stamp(summary.latest_sampled, timeframe),
                "filled": summary.filled, "age": format_lag(age), "status": status, "css": css,
            })
    return rows


def _empty_candles_message(pair: str, timeframe: str, data: ReportData) -> str:
    days = CANDLE_WINDOWS[timeframe].days
    if (pair, timeframe) not in data.summaries:
        return (f"No {timeframe} candles for {pair}: it is configured but nothing is loaded yet"
                f" (`alphadb backfill --days 30 --pair {pair}`).")
    return f"No {timeframe} candles for {pair} in the last {days} days: its latest is {_stamp(data.summaries[(pair, timeframe)].latest, timeframe)}."


def _charts(data: ReportData) -> dict[str, Any]:
    """Every figure of the page by name, for one `components` call (one document, one script)."""
    charts: dict[str, Any] = {}
    if data.candles_available:
        charts["coverage"] = report_charts.coverage_heatmap(data)
    for index, pair in enumerate(data.charted):
        for timeframe in TIMEFRAMES:
            candles = data.candles.get((pair, timeframe))
            if candles:
                charts[f"candles-{timeframe}-{index}"] = report_charts.candle_chart(pair, timeframe, candles)
    if data.runs:
        charts["runs"] = report_charts.run_history_chart(data.runs)
    return charts


def _runs_view(data: ReportData) -> list[dict[str, Any]]:
    rows = []
    for run in data.runs:
        outcome, css = _outcome(run)
        rows.append({
            "run_id": run["run_id"], "command": run["command"], "arguments": run["arguments"],
            "started": _stamp(run["started_at"]), "duration": _duration(_run_seconds(run)), "status": outcome, "css": css,
            "exit_code": "" if run["exit_code"] is None else run["exit_code"], "points": run["points"] or 0,
            "requests": run["requests"] or 0, "pairs_failed": ", ".join(run["pairs_failed"]),
        })
    return rows


def _tests_view(data: ReportData) -> dict[str, Any] | None:
    if data.tests_run_id is None:
        return None
    statuses = [test.status for test in data.tests]
    return {
        "run_id": data.tests_run_id,
        "passed": sum(s in ("pass", "success") for s in statuses),
        "warned": statuses.count("warn"),
        "failed": sum(s in ("fail", "error", "runtime error") for s in statuses),
        "problems": [test for test in data.tests if test.status not in ("pass", "success")],
    }


def _embed(figures: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """One script and a div per figure. The figures join one document first, with Bokeh's model
    bookkeeping frozen: `components` alone adds them one by one and re-walks the whole model graph
    after each, which is quadratic (18 s for the 41 figures of 20 pairs)."""
    if not figures:
        return "", {}
    document = Document()
    with document.models.freeze():
        for figure in figures.values():
            document.add_root(figure)
    return components(figures)


def _gap_view(gap: Any) -> dict[str, Any]:
    """An open (GapRow) or healed (HealedRow) gap as the tables show it."""
    view = {"pair": gap.pair, "timeframe": gap.timeframe, "start": _stamp(gap.start, gap.timeframe),
            "end": _stamp(gap.end, gap.timeframe), "missing_buckets": gap.missing_buckets}
    if hasattr(gap, "run_id"):
        view.update(run_id=gap.run_id, run_started=_stamp(gap.run_started))
    return view


def _candle_panels(data: ReportData, divs: dict[str, str]) -> list[dict[str, Any]]:
    """Per pair, its 1h and 1d panel: the chart, or the message saying why there is none."""
    return [
        {"name": pair, "panels": [
            {"timeframe": tf, "chart": Markup(divs[f"candles-{tf}-{i}"]) if f"candles-{tf}-{i}" in divs else None,
             "message": _empty_candles_message(pair, tf, data)}
            for tf in TIMEFRAMES
        ]}
        for i, pair in enumerate(data.charted)
    ]


def render(data: ReportData) -> str:
    """The page's HTML for `data`."""
    figures = _charts(data)
    script, divs = _embed(figures)
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    return environment.get_template("report.html").render(
        generated=_stamp(data.generated_at), pairs=data.pairs, named_pairs=NAMED_PAIRS, status=status_view(data), banners=banners(data),
        coverage_period=report_charts.period_text(data.coverage_period), left_out=len(data.pairs) - len(data.charted),
        charts={name: Markup(divs[name]) for name in ("coverage", "runs") if name in divs},
        colours={"sampled": report_charts.SAMPLED, "filled": report_charts.FILLED, "missing": report_charts.MISSING},
        gaps=[_gap_view(gap) for gap in data.gaps], healed=[_gap_view(gap) for gap in data.healed],
        freshness=freshness_view(data), candle_panels=_candle_panels(data, divs), runs=_runs_view(data),
        tests=_tests_view(data), no_candles=NO_CANDLES, bokeh_script=Markup(script), bokeh_version=bokeh.__version__,
        # BokehJS once for the whole page (only the core bundle: no widgets, tables or WebGL).
        bokeh_js=Markup(Resources(mode="inline", components=["bokeh"]).render_js() if figures else ""),
    )


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise AlphaDBError(f"cannot write the data-quality page {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_page(settings: Settings, connection: Connection, path: Path | None = None, now: datetime | None = None) -> Path:
    """Collect, render and write the page; returns its path."""
    path = (path or default_path(settings)).expanduser().resolve()
    with connect(connection) as conn, conn.cursor() as cur:
        data = collect(cur, [pair.name for pair in settings.pairs], now or datetime.now(timezone.utc))
    _write_atomically(path, render(data))
    return path


def write_and_log(settings: Settings, connection: Connection, path: Path | None = None) -> Path:
    started = time.monotonic()
    written = write_page(settings, connection, path)
    size = written.stat().st_size / 1_000_000
    runlog.line(runlog.OK, f"Data-quality page written to {written} ({size:.1f} MB in {time.monotonic() - started:.1f}s)")
    return written


def write_after_run(settings: Settings, exit_code: int) -> None:
    """The nightly job's page after every run; a failure here is a warning, never the run's outcome.
    A run that could not reach PostgreSQL (exit 3) has nothing new to show: the page stays as it was."""
    from pipelines.database import resolve_connection

    if exit_code == EXIT_DATABASE:
        runlog.line(runlog.WARNING, "Data-quality page not updated: the run could not reach PostgreSQL")
        return
    try:
        write_and_log(settings, resolve_connection(settings))
    except Exception as exc:  # noqa: BLE001 - the page informs; it never fails a run
        runlog.line(runlog.WARNING, f"Data-quality page not written: {type(exc).__name__}: {exc}")

