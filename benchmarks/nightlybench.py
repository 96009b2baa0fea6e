"""Benchmark 10: the whole nightly job (`alphadb run`, as cron runs it) with many pairs, against
the API's own limit, and its peak memory against the same job with few pairs.

Each side gets its own database, home and simulator. The simulator runs in its own process (pro
host, the server-side limit at the client's COINGECKO_RATE_LIMIT_PER_MIN), serving one synthetic
coin per pair. The history (a week of hourly points per pair, ending two days ago) is written
straight into the raw table with the simulator's own sample times and prices, the candles built
by a real `dbt run --full-refresh`; then `alphadb run` runs in a child process and is timed from
start to exit. Its requests are counted from the simulator's request log: their minimum time at
the rate limit (requests x 60 / rate) is the floor no nightly can beat. Peak RSS is the largest
resident set of the run's process tree (the job and the dbt processes it starts), from wait4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from contextlib import contextmanager
from urllib.request import Request, urlopen

from benchmarks.harness import REPO_ROOT, Postgres, bench_env, scratch_dir, settings_for
from benchmarks.transformbench import populate
from pipelines.config import Pair
from pipelines.database import Connection, connect


def nightly_pairs(count: int) -> list[Pair]:
    """`count` pairs N0001/USD ... reading the simulator's synthetic coins nightly-0001 ..."""
    return [Pair(f"N{n:04d}/USD", f"nightly-{n:04d}", "usd") for n in range(1, count + 1)]


@contextmanager
def simulator_process(rate_per_min: int, coins: list[str]) -> Iterator[str]:
    """The simulator in its own process (so generating prices costs the job no CPU time slice in
    its own interpreter); yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.simulator", "--port", "0", "--host-kind", "pro", "--rate-limit", str(rate_per_min)],
        cwd=str(REPO_ROOT), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError("the simulator did not start")
        _admin(base_url, "POST", "/__admin/config", {"coins": coins})
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _admin(base_url: str, method: str, path: str, payload: Any = None) -> Any:
    root = base_url.split("/api/")[0]
    body = None if payload is None else json.dumps(payload).encode()
    request = Request(root + path, data=body, method=method, headers={"Content-Type": "application/json"})
    with urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def _timed_run(env: dict[str, str]) -> tuple[float, int, int, str]:
    """`alphadb run` in a child process: (wall seconds, exit code, peak RSS in kB of its process
    tree, its output's last lines)."""
    script = Path(sys.executable).with_name("alphadb")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]
    started = time.perf_counter()
    process = subprocess.Popen([*command, "run"], env=env, cwd=str(REPO_ROOT),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    tail = "\n".join(output.splitlines()[-12:])
    return elapsed, process.returncode, int(usage.ru_maxrss), tail


def _steps(connection: Connection) -> dict[str, float]:
    """The run's steps and their seconds, as the run history recorded them."""
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute(
            "select step, seconds from ops.run_steps where run_id = (select max(run_id) from ops.runs) order by position"
        )
        return {step: round(seconds, 2) for step, seconds in cur.fetchall()}


def one_night(pg: Postgres, pair_count: int, rate_per_min: int, history_days: int) -> dict[str, Any]:
    """Prepare a database with `history_days` of history for `pair_count` pairs, then time one
    nightly run at `rate_per_min` (client and server)."""
    from pipelines.load import load_range
    from pipelines.transform import run_models

    pairs = nightly_pairs(pair_count)
    out: dict[str, Any] = {"pairs": pair_count}
    connection = pg.new_database(f"nightly{pair_count}")
    try:
        with simulator_process(rate_per_min, [p.coin_id for p in pairs]) as base_url, scratch_dir("alphadb-bench-nightly-") as home:
            env = bench_env(connection, base_url, pairs, home, rate_per_min)
            env["ALPHADB_BACKFILL_DAYS"] = "2"
            settings = settings_for(env)
            now = datetime.now(timezone.utc)
            end = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
            start = end - timedelta(days=history_days)
            # A tiny real load creates the raw table, dlt's tables and the loader's indexes.
            load_range(settings, connection, start, start + timedelta(hours=2), pairs=pairs[:1], job="bench-setup")
            out["history_rows"], out["populate_s"] = populate(connection, pairs, start, end)
            built = run_models(settings, connection, full_refresh=True)
            if not built.success:
                raise RuntimeError("dbt run --full-refresh failed while preparing benchmark 10")
            _admin(base_url, "DELETE", "/__admin/requests")
            out["elapsed_s"], out["exit_code"], out["peak_rss_kb"], out["tail"] = _timed_run(env)
            log = [entry for entry in _admin(base_url, "GET", "/__admin/requests") if entry.get("path", "").startswith("/api/")]
            times = sorted(entry["time"] for entry in log)
            out["requests"] = len(log)
            out["chart_requests"] = sum(1 for entry in log if "/market_chart" in entry["path"])
            out["status_429"] = sum(1 for entry in log if entry.get("status") == 429)
            out["requests_span_s"] = (times[-1] - times[0]) if times else 0.0
            out["api_minimum_s"] = len(log) * 60 / rate_per_min
            out["steps_s"] = _steps(connection)
    finally:
        pg.drop_database(connection)
    return out


def run_nightly_benchmark(pg: Postgres, pairs: int, baseline_pairs: int, rate_per_min: int, history_days: int) -> dict[str, Any]:
    """Benchmark 10: the nightly with `pairs` pairs against the API minimum, and its peak RSS
    against the same nightly with `baseline_pairs` pairs (measured first, in the same run)."""
    out: dict[str, Any] = {"pairs": pairs, "baseline_pairs": baseline_pairs, "rate_per_min": rate_per_min,
                           "history_days": history_days}
    out["baseline"] = one_night(pg, baseline_pairs, rate_per_min, history_days)
    out["scale"] = one_night(pg, pairs, rate_per_min, history_days)
    scale = out["scale"]
    out["over_api_minimum_s"] = scale["elapsed_s"] - scale["api_minimum_s"]
    out["rss_ratio"] = scale["peak_rss_kb"] / max(out["baseline"]["peak_rss_kb"], 1)
    out["ok"] = scale["exit_code"] == 0 and out["baseline"]["exit_code"] == 0 and scale["status_429"] == 0
    return out
