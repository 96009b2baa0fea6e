"""Turn a market_chart response into clean rows as an Arrow table: pure functions, no I/O.

Quirks handled (the real responses in tests/fixtures/coingecko/ show them): the three series are
joined on their timestamps (they may differ in length), points are sorted, duplicate timestamps
keep the last value, a second-truncated copy of an instant (the trailing live point, `...54.000`
next to `...54.955`) is dropped in favour of the precise one, points outside the requested window
and points with no value at all are dropped (before the twin rule: a precise point without a value
never displaces a whole-second one that has one). Source timestamps are kept as they are (ms).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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


_PAIRS = pa.list_(pa.float64())
_NO_FLOAT = pa.scalar(None, pa.float64())
_ZERO_ONE = pa.array([0.0, 1.0])


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


def truncated_twins(timestamps: pa.Array) -> pa.BooleanArray:
    """Which of these sorted, distinct ms timestamps are a second-truncated copy of an instant:
    `t.000` with a precise `t.xyz` of the same second beside it. One instant, one row: the precise
    one. The only place this rule is written (the parser and the loader's stored points use it)."""
    ts = pc.cast(timestamps, pa.int64())
    if len(ts) < 2:
        return pa.array([False] * len(ts), pa.bool_())
    seconds = pc.divide(ts, 1000)
    whole = pc.equal(pc.subtract(ts, pc.multiply(seconds, 1000)), 0)
    # Sorted and distinct: `t.000` is the first of its second, so a twin is followed by its second.
    twin = pc.and_(whole[:-1], pc.equal(seconds[1:], seconds[:-1]))
    return pa.concat_arrays([twin, pa.array([False])])


def _fast_series(raw: Any) -> tuple[pa.Array, pa.Array] | None:
    """(int64 timestamps, float64 values with NaN/inf as null) of a well-formed series, converted
    in C by Arrow; None for anything unusual, which the exact Python path then handles."""
    if not isinstance(raw, list):
        return None
    try:
        items = pa.array(raw, type=_PAIRS)  # rejects strings, dicts, nested lists, huge ints
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    if items.null_count:
        return None
    if len(items):
        lengths = pc.min_max(pc.list_value_length(items)).as_py()
        if lengths["min"] != 2 or lengths["max"] != 2:
            return None
    stamps, values = pc.list_element(items, 0), pc.list_element(items, 1)
    if stamps.null_count:
        return None
    try:
        ts = pc.cast(stamps, pa.int64())  # safe cast: a fractional or NaN timestamp is unusual
    except pa.ArrowException:
        return None
    # Arrow reads true/false as 1/0: look at those few items in Python (a bool is malformed).
    suspects = pc.indices_nonzero(pc.or_kleene(pc.is_in(stamps, value_set=_ZERO_ONE), pc.is_in(values, value_set=_ZERO_ONE)))
    if any(isinstance(x, bool) for i in suspects.to_pylist() for x in raw[i]):
        return None
    return ts, pc.if_else(pc.is_finite(values), values, _NO_FLOAT)


def _fast_columns(body: dict[str, Any], low: float, high: float) -> tuple[pa.Array, list[pa.Array]] | None:
    """The common case in bulk: three well-formed series on the same strictly increasing
    timestamps. Same result as the Python path below, or None to use that path."""
    parsed = []
    for key, _ in SERIES:
        series = _fast_series(body.get(key, []))
        if series is None:
            return None
        parsed.append(series)
    ts = parsed[0][0]
    if any(not other.equals(ts) for other, _ in parsed[1:]):
        return None
    if len(ts) > 1 and not pc.all(pc.greater(ts[1:], ts[:-1])).as_py():
        return None  # unsorted or repeated instants
    if len(ts) and not 0 <= ts[0].as_py() <= ts[-1].as_py() < 2**53:
        return None  # outside float64's exact integers: not a real timestamp anyway
    first = pc.sum(pc.less(ts, low)).as_py() or 0  # sorted: the window is one slice
    last = pc.sum(pc.less_equal(ts, high)).as_py() or 0
    ts = ts.slice(first, max(0, last - first))
    values = [series.slice(first, len(ts)) for _, series in parsed]
    # Points with no value go first: only a precise point that carries a value has a twin.
    has_value = pc.invert(pc.and_(pc.and_(pc.is_null(values[0]), pc.is_null(values[1])), pc.is_null(values[2])))
    ts, values = ts.filter(has_value), [v.filter(has_value) for v in values]
    keep = pc.invert(truncated_twins(ts))
    return ts.filter(keep), [v.filter(keep) for v in values]


def _table(pair: Pair, ts: pa.Array, values: list[pa.Array], loaded_at: datetime) -> pa.Table:
    n = len(ts)
    prices, caps, volumes = values
    return pa.table(
        {
            "coin_id": pa.repeat(pa.scalar(pair.coin_id, pa.string()), n),
            "vs_currency": pa.repeat(pa.scalar(pair.vs_currency, pa.string()), n),
            "ts": ts.cast(pa.timestamp("ms", tz="UTC")),
            "price": prices,
            "market_cap": caps,
            "total_volume": volumes,
            "loaded_at": pa.repeat(pa.scalar(loaded_at, pa.timestamp("us", tz="UTC")), n),
        },
        schema=SCHEMA,
    )


def _exact_columns(body: dict[str, Any], low: float, high: float, what: str) -> tuple[pa.Array, list[pa.Array]]:
    """The same result as `_fast_columns`, point by point in Python, for any response: ragged
    series, repeated or unsorted instants, odd values (or MalformedResponse)."""
    try:
        series = {column: _series(body, key) for key, column in SERIES}
    except TypeError as exc:
        raise MalformedResponse(f"CoinGecko {what}: malformed data: {exc}; nothing loaded") from None
    stamps = sorted({ts for points in series.values() for ts in points if low <= ts <= high})
    # Points with no value go first: only a precise point that carries a value has a twin.
    valued = [ts for ts in stamps if any(series[column].get(ts) is not None for _, column in SERIES)]
    twins = truncated_twins(pa.array(valued, pa.int64())).to_pylist()
    kept = [ts for ts, twin in zip(valued, twins) if not twin]
    values = [pa.array([series[column].get(ts) for ts in kept], pa.float64()) for _, column in SERIES]
    return pa.array(kept, pa.int64()), values


def parse_market_chart(
    body: Any, pair: Pair, window_start: datetime, window_end: datetime | None, loaded_at: datetime, what: str
) -> pa.Table:
    """Validate and clean one response; raise MalformedResponse naming the pair and window.

    Points outside [window_start, window_end] are dropped; `window_end` None keeps everything from
    the start on (the live window: it ends at the server's "now", whatever ours says)."""
    if not isinstance(body, dict) or "prices" not in body:
        shape = sorted(body)[:5] if isinstance(body, dict) else type(body).__name__
        raise MalformedResponse(f"CoinGecko {what}: unexpected response shape ({shape}); nothing loaded")
    low = window_start.timestamp() * 1000
    high = window_end.timestamp() * 1000 if window_end is not None else math.inf
    ts, values = _fast_columns(body, low, high) or _exact_columns(body, low, high, what)
    return _table(pair, ts, values, loaded_at)
