"""Turn a market_chart response into clean rows as an Arrow table.

Quirks handled (see shared/coingecko/PROVENANCE.md): the three series are joined on their
timestamps (they may differ in length), points are sorted, duplicate timestamps keep the last
value, a second-truncated copy of an instant (the trailing live point, `...54.000` next to
`...54.955`) is dropped in favour of the precise one, points outside the requested window and
points with no value at all are dropped. Source timestamps are kept as they are (ms).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pyarrow as pa

from pipelines.config import Pair
from pipelines.errors import AlphaDBError

SERIES = (("prices", "price"), ("market_caps", "market_cap"), ("total_volumes", "total_volume"))

SCHEMA = pa.schema(
    [
        pa.field("coin_id", pa.string(), nullable=False),
        pa.field("vs_currency", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("price", pa.float64()),
        pa.field("market_cap", pa.float64()),
        pa.field("total_volume", pa.float64()),
        pa.field("loaded_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


class MalformedResponse(AlphaDBError):
    """The API answered 200 with data of the wrong shape (exit 1): nothing of it is loaded."""


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value {value!r} is not a number")
    return float(value) if math.isfinite(value) else None


def _series(body: dict[str, Any], key: str) -> dict[int, float | None]:
    raw = body.get(key, [])
    if not isinstance(raw, list):
        raise TypeError(f"{key!r} is {type(raw).__name__}, not a list")
    points: dict[int, float | None] = {}
    for item in raw:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise TypeError(f"{key!r} holds {item!r}, not a [timestamp, value] pair")
        ts, value = item
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise TypeError(f"{key!r} holds timestamp {ts!r}")
        points[int(ts)] = _number(value)  # a repeated timestamp keeps its last value
    return points


def _drop_truncated_twins(timestamps: list[int]) -> list[int]:
    """Drop `t.000` when a precise `t.xyz` of the same second exists: one instant, one row."""
    precise_seconds = {ts // 1000 for ts in timestamps if ts % 1000}
    return [ts for ts in timestamps if ts % 1000 or ts // 1000 not in precise_seconds]


def parse_market_chart(
    body: Any, pair: Pair, window_start: datetime, window_end: datetime, loaded_at: datetime, what: str
) -> pa.Table:
    """Validate and clean one response; raise MalformedResponse naming the pair and window."""
    if not isinstance(body, dict) or "prices" not in body:
        shape = sorted(body)[:5] if isinstance(body, dict) else type(body).__name__
        raise MalformedResponse(f"CoinGecko {what}: unexpected response shape ({shape}); nothing loaded")
    try:
        series = {column: _series(body, key) for key, column in SERIES}
    except TypeError as exc:
        raise MalformedResponse(f"CoinGecko {what}: malformed data: {exc}; nothing loaded") from None

    low, high = window_start.timestamp() * 1000, window_end.timestamp() * 1000
    stamps = sorted({ts for points in series.values() for ts in points if low <= ts <= high})
    stamps = _drop_truncated_twins(stamps)
    columns: dict[str, list[Any]] = {column: [] for _, column in SERIES}
    kept: list[int] = []
    for ts in stamps:
        values = [series[column].get(ts) for _, column in SERIES]
        if all(v is None for v in values):
            continue
        kept.append(ts)
        for (_, column), value in zip(SERIES, values):
            columns[column].append(value)

    n = len(kept)
    return pa.table(
        {
            "coin_id": pa.array([pair.coin_id] * n, pa.string()),
            "vs_currency": pa.array([pair.vs_currency] * n, pa.string()),
            "ts": pa.array(kept, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "price": pa.array(columns["price"], pa.float64()),
            "market_cap": pa.array(columns["market_cap"], pa.float64()),
            "total_volume": pa.array(columns["total_volume"], pa.float64()),
            "loaded_at": pa.array([loaded_at] * n, pa.timestamp("us", tz="UTC")),
        },
        schema=SCHEMA,
    )
