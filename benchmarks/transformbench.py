"""Benchmarks 3 and 4: the candle build against hand-written SQL, and a nightly run's cost with a
long history against a short one.

Histories are written straight into `staging.market_chart_points` with COPY (the loader's table,
created by a tiny real load first): the same rows the simulator would serve (its own
`sample_times`/`series` functions), without spending minutes loading them through the API.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2

from benchmarks.harness import Postgres, bench_env, bench_pairs, scratch_dir, settings_for
from pipelines.config import Pair, Settings
from pipelines.database import Connection, connect
from pipelines.simulator import Simulator
from pipelines.simulator import prices

CANDLE_MODELS = ("int_candles_1h", "int_candles_1d")

HAND_WRITTEN = """
insert into public.bench_hand_candles_{tf}
select
    p.coin_id || '/' || p.vs_currency as pair,
    date_trunc('{unit}', p.ts) as ts,
    (array_agg(p.price order by p.ts asc))[1] as open,
    max(p.price) as high,
    min(p.price) as low,
    (array_agg(p.price order by p.ts desc))[1] as close,
    (array_agg(p.total_volume order by p.ts desc))[1] as volume,
    (array_agg(p.market_cap order by p.ts desc))[1] as market_cap,
    count(*) as sample_count
from staging.market_chart_points as p
where p.price is not null
group by 1, 2
"""


def populate(
    connection: Connection, pairs: list[Pair], start: datetime, end: datetime, load_lag: timedelta = timedelta(days=1)
) -> tuple[int, float]:
    """COPY the simulator's hourly points of [start, end) for every pair, each stored `load_lag` after
    its time (as nightly loads would have stored it); returns (rows, seconds)."""
    started = time.perf_counter()
    rows = 0
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("delete from staging.market_chart_points")
        for pair in pairs:
            times = prices.sample_times(pair.coin_id, int(start.timestamp() * 1000), int(end.timestamp() * 1000) - 1, prices.HOURLY)
            chart = prices.series(pair.coin_id, times, pair.vs_currency)
            buffer = io.StringIO()
            prefix = f"{pair.coin_id},{pair.vs_currency},"
            for (ts, price), (_, cap), (_, volume) in zip(chart["prices"], chart["market_caps"], chart["total_volumes"]):
                when = datetime.fromtimestamp(ts / 1000, timezone.utc)
                row = f"{when.isoformat(timespec='milliseconds')},{price!r},{cap!r},{volume!r},{(when + load_lag).isoformat()}"
                buffer.write(f"{prefix}{row}\n")
            buffer.seek(0)
            cur.copy_expert(
                "copy staging.market_chart_points (coin_id, vs_currency, ts, price, market_cap, total_volume, loaded_at)"
                " from stdin with (format csv)",
                buffer,
            )
            rows += len(times)
    # Settle the table as years-old data is (hint bits set, visibility map, statistics): otherwise
    # whichever query reads it first pays for writing every page's hint bits, the dbt full refresh
    # here, and the hand-written SQL after it does not.
    _vacuum(connection)
    return rows, time.perf_counter() - started


def node_times(settings: Settings) -> dict[str, float]:
    """Execution time of every node of the last dbt command (run_results.json)."""
    path = settings.home / "dbt" / "target" / "run_results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    times: dict[str, float] = {}
    for result in data.get("results", []):
        # model.alphadb.int_candles_1h, test.alphadb.no_gaps_..._1h.0a1b2c3d4e, unit_test.alphadb.<model>.<name>
        parts = [p for p in result["unique_id"].split(".")[2:] if not re.fullmatch(r"[0-9a-f]{10}", p)]
        times[".".join(parts)] = float(result.get("execution_time") or 0.0)
    return times


def hand_written_candles(connection: Connection) -> float:
    """The same hourly and daily candles (without forward fill) in one INSERT ... SELECT each."""
    with connect(connection) as conn, conn.cursor() as cur:
        for tf in ("1h", "1d"):
            cur.execute(f"drop table if exists public.bench_hand_candles_{tf}")
            cur.execute(
                f"""create table public.bench_hand_candles_{tf} (
                    pair text, ts timestamptz, open double precision, high double precision, low double precision,
                    close double precision, volume double precision, market_cap double precision, sample_count bigint)"""
            )
    started = time.perf_counter()
    with connect(connection) as conn, conn.cursor() as cur:
        for tf, unit in (("1h", "hour"), ("1d", "day")):
            cur.execute(HAND_WRITTEN.format(tf=tf, unit=unit))
    elapsed = time.perf_counter() - started
    with connect(connection) as conn, conn.cursor() as cur:
        for tf in ("1h", "1d"):
            cur.execute(f"drop table public.bench_hand_candles_{tf}")
    return elapsed


def candle_rounds(settings: Settings, connection: Connection, first_nodes: dict[str, float], rounds: int = 5) -> list[tuple[float, float]]:
    """(candle models' time, hand-written SQL's time) of `rounds` rounds, each the dbt full refresh
    then the hand-written SQL right after it; the first from the full refresh that built the
    history's candles. The ratio is the median of the rounds' own ratios: each pair of timings
    shares the machine's moment, and one burst of other work decides nothing."""
    from pipelines.transform import run_models

    times: list[tuple[float, float]] = []
    for round_number in range(rounds):
        if round_number:
            # Like the hand-written side (fresh tables every round) and the first round, build from
            # nothing: dbt's swap of a replaced table and its dependent views is no candle work.
            with connect(connection) as conn, conn.cursor() as cur:
                for model in CANDLE_MODELS:
                    cur.execute(f"drop table dbt_intermediate.{model} cascade")
            if not run_models(settings, connection, full_refresh=True).success:
                raise RuntimeError("dbt run --full-refresh failed in a candle build round")
        nodes = node_times(settings) if round_number else first_nodes
        times.append((sum(nodes.get(name, 0.0) for name in CANDLE_MODELS), hand_written_candles(connection)))
    return times


