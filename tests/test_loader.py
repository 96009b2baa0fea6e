"""The loader end to end: real HTTP (simulator or the real responses served on loopback), dlt,
real PostgreSQL. Through the `alphadb` CLI in a subprocess where the CLI is what users run.

Proves: real responses stored point by point; re-runs never duplicate; later values overwrite;
the nightly cursor (dlt state) advances and is restored from PostgreSQL; a 365-day backfill is
<= 6 requests per pair, loads every hour and leaves the cursor alone; an interrupted backfill
resumes without re-fetching done windows; --start/--end are inclusive days; the plan's history
limit (10012) is clamped and reported.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from http_support import FixtureRoute, FixtureServer, data_requests, ok_data_requests
from postgres_support import DAY_MS, HOUR_MS, STAGING, counts, dlt_cursors, points, query, scalar
from process_support import error_lines, loaded_line_rate, output, run_cli, settings_env
from response_fixtures import expected_points, fixture_files, load_fixture

from pipelines.coingecko import RangeJob, saved_progress
from pipelines.coingecko.client import CoinGeckoClient
from pipelines.coingecko.planning import RequestWindow
from pipelines.config import Pair, load_settings
from pipelines.database import connect
from pipelines.load import PAIRS_PER_STEP, READER_THREAD, load_incremental, load_range, load_step, loading, read_step
from pipelines.simulator.prices import DEFAULT_COINS

COINS = ("bitcoin", "ethereum")


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, timezone.utc)


def assert_no_duplicates(database) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    found = counts(database)
    for coin, (n, distinct) in found.items():
        assert n == distinct, f"{coin}: {n} rows for {distinct} keys"
    return found


def ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, output(result)
    assert "Traceback" not in output(result)


def ranges_of(sim: Any, coin: str) -> list[dict[str, Any]]:
    return [r for r in data_requests(sim, coin) if r["path"].endswith("/range")]


def missing_hours(database, coin: str, start_ms: int, end_ms: int) -> int:  # type: ignore[no-untyped-def]
    """Hours in [start, end) without a stored point."""
    return scalar(
        database,
        f"""select count(*) from generate_series(date_trunc('hour', to_timestamp(%s / 1000.0)),
                                                 to_timestamp(%s / 1000.0) - interval '1 hour', interval '1 hour') h
            where not exists (select 1 from {STAGING} p where p.coin_id = %s and p.ts >= h and p.ts < h + interval '1 hour')""",
        (start_ms, end_ms, coin),
    )


# --- the real responses, point by point ------------------------------------------------------------

def test_real_responses_stored_point_by_point(database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = fixture_files()
    assert len(files) == 8
    routes: dict[Path, FixtureRoute] = {}
    for index, path in enumerate(files):
        vs = "eur" if "_eur_" in path.name else "usd"
        routes[path] = FixtureRoute(f"fx{index}-{path.stem.split('_')[0]}", vs, load_fixture(path))
    pairs = {path: Pair(f"FX{index}/{route.vs_currency.upper()}", route.coin_id, route.vs_currency) for index, (path, route) in enumerate(routes.items())}
    spans = {path: (min(t for t, _ in r.body["prices"]), max(t for t, _ in r.body["prices"])) for path, r in routes.items()}

    with FixtureServer(routes.values()) as server:
        settings = load_settings(settings_env(database, tmp_path, server.base_url, COINGECKO_PLAN="pro", COINGECKO_API_KEY="fixture-key"))
        # Spans within 90 days: the real backfill path (planning, one dlt load per window step).
        short = [p for p in files if spans[p][1] - spans[p][0] <= 90 * DAY_MS]
        long = [p for p in files if p not in short]
        assert len(short) == 5 and len(long) == 3
        for group in ([p for p in short if "2021" in ms(spans[p][0]).isoformat()], [p for p in short if "2023" in ms(spans[p][0]).isoformat()]):
            start = ms(min(spans[p][0] for p in group) // 1000 * 1000)
            end = ms(max(spans[p][1] for p in group) + 1000)
            report = load_range(settings, database, start, end, [pairs[p] for p in group])
            assert not report.failed, [str(r.error) for r in report.failed]
        # Multi-year daily files: the same load step (client, parser, stored-point check, source,
        # merge) with one explicit window per file instead of a plan of 90-day windows.
        plan = {pairs[p]: [RequestWindow(ms(spans[p][0]), ms(spans[p][1]))] for p in long}
        now = datetime.now(timezone.utc)
        with loading(settings, database) as pipeline:
            reads = read_step(settings, CoinGeckoClient(settings), plan, now)
            assert all(read.error is None for read in reads)
            load_step(pipeline, database, reads, RangeJob("fixture files", now.isoformat(), completes=True))

    for path in files:
        route = routes[path]
        stored = points(database, route.coin_id, route.vs_currency)
        expected = expected_points(route.body)
        assert len(stored) == len(expected), path.name
        for got, want in zip(stored, expected):
            assert got == want, (path.name, got, want)  # ts to the ms, values bit for bit
        raw_count = len(route.body["prices"])
        assert len(stored) == raw_count - (1 if path.name == "bitcoin_1d_5min_288points.json" else 0)
    one_day = points(database, routes[files[0]].coin_id)
    assert files[0].name == "bitcoin_1d_5min_288points.json"
    assert 1621089594000 not in {p[0] for p in one_day} and one_day[-1][0] == 1621089594955
    assert_no_duplicates(database)
    assert dlt_cursors(database) == {}  # a range load never touches the nightly cursors
    assert scalar(database, "select count(*) from pg_indexes where indexname = 'market_chart_points_key'") == 1


# --- nightly loads -----------------------------------------------------------------------------------

def test_nightly_load_is_idempotent_advances_the_cursor_and_takes_corrections(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    ok(run_cli(alphadb_env, "load"))
    first = assert_no_duplicates(database)
    assert set(first) == set(COINS)
    for coin in COINS:
        assert len(ok_data_requests(simulator, coin)) == 2  # no cursor yet: the last 2 days in 2 requests
    cursors = dlt_cursors(database)
    for name, coin in (("BTC/USDT", "bitcoin"), ("ETH/USDT", "ethereum")):
        assert cursors[name] == points(database, coin)[-1][0]  # the newest stored point
    rows_before = {coin: points(database, coin) for coin in COINS}
    stored_at_before = dict(query(database, f"select coin_id || ' ' || ts, loaded_at from {STAGING}"))

    # A later value for the same instants (CoinGecko revised 30-40 hours ago) overwrites the stored one.
    now_s = time.time()
    low_ms, high_ms = int((now_s - 40 * 3600) * 1000), int((now_s - 30 * 3600) * 1000)
    simulator.add_fault({"kind": "correction", "coin": "bitcoin", "start": low_ms / 1000, "end": high_ms / 1000, "factor": 1.5})
    simulator.clear_requests()
    result = run_cli(alphadb_env, "load")
    ok(result)
    second = assert_no_duplicates(database)
    for name, coin in (("BTC/USDT", "bitcoin"), ("ETH/USDT", "ethereum")):
        requests = data_requests(simulator, coin)
        assert len(requests) <= 2 and all(r["status"] == 200 for r in requests)
        # The run started exactly ALPHADB_BACKFILL_DAYS (2) before the stored cursor.
        assert int(ranges_of(simulator, coin)[0]["query"]["from"]) == cursors[name] // 1000 - 2 * 86400
    new_cursors = dlt_cursors(database)
    for name, coin in (("BTC/USDT", "bitcoin"), ("ETH/USDT", "ethereum")):
        live = [r for r in data_requests(simulator, coin) if not r["path"].endswith("/range")]
        assert new_cursors[name] >= cursors[name]
        assert new_cursors[name] == points(database, coin)[-1][0]  # the newest stored point...
        assert new_cursors[name] // 1000 == int(live[-1]["now"])  # ...is this run's live point
    for coin in COINS:
        assert second[coin][0] >= first[coin][0]

    corrected = {p[0]: p for p in points(database, "bitcoin") if low_ms <= p[0] < high_ms}
    before = {p[0]: p for p in rows_before["bitcoin"] if low_ms <= p[0] < high_ms}
    assert len(corrected) >= 9 and set(before) <= set(corrected)
    for ts, old in before.items():
        new = corrected[ts]
        assert new[1:] == pytest.approx(tuple(v * 1.5 for v in old[1:]), rel=1e-12)
    eth_now = {p[0]: p for p in points(database, "ethereum")}
    assert all(eth_now[p[0]] == p for p in rows_before["ethereum"])  # untouched: same instants, same values
    loaded = query(database, f"select count(distinct loaded_at) from {STAGING} where coin_id = 'bitcoin' and ts between %s and %s", (ms(low_ms), ms(high_ms)))
    assert loaded[0][0] == 1  # every corrected row carries the second run's load time
    # Re-read points whose values did not change are not rewritten: they keep the first load's time.
    stored_at_after = dict(query(database, f"select coin_id || ' ' || ts, loaded_at from {STAGING}"))
    eth_kept = [key for key in stored_at_before if key.startswith("ethereum ")]
    assert eth_kept and all(stored_at_after[key] == stored_at_before[key] for key in eth_kept)
    rewritten = {key for key in stored_at_before if stored_at_after.get(key) != stored_at_before[key]}
    assert rewritten and all(key.startswith("bitcoin ") for key in rewritten)
    assert len(rewritten) == len(before)  # exactly the corrected points


# --- backfills ----------------------------------------------------------------------------------------

def test_backfill_365_days(alphadb_env, database, simulator, capsys) -> None:  # type: ignore[no-untyped-def]
    ok(run_cli(alphadb_env, "load"))
    cursors = dlt_cursors(database)
    simulator.clear_requests()
    started = time.time()
    result = run_cli(alphadb_env, "backfill", "--days", "365")
    finished = time.time()
    ok(result)
    assert "⚠️" not in output(result)  # the plan's hour of margin is not worth a warning
    for coin in COINS:
        requests = data_requests(simulator, coin)
        assert len(requests) <= 6 and all(r["status"] == 200 for r in requests), requests
        assert len(ranges_of(simulator, coin)) == 5
    found = assert_no_duplicates(database)
    live_from_ms = int((started - 86400) * 1000)
    for coin in COINS:
        # 365 days back: the first window starts at the plan's limit, an hour inside 365 days of the
        # run's own "now" (some moment between `started` and `finished`; whole seconds in the query)...
        first_from = min(int(r["query"]["from"]) for r in ranges_of(simulator, coin))
        assert int(started) - 365 * 86400 + 3600 <= first_from <= finished - 365 * 86400 + 3600
        # ...and the first point stored is the first hourly sample from there (samples land up to a
        # minute after the hour; where `now` falls in its hour decides how far into the hour that is).
        first_ts = points(database, coin)[0][0]
        assert first_from * 1000 <= first_ts < (first_from + 3600 + 60) * 1000
        assert missing_hours(database, coin, first_ts, live_from_ms) == 0  # every hour of the year
        hourly = scalar(database, f"select count(*) from {STAGING} where coin_id = %s and ts < %s", (coin, ms(live_from_ms)))
        assert 364 * 24 - 2 <= hourly <= 365 * 24
        assert found[coin][0] >= 364 * 24 + 280  # + the last day's 5-minute points
    assert dlt_cursors(database) == cursors  # the backfill left the nightly cursors alone

    # The next nightly run, with the dlt working directory lost in between: the cursors come back
    # from PostgreSQL, and the run starts exactly ALPHADB_BACKFILL_DAYS before them (from "now"
    # it would start later by the backfill's duration), in at most 2 requests per pair.
    dlt_dir = Path(alphadb_env["ALPHADB_HOME"]) / "dlt"
    assert dlt_dir.is_dir()
    shutil.rmtree(dlt_dir)
    simulator.clear_requests()
    ok(run_cli(alphadb_env, "load"))
    for name, coin in (("BTC/USDT", "bitcoin"), ("ETH/USDT", "ethereum")):
        assert len(data_requests(simulator, coin)) <= 2
        assert int(ranges_of(simulator, coin)[0]["query"]["from"]) == cursors[name] // 1000 - 2 * 86400
    assert all(dlt_cursors(database)[name] >= cursors[name] for name in cursors)
    assert (dlt_dir / "alphadb_coingecko").is_dir()
    assert_no_duplicates(database)

    # Throughput, measured and printed (not asserted): the loader's own figure for the backfill,
    # next to a plain COPY of the same rows into an empty table on the same server.
    stats = loaded_line_rate(output(result))
    assert stats is not None, output(result)
    buffer = io.StringIO()
    with connect(database) as conn, conn.cursor() as cur:
        cur.copy_expert(f"copy (select coin_id, vs_currency, ts, price, market_cap, total_volume, loaded_at from {STAGING}) to stdout", buffer)
        rows = scalar(database, f"select count(*) from {STAGING}")
        cur.execute(f"create table public.copy_bench (like {STAGING} including defaults)")
    columns = "coin_id, vs_currency, ts, price, market_cap, total_volume, loaded_at"
    with connect(database) as conn, conn.cursor() as cur:
        buffer.seek(0)
        copy_started = time.perf_counter()
        cur.copy_expert(f"copy public.copy_bench ({columns}) from stdin", buffer)
    copy_s = time.perf_counter() - copy_started
    with capsys.disabled():
        print(
            f"\n[throughput] alphadb backfill --days 365 (2 pairs, HTTP + parse + dlt Arrow/CSV COPY merge, "
            f"one load per window step): {stats[0]} points in {stats[1]:.1f}s = {stats[2]:,.0f} points/s; "
            f"plain COPY of the same {rows} rows: {copy_s:.3f}s = {rows / copy_s:,.0f} rows/s"
        )


def test_interrupted_backfill_resumes_without_refetching(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    # Ethereum's first two windows succeed, then its server fails for good: the run stops that pair.
    simulator.add_faults([
        {"kind": "slow", "delay_s": 0, "coin": "ethereum", "count": 2},
        {"kind": "server_error", "status": 503, "coin": "ethereum"},
    ])
    env = {**alphadb_env, "COINGECKO_RETRY_BUDGET_S": "1"}
    result = run_cli(env, "backfill", "--days", "365")
    assert result.returncode == 1, output(result)
    errors = error_lines(result)
    assert any("ETH/USDT" in line and "HTTP 503" in line and "COINGECKO_RETRY_BUDGET_S=1s" in line and " UTC" in line for line in errors), errors
    assert "Traceback" not in output(result)
    eth_done = ok_data_requests(simulator, "ethereum")
    assert len(eth_done) == 2 and len(ok_data_requests(simulator, "bitcoin")) == 6
    done_until_s = int(eth_done[-1]["query"]["to"])
    assert points(database, "ethereum")[-1][0] <= done_until_s * 1000
    eth_rows_before = len(points(database, "ethereum"))
    btc_rows_before = len(points(database, "bitcoin"))

    simulator.clear_faults()
    simulator.clear_requests()
    ok(run_cli(alphadb_env, "backfill", "--days", "365"))
    eth = data_requests(simulator, "ethereum")
    assert len(eth) == 4  # windows 3..5 and the live day: the two done windows are not fetched again
    assert int(eth[0]["query"]["from"]) == done_until_s
    assert ranges_of(simulator, "bitcoin") == []  # bitcoin was complete: at most the new live minutes
    assert len(data_requests(simulator, "bitcoin")) <= 1
    found = assert_no_duplicates(database)
    assert found["ethereum"][0] > eth_rows_before and found["bitcoin"][0] >= btc_rows_before
    first_eth = points(database, "ethereum")[0][0]
    assert missing_hours(database, "ethereum", first_eth, int((time.time() - 86400) * 1000)) == 0
    assert dlt_cursors(database) == {}  # still no nightly cursor


def test_backfill_start_end_are_inclusive_days(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    today = datetime.now(timezone.utc).date()
    first, last = today - timedelta(days=20), today - timedelta(days=18)
    simulator.add_fault({"kind": "duplicates", "coin": "bitcoin", "every": 2, "count": 1})
    ok(run_cli(alphadb_env, "backfill", "--start", first.isoformat(), "--end", last.isoformat(), "--pair", "BTC/USDT"))
    assert data_requests(simulator, "ethereum") == [] and len(data_requests(simulator, "bitcoin")) == 1
    rows = points(database, "bitcoin")
    assert counts(database) == {"bitcoin": (72, 72)}  # 3 whole days of hourly points, duplicates merged
    start_ms = int(datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp() * 1000)
    end_ms = start_ms + 3 * DAY_MS
    assert start_ms <= rows[0][0] < start_ms + HOUR_MS and end_ms - HOUR_MS <= rows[-1][0] < end_ms
    assert missing_hours(database, "bitcoin", start_ms, end_ms) == 0

    # One day (--start = --end), with points outside the window in the response: exactly that day.
    simulator.clear_requests()
    day = today - timedelta(days=30)
    simulator.add_fault({"kind": "outside_window", "coin": "ethereum", "count": 1})
    ok(run_cli(alphadb_env, "backfill", "--start", day.isoformat(), "--end", day.isoformat(), "--pair", "eth/usdt"))
    eth = points(database, "ethereum")
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    assert len(eth) == 24 and all(day_ms <= p[0] < day_ms + DAY_MS for p in eth)
    assert dlt_cursors(database) == {}


def test_history_limit_10012_is_clamped_and_reported(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    # The server's clock runs 2 hours ahead of ours: our oldest allowed instant is beyond its 365 days.
    simulator.configure(now_offset=7200)
    today = datetime.now(timezone.utc).date()
    start, end = today - timedelta(days=367), today - timedelta(days=360)
    result = run_cli(alphadb_env, "backfill", "--start", start.isoformat(), "--end", end.isoformat())
    ok(result)
    warnings = [line for line in output(result).splitlines() if "10012" in line]
    assert warnings and all("⚠️" in line or "❌" not in line for line in warnings)
    assert any("365 days" in line and "clamped" in line for line in warnings), output(result)
    # The start itself was before the plan's limit: the run said so rather than load less silently.
    assert any("⚠️" in line and "public plan serves only the past 365 days" in line for line in output(result).splitlines()), output(result)
    for coin in COINS:
        statuses = [r["status"] for r in data_requests(simulator, coin)]
        assert statuses == [401, 200]  # said so once, then clamped inside the limit
        stored = points(database, coin)
        assert stored and stored[0][0] >= (time.time() - 364 * 86400) * 1000 - 60_000
    assert_no_duplicates(database)


def test_saved_progress_reads_the_resource_state_and_the_state_of_earlier_versions() -> None:
    """The cursors and a backfill's progress live in the resource's own state; a pipeline state
    written before (at the source level) is still read, so an upgrade keeps both."""
    job = {"job": "days=365|BTC/USDT", "start": "2026-01-01T00:00:00+00:00", "done_until": {"BTC/USDT": 1}, "complete": False}
    legacy = {"sources": {"coingecko": {"cursors": {"BTC/USDT": 5}, "backfill": job}}}
    current = {"sources": {"coingecko": {"resources": {"market_chart_points": {"cursors": {"BTC/USDT": 7}}}}}}
    assert saved_progress(legacy).cursors == {"BTC/USDT": 5}
    assert saved_progress(legacy).unfinished("days=365|BTC/USDT") == job
    assert saved_progress(legacy).unfinished("days=30|BTC/USDT") is None
    assert saved_progress(current).cursors == {"BTC/USDT": 7} and saved_progress(current).backfill == {}
    assert saved_progress({}).cursors == {}


def test_a_truncated_point_stored_earlier_gives_way_to_its_precise_twin(database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A live point stored as `t.000` and served precisely as `t.455` by a later load is one instant:
    after the second load only the precise row is stored; unchanged rows are not rewritten."""
    t = 1_700_000_000_000  # a whole second
    series = lambda stamps: {key: [[s, float(i + 1)] for i, s in enumerate(stamps)] for key in ("prices", "market_caps", "total_volumes")}  # noqa: E731
    route = FixtureRoute("twin-coin", "usd", series([t - HOUR_MS, t]))
    pair = Pair("TW/USD", "twin-coin", "usd")
    with FixtureServer([route]) as server:
        settings = load_settings(settings_env(database, tmp_path, server.base_url, COINGECKO_PLAN="pro", COINGECKO_API_KEY="fixture-key"))
        start, end = ms(t - 2 * HOUR_MS), ms(t + HOUR_MS)
        assert not load_range(settings, database, start, end, [pair]).failed
        assert [p[0] for p in points(database, "twin-coin")] == [t - HOUR_MS, t]
        route.body = series([t - HOUR_MS, t + 455])
        report = load_range(settings, database, start, end, [pair], job="again")
    assert not report.failed and report.written == 1  # the precise point; the earlier hour is unchanged
    assert [p[0] for p in points(database, "twin-coin")] == [t - HOUR_MS, t + 455]


