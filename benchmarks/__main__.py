"""`python -m benchmarks` (`make bench`): run the benchmark suite, print a table, write
benchmarks/results.md with the machine's description.

    python -m benchmarks                 # everything, full sizes (several minutes)
    python -m benchmarks --only 1,2,6    # just some (1/2/6 share one run, so do 3/4)
    python -m benchmarks --smoke         # tiny sizes: checks the machinery, not the timings

Every target is a ratio of two numbers measured in the same run, so noise from other work on a
shared machine mostly cancels out. Sizes can be overridden, see --help.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.harness import Postgres, git_revision, machine_description

RESULTS = Path(__file__).resolve().parent / "results.md"


@dataclass
class Row:
    number: int
    name: str
    measured: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None  # None: not run / not applicable

    @property
    def status(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.ok]


def _fmt(x: float, unit: str = "", digits: int = 2) -> str:
    return f"{x:,.{digits}f}{unit}" if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def load_rows(r: dict[str, Any]) -> list[Row]:
    first, reload, small = r["first"], r["reload"], r["small"]
    return [
        # Information, no target: what bounds a load is the API's rate (row 9), not a bare COPY.
        Row(1, f"load throughput ({first['points']:,} points, {r['pairs']} pairs, {first['requests']} requests)",
            f"loader {_fmt(r['load_pps'], ' pts/s', 0)} ({_fmt(first['elapsed_s'], ' s')})",
            f"COPY {_fmt(r['copy_pps'], ' pts/s', 0)} ({_fmt(r['copy_s'], ' s')})",
            _fmt(100 * r["load_vs_copy"], " %", 1), "", None),
        Row(1, "  ceiling: fetch + parse only (HTTP, JSON, Arrow; no database)",
            f"{_fmt(r['fetch_points'] / r['fetch_parse_s'], ' pts/s', 0)} ({_fmt(r['fetch_parse_s'], ' s')})",
            "COPY, as above", _fmt(100 * r["fetch_parse_vs_copy"], " %", 1), "", None),
        Row(1, "  ceiling: COPY into a logged table with the raw table's 2 indexes",
            f"{_fmt(r['copy_rows'] / r['keyed_copy_s'], ' pts/s', 0)} ({_fmt(r['keyed_copy_s'], ' s')})",
            "COPY, as above", _fmt(100 * r["keyed_copy_vs_copy"], " %", 1), "", None),
        Row(2, "re-load of the same points (merge, all keys present)",
            _fmt(reload["elapsed_s"], " s"), _fmt(first["elapsed_s"], " s (first load)"),
            _fmt(r["reload_ratio"], "x"), "<= 1.2x",
            r["reload_ratio"] <= 1.2 and r["rows_after_reload"] == r["rows_after_first"]),
        Row(6, f"peak RSS, backfill of {first['points']:,} vs {small['points']:,} points",
            _fmt(first["peak_rss_kb"] / 1024, " MiB", 0), _fmt(small["peak_rss_kb"] / 1024, " MiB", 0),
            _fmt(r["rss_ratio"], "x"), "<= 1.5x", r["rss_ratio"] <= 1.5),
    ]


def api_rows(r: dict[str, Any]) -> list[Row]:
    clean = r["status_429"] == 0 and not r["failures"]
    return [
        Row(5, f"requests per pair, {r['backfill_days']}-day backfill ({r['pairs']} pairs)",
            f"{r['backfill_requests_per_pair_max']} (max)", "", "", "<= 6", r["backfill_requests_per_pair_max"] <= 6),
        Row(5, "requests per pair, nightly run",
            f"{r['nightly_requests_per_pair_max']} (max)", "", "", "<= 2", r["nightly_requests_per_pair_max"] <= 2),
        Row(5, f"429s with the server limit = client rate ({r['rate_per_min']}/min)",
            f"{r['status_429']} x 429 in {r['requests_total']} requests",
            f"max {r['max_in_any_60s']} in any 60 s over {_fmt(r['duration_s'], ' s', 0)}", "", "0", clean),
    ]


PACE_TARGET = 1.15  # a backfill's wall time / the API's minimum (requests / rate)


def pace_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for rate, run in r["runs"].items():
        waited = run["reader_waited_on_loader_s"]
        clean = run["status_429"] == 0 and run["rows"] == run["keys"] == run["points"] > 0
        rows.append(
            Row(9, f"backfill {r['pairs']} pairs x {r['days']} d, client and server at {rate} requests/min",
                f"{_fmt(run['wall_s'], ' s')} ({run['requests_served']} requests{'' if clean else ', NOT CLEAN'}): before the first request"
                f" {_fmt(run['before_first_request_s'], ' s')}, requests {_fmt(run['request_span_s'], ' s')}"
                f" (the rate's spacing {_fmt(run['spacing_s'], ' s')}), tail {_fmt(run['tail_s'], ' s')}"
                + ("" if waited is None else f"; reader waited on the loader {_fmt(waited, ' s')} over {run['steps']} steps"),
                f"API minimum {_fmt(run['api_minimum_s'], ' s')}", _fmt(run["ratio"], "x"), f"<= {PACE_TARGET}x",
                clean and run["ratio"] <= PACE_TARGET)
        )
    return rows


def transform_rows(r: dict[str, Any]) -> list[Row]:
    long = r["long"]
    rows = [
        Row(3, f"candle build, full refresh, {long['rows']:,} points ({r['pairs']} pairs x {r['long_days']} d)",
            f"int_candles_1h+1d {_fmt(r['candle_models_s'], ' s')} (median of {len(r['candle_rounds_s'])} rounds;"
            f" first dbt run wall {_fmt(long['full_refresh_s'], ' s')})",
            f"INSERT..SELECT {_fmt(r['hand_written_s'], ' s')} (median)",
            f"{_fmt(r['candle_ratio'], 'x')} (median of the rounds' ratios)", "<= 1.5x",
            r["candle_ratio"] <= 1.5 and long["full_refresh_ok"]),
    ]
    if "nights" in r:
        rows += nightly_rows(r, "load 2 d from the simulator")
    return rows


NIGHT_NAMES = {
    "recent": "tests on the last week's loads only",
    "audit": "tests on the last week's loads + the audit slot's whole history (every night now)",
    "all": "tests on all history (the former Sunday night: baseline, replaced by the audit)",
}


def nightly_rows(r: dict[str, Any], load: str) -> list[Row]:
    """Benchmark 4's rows: each kind of night, the long history against the short one."""
    rows = []
    for kind, night in r["nights"].items():
        nl, ns = night["long"], night["short"]
        audit = f", audit slot {r['audit_pairs']} of {r['pairs']:,} pairs" if kind == "audit" else ""
        target = kind != "all"
        rows.append(Row(
            4, f"nightly ELT ({load}, dbt run, freshness, {NIGHT_NAMES[kind]}{audit}), {r['long_days']} d vs {r['short_days']} d of history ({r['pairs']:,} pairs)",
            f"{_fmt(nl['elapsed_s'], ' s')}{'' if nl['ok'] else ' (failed)'}; dbt SQL {_fmt(nl['dbt_run_sql_s'] + nl['dbt_test_sql_s'], ' s')}",
            f"{_fmt(ns['elapsed_s'], ' s')}{'' if ns['ok'] else ' (failed)'}; dbt SQL {_fmt(ns['dbt_run_sql_s'] + ns['dbt_test_sql_s'], ' s')}",
            f"{_fmt(night['ratio'], 'x')} (SQL {_fmt(night['sql_ratio'], 'x')})", "<= 1.3x" if target else "(baseline)",
            night["ratio"] <= 1.3 and nl["ok"] and ns["ok"] if target else None,
        ))
    return rows