def prepare_history(
    pg: Postgres, sim: Simulator, pairs: list[Pair], home: Path, history: timedelta, now: datetime, label: str
) -> tuple[Settings, Connection, dict[str, Any]]:
    """A database whose raw table holds `history` of hourly points ending 2 days ago, candles built."""
    from pipelines.load import load_range
    from pipelines.transform import run_models

    connection = pg.new_database(label)
    env = bench_env(connection, sim.base_url, pairs, home)
    env["ALPHADB_BACKFILL_DAYS"] = "2"
    settings = settings_for(env)
    end = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    start = end - history
    # A tiny real load creates the raw table, dlt's tables and the loader's indexes.
    load_range(settings, connection, start, start + timedelta(hours=2), job="bench-setup")
    info: dict[str, Any] = {}
    info["rows"], info["populate_s"] = populate(connection, pairs, start, end)
    outcome = run_models(settings, connection, full_refresh=True)
    info["full_refresh_s"] = outcome.elapsed_s
    info["full_refresh_ok"] = outcome.success
    info["full_refresh_failed"] = [f"{r.name}: {r.message[:200]}" for r in outcome.failed]
    info["full_refresh_nodes"] = node_times(settings)
    return settings, connection, info


# The test scopes a nightly is timed with: "audit" is every night now (the last week's loads plus the
# whole history of tonight's seventh of the pairs, the largest slot of the configured pairs);
# "recent" the last week's loads alone (the weekday nights before the audit); "all" all history (the
# Sunday night before it: what the rolling audit replaced, measured as the baseline).
NIGHTS = ("recent", "audit", "all")


def largest_audit_slot(connection: Connection) -> tuple[int, int]:
    """(weekday, pairs) of the audit slot with the most pairs (int_configured_pairs.audit_weekday)."""
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select audit_weekday, count(*) from dbt_intermediate.int_configured_pairs group by 1 order by 2 desc, 1 limit 1")
        weekday, count = cur.fetchone()
        return int(weekday), int(count)


def night_scope(night: str, audit_weekday: int) -> Any:
    from pipelines.nightly import TESTS_LOOKBACK
    from pipelines.transform import TestsScope

    since = datetime.now(timezone.utc) - TESTS_LOOKBACK
    return {"recent": TestsScope(since), "audit": TestsScope(since, audit_weekday), "all": None}[night]


def dbt_night(settings: Settings, connection: Connection, scope: Any) -> dict[str, Any]:
    """The nightly's dbt steps as `alphadb run` runs them: dbt run, dbt source freshness, dbt test on
    `scope`; with dbt's per-node times (the slowest, and their sum: "dbt SQL")."""
    from pipelines.transform import run_models, run_tests, source_freshness

    out: dict[str, Any] = {"ok": True}
    steps = (
        ("dbt_run", run_models), ("dbt_freshness", source_freshness),
        ("dbt_test", lambda settings, connection: run_tests(settings, connection, scope)),
    )
    for name, step in steps:
        outcome = step(settings, connection)
        out[f"{name}_s"] = outcome.elapsed_s
        out["ok"] = out["ok"] and outcome.success
        if name != "dbt_freshness":
            nodes = node_times(settings)
            out[f"{name}_slowest"] = dict(sorted(nodes.items(), key=lambda kv: -kv[1])[:6])
            out[f"{name}_sql_s"] = sum(nodes.values())
            out[f"{name}_nodes"] = len(nodes)
        if not outcome.success:
            out.setdefault("failed", []).extend(f"{r.name}: {r.message[:160]}" for r in outcome.failed)
    return out


