"""Candle semantics end to end on a real PostgreSQL with real dbt runs: holes and gaps, OHLC from
5-minute points, incremental runs equal to a full refresh, and any session time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from dbt_support import UTC, dbt_settings, delete_points, fetch, hourly_points, marts, upsert_points
from pipelines import transform
from pipelines.transform import TestsScope
from pipelines.database import Connection, connect

HOUR = timedelta(hours=1)
NO_RECENCY = ["--exclude", "test_name:recency_per_pair"]  # fixed historical data


def failed(outcome: transform.DbtOutcome) -> dict[str, str]:
    return {r.name: r.message for r in outcome.failed}


def test_holes_are_filled_and_gaps_fail_naming_pair_and_range(database: Connection, tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 48 * HOUR
    btc = hourly_points("BTC/USDT", start, 48, per_hour=12)  # 5-minute points
    eth = hourly_points("ETH/USDT", start, 48, base=10.0)
    upsert_points(database, btc + eth)
    hole = start + 10 * HOUR
    assert delete_points(database, "BTC/USDT", hole, hole + HOUR) == 12
    settings = dbt_settings(tmp_path / "home")

    built = transform.run_dbt(settings, database, ["build"])
    assert built.success, failed(built)
    assert {r.status for r in built.results if r.name.startswith(("no_gaps_", "recency_per_pair_"))} == {"pass"}
    rows = {r[0]: r for r in fetch(database, "select ts, open, high, low, close, volume, market_cap, sample_count,"
                                             " is_complete from public.ohlcv_btc_usdt order by ts")}
    assert len(rows) == 48
    # an hour without points: forward-filled from the previous close, flagged, no gap
    previous, filled = rows[hole - HOUR], rows[hole]
    assert filled[1:5] == (previous[4],) * 4 and filled[5:7] == previous[5:7] and filled[7] == 0
    # an hourly candle from twelve 5-minute points
    bucket = start + 5 * HOUR
    in_bucket = sorted(p for p in btc if bucket <= p[1] < bucket + HOUR)
    prices = [p[2] for p in in_bucket]
    assert len(prices) == 12 and len(set(prices)) > 3
    assert rows[bucket][1:5] == (prices[0], max(prices), min(prices), prices[-1])
    assert rows[bucket][5:8] == (in_bucket[-1][4], in_bucket[-1][3], 12)
    assert [r[8] for r in rows.values()].count(False) == 1
    assert transform.find_gaps(database) == []
    assert transform.source_freshness(settings, database).success

    # three consecutive hours missing for ETH/USDT: a gap. A configured pair without any point
    # (SOL/USDT) fails the recency test.
    gap = start + 20 * HOUR
    assert delete_points(database, "ETH/USDT", gap, gap + 3 * HOUR) == 3
    settings = dbt_settings(tmp_path / "home", pairs=("BTC/USDT", "ETH/USDT", "SOL/USDT"))
    # as the nightly job does: run (here from scratch: deleted points are no new load), then test
    assert transform.run_models(settings, database, full_refresh=True).success
    tested = transform.run_tests(settings, database)
    assert not tested.success
    failures = failed(tested)
    assert set(failures) == {"no_gaps_int_candles_1h_1h", "recency_per_pair_int_candles_1h_1h",
                             "recency_per_pair_int_candles_1d_1d"}, failures
    no_gaps = failures["no_gaps_int_candles_1h_1h"]
    assert "pair=ETH/USDT" in no_gaps and "problem=gap" in no_gaps and "missing_buckets=3" in no_gaps
    assert f"gap_start={gap.isoformat(sep=' ')}" in no_gaps and f"gap_end={(gap + 3 * HOUR).isoformat(sep=' ')}" in no_gaps
    assert "BTC/USDT" not in no_gaps
    assert "pair=SOL/USDT, latest_complete_ts=None" in failures["recency_per_pair_int_candles_1h_1h"]
    assert transform.find_gaps(database) == [transform.Gap("ETH/USDT", "1h", gap, gap + 3 * HOUR, 3)]
    assert fetch(database, "select count(*) from public.ohlcv_sol_usdt") == [(0,)]


def test_incremental_runs_equal_a_full_refresh(database: Connection, tmp_path: Path) -> None:
    home = tmp_path / "home"
    t0 = datetime(2024, 3, 8, 20, 7, tzinfo=UTC)  # crosses UTC midnights and the US DST change
    loaded = datetime(2024, 3, 12, tzinfo=UTC)

    def corrected(points, bump):  # the source revised these prices
        return [(p, ts, price + bump, cap, vol) for p, ts, price, cap, vol in points]

    btc = hourly_points("BTC/USDT", t0, 50)  # one point an hour: btc[h] is in hour h
    eth = hourly_points("ETH/USDT", t0, 61, per_hour=3, base=10.0)  # eth[3h:3h+3] are in hour h
    sol = hourly_points("SOL/USDT", t0, 20, base=50.0)  # loaded before SOL/USDT is configured
    hour0 = t0.replace(minute=0)
    batches = [
        btc[0:30] + eth[0:30] + sol,
        # an overlap re-served unchanged, three hours corrected, hour 40 not served yet, ETH with a
        # two-hour hole (hours 15 and 16)
        btc[25:28] + corrected(btc[28:31], 0.5) + btc[31:40] + btc[41:50] + eth[30:45] + eth[51:93],
        # a late backfill of hour 40 (with an overlap), new ETH hours, a point without price, a
        # 5-minute tail; SOL/USDT is configured from now on
        btc[36:41] + eth[93:183] + [("ETH/USDT", hour0 + 61 * HOUR + timedelta(minutes=1), None, None, None)]
        + hourly_points("BTC/USDT", hour0 + 50 * HOUR, 2, per_hour=12),
        # a correction deep in history and a live point
        corrected(btc[3:4], -2.0) + [("BTC/USDT", hour0 + 51 * HOUR + timedelta(minutes=58, seconds=3), 151.5, 1.0, 2.0)],
    ]
    pairs = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    first_eth = ("select ctid from dbt_intermediate.int_candles_1h where pair = 'ETH/USDT'"
                 " and ts = (select min(ts) from dbt_intermediate.int_candles_1h)")
    for number, batch in enumerate(batches):
        upsert_points(database, batch, loaded_at=loaded + number * 3 * HOUR)
        outcome = transform.run_models(dbt_settings(home, pairs if number >= 2 else pairs[:2]), database)
        assert outcome.success, failed(outcome)
        if number == 1:
            untouched = fetch(database, first_eth)
        if number == 2:  # a candle no later point touches is not rewritten (same physical row)
            assert fetch(database, first_eth) == untouched
    incremental = marts(database, pairs)

    outcome = transform.run_models(dbt_settings(home, pairs), database, full_refresh=True)
    assert outcome.success, failed(outcome)
    full = marts(database, pairs)
    for name in full:
        assert incremental[name] == full[name], name
    candles = {r[0]: r for r in full["ohlcv_btc_usdt"]}
    assert len(candles) == 52 and [r[7] for r in candles.values()].count(0) == 0
    assert candles[hour0 + 3 * HOUR][1] == btc[3][2] - 2.0  # the deep correction
    assert candles[hour0 + 29 * HOUR][1] == btc[29][2] + 0.5  # a corrected hour
    assert candles[hour0 + 51 * HOUR][4] == 151.5 and candles[hour0 + 51 * HOUR][7] == 13
    assert [r[8] for r in candles.values()].count(False) == 1
    eth_filled = [r[0] for r in full["ohlcv_eth_usdt"] if r[7] == 0]
    assert eth_filled == [hour0 + 15 * HOUR, hour0 + 16 * HOUR]
    assert len(full["ohlcv_sol_usdt"]) == 20

    # a pair removed from the config leaves the candle tables
    assert transform.run_models(dbt_settings(home, ("BTC/USDT",)), database).success
    assert fetch(database, "select distinct pair from public.ohlcv") == [("BTC/USDT",)]


def test_session_time_zone_does_not_change_the_marts(database: Connection, tmp_path: Path) -> None:
    # without BTC/USDT: the unit tests (BTC/USDT and ETH/USDT fixtures) must not depend on pairs.conf
    pairs = ("SOL/USDT", "ETH/USDT")
    settings = dbt_settings(tmp_path / "home", pairs)
    # around both US daylight-saving changes, with points right at UTC midnight
    points = (
        hourly_points("SOL/USDT", datetime(2024, 3, 9, 0, tzinfo=UTC), 72)
        + hourly_points("ETH/USDT", datetime(2024, 11, 2, 0, tzinfo=UTC), 72, per_hour=4, base=10.0)
        + [("SOL/USDT", datetime(2024, 3, 11, 23, 59, 59, 999000, tzinfo=UTC), 99.0, 1.0, 1.0),
           ("SOL/USDT", datetime(2024, 3, 12, 0, 0, tzinfo=UTC), 98.0, 1.0, 1.0)]
    )
    upsert_points(database, points, loaded_at=datetime(2024, 11, 6, tzinfo=UTC))

    los_angeles = {"PGTZ": "America/Los_Angeles"}
    shown = transform.run_dbt(settings, database, ["show", "--inline", "select current_setting('TimeZone') as tz"],
                              extra_env=los_angeles)
    assert shown.success and "America/Los_Angeles" in (settings.home / "dbt" / "last_output.log").read_text()
    built = transform.run_dbt(settings, database, ["build", *NO_RECENCY], extra_env=los_angeles)
    assert built.success, failed(built)
    assert len([r for r in built.results if "::" in r.name and r.status == "pass"]) == 5
    in_los_angeles = marts(database, pairs)

    outcome = transform.run_models(settings, database, full_refresh=True)  # UTC
    assert outcome.success, failed(outcome)
    in_utc = marts(database, pairs)
    assert in_los_angeles == in_utc
    daily = in_utc["ohlcv_sol_usdt_1d"]
    assert [(d[0], d[7]) for d in daily] == [
        (datetime(2024, 3, 9, tzinfo=UTC), 24), (datetime(2024, 3, 10, tzinfo=UTC), 24),
        (datetime(2024, 3, 11, tzinfo=UTC), 25), (datetime(2024, 3, 12, tzinfo=UTC), 1),
    ]
    assert all(d[0].hour == 0 for d in in_utc["ohlcv_eth_usdt_1d"]) and len(in_utc["ohlcv_eth_usdt_1d"]) == 3


def test_scoped_tests_check_every_candle_rebuilt_from_recent_loads(database: Connection, tmp_path: Path) -> None:
    """`run_tests(TestsScope(loaded_since))` (the nightly's tests, before the audit of old candles) narrows the data tests to the candles
    rebuilt from points loaded since then, reaching back as far as a late correction does; without
    it, all history is tested."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    day = 24 * HOUR
    start = now - 30 * day
    settings = dbt_settings(tmp_path / "home")
    # days -30..-10 loaded ten days ago, days -10..now loaded yesterday: two incremental steps
    upsert_points(database, hourly_points("BTC/USDT", start, 20 * 24) + hourly_points("ETH/USDT", start, 20 * 24, base=10.0),
                  loaded_at=now - 10 * day)
    assert transform.run_models(settings, database, full_refresh=True).success
    upsert_points(database, hourly_points("BTC/USDT", start + 20 * day, 10 * 24 - 1, base=600.0)
                  + hourly_points("ETH/USDT", start + 20 * day, 10 * 24 - 1, base=510.0), loaded_at=now - day)
    assert transform.run_models(settings, database).success
    since = now - 7 * day

    def break_candle(ts: datetime) -> None:  # high below low: candle_sanity must fail on it
        with connect(database) as conn, conn.cursor() as cur:
            cur.execute("update dbt_intermediate.int_candles_1h set high = low - 1 where pair = 'BTC/USDT' and ts = %s", (ts,))
            assert cur.rowcount == 1

    # an old broken candle and an old hole, outside the candles rebuilt from the last week's loads
    break_candle(start + 5 * day)
    with connect(database) as conn, conn.cursor() as cur:
        cur.execute("delete from dbt_intermediate.int_candles_1h where pair = 'ETH/USDT' and ts >= %s and ts < %s",
                    (start + 6 * day, start + 6 * day + 5 * HOUR))
        assert cur.rowcount == 5
    scoped = transform.run_tests(settings, database, TestsScope(since))
    assert scoped.success, failed(scoped)
    full = transform.run_tests(settings, database)
    assert set(failed(full)) == {"candle_sanity_int_candles_1h_", "no_gaps_int_candles_1h_1h"}, failed(full)

    # a broken candle among the rebuilt ones is caught by the scoped tests
    break_candle(now - 3 * day)
    assert set(failed(transform.run_tests(settings, database, TestsScope(since)))) == {"candle_sanity_int_candles_1h_"}

    # a late correction of day -25 rebuilds BTC/USDT from there (repairing it): the scope reaches back
    # with it (one bound for every pair, so the ETH/USDT hole of day -24 is in it now) and sees a
    # candle broken in that range afterwards
    upsert_points(database, [("BTC/USDT", start + 5 * day + 10 * timedelta(minutes=1), 150.0, 1.5e8, 1234.0)], loaded_at=now)
    assert transform.run_models(settings, database).success
    break_candle(start + 8 * day)
    late = failed(transform.run_tests(settings, database, TestsScope(since)))
    assert set(late) == {"candle_sanity_int_candles_1h_", "no_gaps_int_candles_1h_1h"}, late
    assert "pair=ETH/USDT" in late["no_gaps_int_candles_1h_1h"] and "BTC/USDT" not in late["no_gaps_int_candles_1h_1h"]


def test_each_night_audits_the_whole_history_of_the_pairs_of_its_weekday(database: Connection, tmp_path: Path) -> None:
    """The nightly's rolling audit: an old corrupted candle of a pair audited tonight fails tonight's
    tests; one of a pair audited another weekday passes them until that pair's night; `alphadb test`
    (no scope) catches both. The weekdays come from int_configured_pairs, as dbt computes them."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    day = 24 * HOUR
    start = now - 40 * day
    settings = dbt_settings(tmp_path / "home", pairs=("BTC/USDT", "XRP/USDT"))
    upsert_points(database, hourly_points("BTC/USDT", start, 39 * 24) + hourly_points("XRP/USDT", start, 39 * 24, base=0.5),
                  loaded_at=now - 30 * day)
    assert transform.run_models(settings, database, full_refresh=True).success
    upsert_points(database, hourly_points("BTC/USDT", start + 39 * day, 24 - 1, base=600.0)
                  + hourly_points("XRP/USDT", start + 39 * day, 24 - 1, base=0.6), loaded_at=now - day)
    assert transform.run_models(settings, database).success
    with connect(database) as conn, conn.cursor() as cur:
        cur.execute("select pair, audit_weekday from dbt_intermediate.int_configured_pairs")
        weekdays = dict(cur.fetchall())
    assert weekdays["BTC/USDT"] != weekdays["XRP/USDT"]  # two slots (the MD5 of the names)
    quiet = next(w for w in range(7) if w not in weekdays.values())  # a night auditing neither
    since = now - 7 * day

    def scoped(weekday: int) -> dict[str, str]:
        return failed(transform.run_tests(settings, database, TestsScope(since, weekday)))

    assert scoped(weekdays["BTC/USDT"]) == scoped(weekdays["XRP/USDT"]) == {}
    # an old candle of each pair broken (high below low), a month before the recent loads
    with connect(database) as conn, conn.cursor() as cur:
        cur.execute("update dbt_intermediate.int_candles_1h set high = low - 1 where pair = 'BTC/USDT' and ts = %s", (start + 3 * day,))
        assert cur.rowcount == 1
        cur.execute("update dbt_intermediate.int_candles_1d set high = low - 1 where pair = 'XRP/USDT' and ts = %s",
                    ((start + 4 * day).replace(hour=0),))
        assert cur.rowcount == 1
        cur.execute("select count(*) from dbt_intermediate.int_candles_1h where ts < %s", (since - day,))
        assert cur.fetchone()[0] > 2 * 24 * 25  # the broken candles are well outside the recent scope
    assert scoped(quiet) == {}
    btc_night = scoped(weekdays["BTC/USDT"])
    assert set(btc_night) == {"candle_sanity_int_candles_1h_"} and "pair=BTC/USDT" in btc_night["candle_sanity_int_candles_1h_"]
    xrp_night = scoped(weekdays["XRP/USDT"])
    assert set(xrp_night) == {"candle_sanity_int_candles_1d_"} and "pair=XRP/USDT" in xrp_night["candle_sanity_int_candles_1d_"]
    assert set(failed(transform.run_tests(settings, database))) == {"candle_sanity_int_candles_1h_", "candle_sanity_int_candles_1d_"}
    # the unsampled candles' partial index (what the gaps view reads): one per candle table, kept
    # through incremental runs and rebuilt with a full refresh's new table
    assert unsampled_indexes(database) == {"int_candles_1h": 1, "int_candles_1d": 1}
    assert transform.run_models(settings, database, full_refresh=True).success
    assert unsampled_indexes(database) == {"int_candles_1h": 1, "int_candles_1d": 1}
    with connect(database) as conn, conn.cursor() as cur:
        cur.execute("set enable_seqscan = off")  # a tiny table: ask only whether the index serves the view
        cur.execute("explain select * from public.gaps")
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "int_candles_1h_pair_ts_idx" in plan and "int_candles_1d_pair_ts_idx" in plan, plan


def unsampled_indexes(connection: Connection) -> dict[str, int]:
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select tablename, count(*) from pg_indexes where schemaname = 'dbt_intermediate'"
                    " and indexdef like '%%WHERE (sample_count = 0)' group by tablename")
        return dict(cur.fetchall())