def scale_page_rows(r: dict[str, Any]) -> list[Row]:
    """Benchmark 7 at benchmark 4's scale: the work after the tests that reads every pair."""
    page = r["page"]
    size, seconds = page["page_bytes"], page["page_s"]
    return [page_row(
        f"after the tests at {r['pairs']:,} pairs x {r['long_days']} d: gap lookup, text report, data-quality page",
        f"gaps {_fmt(page['gaps_s'], ' s')}, report {_fmt(page['report_s'], ' s')} ({page['report_lines']} lines),"
        f" page {_fmt(size / 1e6, ' MB')} in {_fmt(seconds, ' s')} ({page['charts']} charts), peak RSS {_fmt(page['peak_rss_kb'] / 1024, ' MiB', 0)}",
        size, seconds, True,
    )]


def scale_rows(r: dict[str, Any]) -> list[Row]:
    return [
        Row(8, f"dbt part of a nightly (tests: last week's loads + tonight's audit slot), {r['pairs']:,} pairs x {r['days']} d of history ({r['rows']:,} points)",
            f"{_fmt(r['dbt_s'], ' s')}{'' if r['ok'] else ' (failed)'}: run {_fmt(r['dbt_run_s'], ' s')},"
            f" freshness {_fmt(r['dbt_freshness_s'], ' s')}, test {_fmt(r['dbt_test_s'], ' s')}",
            f"{_fmt(r['per_pair_ms'], ' ms')} per pair", "", "< 60 s", r["ok"] and r["dbt_s"] < 60),
    ]


