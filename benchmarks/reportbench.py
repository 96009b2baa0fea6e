"""Benchmark 7: the data-quality page (`alphadb report --html`) for many pairs with years of history:
its size against the 5 MB budget and its generation time (queries, charts, writing) against 10 s.

The history is the one benchmarks 3 and 4 use (the simulator's hourly points COPY'd into the raw
table, candles built by a real `dbt run --full-refresh`), plus `runs` finished runs recorded in
ops.runs by the real recorder, so every panel of the page has its full load.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks.harness import Postgres, bench_pairs, scratch_dir
from benchmarks.transformbench import page_in_child, prepare_history
from pipelines import html_report
from pipelines.database import Connection
from pipelines.run_history import recording
from pipelines.simulator import Simulator

STEPS = ("Environment check", "Database connectivity check", "Backfill", "dbt run", "Data quality checks")


def record_runs(connection: Connection, count: int) -> None:
    """`count` finished nightly runs with their steps, one of them failed, like a month of cron."""
    for index in range(count):
        with recording("run") as record:
            record.start(connection)
            for step in STEPS:
                record.enter_step(step)
            record.close(4 if index == count // 2 else 0, points=600, requests=4,
                         failures=["Gap heal: Gap the source cannot fill"] if index == count // 2 else [])


def run_report_benchmark(pg: Postgres, pairs: int, days: int, runs: int = 30, rounds: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {"pairs": pairs, "days": days, "runs": runs}
    with Simulator(host_kind="pro") as sim, scratch_dir("alphadb-bench-report-") as tmp:
        settings, connection, history = prepare_history(
            pg, sim, bench_pairs(pairs), tmp / "home", timedelta(days=days), datetime.now(timezone.utc), "report"
        )
        try:
            out["rows"], out["candles_ok"] = history["rows"], history["full_refresh_ok"]
            record_runs(connection, runs)
            timings = []
            for _ in range(rounds):
                started = time.perf_counter()
                page = html_report.write_page(settings, connection, tmp / "page.html")
                timings.append(time.perf_counter() - started)
            out["rounds_s"] = timings
            out["generation_s"] = statistics.median(timings)
            out["page_bytes"] = page.stat().st_size
            out["charts"] = page.read_text(encoding="utf-8").count('data-panel="candles-')
            out["child"] = page_in_child(settings, connection, tmp / "child-page.html")  # its peak RSS
        finally:
            pg.drop_database(connection)
    return out


def write_report_and_page(job: dict[str, Any]) -> dict[str, Any]:
    """What the nightly does after its tests on all pairs, timed: the heal step's gap lookup, the
    text report (as the nightly logs it) and the data-quality page; with this process's peak RSS."""
    from benchmarks.child import _peak_rss_kb
    from pipelines import report, runlog
    from pipelines.config import load_settings
    from pipelines.transform import find_gaps

    settings = load_settings(job["env"])
    connection = Connection(**job["connection"])
    runlog.setup(settings.log_file, stream=False)
    rss_before = _peak_rss_kb()
    started = time.perf_counter()
    gaps = find_gaps(connection)
    gaps_s = time.perf_counter() - started
    started = time.perf_counter()
    report.log_report(settings, connection, gaps)
    report_s = time.perf_counter() - started
    log_lines = settings.log_file.read_text(encoding="utf-8").splitlines()
    started = time.perf_counter()
    page = html_report.write_page(settings, connection, Path(job["path"]))
    page_s = time.perf_counter() - started
    text = page.read_text(encoding="utf-8")
    return {
        "gaps": len(gaps), "gaps_s": gaps_s, "report_s": report_s, "report_lines": len(log_lines),
        "report_chars": sum(len(line) for line in log_lines), "page_s": page_s, "page_bytes": page.stat().st_size,
        "charts": text.count('data-panel="candles-'), "left_out_note": 'data-banner="charts-left-out"' in text,
        "peak_rss_kb": _peak_rss_kb(), "rss_after_imports_kb": rss_before,
    }


if __name__ == "__main__":  # a child of benchmarks 4 and 7: a JSON job on stdin, a JSON result on stdout
    result = write_report_and_page(json.loads(sys.stdin.read()))
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
