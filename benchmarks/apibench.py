"""Benchmarks 5 and 9: API economy and rate-limit discipline, and backfills at the API's pace.

5, against the plain simulator: a 365-day backfill then two nightly loads for every pair, with the simulator's server-side
limit set to exactly the client's configured rate (COINGECKO_RATE_LIMIT_PER_MIN). The run is
sized to last more than a minute at that rate, so the server's one-minute window really fills.

9: a backfill of many pairs with the client and the (replaying) server both at the rate of a paid
plan: how close its wall time comes to the API's minimum, and where the rest goes.
"""

from __future__ import annotations

import collections
import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.request import Request, urlopen

from benchmarks.harness import Postgres, bench_env, bench_pairs, scratch_dir, settings_for
from benchmarks.replay import API_PREFIX
from pipelines.database import Connection, connect
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



# --- benchmark 9: backfills at the API's own pace ------------------------------------------------

def _replay_admin(base_url: str, method: str, path: str, payload: Any = None) -> Any:
    """The replay server's control API (`benchmarks/replay.py`), beside its CoinGecko prefix."""
    root = base_url.removesuffix(API_PREFIX)
    data = None if payload is None else json.dumps(payload).encode()
    with urlopen(Request(root + path, data=data, method=method, headers={"Content-Type": "application/json"}), timeout=30) as reply:
        return json.loads(reply.read() or b"null")


def _distinct_points(connection: Connection) -> tuple[int, int]:
    """(rows, distinct keys) of the raw table."""
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select count(*), count(distinct (coin_id, vs_currency, ts)) from staging.market_chart_points")
        rows, keys = cur.fetchone()
    return int(rows), int(keys)


def where_the_time_went(load: dict[str, Any], served: list[dict[str, Any]], rate_per_min: int) -> dict[str, Any]:
    """A backfill's wall time against the API's minimum (requests / rate), and the rest split up:
    before the first request (lock, dlt state, indexes), the request span beyond the rate's own
    spacing (the reader not asking: waiting for the loader to take a step, or slow itself), and the
    tail after the last request (the last step's load)."""
    times = sorted(entry["time"] for entry in served)
    first, last = (times[0], times[-1]) if times else (load["started_at"], load["started_at"])
    minimum_s = len(served) * 60.0 / rate_per_min
    steps = load.get("steps") or []
    reader_waited = sum(max(0.0, later["read_started"] - earlier["read_finished"]) for earlier, later in zip(steps, steps[1:]))
    return {
        "wall_s": load["elapsed_s"],
        "api_minimum_s": minimum_s,
        "ratio": load["elapsed_s"] / minimum_s if minimum_s else math.nan,
        "requests_served": len(served),
        "requests_made": load["requests"],
        "status_429": sum(1 for entry in served if entry["status"] == 429),
        "before_first_request_s": first - load["started_at"],
        "request_span_s": last - first,
        "spacing_s": (len(served) - 1) * 60.0 / rate_per_min if served else 0.0,  # the limiter's own minimum for the span
        "tail_s": load["finished_at"] - last,
        "steps": len(steps),
        "reader_waited_on_loader_s": reader_waited if steps else None,
        "last_step_load_s": steps[-1]["load_finished"] - steps[-1]["load_started"] if steps else None,
    }


def run_backfill_pace_benchmark(
    pg: Postgres, pairs: int, days: int, rates: tuple[int, ...] = (500, 1000), timeout_s: float = 900
) -> dict[str, Any]:
    """Benchmark 9: a `days`-day backfill of `pairs` pairs with the client and the server limited to
    each rate in turn, against the replaying simulator in its own process (warmed unthrottled first,
    with the same plan), the loader in a child process; see `where_the_time_went`."""
    from benchmarks.loadbench import fetch_all, range_job, replay_server, run_child

    chosen = bench_pairs(pairs)
    now = datetime.now(timezone.utc)  # one plan for the warm-up and every timed backfill
    start = now - timedelta(days=days)
    out: dict[str, Any] = {"pairs": pairs, "days": days, "runs": {}}
    with replay_server(coins=pairs) as base_url, scratch_dir("alphadb-bench-pace-") as tmp:
        for rate in rates:
            connection = pg.new_database(f"pace{rate}")
            try:
                env = bench_env(connection, base_url, chosen, tmp / f"home-{rate}", rate)
                if not out["runs"]:
                    out["warm_requests"] = fetch_all({**env, "COINGECKO_RATE_LIMIT_PER_MIN": "100000"}, start, now, now=now)[0]
                _replay_admin(base_url, "POST", "/__replay/limit", {"per_min": rate})  # a fresh minute, an empty log
                load = run_child(range_job(env, connection, start, now, now=now), timeout_s)
                served = _replay_admin(base_url, "GET", "/__replay/requests")
                rows, keys = _distinct_points(connection)
            finally:
                pg.drop_database(connection)
            out["runs"][str(rate)] = {**where_the_time_went(load, served, rate), "points": load["points"], "rows": rows, "keys": keys,
                                      "step_timings": load.get("steps") or []}
    return out