def nightly_once(settings: Settings, connection: Connection, scope: Any) -> dict[str, Any]:
    """The nightly ELT's work, step by step as `alphadb run` does it: load (the last
    ALPHADB_BACKFILL_DAYS days from the simulator), then `dbt_night` on `scope`."""
    from pipelines.load import load_incremental

    started = time.perf_counter()
    report = load_incremental(settings, connection)
    out: dict[str, Any] = {"load_s": time.perf_counter() - started, "load_points": report.points, "load_requests": report.requests}
    out.update(dbt_night(settings, connection, scope))
    out["ok"] = out["ok"] and not report.failed
    out["elapsed_s"] = time.perf_counter() - started
    return out


def compare_nights(
    sides: dict[str, tuple[Settings, Connection]], night: Any, rounds: int, audit_weekday: int
) -> dict[str, Any]:
    """Each kind of night (NIGHTS) on the long and the short history, interleaved, `rounds` rounds
    ("all" one round: it is the baseline); the faster of each side counts."""
    out: dict[str, Any] = {}
    for kind in NIGHTS:
        runs = [
            {side: night(settings, connection, night_scope(kind, audit_weekday)) for side, (settings, connection) in sides.items()}
            for _ in range(1 if kind == "all" else rounds)
        ]
        best = {side: min((r[side] for r in runs), key=lambda r: r["elapsed_s"]) for side in sides}
        out[kind] = {
            "long": best["long"], "short": best["short"],
            "rounds_s": [(r["long"]["elapsed_s"], r["short"]["elapsed_s"]) for r in runs],
            "ratio": best["long"]["elapsed_s"] / best["short"]["elapsed_s"],
            "sql_ratio": (best["long"]["dbt_run_sql_s"] + best["long"]["dbt_test_sql_s"])
            / max(best["short"]["dbt_run_sql_s"] + best["short"]["dbt_test_sql_s"], 1e-9),
        }
    return out


def run_transform_benchmarks(
    pg: Postgres, pairs: int, long_days: int, short_days: int, nightly: bool = True, rounds: tuple[int, int] = (5, 2)
) -> dict[str, Any]:
    """Benchmarks 3 and 4 (20 pairs from the simulator); `rounds`: candle build rounds, nightly rounds."""
    chosen = bench_pairs(pairs)
    now = datetime.now(timezone.utc)
    out: dict[str, Any] = {"pairs": pairs, "long_days": long_days, "short_days": short_days}
    connections: list[Connection] = []
    try:
        with Simulator(host_kind="pro") as sim, scratch_dir("alphadb-bench-dbt-") as tmp:
            long_settings, long_db, out["long"] = prepare_history(pg, sim, chosen, tmp / "long", timedelta(days=long_days), now, "long")
            connections.append(long_db)
            out["candle_rounds_s"] = candle_rounds(long_settings, long_db, out["long"]["full_refresh_nodes"], rounds[0])
            out["candle_models_s"] = statistics.median(dbt_s for dbt_s, _ in out["candle_rounds_s"])
            out["hand_written_s"] = statistics.median(hand_s for _, hand_s in out["candle_rounds_s"])
            out["candle_ratio"] = statistics.median(dbt_s / hand_s for dbt_s, hand_s in out["candle_rounds_s"])
            if nightly:
                short_settings, short_db, out["short"] = prepare_history(
                    pg, sim, chosen, tmp / "short", timedelta(days=short_days), now, "short"
                )
                connections.append(short_db)
                out["audit_weekday"], out["audit_pairs"] = largest_audit_slot(long_db)
                sides = {"long": (long_settings, long_db), "short": (short_settings, short_db)}
                out["nights"] = compare_nights(sides, nightly_once, rounds[1], out["audit_weekday"])
    finally:
        for connection in connections:
            pg.drop_database(connection)
    return out


if __name__ == "__main__":  # python -m benchmarks.transformbench PAIRS LONG_DAYS SHORT_DAYS
    import sys

    args = [int(a) for a in sys.argv[1:4]] or [20, 1095, 7]
    pg = Postgres()
    try:
        print(json.dumps(run_transform_benchmarks(pg, *args), indent=2, default=str))
    finally:
        pg.close()


# --- benchmark 8: the dbt part of a nightly with many pairs ------------------------------------

