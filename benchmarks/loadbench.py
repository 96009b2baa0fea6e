"""Benchmarks 1, 2 and 6: the loader against plain COPY, re-load, and peak memory.

The loads run the real loader (`pipelines.load.load_range`: client, parsing, dlt extract,
normalize, CSV COPY into a staging table, merge) in child processes against a replaying
simulator (see `benchmarks/replay.py`), each child reporting its own elapsed time and peak RSS.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from benchmarks.harness import REPO_ROOT, Postgres, bench_env, bench_pairs, scratch_dir, settings_for
from pipelines.config import Pair
from pipelines.database import Connection, connect

# A fixed past range: the same URLs every run (the replay cache keys on them), all 40 coins exist.
RANGE_START = datetime(2021, 1, 1, tzinfo=timezone.utc)
COLUMNS = "coin_id, vs_currency, ts, price, market_cap, total_volume, loaded_at"


@contextmanager
def replay_server(coins: int = 40) -> Iterator[str]:
    """The caching simulator in a child process, serving coin-01..coin-`coins`; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.replay", "--coins", str(coins)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError("the replay server did not start")
        yield base_url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fetch_all(
    env: dict[str, str], start: datetime, end: datetime, parse: bool = False, now: datetime | None = None
) -> tuple[int, int, float]:
    """Request every window the loader will request (planned at `now`, by default this moment);
    returns (requests, points, seconds). The first pass fills the replay cache; a second one with
    `parse` is the loader's own work before dlt (HTTP, JSON decoding, Arrow tables): a floor for its
    time, whatever happens after."""
    from pipelines.coingecko.client import CoinGeckoClient
    from pipelines.coingecko.helpers import fetch_window
    from pipelines.coingecko.parsing import parse_market_chart
    from pipelines.coingecko.planning import plan_windows

    settings = settings_for(env)
    client = CoinGeckoClient(settings)
    now = now or datetime.now(timezone.utc)
    points = 0
    started = time.perf_counter()
    for pair in settings.pairs:
        for window in plan_windows(start, end, now, settings.history_days):
            body = fetch_window(client, pair, window)
            if parse:
                points += parse_market_chart(body, pair, window.start, window.end, now, window.label).num_rows
    return client.requests_made, points, time.perf_counter() - started


