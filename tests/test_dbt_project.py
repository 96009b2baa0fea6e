"""The dbt project as a whole: what it declares, the real 30-day file, freshness and docs, the per-pair
views of the configured pairs, and dbt run by hand in a fresh clone the way dbt users run it.

(sqlfluff runs in `make lint`, which `make test` runs first: `.venv/bin/sqlfluff lint dbt_alphadb`.)"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2.errors
import pytest

from dbt_support import (
    REAL_30D_FILE,
    UTC,
    dbt_settings,
    fetch,
    fresh_clone,
    hourly_points,
    real_30d_points,
    stop_embedded_server,
    upsert_points,
)
from pipelines import transform
from pipelines.database import Connection, connect
from pipelines.errors import ConfigError

NO_RECENCY = ["--exclude", "test_name:recency_per_pair"]  # the fixture data is from 2021
CANDLE_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "market_cap", "sample_count", "is_complete"]


def statuses(outcome: transform.DbtOutcome, prefix: str) -> set[str]:
    return {r.status for r in outcome.results if r.name.startswith(prefix)}


def test_project_declares_layers_contracts_and_docs(tmp_path: Path) -> None:
    settings = dbt_settings(tmp_path / "home", pairs=("BTC/USDT", "SOL/USDT"))
    offline = Connection("127.0.0.1", 1, "nobody", "unused", "none")  # `dbt parse` never connects
    outcome = transform.run_dbt(settings, offline, ["parse"])
    assert outcome.success, outcome
    manifest = json.loads((settings.home / "dbt" / "target" / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    # one node owns the per-pair views, whatever the number of pairs
    assert set(models) == {
        "stg_coingecko__market_chart_points", "int_configured_pairs", "int_pair_points", "int_candles_1h",
        "int_candles_1d", "ohlcv", "gaps", "pairs",
    }
    assert "sync_pair_views()" in models["pairs"]["config"]["post-hook"][0]["sql"]
    # every model and column described, the landing page explains the project
    for name, node in models.items():
        assert node["description"].strip(), name
        assert all(c["description"].strip() for c in node["columns"].values()), name
    overview = [d for d in manifest["docs"].values() if d["name"] == "__overview__" and d["package_name"] == "alphadb"]
    assert overview and "ohlcv_" in overview[0]["block_contents"]
    # schemas a newcomer can read; the product in public with enforced contracts
    assert {name: node["schema"] for name, node in models.items()} == {
        "stg_coingecko__market_chart_points": "dbt_staging", "int_configured_pairs": "dbt_intermediate",
        "int_pair_points": "dbt_intermediate", "int_candles_1h": "dbt_intermediate", "int_candles_1d": "dbt_intermediate",
        "ohlcv": "public", "gaps": "public", "pairs": "public",
    }
    for name in ("ohlcv", "gaps", "pairs", "int_candles_1h", "int_candles_1d"):
        assert models[name]["contract"]["enforced"], name
    assert list(models["ohlcv"]["columns"]) == ["pair", "timeframe", *CANDLE_COLUMNS]
    # the test scope is dbt's documented `where` config and the project's own SQL, no dbt internal overridden
    macros = {m["name"] for m in manifest["macros"].values() if m["package_name"] == "alphadb"}
    assert "get_where_subquery" not in macros
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    staging_tests = [t for t in tests if t.get("attached_node") == "model.alphadb.stg_coingecko__market_chart_points"]
    assert staging_tests and all(t["config"]["where"] == "" for t in staging_tests)
    assert {"accepted_candle_values_ohlcv_timeframe__1h__1d", "unique_candle_key_ohlcv_pair__timeframe__ts"} <= {t["name"] for t in tests}

    # the nightly's weekday scope: the staging tests see the points loaded since then
    scoped = transform.run_dbt(settings, offline, ["parse", "--vars", '{"tests_loaded_since": "2026-01-05T00:00:00+00:00"}'])
    assert scoped.success, scoped
    manifest = json.loads((settings.home / "dbt" / "target" / "manifest.json").read_text())
    wheres = {n["config"]["where"] for n in manifest["nodes"].values()
              if n.get("attached_node") == "model.alphadb.stg_coingecko__market_chart_points"}
    assert wheres == {"loaded_at > '2026-01-05T00:00:00+00:00'::timestamptz"}


def test_alphadb_pairs_reach_dbt_as_the_var_merged_with_the_users_vars(tmp_path: Path) -> None:
    settings = dbt_settings(tmp_path / "home", pairs=("SOL/USDT",))
    args = transform.dbt_vars(settings, ["run", "--vars", "{gap_tolerance_1h: 3}", "-s", "gaps"], {"x": 1})
    at = args.index("--vars")
    assert args[:at] == ["run", "-s", "gaps"]
    assert json.loads(args[at + 1]) == {"pairs": {"SOL/USDT": "solana:usd"}, "x": 1, "gap_tolerance_1h": 3}
    with pytest.raises(ConfigError, match="not a YAML mapping"):
        transform.dbt_vars(settings, ["run", "--vars", "[1, 2"])
    # the project's own pairs need no --vars: dbt reads them from dbt_project.yml
    from pipelines.config import load_settings

    default = load_settings({"ALPHADB_HOME": str(tmp_path / "h2"), "ALPHADB_ENV_FILE": str(tmp_path / "none")})
    assert transform.dbt_vars(default, ["build"]) == ["build"]


def test_real_30_day_file_gives_720_hourly_candles(database: Connection, tmp_path: Path) -> None:
    """722 real points (the last one the live point) from 2021-04-15 15:04 to 2021-05-15 14:13 UTC.

    They fall in the 720 hours 2021-04-15 15:00 .. 2021-05-15 14:00: 716 of them sampled, 4 empty
    (each alone, forward-filled); the 14:00 bucket holds the 14:02 point and the live 14:13:29 one and
    is the only incomplete candle.
    """
    settings = dbt_settings(tmp_path / "home", pairs=("BTC/USDT",))
    points = real_30d_points()
    assert len(points) == 722
    upsert_points(database, points, loaded_at=datetime.now(UTC) - timedelta(hours=60))

    built = transform.run_dbt(settings, database, ["build", *NO_RECENCY])
    assert built.success, [r for r in built.results if r.status not in ("success", "pass")]
    assert statuses(built, "no_gaps_") == {"pass"} and statuses(built, "candle_sanity_") == {"pass"}
    unit_tests = [r for r in built.results if "::" in r.name]
    assert len(unit_tests) == 5 and {r.status for r in unit_tests} == {"pass"}

    candles = fetch(database, "select ts, open, high, low, close, volume, market_cap, sample_count, is_complete"
                              " from public.ohlcv_btc_usdt order by ts")
    assert len(candles) == 720
    hour = timedelta(hours=1)
    assert candles[0][0] == datetime(2021, 4, 15, 15, tzinfo=UTC)
    assert candles[-1][0] == datetime(2021, 5, 15, 14, tzinfo=UTC)
    assert all(b[0] - a[0] == hour for a, b in zip(candles, candles[1:]))
    assert sum(c[7] for c in candles) == 722
    filled = [i for i, c in enumerate(candles) if c[7] == 0]
    assert [candles[i][0] for i in filled] == [
        datetime(2021, 4, 17, 14, tzinfo=UTC), datetime(2021, 4, 17, 17, tzinfo=UTC),
        datetime(2021, 4, 17, 21, tzinfo=UTC), datetime(2021, 4, 26, 14, tzinfo=UTC),
    ]
    for i in filled:
        previous, candle = candles[i - 1], candles[i]
        assert candle[1:5] == (previous[4],) * 4 and candle[5:7] == previous[5:7]
    assert [c[0] for c in candles if not c[8]] == [candles[-1][0]]
    live_ts, live_price, live_cap, live_volume = points[-1][1], points[-1][2], points[-1][3], points[-1][4]
    assert live_ts == datetime(2021, 5, 15, 14, 13, 29, tzinfo=UTC)
    assert candles[-1][4:7] == (live_price, live_volume, live_cap) and candles[-1][7] == 2
    first = [p for p in points if p[1] < datetime(2021, 4, 15, 16, tzinfo=UTC)]
    assert candles[0][1:5] == (first[0][2], max(p[2] for p in first), min(p[2] for p in first), first[-1][2])

    daily = fetch(database, "select ts, sample_count, is_complete from public.ohlcv_btc_usdt_1d order by ts")
    assert len(daily) == 31 and sum(d[1] for d in daily) == 722
    assert all(d[0].hour == 0 for d in daily) and [d[2] for d in daily].count(False) == 1
    assert fetch(database, "select count(*) from public.ohlcv where pair = 'BTC/USDT'") == [(751,)]
    assert transform.find_gaps(database) == []

    # One candle per (pair, ts) is the candle tables' unique index (no test scans for it): a
    # duplicate cannot be written.
    for table in ("int_candles_1h", "int_candles_1d"):
        with pytest.raises(psycopg2.errors.UniqueViolation), connect(database) as conn, conn.cursor() as cur:
            cur.execute(f"insert into dbt_intermediate.{table} select * from dbt_intermediate.{table} limit 1")

    # the last load is 60 hours old: `dbt source freshness` errors (threshold 50 h)
    freshness = transform.source_freshness(settings, database)
    assert not freshness.success
    assert [(r.name, r.status) for r in freshness.results] == [("coingecko.market_chart_points", "error")]

    # docs, offline, as one self-contained page
    page = transform.generate_docs(settings, database, static=True)
    assert page.name == "static_index.html"
    html = page.read_text(encoding="utf-8")
    assert "ohlcv_btc_usdt" in html and "rolling **24-hour** trading volume" in html


def pair_views(connection: Connection) -> dict[str, str]:
    """AlphaDB's per-pair views in public, with their comments."""
    return dict(fetch(connection, "select c.relname, obj_description(c.oid, 'pg_class') from pg_class as c"
                                  " where c.relnamespace = 'public'::regnamespace and c.relkind = 'v'"
                                  " and c.relname like %s order by 1", ("ohlcv\\_%",)))


