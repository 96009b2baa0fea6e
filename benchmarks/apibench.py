"""Benchmark 5: API economy and rate-limit discipline, against the plain simulator.

A 365-day backfill then two nightly loads for every pair, with the simulator's server-side
limit set to exactly the client's configured rate (COINGECKO_RATE_LIMIT_PER_MIN). The run is
sized to last more than a minute at that rate, so the server's one-minute window really fills.
"""

from __future__ import annotations

import collections
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.harness import Postgres, bench_env, bench_pairs, scratch_dir, settings_for
from pipelines.simulator import Simulator


def _per_pair(entries: list[dict[str, Any]]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for entry in entries:
        if entry.get("coin"):
            counts[entry["coin"]] += 1
    return dict(counts)


def _max_in_window(times: list[float], window_s: float = 60.0) -> int:
    times = sorted(times)
    best, low = 0, 0
    for high, t in enumerate(times):
        while times[low] <= t - window_s:
            low += 1
        best = max(best, high - low + 1)
    return best


def run_api_benchmark(pg: Postgres, pairs: int, rate_per_min: int, backfill_days: int = 365) -> dict[str, Any]:
    from pipelines.load import load_incremental, load_range

    chosen = bench_pairs(pairs)
    connection = pg.new_database("api")
    out: dict[str, Any] = {"pairs": pairs, "rate_per_min": rate_per_min, "backfill_days": backfill_days}
    try:
        with Simulator(host_kind="pro", rate_limit_per_min=rate_per_min) as sim, scratch_dir("alphadb-bench-api-") as home:
            settings = settings_for(bench_env(connection, sim.base_url, chosen, home, rate_per_min))
            now = datetime.now(timezone.utc)
            backfill = load_range(settings, connection, now - timedelta(days=backfill_days), now, job=f"days={backfill_days}")
            backfill_log = sim.requests
            sim.clear_requests()
            nightly_reports, nightly_logs = [], []
            for _ in range(2):  # the first nightly run after a backfill, then a steady-state one
                nightly_reports.append(load_incremental(settings, connection))
                nightly_logs.append(sim.requests)
                sim.clear_requests()
        everything = backfill_log + [e for log in nightly_logs for e in log]
        failed = [f"{r.pair.name}: {r.error}" for rep in [backfill, *nightly_reports] for r in rep.failed]
        backfill_counts = _per_pair(backfill_log)
        nightly_counts = [_per_pair(log) for log in nightly_logs]
        times = [e["time"] for e in everything]
        out.update(
            backfill_points=backfill.points,
            backfill_requests_per_pair_max=max(backfill_counts.values(), default=0),
            backfill_requests_per_pair_mean=sum(backfill_counts.values()) / max(len(backfill_counts), 1),
            nightly_requests_per_pair_max=max((max(c.values(), default=0) for c in nightly_counts), default=0),
            nightly_requests_per_pair_mean=sum(sum(c.values()) for c in nightly_counts) / max(sum(len(c) for c in nightly_counts), 1),
            nightly_points=[r.points for r in nightly_reports],
            requests_total=len(everything),
            status_429=sum(1 for e in everything if e["status"] == 429),
            non_200=sum(1 for e in everything if e["status"] != 200),
            max_in_any_60s=_max_in_window(times),
            duration_s=(max(times) - min(times)) if times else 0.0,
            failures=failed,
        )
    finally:
        pg.drop_database(connection)
    return out

