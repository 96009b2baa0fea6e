"""The truncated-twin rule applied to stored rows agrees with the parser's: a whole-second point with
a value is only dropped for a precise point of the same second that carries a value."""

from __future__ import annotations

from datetime import datetime, timezone

from loader_support import STAGING, points, query
from pipelines.coingecko import PairProgress
from pipelines.config import Pair
from pipelines.load import drop_same_instant_twins

BTC = Pair("BTC/USDT", "bitcoin", "usd")
SECOND = 1_700_000_026_000


def _store(database, rows) -> None:  # type: ignore[no-untyped-def]
    query(database, "create schema if not exists staging")
    query(
        database,
        f"create table if not exists {STAGING} (coin_id text not null, vs_currency text not null, "
        "ts timestamptz not null, price double precision, market_cap double precision, "
        "total_volume double precision, loaded_at timestamptz not null default now())",
    )
    for ts_ms, price, cap, volume in rows:
        query(
            database,
            f"insert into {STAGING} (coin_id, vs_currency, ts, price, market_cap, total_volume) "
            "values ('bitcoin', 'usd', %s, %s, %s, %s)",
            (datetime.fromtimestamp(ts_ms / 1000, timezone.utc), price, cap, volume),
        )


def _drop(database) -> int:  # type: ignore[no-untyped-def]
    progress = PairProgress(BTC, min_ts_ms=SECOND - 5_000, max_ts_ms=SECOND + 5_000)
    return drop_same_instant_twins(database, [progress])


def test_stored_twin_of_a_precise_point_with_a_value_is_dropped(database) -> None:  # type: ignore[no-untyped-def]
    _store(database, [(SECOND, 1.0, 1.0, 1.0), (SECOND + 1, 2.0, None, None)])
    assert _drop(database) == 1
    assert points(database, "bitcoin") == [(SECOND + 1, 2.0, None, None)]


def test_stored_whole_second_point_survives_a_precise_point_without_values(database) -> None:  # type: ignore[no-untyped-def]
    _store(database, [(SECOND, None, None, 0.0), (SECOND + 1, None, None, None)])
    assert _drop(database) == 0
    assert points(database, "bitcoin") == [(SECOND, None, None, 0.0), (SECOND + 1, None, None, None)]