SCALE_HISTORY = """
insert into staging.market_chart_points (coin_id, vs_currency, ts, price, market_cap, total_volume, loaded_at)
select
    pairs.coin_id,
    'usd',
    hours.ts + mod(pairs.n * 7, 3000) * interval '1 second',
    100 + pairs.n + 10 * sin(extract(epoch from hours.ts) / 7200 + pairs.n),
    1e9 + pairs.n,
    1e6 + extract(epoch from hours.ts) / 3600,
    -- stored a day after its time, and never after the statement (tonight's load: all at once)
    greatest(least(hours.ts + interval '1 day', now()), %(loaded_from)s)
from (select n, format('scale-%%s', lpad(n::text, 4, '0')) as coin_id from generate_series(1, %(pairs)s) as n) as pairs
cross join generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') as hours (ts)
"""


def scale_pairs(count: int) -> list[Pair]:
    """`count` synthetic pairs (S0001/USD ... reading the series scale-0001:usd ...): written straight
    into the raw table, so any number works."""
    return [Pair(f"S{n:04d}/USD", f"scale-{n:04d}", "usd") for n in range(1, count + 1)]


def scale_database(pg: Postgres, pairs: int, days: int, home: Path, label: str, now: datetime) -> tuple[Settings, Connection, dict[str, Any]]:
    """A database with `pairs` synthetic pairs and `days` of hourly history each up to a day before
    `now`, every point stored a day after its time, candles built by a full refresh."""
    from pipelines.transform import run_models

    connection = pg.new_database(label)
    settings = settings_for(bench_env(connection, "http://127.0.0.1:9/api/v3", scale_pairs(pairs), home))
    start, end = now - timedelta(days=days), now - timedelta(days=1)
    info: dict[str, Any] = {}
    started = time.perf_counter()
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute(RAW_TABLE)
        cur.execute(SCALE_HISTORY, {"pairs": pairs, "start": start, "end": end, "loaded_from": start})
    _vacuum(connection)
    info["populate_s"], info["history_rows"] = time.perf_counter() - started, _count(connection)
    built = run_models(settings, connection, full_refresh=True)
    info["full_refresh_s"], info["full_refresh_ok"] = built.elapsed_s, built.success
    # the nights measure a database in its steady state: autovacuum has visited the freshly built
    # candle tables (otherwise it does so during the first night, on the long side only)
    _vacuum(connection, "")
    info["full_refresh_failed"] = [f"{r.name}: {r.message[:200]}" for r in built.failed]
    return settings, connection, info


def scale_load(connection: Connection, pairs: int, now: datetime, days: int = 2) -> dict[str, Any]:
    """Tonight's load, as the loader stores it: the last `days` days up to the current hour, merged
    (points already there are updated), every point stamped with the current time."""
    started = time.perf_counter()
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute(SCALE_HISTORY + SCALE_MERGE, {"pairs": pairs, "start": now - timedelta(days=days), "end": now,
                                                  "loaded_from": datetime.now(timezone.utc)})
        points = cur.rowcount
    return {"load_s": time.perf_counter() - started, "load_points": points, "load_requests": 0}


def run_scale_benchmark(pg: Postgres, pairs: int, days: int) -> dict[str, Any]:
    """Benchmark 8: `pairs` configured pairs with `days` of hourly history each, candles built; then
    tonight's load as the loader stores it, and the nightly's dbt steps timed as `alphadb run` runs
    them: dbt run (incremental), dbt source freshness, dbt test on tonight's scope (the last week's
    loads plus the pairs audited on today's UTC weekday)."""
    from pipelines.nightly import tests_scope

    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out: dict[str, Any] = {"pairs": pairs, "days": days}
    with scratch_dir("alphadb-bench-scale-") as tmp:
        settings, connection, info = scale_database(pg, pairs, days, tmp / "home", "scale", now)
        try:
            out.update(info)
            out.update(scale_load(connection, pairs, now, days=1))
            out["rows"] = _count(connection)
            started = time.perf_counter()
            night = dbt_night(settings, connection, tests_scope(datetime.now(timezone.utc)))
            out["dbt_s"] = time.perf_counter() - started
            out.update({key: value for key, value in night.items() if key != "ok"})
            out["ok"] = info["full_refresh_ok"] and night["ok"]
            out["per_pair_ms"] = 1000 * out["dbt_s"] / pairs
            out["views"] = _scalar(connection, "select count(*) from pg_views where schemaname = 'public' and viewname like 'ohlcv\\_s%%'")
        finally:
            pg.drop_database(connection)
    return out


