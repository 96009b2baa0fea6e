"""Upgrade in place: a database built by the code of 38d7de7 (schemas alphadb_staging,
alphadb_intermediate, alphadb_test_failures, staging_staging; see tests/fixtures/upgrade/) keeps its
raw points and dlt cursors on the first nightly run of today's code, gets its candles rebuilt in
today's schemas, and the log names the schemas left over with the command that removes them."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from cron_support import REPO_ROOT
from http_support import data_requests
from postgres_support import dlt_cursors, query
from process_support import output, run_cli
from pipelines.database import Connection, embedded_bin
from pipelines.simulator import Simulator

DUMP = REPO_ROOT / "tests" / "fixtures" / "upgrade" / "alphadb_38d7de7.sql"
PRO_KEY = "CG-pro-test-key"  # the simulator's pro host accepts it: no 365-day limit however old the dump
RAW = "select coin_id, vs_currency, ts, price, market_cap, total_volume, loaded_at from staging.market_chart_points"
CANDLES = "select pair, ts, open, high, low, close, volume, market_cap, sample_count, is_complete from {} order by 1, 2"
LEGACY = ["alphadb_intermediate", "alphadb_staging", "alphadb_test_failures", "staging_staging"]


def restore(connection: Connection, dump: Path) -> None:
    psql = Path(str(embedded_bin("psql")).replace("/pginstall/", "/pginstall18/"))
    psql = psql if psql.exists() else embedded_bin("psql")
    env = {**os.environ, **connection.environment()}
    result = subprocess.run([str(psql), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def schemas(connection: Connection) -> set[str]:
    return {row[0] for row in query(connection, "select nspname from pg_namespace where nspname !~ '^(pg_|information_schema)'")}


def test_a_database_of_the_earlier_layout_keeps_everything_on_the_first_run(database: Connection, tmp_path: Path) -> None:
    restore(database, DUMP)
    assert set(LEGACY) <= schemas(database)
    raw_before = set(query(database, RAW))
    cursors_before = dlt_cursors(database)
    candles_before = query(database, CANDLES.format("alphadb_intermediate.int_candles_1h"))
    assert raw_before and {"BTC/USDT", "ETH/USDT", "SOL/USDT"} == set(cursors_before) and candles_before
    last_loaded = max(row[2] for row in raw_before)

    with Simulator(host_kind="pro") as sim:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "ALPHADB_ENV_FILE": str(tmp_path / "no.env"),
            "ALPHADB_HOME": str(tmp_path / "home"),  # a new home: dlt's state comes back from the database
            "ALPHADB_LOG_FILE": str(tmp_path / "alphadb.log"),
            "COINGECKO_BASE_URL": sim.base_url,
            "COINGECKO_PLAN": "pro",
            "COINGECKO_API_KEY": PRO_KEY,
            "COINGECKO_RATE_LIMIT_PER_MIN": "6000",
            **{key: value for key, value in database.environment().items() if key.startswith("POSTGRES_")},
        }
        result = run_cli(env, "run", timeout=600)
        assert result.returncode == 0, output(result)
        requests = data_requests(sim)

    # raw points untouched: every point stored before is still there with its values and loaded_at
    # (the last day's 5-minute points aside: a live point can be replaced by its precise twin)
    settled = {row for row in raw_before if row[2] < last_loaded - timedelta(days=1)}
    assert settled and settled <= set(query(database, RAW))
    # the cursors carried on: the load resumed from them instead of starting a new history
    cursors_after = dlt_cursors(database)
    assert all(cursors_after[pair] >= cursors_before[pair] for pair in ("BTC/USDT", "ETH/USDT")), (cursors_before, cursors_after)
    assert cursors_after["SOL/USDT"] == cursors_before["SOL/USDT"]  # removed from the config: kept, not advanced
    earliest = min(float(r["query"]["from"]) for r in requests if "from" in r["query"]) if any(
        "from" in r["query"] for r in requests) else None
    if earliest is not None:
        resumed_from = min(cursors_before["BTC/USDT"], cursors_before["ETH/USDT"])
        assert earliest * 1000 >= resumed_from - timedelta(days=2, hours=1).total_seconds() * 1000

    # candles rebuilt in today's schema, equal to those of the earlier layout where the points are settled
    rebuilt = query(database, CANDLES.format("dbt_intermediate.int_candles_1h"))
    cutoff = last_loaded - timedelta(days=1)
    assert [c for c in rebuilt if c[1] < cutoff - timedelta(hours=1)] == [
        c for c in candles_before if c[1] < cutoff - timedelta(hours=1)]
    assert "dbt_intermediate" in query(database, "select pg_get_viewdef('public.ohlcv_btc_usdt'::regclass)")[0][0]
    assert query(database, "select count(*) from public.gaps") == [(0,)]
    assert {"dbt_staging", "dbt_intermediate", "dlt_scratch"} <= schemas(database)

    # the schemas of the earlier layout are kept, and named in the log with the command that removes them
    log = (tmp_path / "alphadb.log").read_text(encoding="utf-8")
    command = f"drop schema {', '.join(LEGACY)} cascade"
    assert "Schemas of an earlier AlphaDB layout are no longer used" in log and command in log, log
    removed = run_cli(env, "psql", "-v", "ON_ERROR_STOP=1", "-c", command)
    assert removed.returncode == 0, output(removed)
    assert not set(LEGACY) & schemas(database)
    # the views the earlier code left for a removed pair (SOL/USDT) went with them; the product stays
    leftovers: list[Any] = query(database, "select relname from pg_class where relname like %s", ("ohlcv\\_sol%",))
    assert leftovers == []
    assert query(database, "select count(*) > 0 from public.ohlcv_btc_usdt_1d") == [(True,)]
    again = run_cli(env, "transform")
    assert again.returncode == 0 and "earlier AlphaDB layout" not in output(again), output(again)
