"""The candle rules in plain Python, as the reference the dbt models are compared with: one row per
bucket from the first sampled bucket to the last, holes forward-filled with sample_count 0."""

from __future__ import annotations

from typing import Any, Sequence

Point = tuple[int, float, float, float]  # ts ms, price, market_cap, total_volume


def reference_candles(points: Sequence[Point], bucket_ms: int, now_ms: int) -> list[tuple[Any, ...]]:
    """The candles of `points` in buckets of `bucket_ms` as of `now_ms`: one row per bucket from the
    first sampled to the last, holes forward-filled."""
    by_ts = {p[0]: p for p in points}  # one row per instant (the loader's merge key)
    ordered = sorted(by_ts.values())
    if not ordered:
        return []
    buckets: dict[int, list[Point]] = {}
    for p in ordered:
        buckets.setdefault(p[0] - p[0] % bucket_ms, []).append(p)
    last_ts = ordered[-1][0]
    rows: list[tuple[Any, ...]] = []
    first, last = min(buckets), max(buckets)
    previous: tuple[Any, ...] | None = None
    for start in range(first, last + 1, bucket_ms):
        complete = start + bucket_ms <= now_ms and last_ts >= start + bucket_ms
        inside = buckets.get(start)
        if inside:
            prices = [p[1] for p in inside]
            row = (start, inside[0][1], max(prices), min(prices), inside[-1][1], inside[-1][3], inside[-1][2], len(inside), complete)
        else:
            assert previous is not None
            close = previous[4]
            row = (start, close, close, close, close, previous[5], previous[6], 0, complete)
        rows.append(row)
        previous = row
    return rows
