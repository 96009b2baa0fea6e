"""Helpers for the dbt tests: the raw points table (as the loader writes it), points, settings, marts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from psycopg2.extras import execute_values

from response_fixtures import FIXTURES, expected_points, load_fixture
from pipelines.config import REPO_ROOT
from pipelines.config import Settings, load_settings
from pipelines.database import Connection, connect

REAL_30D_FILE = FIXTURES / "bitcoin_30d_hourly_722points.json"

# Exactly the loader's table (docs/design.md; dlt adds _dlt_load_id and _dlt_id).
RAW_DDL = """
create schema if not exists staging;
create table if not exists staging.market_chart_points (
    coin_id text not null,
    vs_currency text not null,
    ts timestamptz not null,
    price double precision,
    market_cap double precision,
    total_volume double precision,
    loaded_at timestamptz not null,
    _dlt_load_id text not null,
    _dlt_id text not null
);
create unique index if not exists market_chart_points_key
    on staging.market_chart_points (coin_id, vs_currency, ts);
"""

UTC = timezone.utc
SERIES = {
    "BTC/USDT": ("bitcoin", "usd"), "ETH/USDT": ("ethereum", "usd"), "SOL/USDT": ("solana", "usd"),
    "XRP/USDT": ("ripple", "usd"),
}
CANDLE_COLUMNS = "ts, open, high, low, close, volume, market_cap, sample_count, is_complete"


def dbt_settings(home: Path, pairs: Sequence[str] = ("BTC/USDT", "ETH/USDT")) -> Settings:
    """Settings for a dbt run with its own ALPHADB_HOME (dbt state) and these pairs."""
    spec = ",".join(f"{name}={SERIES[name][0]}:{SERIES[name][1]}" for name in pairs)
    return load_settings(
        {"ALPHADB_HOME": str(home), "ALPHADB_ENV_FILE": str(home / "no.env"), "ALPHADB_PAIRS": spec}
    )


def create_raw_table(connection: Connection) -> None:
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute(RAW_DDL)


Point = tuple[str, datetime, float | None, float | None, float | None]  # pair, ts, price, market_cap, total_volume


def upsert_points(connection: Connection, points: Iterable[Point], loaded_at: datetime | None = None) -> int:
    """Insert or update points like the loader's merge (same instant: the row is updated, loaded_at too)."""
    loaded_at = loaded_at or datetime.now(UTC)
    load_id = str(loaded_at.timestamp())
    rows = [
        (*SERIES[pair], ts, price, market_cap, volume, loaded_at, load_id, uuid.uuid4().hex)
        for pair, ts, price, market_cap, volume in points
    ]
    create_raw_table(connection)
    with connect(connection) as conn, conn.cursor() as cur:
        execute_values(
            cur,
            "insert into staging.market_chart_points"
            " (coin_id, vs_currency, ts, price, market_cap, total_volume, loaded_at, _dlt_load_id, _dlt_id)"
            " values %s on conflict (coin_id, vs_currency, ts) do update set"
            " price = excluded.price, market_cap = excluded.market_cap, total_volume = excluded.total_volume,"
            " loaded_at = excluded.loaded_at, _dlt_load_id = excluded._dlt_load_id",
            rows,
        )
    return len(rows)


def delete_points(connection: Connection, pair: str, start: datetime, end: datetime) -> int:
    coin_id, vs_currency = SERIES[pair]
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute(
            "delete from staging.market_chart_points where coin_id = %s and vs_currency = %s and ts >= %s and ts < %s",
            (coin_id, vs_currency, start, end),
        )
        return cur.rowcount


def real_30d_points(pair: str = "BTC/USDT") -> list[Point]:
    """The real 30-day hourly response as the loader stores it: one point per instant, nulls kept."""
    return [
        (pair, datetime.fromtimestamp(ms / 1000, UTC), price, market_cap, volume)
        for ms, price, market_cap, volume in expected_points(load_fixture(REAL_30D_FILE))
    ]


def hourly_points(pair: str, start: datetime, hours: int, per_hour: int = 1, base: float = 100.0) -> list[Point]:
    """Synthetic jittered points: `per_hour` points in each hour from `start`, with distinct prices."""
    points: list[Point] = []
    step = 3600 / per_hour
    for h in range(hours):
        for i in range(per_hour):
            jitter = (h * 7 + i * 13) % 40  # seconds, deterministic
            ts = start + timedelta(hours=h, seconds=i * step + jitter, milliseconds=(h * 31 + i) % 1000)
            price = base + h + ((i * 37) % 11) / 10
            points.append((pair, ts, price, price * 1e6, 1000.0 + h))
    return points


def fetch(connection: Connection, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def marts(connection: Connection, pairs: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every mart's rows in key order (per-pair hourly and daily, unified, gaps)."""
    names = [f"ohlcv_{p.replace('/', '_').lower()}{suffix}" for p in pairs for suffix in ("", "_1d")]
    out = {name: fetch(connection, f"select {CANDLE_COLUMNS} from public.{name} order by ts") for name in names}
    out["ohlcv"] = fetch(connection, f"select pair, timeframe, {CANDLE_COLUMNS} from public.ohlcv order by 1, 2, 3")
    out["gaps"] = fetch(connection, "select * from public.gaps order by 1, 2, 3")
    return out


def fresh_clone(target: Path) -> Path:
    """A copy of the repository's tracked files (what `git clone` gives), as they are in the working tree."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def stop_embedded_server(home: Path) -> None:
    """Fast shutdown (SIGINT to its postmaster) of the embedded server a test started under `home`."""
    pid_file = home / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return
    postmaster = int(pid_file.read_text().split()[0])
    try:
        os.kill(postmaster, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{postmaster}").exists():
        time.sleep(0.1)
