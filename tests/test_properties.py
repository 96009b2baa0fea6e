"""Property-based tests (hypothesis).

- points -> candles: any shuffle, duplication or split of the same points gives the same candles.
  Checked on a pure-Python reference of docs/design.md, on the real response parser, and (a few
  examples) through the real dbt models, loaded in two batches with an incremental run in between.
- request planning: windows cover the range exactly, none exceeds 90 days, none starts before the
  plan's history limit.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from candle_reference import reference_candles
from pipelines.coingecko.parsing import parse_market_chart
from pipelines.coingecko.planning import earliest_allowed, plan_windows
from pipelines.coingecko.settings import LIVE_WINDOW, MAX_RANGE_WINDOW
from pipelines.config import Pair

UTC = timezone.utc
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
BASE = datetime(2026, 3, 1, tzinfo=UTC)  # LA switches to DST on 2026-03-08: not in play here
BASE_MS = int(BASE.timestamp() * 1000)

Point = tuple[int, float, float, float]  # ts ms, price, market_cap, total_volume


# Points: up to ~40 hours, any minute and millisecond, distinct instants; values strictly positive.
points_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40 * HOUR_MS - 1),
        st.floats(min_value=1, max_value=1e5, allow_nan=False),
        st.floats(min_value=1e6, max_value=1e12, allow_nan=False),
        st.floats(min_value=1e3, max_value=1e10, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda p: p[0],
).map(lambda pts: [(BASE_MS + t, p, m, v) for t, p, m, v in pts])


def _mangle(points: list[Point], seed: int, dup_every: int) -> list[Point]:
    rng = random.Random(seed)
    mangled = points + [p for i, p in enumerate(points) if i % dup_every == 0]  # duplicates of the same point
    rng.shuffle(mangled)
    return mangled


@given(points_strategy, st.integers(0, 2**32), st.integers(1, 5), st.integers(0, 60))
def test_reference_candles_ignore_order_duplicates_and_splits(points: list[Point], seed: int, dup_every: int, cut: int) -> None:
    now = BASE_MS + 50 * HOUR_MS
    expected = reference_candles(points, HOUR_MS, now)
    mangled = _mangle(points, seed, dup_every)
    assert reference_candles(mangled, HOUR_MS, now) == expected
    # A split: two loads, the second merging over the first (the same key keeps one row).
    store = {p[0]: p for p in mangled[:cut]}
    store.update({p[0]: p for p in mangled[cut:]})
    assert reference_candles(list(store.values()), HOUR_MS, now) == expected
    # No holes: one row per hour from the first to the last sampled hour.
    assert [r[0] for r in expected] == list(range(expected[0][0], expected[-1][0] + 1, HOUR_MS))


def _body(points: Sequence[Point]) -> dict[str, list[list[float]]]:
    return {
        "prices": [[t, p] for t, p, _, _ in points],
        "market_caps": [[t, m] for t, _, m, _ in points],
        "total_volumes": [[t, v] for t, _, _, v in points],
    }


@given(points_strategy, st.integers(0, 2**32), st.integers(1, 5))
def test_parser_output_ignores_order_and_duplicates(points: list[Point], seed: int, dup_every: int) -> None:
    """The real response parser: a shuffled, duplicated response gives the same rows, sorted, one per instant."""
    pair = Pair("BTC/USDT", "bitcoin", "usd")
    low, high = BASE, BASE + timedelta(hours=41)
    loaded = datetime(2026, 3, 3, tzinfo=UTC)
    expected = parse_market_chart(_body(sorted(points)), pair, low, high, loaded, "test")
    got = parse_market_chart(_body(_mangle(points, seed, dup_every)), pair, low, high, loaded, "test")
    assert got.equals(expected)
    ts = got.column("ts").cast("int64").to_pylist()
    stamps = sorted(set(p[0] for p in points))
    precise = {t // 1000 for t in stamps if t % 1000}  # `t.000` next to `t.xyz` is one instant (tests/fixtures/coingecko/PROVENANCE.md)
    assert ts == [t for t in stamps if t % 1000 or t // 1000 not in precise]


# --- through the real dbt models ----------------------------------------------------------------

@settings(max_examples=3, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])  # each example costs 2 dbt runs: no shrinking
@given(points=points_strategy.filter(lambda pts: len(pts) >= 8), seed=st.integers(0, 2**32), cut=st.integers(1, 7))
def test_dbt_candles_ignore_order_duplicates_and_splits(points: list[Point], seed: int, cut: int, tmp_path_factory: pytest.TempPathFactory, pg_admin_uri: str, pg_role: Any) -> None:
    from dbt_support import CANDLE_COLUMNS, dbt_settings, fetch, upsert_points
    from postgres_support import TempDatabase

    from pipelines import transform
    from pipelines.database import Connection
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(pg_admin_uri)
    host = parse_qs(parsed.query).get("host", [parsed.hostname or "127.0.0.1"])[0]
    db = TempDatabase(pg_admin_uri, pg_role, Connection(host, parsed.port or 5432, pg_role[0], pg_role[1], "x"))
    try:
        connection = db.connection
        home = tmp_path_factory.mktemp("dbt-prop")
        conf = dbt_settings(home, ("BTC/USDT",))
        mangled = _mangle(points, seed, 3)
        split = max(1, len(mangled) * cut // 8)
        # One load holds an instant once (the loader dedupes a response); the next load merges over it.
        as_rows = lambda pts: [("BTC/USDT", datetime.fromtimestamp(t / 1000, UTC), p, m, v) for t, p, m, v in {q[0]: q for q in pts}.values()]  # noqa: E731
        # First batch, an incremental build, then the rest (duplicates included), another build.
        upsert_points(connection, as_rows(mangled[:split]))
        assert transform.run_models(conf, connection).success
        upsert_points(connection, as_rows(mangled[split:]))
        assert transform.run_models(conf, connection).success
        got = fetch(connection, f"select {CANDLE_COLUMNS} from public.ohlcv_btc_usdt order by ts")
    finally:
        db.drop()
    now = int(datetime.now(UTC).timestamp() * 1000)
    expected = reference_candles(points, HOUR_MS, now)
    as_tuple = [
        (int(r[0].timestamp() * 1000), *[float(x) for x in r[1:7]], int(r[7]), bool(r[8])) for r in got
    ]
    assert len(as_tuple) == len(expected)
    for g, e in zip(as_tuple, expected):
        assert g[0] == e[0] and g[7:] == e[7:], (g, e)
        assert g[1:7] == pytest.approx(e[1:7], rel=1e-12), (g, e)


# --- request planning ----------------------------------------------------------------------------

NOW = datetime(2026, 6, 15, 12, 34, 56, tzinfo=UTC)
instants = st.integers(min_value=-800 * DAY_MS, max_value=DAY_MS).map(lambda ms: NOW + timedelta(milliseconds=ms))


@given(instants, instants, st.sampled_from([365, None]))
def test_windows_cover_the_range_exactly(a: datetime, b: datetime, history_days: int | None) -> None:
    start, end = min(a, b), max(a, b)
    windows = plan_windows(start, end, NOW, history_days)
    floor = earliest_allowed(NOW, history_days)
    lo, hi = max(start, floor), min(end, NOW)
    if lo >= hi:
        assert windows == []
        return
    if hi >= NOW - timedelta(minutes=5):
        hi = NOW  # a range reaching (about) now ends with the live request, which ends now
    assert windows[0].start == lo and windows[-1].end == hi  # covers the range exactly, clamped
    for w, nxt in zip(windows, windows[1:]):
        assert w.end == nxt.start  # contiguous, no overlap, no hole
    for w in windows:
        assert w.start < w.end
        assert w.start >= floor  # never before the plan's history limit
        if w.live:
            assert w.end == NOW and w.end - w.start <= LIVE_WINDOW
        else:
            assert w.end - w.start <= MAX_RANGE_WINDOW  # /range stays hourly
    assert sum(w.live for w in windows) <= 1 and all(not w.live for w in windows[:-1])
    # The fewest requests: ceil(range span / 90 days) /range windows plus at most one live one.
    ranged = [w for w in windows if not w.live]
    if ranged:
        span = ranged[-1].end - ranged[0].start
        assert len(ranged) == -(-span // MAX_RANGE_WINDOW)
