"""parse_market_chart: the data's quirks become clean rows, one per instant, source timestamps kept.

Synthetic bodies for each quirk, every real response in tests/fixtures/coingecko/ point by point, and the
simulator's corrupted bodies fetched over real HTTP through the client.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from response_fixtures import expected_points, fixture_files, load_fixture
from pipelines.coingecko.client import CoinGeckoClient, RateLimiter
from pipelines.coingecko.parsing import SCHEMA, MalformedResponse, parse_market_chart
from pipelines.config import Pair, load_settings

BTC = Pair("BTC/USDT", "bitcoin", "usd")
LOADED = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
T0 = 1_700_000_000_123  # ms, not a whole second (a whole second next to a precise one is a twin)


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, timezone.utc)


def parse(body: Any, start: int = T0 - 10**9, end: int = T0 + 10**9) -> list[tuple[int, Any, Any, Any]]:
    table = parse_market_chart(body, BTC, ms(start), ms(end), LOADED, "BTC/USDT test window")
    assert table.schema == SCHEMA
    assert set(table.column("coin_id").to_pylist()) <= {"bitcoin"}
    assert set(table.column("loaded_at").to_pylist()) <= {LOADED}
    rows = zip(
        table.column("ts").cast("int64").to_pylist(),
        table.column("price").to_pylist(),
        table.column("market_cap").to_pylist(),
        table.column("total_volume").to_pylist(),
    )
    return list(rows)


def body(*points: tuple[int, Any, Any, Any]) -> dict[str, list[list[Any]]]:
    return {
        "prices": [[t, p] for t, p, _, _ in points],
        "market_caps": [[t, c] for t, _, c, _ in points],
        "total_volumes": [[t, v] for t, _, _, v in points],
    }


# --- quirks ------------------------------------------------------------------------------------

def test_clean_points_keep_source_timestamps() -> None:
    rows = [(T0 + 41, 1.0, 10.0, 100.0), (T0 + 3_600_047, 2.0, 20.0, 200.0)]
    assert parse(body(*rows)) == rows  # not snapped to the hour


def test_unsorted_points_are_sorted() -> None:
    rows = [(T0 + i * 1000 + 7, float(i), float(i), float(i)) for i in range(6)]
    assert parse(body(*[rows[i] for i in (3, 0, 5, 1, 4, 2)])) == rows


def test_duplicate_timestamps_in_one_response_keep_the_last_value() -> None:
    b = body((T0, 1.0, 10.0, 100.0), (T0 + 5, 2.0, 20.0, 200.0), (T0, 1.5, 15.0, 150.0))
    assert parse(b) == [(T0, 1.5, 15.0, 150.0), (T0 + 5, 2.0, 20.0, 200.0)]


def test_nulls() -> None:
    b = body((T0, None, 10.0, 100.0), (T0 + 1, None, None, None), (T0 + 2, 3.0, None, None), (T0 + 3, float("nan"), float("inf"), 5.0))
    # A point with no value at all is dropped; partial nulls (and NaN/inf) become NULL.
    assert parse(b) == [(T0, None, 10.0, 100.0), (T0 + 2, 3.0, None, None), (T0 + 3, None, None, 5.0)]


def test_ragged_arrays_are_joined_on_timestamps() -> None:
    b = {
        "prices": [[T0, 1.0], [T0 + 1, 2.0], [T0 + 2, 3.0]],
        "market_caps": [[T0 + 1, 20.0], [T0 + 2, 30.0]],  # first missing: zipping by index would misalign
        "total_volumes": [[T0, 100.0]],
    }
    assert parse(b) == [(T0, 1.0, None, 100.0), (T0 + 1, 2.0, 20.0, None), (T0 + 2, 3.0, 30.0, None)]


def test_missing_series_are_null() -> None:
    assert parse({"prices": [[T0, 1.0]]}) == [(T0, 1.0, None, None)]


def test_empty_arrays_give_an_empty_table() -> None:
    assert parse({"prices": [], "market_caps": [], "total_volumes": []}) == []


def test_points_outside_the_window_are_dropped_bounds_inclusive() -> None:
    b = body(*[(T0 + d, 1.0, 1.0, 1.0) for d in (-1, 0, 500, 1000, 1001)])
    assert [r[0] for r in parse(b, T0, T0 + 1000)] == [T0, T0 + 500, T0 + 1000]


def test_truncated_twin_of_the_same_instant_is_dropped() -> None:
    # The real tail of bitcoin_1d_5min_288points.json: ...54.955 then ...54.000 (the same second).
    precise, truncated = 1621089594955, 1621089594000
    b = body((precise - 300_000, 1.0, 1.0, 1.0), (precise, 2.0, 2.0, 2.0), (truncated, 2.1, 2.1, 2.1))
    assert [r[0] for r in parse(b, precise - 10**6, precise + 10**6)] == [precise - 300_000, precise]
    # Alone, a whole-second point (a daily 00:00:00.000 point, a live point) is kept.
    assert [r[0] for r in parse(body((truncated, 2.1, 2.1, 2.1)), truncated - 1, truncated + 1)] == [truncated]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"prices": [["1700000000123", "1.0"]]}, "timestamp '1700000000123'"),
        ({"prices": [[T0, "1.0"]]}, "'1.0' is not a number"),
        ({"prices": [[T0, True]]}, "is not a number"),
        ({"prices": {"error": "unavailable"}}, "not a list"),
        ({"prices": [[T0, 1.0, 2.0]]}, "not a [timestamp, value] pair"),
        ({"market_caps": [[T0, 1.0]]}, "unexpected response shape"),
        (["not", "a", "dict"], "unexpected response shape"),
        ({"error": "coin not found"}, "unexpected response shape"),
    ],
)
def test_malformed_bodies_raise_naming_pair_and_window(bad: Any, fragment: str) -> None:
    with pytest.raises(MalformedResponse) as info:
        parse(bad)
    assert fragment in str(info.value) and "BTC/USDT test window" in str(info.value) and "nothing loaded" in str(info.value)
    assert info.value.exit_code == 1


point = st.tuples(
    st.integers(min_value=T0, max_value=T0 + 50_000),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64)),
)


def test_a_valueless_precise_point_does_not_displace_a_whole_second_point_with_a_value() -> None:
    # Found by the property test below on one machine: the whole-second point (a real 0.0) was dropped
    # as the twin of a precise point that was itself then dropped for carrying no value.
    b = {"prices": [], "market_caps": [], "total_volumes": [[1_700_000_026_001, None], [1_700_000_026_000, 0.0]]}
    assert parse(b) == [(1_700_000_026_000, None, None, 0.0)]
    # Same rule when all three series are present (the bulk path): a precise point with a value wins.
    both = body((1_700_000_026_000, 1.0, 1.0, 1.0), (1_700_000_026_001, None, None, None))
    assert parse(both) == [(1_700_000_026_000, 1.0, 1.0, 1.0)]
    both = body((1_700_000_026_000, 1.0, 1.0, 1.0), (1_700_000_026_001, 2.0, None, None))
    assert parse(both) == [(1_700_000_026_001, 2.0, None, None)]


# derandomized, no example database, no deadline: the project's Hypothesis profile (tests/conftest.py)
@settings(max_examples=200)
@given(prices=st.lists(point, max_size=40), caps=st.lists(point, max_size=40), volumes=st.lists(point, max_size=40))
@example(prices=[], caps=[], volumes=[(1_700_000_026_001, None), (1_700_000_026_000, 0.0)])
def test_parse_property(prices: list, caps: list, volumes: list) -> None:  # type: ignore[type-arg]
    """Any mess of points: sorted unique instants inside the window, each value the last one given."""
    low, high = T0 + 10_000, T0 + 40_000
    rows = parse({"prices": prices, "market_caps": caps, "total_volumes": volumes}, low, high)
    stamps = [r[0] for r in rows]
    assert stamps == sorted(set(stamps)) and all(low <= t <= high for t in stamps)
    last = [dict(series) for series in (prices, caps, volumes)]  # dict(): the last value wins
    for t, *values in rows:
        assert values == [series.get(t) for series in last]
        assert any(v is not None for v in values)
    precise = {t // 1000 for t in stamps if t % 1000}
    assert not any(t % 1000 == 0 and t // 1000 in precise for t in stamps)  # no same-second twins
    everything = {t for series in last for t, v in series.items() if v is not None and low <= t <= high}
    dropped = everything - set(stamps)
    assert all(t % 1000 == 0 and t // 1000 in precise for t in dropped)  # only twins are dropped


# --- the real responses --------------------------------------------------------------------------

@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_real_response_point_by_point(path: Path) -> None:
    raw = load_fixture(path)
    first, last = min(t for t, _ in raw["prices"]), max(t for t, _ in raw["prices"])
    rows = parse(raw, first, last)
    assert rows == expected_points(raw)
    total = len(raw["prices"])
    if path.name == "bitcoin_1d_5min_288points.json":
        assert len(rows) == total - 1  # the truncated twin 14:39:54.000 of 14:39:54.955
        assert 1621089594000 not in {r[0] for r in rows} and 1621089594955 in {r[0] for r in rows}
    else:
        assert len(rows) == total
    if path.name.startswith("terra-luna"):
        assert sum(1 for r in rows if r[2] == 0.0) == 166  # zero market caps are values, not nulls


def test_fixtures_are_present() -> None:
    assert len(fixture_files()) == 8


# --- the simulator's bad bodies, over real HTTP --------------------------------------------------

@pytest.fixture
def fetch_window(simulator, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings({
        "ALPHADB_ENV_FILE": str(tmp_path / "absent.env"),
        "COINGECKO_BASE_URL": simulator.base_url,
        "COINGECKO_RATE_LIMIT_PER_MIN": "100000",
    })
    client = CoinGeckoClient(settings, limiter=RateLimiter(settings.rate_limit_per_min, sleep=lambda s: None), sleep=lambda s: None)
    end = int(time.time()) - 5 * 86400
    start = end - 2 * 86400

    def fetch() -> list[tuple[int, Any, Any, Any]]:
        raw = client.market_chart_range(BTC, start, end, "fault window")
        return parse(raw, start * 1000, end * 1000)

    return fetch


@pytest.mark.parametrize("kind", ["unsorted", "duplicates", "outside_window"])
def test_simulator_bodies_that_must_parse_to_the_clean_rows(simulator, fetch_window, kind: str) -> None:  # type: ignore[no-untyped-def]
    clean = fetch_window()
    assert len(clean) == 48
    simulator.add_fault({"kind": kind, "count": 1})
    assert fetch_window() == clean


def test_simulator_ragged_and_nulls(simulator, fetch_window) -> None:  # type: ignore[no-untyped-def]
    clean = fetch_window()
    simulator.add_fault({"kind": "ragged", "count": 1})
    ragged = fetch_window()
    assert [r[0] for r in ragged] == [r[0] for r in clean]
    assert ragged[0] == (clean[0][0], clean[0][1], None, clean[0][3])  # first cap missing: NULL, not shifted
    assert ragged[-1][3] is None and ragged[-2][3] is None and ragged[-1][2] == clean[-1][2]
    assert ragged[1:-2] == clean[1:-2]
    simulator.add_fault({"kind": "nulls", "every": 3, "count": 1})
    with_nulls = fetch_window()
    assert [r[0] for r in with_nulls] == [r[0] for r in clean]
    for got, want in zip(with_nulls, clean):
        assert all(g is None or g == w for g, w in zip(got[1:], want[1:]))
    assert sum(v is None for r in with_nulls for v in r[1:]) == 48  # one null per row, rotating series


def test_simulator_empty_and_wrong_types(simulator, fetch_window) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "empty", "count": 1})
    assert fetch_window() == []
    for variant in ("strings", "missing_prices", "not_list"):
        simulator.add_fault({"kind": "wrong_types", "variant": variant, "count": 1})
        with pytest.raises(MalformedResponse, match="BTC/USDT test window: .*nothing loaded"):
            fetch_window()


def test_values_are_finite_floats(simulator, fetch_window) -> None:  # type: ignore[no-untyped-def]
    for _, *values in fetch_window():
        assert all(isinstance(v, float) and math.isfinite(v) for v in values)