NIGHTLY_MARGIN_S = 90.0  # what the nightly may add to the API's own minimum time (issue 15)
RSS_GROWTH_LIMIT = 2.0


def whole_nightly_rows(r: dict[str, Any]) -> list[Row]:
    scale, base = r["scale"], r["baseline"]
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in scale["steps_s"].items())
    failed = "" if scale["exit_code"] == 0 else f" (exit {scale['exit_code']})"
    return [
        Row(10, f"whole nightly (`alphadb run`), {r['pairs']:,} pairs at {r['rate_per_min']}/min (client and server)",
            f"{_fmt(scale['elapsed_s'], ' s')}{failed}:"
            f" {scale['requests']:,} requests over {_fmt(scale['requests_span_s'], ' s')}; steps: {steps}",
            f"API minimum {_fmt(scale['api_minimum_s'], ' s')} ({scale['requests']:,} x 60 / {r['rate_per_min']})",
            f"+{_fmt(r['over_api_minimum_s'], ' s')}", "<= API minimum + 90 s",
            r["ok"] and r["over_api_minimum_s"] <= NIGHTLY_MARGIN_S),
        Row(10, f"peak RSS of that nightly (job + dbt), {r['pairs']:,} vs {r['baseline_pairs']} pairs",
            _fmt(scale["peak_rss_kb"] / 1024, " MiB", 0), _fmt(base["peak_rss_kb"] / 1024, " MiB", 0),
            _fmt(r["rss_ratio"], "x"), "<= 2x", r["ok"] and r["rss_ratio"] <= RSS_GROWTH_LIMIT),
    ]


PAGE_BUDGET_BYTES = 5_000_000
PAGE_BUDGET_S = 10.0


def report_rows(r: dict[str, Any]) -> list[Row]:
    size, seconds = r["page_bytes"], r["generation_s"]
    return [page_row(
        f"data-quality page, {r['pairs']} pairs x {r['days']} d ({r['rows']:,} hourly points, {r['runs']} runs)",
        f"{_fmt(size / 1e6, ' MB')}, generated in {_fmt(seconds, ' s')} (median of {len(r['rounds_s'])});"
        f" with the text report in a child: peak RSS {_fmt(r['child']['peak_rss_kb'] / 1024, ' MiB', 0)}",
        size, seconds, r["candles_ok"],
    )]


def page_row(name: str, measured: str, size: int, seconds: float, ok: bool) -> Row:
    """A row 7: a page of `size` bytes written in `seconds`, against the issue's budgets."""
    shares = f"{_fmt(100 * size / PAGE_BUDGET_BYTES, ' %', 0)} of size, {_fmt(100 * seconds / PAGE_BUDGET_S, ' %', 0)} of time"
    return Row(7, name, measured, "budget 5 MB, 10 s", shares, "< 5 MB, < 10 s", ok and size < PAGE_BUDGET_BYTES and seconds < PAGE_BUDGET_S)