def run_child(job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.child"],
        cwd=REPO_ROOT,
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    marker = "@@RESULT@@"
    if proc.returncode != 0 or marker not in proc.stdout:
        raise RuntimeError(f"loader child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.split(marker, 1)[1].strip().splitlines()[0])
    if result["errors"]:
        raise RuntimeError(f"loader child reported errors: {result['errors'][:3]}")
    return result


def range_job(
    env: dict[str, str], connection: Connection, start: datetime, end: datetime, now: datetime | None = None
) -> dict[str, Any]:
    """A `load_range` for `benchmarks.child`; `now` fixes the plan (the windows a warm-up fetched)."""
    job = {"kind": "range", "env": env, "connection": asdict(connection), "start": start.isoformat(), "end": end.isoformat()}
    return job | ({"now": now.isoformat()} if now else {})


def copy_baseline(connection: Connection, keyed: bool = False, repeats: int = 3) -> tuple[int, float]:
    """COPY the loaded rows (as CSV, prepared beforehand) into an unlogged table without indexes:
    the database's own ingest speed. With `keyed`, into a logged table with the raw table's two
    indexes instead: what writing these rows into the real table costs at the least, before any
    merge work. The median of `repeats` COPYs into fresh tables."""
    buffer = io.BytesIO()
    with connect(connection) as conn, conn.cursor() as cur:
        cur.copy_expert(f"copy (select {COLUMNS} from staging.market_chart_points) to stdout with (format csv)", buffer)
    timings: list[float] = []
    rows = 0
    for _ in range(repeats):
        with connect(connection) as conn, conn.cursor() as cur:
            cur.execute(
                f"""create {"" if keyed else "unlogged"} table public.bench_copy_baseline (
                    coin_id text not null, vs_currency text not null, ts timestamptz not null,
                    price double precision, market_cap double precision, total_volume double precision,
                    loaded_at timestamptz not null)"""
            )
            if keyed:
                cur.execute("create unique index on public.bench_copy_baseline (coin_id, vs_currency, ts)")
                cur.execute("create index on public.bench_copy_baseline (loaded_at)")
        buffer.seek(0)
        with connect(connection) as conn, conn.cursor() as cur:
            started = time.perf_counter()
            cur.copy_expert(f"copy public.bench_copy_baseline ({COLUMNS}) from stdin with (format csv)", buffer)
            conn.commit()
            timings.append(time.perf_counter() - started)
            cur.execute("select count(*) from public.bench_copy_baseline")
            rows = int(cur.fetchone()[0])
            cur.execute("drop table public.bench_copy_baseline")
    return rows, sorted(timings)[len(timings) // 2]


def count_points(connection: Connection) -> int:
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from staging.market_chart_points")
        return int(cur.fetchone()[0])


def run_load_benchmarks(pg: Postgres, pairs: int, hours_big: int, hours_small: int, timeout_s: float = 900) -> dict[str, Any]:
    """Benchmarks 1 (load vs COPY), 2 (re-load) and 6 (peak RSS, big vs small backfill)."""
    chosen: list[Pair] = bench_pairs(pairs)
    big_end = RANGE_START + timedelta(hours=hours_big)
    small_end = RANGE_START + timedelta(hours=hours_small)
    out: dict[str, Any] = {"pairs": pairs, "hours_big": hours_big, "hours_small": hours_small}
    with replay_server() as base_url, scratch_dir("alphadb-bench-home-") as tmp:
        big_db = pg.new_database("load")
        small_db = pg.new_database("mem")
        try:
            env_big = bench_env(big_db, base_url, chosen, tmp / "big")
            env_small = bench_env(small_db, base_url, chosen, tmp / "small")
            out["warm_requests"], _, out["warm_s"] = fetch_all(env_big, RANGE_START, big_end)
            out["warm_requests"] += fetch_all(env_small, RANGE_START, small_end)[0]
            _, out["fetch_points"], out["fetch_parse_s"] = fetch_all(env_big, RANGE_START, big_end, parse=True)
            out["first"] = run_child(range_job(env_big, big_db, RANGE_START, big_end), timeout_s)
            out["rows_after_first"] = count_points(big_db)
            out["reload"] = run_child(range_job(env_big, big_db, RANGE_START, big_end), timeout_s)
            out["rows_after_reload"] = count_points(big_db)
            out["copy_rows"], out["copy_s"] = copy_baseline(big_db)
            out["keyed_copy_s"] = copy_baseline(big_db, keyed=True)[1]
            out["small"] = run_child(range_job(env_small, small_db, RANGE_START, small_end), timeout_s)
        finally:
            pg.drop_database(big_db)
            pg.drop_database(small_db)
    first, reload, small = out["first"], out["reload"], out["small"]
    out["load_pps"] = first["points"] / first["elapsed_s"]
    out["copy_pps"] = out["copy_rows"] / out["copy_s"]
    out["load_vs_copy"] = out["load_pps"] / out["copy_pps"]
    # Ceilings for any loader of these points into the real table, as shares of COPY's points/s: it
    # fetches and parses them, and writes them into a logged table with two indexes.
    out["fetch_parse_vs_copy"] = out["copy_s"] / out["fetch_parse_s"] * out["fetch_points"] / out["copy_rows"]
    out["keyed_copy_vs_copy"] = out["copy_s"] / out["keyed_copy_s"]
    out["reload_ratio"] = reload["elapsed_s"] / first["elapsed_s"]
    out["rss_ratio"] = first["peak_rss_kb"] / small["peak_rss_kb"]
    return out


if __name__ == "__main__":  # a quick manual run: python -m benchmarks.loadbench PAIRS HOURS_BIG HOURS_SMALL
    args = [int(a) for a in sys.argv[1:4]] or [40, 25000, 2500]
    pg = Postgres()
    try:
        print(json.dumps(run_load_benchmarks(pg, *args), indent=2, default=str))
    finally:
        pg.close()