def nightly_at_scale(pg: Postgres, pairs: int, long_days: int, short_days: int, rounds: int = 1, page: bool = True) -> dict[str, Any]:
    """Benchmark 4 at `pairs` synthetic pairs (and 7's page at that size): the nightly with
    `long_days` of history against one with `short_days`, every kind of night (NIGHTS); then, on the
    long history, the work after the load that reads all pairs: the heal step's gap lookup (with its
    plan), the text report and the data-quality page (in a child process, for its own peak RSS)."""
    from pipelines.transform import find_gaps

    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out: dict[str, Any] = {"pairs": pairs, "long_days": long_days, "short_days": short_days}
    connections: list[Connection] = []

    def night(settings: Settings, connection: Connection, scope: Any) -> dict[str, Any]:
        started = time.perf_counter()
        result = scale_load(connection, pairs, now)
        result.update(dbt_night(settings, connection, scope))
        result["elapsed_s"] = time.perf_counter() - started
        return result

    try:
        with scratch_dir("alphadb-bench-nightly-scale-") as tmp:
            sides: dict[str, tuple[Settings, Connection]] = {}
            for side, days in (("long", long_days), ("short", short_days)):
                settings, connection, out[side] = scale_database(pg, pairs, days, tmp / side, f"scale_{side}", now)
                connections.append(connection)
                sides[side] = (settings, connection)
            long_settings, long_db = sides["long"]
            out["audit_weekday"], out["audit_pairs"] = largest_audit_slot(long_db)
            out["nights"] = compare_nights(sides, night, rounds, out["audit_weekday"])
            started = time.perf_counter()
            out["gaps_found"] = len(find_gaps(long_db))
            out["gaps_s"] = time.perf_counter() - started
            out["gaps_plan"] = _plan(long_db, "select * from public.gaps")
            if page:
                out["page"] = page_in_child(long_settings, long_db, tmp / "page.html")
    finally:
        for connection in connections:
            pg.drop_database(connection)
    return out


def page_in_child(settings: Settings, connection: Connection, path: Path) -> dict[str, Any]:
    """The text report and the data-quality page written by a child process (benchmarks.reportbench):
    their times, the page's size and the child's peak RSS."""
    import subprocess
    import sys

    env = {**settings_env(settings), **{k: v for k, v in connection.environment().items() if k.startswith("POSTGRES_")}}
    job = {"env": env, "connection": dataclasses.asdict(connection), "path": str(path)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.reportbench"], input=json.dumps(job, default=str),
                          capture_output=True, text=True, timeout=1800)
    marker = proc.stdout.rfind("@@RESULT@@")
    if proc.returncode != 0 or marker < 0:
        raise RuntimeError(f"the page child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout[marker + len("@@RESULT@@"):])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that loads these settings again (bench_env's variables)."""
    return {
        "ALPHADB_ENV_FILE": "/nonexistent", "ALPHADB_HOME": str(settings.home), "ALPHADB_LOG_FILE": str(settings.log_file),
        "ALPHADB_PAIRS": ",".join(f"{p.name}={p.coin_id}:{p.vs_currency}" for p in settings.pairs),
    }


def _plan(connection: Connection, statement: str) -> list[str]:
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("explain (analyze, costs off, timing off, summary on) " + statement)
        return [row[0] for row in cur.fetchall()]


def _vacuum(connection: Connection, table: str = "staging.market_chart_points") -> None:
    """VACUUM (ANALYZE) `table`, or the whole database for ""."""
    conn = psycopg2.connect(**connection.psycopg_kwargs())
    try:
        conn.autocommit = True  # VACUUM runs outside a transaction
        conn.cursor().execute(f"vacuum (analyze) {table}")
    finally:
        conn.close()


SCALE_MERGE = """
on conflict (coin_id, vs_currency, ts) do update
set price = excluded.price, market_cap = excluded.market_cap, total_volume = excluded.total_volume, loaded_at = excluded.loaded_at
"""


RAW_TABLE = """
create schema if not exists staging;
create table staging.market_chart_points (
    coin_id text not null, vs_currency text not null, ts timestamptz not null, price double precision,
    market_cap double precision, total_volume double precision, loaded_at timestamptz not null
);
create unique index market_chart_points_key on staging.market_chart_points (coin_id, vs_currency, ts);
create index market_chart_points_loaded_at on staging.market_chart_points (loaded_at);
"""


def _scalar(connection: Connection, statement: str) -> Any:
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchone()[0]


def _count(connection: Connection) -> int:
    return int(_scalar(connection, "select count(*) from staging.market_chart_points"))