# --- load steps, read one ahead --------------------------------------------------------------------

def test_a_step_is_loaded_while_the_next_step_is_read(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    """The API's requests go on during the loads: the simulator served requests of the next step
    while the loader was loading this one (its own step timings against the server's request log)."""
    settings = load_settings(alphadb_env)
    now = datetime.now(timezone.utc)
    report = load_range(settings, database, now - timedelta(days=200), now - timedelta(days=10))
    assert not report.failed
    steps = report.steps
    assert len(steps) == 3 and [step.pairs for step in steps] == [2, 2, 2]  # a 90-day window of both pairs each
    served = [request["time"] for request in data_requests(simulator)]
    assert len(served) == report.requests == 6
    for step, following in zip(steps, steps[1:]):
        assert step.read_finished <= step.load_started  # a step is loaded once read...
        assert following.read_started < step.load_finished  # ...and the next one is read meanwhile
    during_loads = [t for t in served for step in steps[:-1] if step.load_started <= t <= step.load_finished]
    assert during_loads, (served, steps)  # requests the server answered while a load ran
    assert not any(thread.name == READER_THREAD for thread in threading.enumerate())


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _ctrl_c_after(simulator: Any, requests: int) -> threading.Thread:
    """A watcher that sends this process SIGALRM (Ctrl-C, see _interrupt) once the simulator has
    served `requests` data requests: the interrupt comes while the reader is at work, whatever
    the machine's speed."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while len(data_requests(simulator)) < requests and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGALRM)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_an_interrupted_load_stops_its_reader(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C (or SIGTERM's exception in the nightly job) during a load: the reader thread stops
    asking the API and is joined before the load returns."""
    simulator.add_fault({"kind": "slow", "delay_s": 0.4})  # every answer: the load is mid-way at the interrupt
    settings = load_settings(alphadb_env)
    now = datetime.now(timezone.utc)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        watcher = _ctrl_c_after(simulator, requests=3)  # step 1 (2 pairs) read, step 2 begun
        # Mostly it lands while the loader waits for the reader; inside dlt's extract, dlt wraps it.
        with pytest.raises((KeyboardInterrupt, PipelineStepFailed)) as raised:
            load_range(settings, database, now - timedelta(days=365), now)
            time.sleep(30)  # (a load that returned before the interrupt: it still comes, the test fails below)
        watcher.join()
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(raised.value, KeyboardInterrupt) or isinstance(raised.value.__cause__, KeyboardInterrupt)
    assert not any(thread.name == READER_THREAD for thread in threading.enumerate())
    asked = len(data_requests(simulator))
    assert 3 <= asked < 12  # it stopped well before the end of its 12 requests
    time.sleep(1.0)
    assert len(data_requests(simulator)) == asked  # nothing asked after the load returned


def test_a_nightly_load_of_more_pairs_than_a_step_commits_each_step(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    """PAIRS_PER_STEP + 1 pairs: two dlt loads, each with its pairs' cursors; the log counts the
    pairs instead of naming them and has a line per step."""
    coins = [f"coin-{i:03d}" for i in range(1, PAIRS_PER_STEP + 2)]
    simulator.configure(coins=sorted(DEFAULT_COINS | set(coins)))
    env = {**alphadb_env, "ALPHADB_PAIRS": ",".join(f"P{i:03d}/USD={coin}:usd" for i, coin in enumerate(coins, start=1))}
    result = run_cli(env, "load")
    ok(result)
    lines = output(result).splitlines()
    assert [line.split("📊 ")[1] for line in lines if "load step" in line] == ["load step 1/2", "load step 2/2"]
    assert not any("P050/USD" in line for line in lines)  # no line per pair or window at this size
    assert scalar(database, "select count(*) from staging._dlt_loads") == 2
    cursors = dlt_cursors(database)
    assert len(cursors) == len(coins)
    for name, coin in (("P001/USD", coins[0]), (f"P{len(coins):03d}/USD", coins[-1])):
        assert cursors[name] == points(database, coin)[-1][0]
    assert_no_duplicates(database)