def test_removing_a_pair_removes_its_views_and_candles_not_its_raw_points(database: Connection, tmp_path: Path) -> None:
    home = tmp_path / "home"
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    upsert_points(database, hourly_points("BTC/USDT", start, 30) + hourly_points("ETH/USDT", start, 30, base=10.0))
    both = dbt_settings(home, ("BTC/USDT", "ETH/USDT"))
    built = transform.run_dbt(both, database, ["build"])
    assert built.success, [(r.name, r.message) for r in built.failed]
    assert statuses(built, "pair_views_have_the_columns_of_ohlcv") == {"pass"}
    assert set(pair_views(database)) == {"ohlcv_btc_usdt", "ohlcv_btc_usdt_1d", "ohlcv_eth_usdt", "ohlcv_eth_usdt_1d"}
    assert fetch(database, "select * from public.pairs order by pair") == [
        ("BTC/USDT", "bitcoin", "usd", "ohlcv_btc_usdt", "ohlcv_btc_usdt_1d"),
        ("ETH/USDT", "ethereum", "usd", "ohlcv_eth_usdt", "ohlcv_eth_usdt_1d"),
    ]
    # the per-pair views keep the product's column order and types
    columns = fetch(database, "select column_name, data_type from information_schema.columns"
                              " where table_schema = 'public' and table_name = 'ohlcv_eth_usdt_1d' order by ordinal_position")
    assert columns == [("ts", "timestamp with time zone"), ("open", "double precision"), ("high", "double precision"),
                       ("low", "double precision"), ("close", "double precision"), ("volume", "double precision"),
                       ("market_cap", "double precision"), ("sample_count", "integer"), ("is_complete", "boolean")]
    eth_hours = fetch(database, "select count(*) from public.ohlcv_eth_usdt")[0][0]
    assert eth_hours == 30
    # a view of a user's own, in the same schema and with the same prefix, is none of AlphaDB's business
    with connect(database) as conn, conn.cursor() as cur:
        cur.execute("create view public.ohlcv_mine as select 1 as x")
    view_oid = "select 'public.ohlcv_btc_usdt'::regclass::oid"
    before = fetch(database, view_oid)
    assert transform.run_models(both, database).success
    assert fetch(database, view_oid) == before  # unchanged views are not recreated

    only_btc = dbt_settings(home, ("BTC/USDT",))
    assert transform.run_models(only_btc, database).success
    assert set(pair_views(database)) == {"ohlcv_btc_usdt", "ohlcv_btc_usdt_1d", "ohlcv_mine"}
    assert fetch(database, "select distinct pair from public.ohlcv") == [("BTC/USDT",)]
    assert fetch(database, "select pair from public.pairs") == [("BTC/USDT",)]
    assert fetch(database, "select count(*) from staging.market_chart_points where coin_id = 'ethereum'") == [(30,)]
    tested = transform.run_tests(only_btc, database)
    assert tested.success, [(r.name, r.message) for r in tested.failed]

    # added back: its views and candles return, rebuilt from the raw points that stayed
    assert transform.run_models(both, database).success
    assert fetch(database, "select count(*) from public.ohlcv_eth_usdt") == [(eth_hours,)]


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def _files(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_dbt_runs_by_hand_in_a_fresh_clone_after_a_load(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    """A dbt user's way in: a fresh clone, a load, then `dbt build/test/source freshness/docs generate`
    in dbt_alphadb/ with the real dbt executable and only documented variables (POSTGRES_*, printed
    by `alphadb dbt-env` for the embedded server); a local package installed with `dbt deps` stays.
    `alphadb` runs dbt on the same folder but keeps dbt's target/ and logs/ under ALPHADB_HOME."""
    clone = fresh_clone(tmp_path / "clone")
    project = clone / "dbt_alphadb"
    tracked = _files(project)
    home = Path(f"/tmp/alphadb-handrun-{os.getpid()}")  # short: the embedded server's socket lives there
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    alphadb_env = {
        **base,
        "PYTHONPATH": str(clone),  # the clone's own pipelines/
        "ALPHADB_ENV_FILE": str(tmp_path / "no.env"),
        "ALPHADB_HOME": str(home),
        "ALPHADB_LOG_FILE": str(tmp_path / "alphadb.log"),
        "COINGECKO_BASE_URL": simulator.base_url,
        "COINGECKO_RATE_LIMIT_PER_MIN": "6000",
        "POSTGRES_PASSWORD": "h4nd-run-secret",
    }
    alphadb = [sys.executable, "-m", "pipelines.cli"]
    try:
        _run([*alphadb, "load"], clone, alphadb_env)
        _run([*alphadb, "transform"], clone, alphadb_env)
        assert _files(project) == tracked  # alphadb wrote nothing into the project: its dbt state is in ALPHADB_HOME
        assert (home / "dbt" / "target" / "manifest.json").exists() and (home / "dbt" / "logs" / "dbt.log").exists()

        printed = _run([*alphadb, "dbt-env"], clone, alphadb_env).stdout
        assert "h4nd-run-secret" not in printed and "PASSWORD" not in printed
        exports = dict(shlex.split(line)[1].split("=", 1) for line in printed.splitlines() if line.startswith("export "))
        assert set(exports) == {"POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_DB"}
        assert exports["POSTGRES_HOST"].startswith("/")  # the embedded server's socket directory

        dbt = str(Path(sys.executable).with_name("dbt"))
        dbt_env = {**base, **exports}
        for command in (["build"], ["test"], ["source", "freshness"], ["docs", "generate"]):
            _run([dbt, *command], project, dbt_env)
        assert (project / "target" / "index.html").exists() and (project / "target" / "catalog.json").exists()
        catalog = json.loads((project / "target" / "catalog.json").read_text())
        assert "model.alphadb.pairs" in catalog["nodes"] and "model.alphadb.ohlcv" in catalog["nodes"]

        # a local package: `dbt deps`, then `dbt build` keeps it (and so does alphadb)
        package = tmp_path / "alphadb_extras"
        (package / "models").mkdir(parents=True)
        (package / "dbt_project.yml").write_text("name: alphadb_extras\nversion: '1.0.0'\nconfig-version: 2\n")
        (package / "models" / "candles_per_pair.sql").write_text(
            "select pair, count(*) as candles from {{ ref('alphadb', 'ohlcv') }} group by pair\n"
        )
        (project / "packages.yml").write_text(f"packages:\n  - local: {package}\n")
        _run([dbt, "deps"], project, dbt_env)
        _run([dbt, "build"], project, dbt_env)
        assert (project / "dbt_packages" / "alphadb_extras" / "dbt_project.yml").exists()
        listed = _run([*alphadb, "dbt", "ls", "--resource-type", "model", "--output", "name"], clone, alphadb_env).stdout
        assert "candles_per_pair" in listed.split()
        assert (project / "dbt_packages" / "alphadb_extras" / "dbt_project.yml").exists()

        connection = Connection(exports["POSTGRES_HOST"], 5432, exports["POSTGRES_USER"], "", exports["POSTGRES_DB"])
        assert dict(fetch(connection, "select pair, candles from public.candles_per_pair")).keys() == {"BTC/USDT", "ETH/USDT"}
        assert {name for name, _ in fetch(connection, "select relname, 1 from pg_class where relname like %s", ("ohlcv\\_%",))} >= {
            "ohlcv_btc_usdt", "ohlcv_btc_usdt_1d", "ohlcv_eth_usdt", "ohlcv_eth_usdt_1d"}
    finally:
        stop_embedded_server(home)
        subprocess.run(["rm", "-rf", str(home)], check=False)