def table(rows: list[Row]) -> str:
    header = ("#", "benchmark", "measured", "baseline", "ratio", "target", "status")
    lines = [header] + [(str(r.number), r.name, r.measured, r.baseline, r.ratio, r.target, r.status) for r in rows]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines[1:]]
    return "\n".join(out)


def _details(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, default=str, ensure_ascii=False)


METHOD = """\
## Method
- **1, 2, 6**: the real loader (`pipelines.load.load_range`: client, parsing, dlt extract, normalize,
  CSV COPY into dlt's staging table, merge into `staging.market_chart_points`) runs in a child
  process per load, against the simulator's pro host behind a replay cache in its own process
  (`benchmarks/replay.py`: every URL is requested once before the timed loads, so the timings
  measure the loader and PostgreSQL, not the simulator generating prices in the loader's GIL).
  The range is a fixed past span, so the requests are the same every run. The COPY baseline
  copies the very rows the loader stored (prepared as CSV in memory beforehand) into an unlogged
  table without indexes (median of 3). Two ceilings sit under row 1, each a share of that COPY's
  points/s: the loader's own work before dlt alone (a second pass over the cached responses:
  HTTP, JSON decoding, Arrow tables, no database), and the same COPY into a logged table with the
  raw table's two indexes (what writing these rows into the real table costs before any merge
  work). A loader doing both cannot beat the slower of them. Row 1 has no target: the COPY into an
  unlogged table without indexes is no limit a loader of the real, indexed table can approach; what
  bounds a load is the API's rate (row 9). Peak RSS is each child's own VmHWM.
- **5**: the plain in-process simulator with its server-side limit set to the client's
  `COINGECKO_RATE_LIMIT_PER_MIN`: a 365-day backfill (`load_range`, ending now), then two nightly
  runs (`load_incremental`); requests counted per pair from the simulator's request log.
- **9**: a backfill (`load_range`, 365 days ending now) of 100 pairs, the loader in a child process
  with `COINGECKO_RATE_LIMIT_PER_MIN` at 500 (CoinGecko Analyst) and at 1,000 requests/min (the highest
  published plan), the replaying simulator in its own process (`benchmarks/replay.py`, coin-01..coin-100)
  enforcing the same limit with the simulator's own sliding minute and 429s. Its cache is warmed
  unthrottled first with the backfill's very windows, so the limited run measures the loader against
  the rate, not the simulator generating prices. The API minimum is requests served / rate; the rest
  of the wall time is split into the time before the first request (load lock, dlt state, indexes),
  the request span beyond the rate's own spacing, and the tail after the last request (the last load
  step); "reader waited on the loader" sums the gaps between one step's last read and the next
  step's first (the reader holding a finished step the loader has not taken yet). Every point is
  checked stored once (rows = distinct keys = points read) and no request answered 429.
- **7**: benchmark 3's history (20 pairs x 3 years of hourly points, candles built by a real
  `dbt run --full-refresh`) plus 30 runs recorded in `ops.runs`; `alphadb report --html`'s work
  (`html_report.write_page`: the queries, the Bokeh charts, writing the file) timed three times, the
  median counts; the size is the written file's. Absolute targets from the issue, not ratios. The
  peak RSS is a child process's (`benchmarks/reportbench.py`) that looks up the gaps, logs the
  text report and writes the page, as the nightly does after its tests. The second row 7 is that
  child on benchmark 4's long history at scale (1,000 pairs x 3 years): the heal step's gap lookup
  (`public.gaps`, its plan in the raw numbers), the text report (its log lines counted) and the page
  (its candle charts bounded, its heatmap cells too).
- **3, 4**: the histories are written straight into `staging.market_chart_points` with COPY (the
  simulator's own sample times and prices, each point stored a day after its time as nightly loads
  would have; the table created by a tiny real load first), not loaded through the API. 3 compares the execution time of the candle models (`int_candles_1h` +
  `int_candles_1d`, from dbt's run_results.json) of `dbt run --full-refresh` with one hand-written
  `INSERT ... SELECT date_trunc(...) ... GROUP BY` per timeframe (no forward fill, no completeness
  flag), on a vacuumed raw table, in five rounds of a dbt full refresh followed by the hand-written
  SQL: the ratio is the median of the five rounds' ratios (each pair of timings shares the machine's
  moment); the first `dbt run` wall time (dbt start-up, every model) is shown beside it. 4 times the
  nightly ELT's steps as `alphadb run` runs them (`load_incremental` of the last 2 days from the
  simulator, `dbt run`, `dbt source freshness`, `dbt test`; heal and report excluded) on a database
  with the long history against one with the short history, both with candles already built, for
  three test scopes: the last 7 days' loads only; those plus the whole history of one audit slot
  (what every night runs now: the slot with the most pairs, `int_configured_pairs.audit_weekday`);
  and all history (the former Sunday night, the baseline the rolling audit replaced, one round).
  Two interleaved rounds, the faster of each side counts. "dbt SQL" is the sum of dbt's per-node
  execution times (run + test), i.e. without dbt's start-up and parsing; the slowest nodes of each
  step are in the raw numbers. At scale, the same nights with 1,000 synthetic pairs written straight
  into the raw table (as for 8), tonight's load a merge of the last 2 days by SQL, one round.
- **10**: `benchmarks/nightlybench.py`. Each side (the many pairs, then the baseline's few) gets its
  own database, home and simulator process (pro host, the server-side limit equal to the client's
  rate, one synthetic coin per pair); a week of hourly history per pair ending two days ago is
  written straight into the raw table and the candles built by `dbt run --full-refresh`; then
  `alphadb run` runs in a child process, timed from start to exit, with every step the job runs
  (environment and database checks, load, dbt run, freshness and tests, heal, report, the HTML
  page). Requests are counted from the simulator's log; "API minimum" is requests x 60 / rate, the
  floor no nightly can beat. The steps' seconds come from the run history (`ops.run_steps`). Peak
  RSS is the largest resident set in the run's process tree (the job and the dbt processes it
  starts), from `wait4`.
- **8**: 1,000 synthetic pairs (the raw points written straight into the raw table, each stored a
  day after its time), a week of hourly history each, candles built; then one more day of points
  stored now, and the dbt part of the nightly timed as `alphadb run` runs it: `dbt run`
  (incremental), `dbt source freshness`, `dbt test` on tonight's scope (the candles rebuilt from the
  last week's loads plus the whole history of the pairs audited on today's UTC weekday). The pairs reach dbt as the var `pairs` (ALPHADB_PAIRS); per pair = wall time / pairs.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (what the test suite runs)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10", help="comma-separated benchmark numbers")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS}, none with --smoke)")
    parser.add_argument("--load-pairs", type=int, default=None)
    parser.add_argument("--load-hours", type=int, default=None, help="hours of history per pair, big backfill")
    parser.add_argument("--small-hours", type=int, default=None, help="hours of history per pair, small backfill")
    parser.add_argument("--api-pairs", type=int, default=None)
    parser.add_argument("--api-rate", type=int, default=None, help="client and server requests/min")
    parser.add_argument("--pace-pairs", type=int, default=None, help="pairs of benchmark 9")
    parser.add_argument("--pace-days", type=int, default=None, help="days of benchmark 9's backfill")
    parser.add_argument("--dbt-pairs", type=int, default=None)
    parser.add_argument("--long-days", type=int, default=None)
    parser.add_argument("--short-days", type=int, default=None)
    parser.add_argument("--scale-pairs", type=int, default=None, help="pairs of benchmark 8")
    parser.add_argument("--report-pairs", type=int, default=None)
    parser.add_argument("--report-days", type=int, default=None)
    parser.add_argument("--nightly-pairs", type=int, default=None, help="pairs of benchmark 10")
    parser.add_argument("--nightly-rate", type=int, default=None, help="requests/min of benchmark 10")
    parser.add_argument("--nightly-scale-pairs", type=int, default=None, help="pairs of benchmark 4 at scale (0: skip it)")
    return parser.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> dict[str, int]:
    smoke = args.smoke
    return {
        # 40 pairs x 25,000 hourly points = 1,000,000 points in 12 windows of <= 90 days (480 requests)
        "load_pairs": args.load_pairs or (2 if smoke else 40),
        "load_hours": args.load_hours or (240 if smoke else 25_000),
        "small_hours": args.small_hours or (24 if smoke else 2_500),
        # 10 pairs x (6 + 2 x 2) requests at 90/min: a little over a minute, so the server's window fills
        "api_pairs": args.api_pairs or (2 if smoke else 10),
        "api_rate": args.api_rate or (6000 if smoke else 90),
        # 100 pairs x 365 days = 600 requests: 72 s at 500/min, 36 s at 1,000/min
        "pace_pairs": args.pace_pairs or (3 if smoke else 100),
        "pace_days": args.pace_days or 365,
        "dbt_pairs": args.dbt_pairs or (2 if smoke else 20),
        "long_days": args.long_days or (10 if smoke else 3 * 365),
        "short_days": args.short_days or (3 if smoke else 7),
        # 1,000 pairs x a week of hourly points: the dbt part of a nightly stays under a minute
        "scale_pairs": args.scale_pairs or (20 if smoke else 1000),
        "scale_days": 2 if smoke else 7,
        "report_pairs": args.report_pairs or (2 if smoke else 20),
        "report_days": args.report_days or (10 if smoke else 3 * 365),
        # the whole nightly: 1,000 pairs at CoinGecko Pro's 500 requests/min against 20 pairs
        "nightly_pairs": args.nightly_pairs or (4 if smoke else 1000),
        "nightly_baseline_pairs": 2 if smoke else 20,
        "nightly_rate": args.nightly_rate or (6000 if smoke else 500),
        "nightly_history_days": 2 if smoke else 7,
        # benchmark 4 at scale: 1,000 synthetic pairs (more than the page charts and the log lists)
        "nightly_scale_pairs": (30 if smoke else 1000) if args.nightly_scale_pairs is None else args.nightly_scale_pairs,
    }


def measure(pg: Postgres, sizes: dict[str, int], only: set[int], smoke: bool) -> tuple[dict[str, Any], list[Row]]:
    """Run the chosen benchmarks; (raw results, table rows)."""
    results: dict[str, Any] = {"sizes": sizes}
    rows: list[Row] = []
    if only & {1, 2, 6}:
        from benchmarks.loadbench import run_load_benchmarks

        print(f"benchmarks 1, 2, 6: loader, {sizes['load_pairs']} pairs x {sizes['load_hours']} h ...", flush=True)
        results["load"] = run_load_benchmarks(pg, sizes["load_pairs"], sizes["load_hours"], sizes["small_hours"])
        rows += [row for row in load_rows(results["load"]) if row.number in only]
    if 5 in only:
        from benchmarks.apibench import run_api_benchmark

        print(f"benchmark 5: API economy, {sizes['api_pairs']} pairs at {sizes['api_rate']}/min ...", flush=True)
        results["api"] = run_api_benchmark(pg, sizes["api_pairs"], sizes["api_rate"])
        rows += api_rows(results["api"])
    if 9 in only:
        from benchmarks.apibench import run_backfill_pace_benchmark

        print(f"benchmark 9: backfill at the API's pace, {sizes['pace_pairs']} pairs x {sizes['pace_days']} d ...", flush=True)
        results["pace"] = run_backfill_pace_benchmark(pg, sizes["pace_pairs"], sizes["pace_days"])
        rows += pace_rows(results["pace"])
    if only & {3, 4}:
        from benchmarks.transformbench import run_transform_benchmarks

        print(f"benchmarks 3, 4: dbt, {sizes['dbt_pairs']} pairs, {sizes['long_days']} d vs {sizes['short_days']} d ...", flush=True)
        results["transform"] = run_transform_benchmarks(
            pg, sizes["dbt_pairs"], sizes["long_days"], sizes["short_days"], nightly=4 in only,
            rounds=(2, 1) if smoke else (5, 2),
        )
        rows += [row for row in transform_rows(results["transform"]) if row.number in only]
    if 4 in only and sizes["nightly_scale_pairs"]:
        from benchmarks.transformbench import nightly_at_scale

        print(f"benchmarks 4, 7 at scale: nightly, {sizes['nightly_scale_pairs']} pairs, {sizes['long_days']} d vs {sizes['short_days']} d ...", flush=True)
        results["nightly_scale"] = nightly_at_scale(pg, sizes["nightly_scale_pairs"], sizes["long_days"], sizes["short_days"])
        rows += nightly_rows(results["nightly_scale"], "load 2 d merged by SQL") + scale_page_rows(results["nightly_scale"])
    if 7 in only:
        from benchmarks.reportbench import run_report_benchmark

        print(f"benchmark 7: data-quality page, {sizes['report_pairs']} pairs x {sizes['report_days']} d ...", flush=True)
        results["report"] = run_report_benchmark(pg, sizes["report_pairs"], sizes["report_days"])
        rows += report_rows(results["report"])
    if 8 in only:
        from benchmarks.transformbench import run_scale_benchmark

        print(f"benchmark 8: dbt nightly, {sizes['scale_pairs']} pairs x {sizes['scale_days']} d ...", flush=True)
        results["scale"] = run_scale_benchmark(pg, sizes["scale_pairs"], sizes["scale_days"])
        rows += scale_rows(results["scale"])
    if 10 in only:
        from benchmarks.nightlybench import run_nightly_benchmark

        print(f"benchmark 10: whole nightly, {sizes['nightly_pairs']} pairs at {sizes['nightly_rate']}/min ...", flush=True)
        results["nightly"] = run_nightly_benchmark(
            pg, sizes["nightly_pairs"], sizes["nightly_baseline_pairs"], sizes["nightly_rate"], sizes["nightly_history_days"]
        )
        rows += whole_nightly_rows(results["nightly"])
    rows.sort(key=lambda row: row.number)
    return results, rows


def results_page(machine: dict[str, str], rendered: str, results: dict[str, Any], elapsed: float) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        "# AlphaDB benchmark results",
        "",
        f"`make bench` (`python -m benchmarks`) on {stamp}, commit {git_revision()}, took {elapsed:.0f} s.",
        "Every target is a ratio of two numbers measured in the same run.",
        "",
        "## Machine",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "",
        "## Results",
        rendered,
        "",
        METHOD,
        "## Raw numbers",
        "```json",
        _details(results),
        "```",
        "",
    ]
    return "\n".join(text)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the suite, print the table, write the results page (not with --smoke unless --out);
    returns the raw results with the table's rows under "rows"."""
    args = parse_args(argv)
    sizes = sizes_for(args)
    only = {int(x) for x in args.only.split(",") if x.strip()}
    out_file = args.out or (None if args.smoke else RESULTS)
    started = time.perf_counter()
    pg = Postgres()
    try:
        machine = machine_description(pg.version())
        results, rows = measure(pg, sizes, only, args.smoke)
    finally:
        pg.close()
    elapsed = time.perf_counter() - started
    results["total_s"] = elapsed
    rendered = table(rows)
    print()
    print(rendered)
    print(f"\n{len(rows)} rows, {sum(r.ok is True for r in rows)} pass, {sum(r.ok is False for r in rows)} miss; {elapsed:.0f} s")
    if out_file:
        out_file.write_text(results_page(machine, rendered, results, elapsed), encoding="utf-8")
        print(f"wrote {out_file}")
    results["rows"] = [r.__dict__ | {"status": r.status} for r in rows]
    return results


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
