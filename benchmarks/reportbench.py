"""Benchmark 7: the data-quality page (`alphadb report --html`) for many pairs with years of history:
its size against the 5 MB budget and its generation time (queries, charts, writing) against 10 s.

The history is the one benchmarks 3 and 4 use (the simulator's hourly points COPY'd into the raw
table, candles built by a real `dbt run --full-refresh`), plus `runs` finished runs recorded in
ops.runs by the real recorder, so every panel of the page has its full load.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.harness import Postgres, bench_pairs, scratch_dir
from benchmarks.transformbench import prepare_history
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
        finally:
            pg.drop_database(connection)
    return out
