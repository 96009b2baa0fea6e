"""The dbt project as a whole: parse with generated pair models, the real 30-day file, freshness, docs.

(sqlfluff runs in `make lint`, which `make test` runs first: `.venv/bin/sqlfluff lint dbt_alphadb`.)"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2.errors
import pytest

from dbt_support import REAL_30D_FILE, UTC, dbt_settings, fetch, real_30d_points, upsert_points
from pipelines import transform
from pipelines.database import Connection, connect
from pipelines.pair_models import generated_files, sync_pair_models

NO_RECENCY = ["--exclude", "test_name:recency_per_pair"]  # the fixture data is from 2021


def statuses(outcome: transform.DbtOutcome, prefix: str) -> set[str]:
    return {r.status for r in outcome.results if r.name.startswith(prefix)}


def test_pair_models_follow_the_pairs_config(tmp_path: Path) -> None:
    settings = dbt_settings(tmp_path / "home", pairs=("BTC/USDT", "SOL/USDT"))
    offline = Connection("127.0.0.1", 1, "nobody", "unused", "none")  # `dbt parse` never connects
    outcome = transform.run_dbt(settings, offline, ["parse"])
    assert outcome.success, outcome
    manifest = json.loads((settings.home / "dbt" / "target" / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {"ohlcv_btc_usdt", "ohlcv_btc_usdt_1d", "ohlcv_sol_usdt", "ohlcv_sol_usdt_1d", "ohlcv", "gaps"} <= set(models)
    assert not any("eth" in name for name in models)
    # every model and column is described, and the per-pair marts are in public with contracts
    for name, node in models.items():
        assert node["description"].strip(), name
        assert all(c["description"].strip() for c in node["columns"].values()), name
    assert models["ohlcv_sol_usdt"]["schema"] == "public" and models["ohlcv_sol_usdt"]["contract"]["enforced"]
    assert models["stg_coingecko__market_chart_points"]["schema"] == "alphadb_staging"
    assert list(models["ohlcv_sol_usdt_1d"]["columns"]) == [
        "ts", "open", "high", "low", "close", "volume", "market_cap", "sample_count", "is_complete",
    ]
    assert "model.alphadb.int_candles_1h" in models["ohlcv_sol_usdt"]["depends_on"]["nodes"]

    # removing a pair deletes its generated files; syncing again changes nothing
    project = transform.prepare_project(dbt_settings(tmp_path / "home", pairs=("BTC/USDT",)))
    assert not list(project.glob("models/marts/pairs/ohlcv_sol_usdt*"))
    assert (project / "models/marts/pairs/ohlcv_btc_usdt.sql").read_text().endswith("{{ pair_candles('BTC/USDT', '1h') }}\n")
    assert sync_pair_models(settings.pairs[:1], project) == []
    assert set(generated_files(settings.pairs[:1], project)) <= set(project.rglob("*"))


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
            cur.execute(f"insert into alphadb_intermediate.{table} select * from alphadb_intermediate.{table} limit 1")

    # the last load is 60 hours old: `dbt source freshness` errors (threshold 50 h)
    freshness = transform.source_freshness(settings, database)
    assert not freshness.success
    assert [(r.name, r.status) for r in freshness.results] == [("coingecko.market_chart_points", "error")]

    # docs, offline, as one self-contained page
    page = transform.generate_docs(settings, database, static=True)
    assert page.name == "static_index.html"
    html = page.read_text(encoding="utf-8")
    assert "ohlcv_btc_usdt" in html and "rolling **24-hour** trading volume" in html
