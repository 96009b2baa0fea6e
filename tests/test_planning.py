"""Request planning: the fewest requests that cover a range at the finest granularity.

The last day comes from one `market_chart?days=1` (5-minute points); older spans from `/range`
windows of at most 90 days (hourly points); the plan's history limit clamps the start.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.coingecko.planning import RequestWindow, earliest_allowed, lookback_start, plan_windows
from pipelines.coingecko.settings import HISTORY_LIMIT_MARGIN, HOURLY_HISTORY_START, MAX_RANGE_WINDOW

NOW = datetime(2026, 11, 28, 21, 40, 7, 123000, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def assert_covers(windows: list[RequestWindow], start: datetime, end: datetime) -> None:
    """Contiguous, oldest first, exactly [start, end], each /range at most 90 days, live only last."""
    assert windows, "nothing planned"
    assert windows[0].start == start and windows[-1].end == end
    for a, b in zip(windows, windows[1:]):
        assert a.end == b.start
    for w in windows:
        assert w.start < w.end
        assert w.end - w.start <= MAX_RANGE_WINDOW
        if w.live:
            assert w is windows[-1] and w.end - w.start <= DAY
    assert sum(w.live for w in windows) <= 1


def test_365_day_backfill_is_six_requests_public_plan() -> None:
    windows = plan_windows(NOW - 365 * DAY, NOW, NOW, history_days=365)
    assert len(windows) == 6
    # The public/demo plan sees the past 365 days: the start is clamped a margin inside it.
    assert_covers(windows, NOW - 365 * DAY + HISTORY_LIMIT_MARGIN, NOW)
    assert [w.live for w in windows] == [False] * 5 + [True]
    assert windows[-1].start == NOW - DAY
    assert sum(w.end - w.start < MAX_RANGE_WINDOW for w in windows[:5]) == 1  # one partial /range window


def test_resumed_plan_keeps_the_remaining_window_boundaries() -> None:
    """Resuming from the end of a done window re-plans the same windows: no extra sliver request."""
    original = plan_windows(NOW - 365 * DAY, NOW, NOW, history_days=None)
    later = NOW + timedelta(seconds=40)  # the resumed run starts a little later
    resumed = plan_windows(original[1].end, later, later, history_days=None)
    assert len(resumed) == len(original) - 2
    assert resumed[:2] == original[2:4]


def test_365_day_backfill_pro_plan_is_not_clamped() -> None:
    windows = plan_windows(NOW - 365 * DAY, NOW, NOW, history_days=None)
    assert len(windows) == 6
    assert_covers(windows, NOW - 365 * DAY, NOW)


@pytest.mark.parametrize(("days", "requests"), [(1, 1), (2, 2), (30, 2), (91, 2), (92, 3), (181, 3), (182, 4), (365, 6)])
def test_request_count_is_minimal(days: int, requests: int) -> None:
    windows = plan_windows(NOW - days * DAY, NOW, NOW, history_days=None)
    assert len(windows) == requests
    assert_covers(windows, NOW - days * DAY, NOW)


def test_nightly_plan_is_one_or_two_requests() -> None:
    cursor_ms = int((NOW - timedelta(minutes=3)).timestamp() * 1000)
    # Default lookback of 2 days behind the cursor: one /range for the older day + the live day.
    start = lookback_start(cursor_ms, NOW, 2)
    assert start == datetime.fromtimestamp(cursor_ms / 1000, timezone.utc) - 2 * DAY
    windows = plan_windows(start, NOW, NOW, 365)
    assert len(windows) == 2 and windows[-1].live
    assert_covers(windows, start, NOW)
    # ALPHADB_BACKFILL_DAYS=0: just the live day.
    windows = plan_windows(lookback_start(cursor_ms, NOW, 0), NOW, NOW, 365)
    assert len(windows) == 1 and windows[0].live
    # No cursor yet: at least the last day, else the lookback.
    assert lookback_start(None, NOW, 0) == NOW - DAY
    assert lookback_start(None, NOW, 2) == NOW - 2 * DAY
    # A cursor in the future (clock skew) counts as now.
    future_ms = int((NOW + DAY).timestamp() * 1000)
    assert lookback_start(future_ms, NOW, 2) == NOW - 2 * DAY


def test_past_range_has_no_live_window() -> None:
    start, end = NOW - 40 * DAY, NOW - 10 * DAY
    windows = plan_windows(start, end, NOW, 365)
    assert len(windows) == 1 and not windows[0].live
    assert_covers(windows, start, end)
    start = NOW - 300 * DAY
    windows = plan_windows(start, end, NOW, 365)
    assert len(windows) == 4 and not any(w.live for w in windows)
    assert_covers(windows, start, end)


def test_end_in_the_future_is_clamped_to_now_and_empty_ranges_plan_nothing() -> None:
    windows = plan_windows(NOW - 3 * DAY, NOW + 5 * DAY, NOW, 365)
    assert_covers(windows, NOW - 3 * DAY, NOW)
    assert plan_windows(NOW, NOW, NOW) == []
    assert plan_windows(NOW - DAY, NOW - 2 * DAY, NOW) == []  # start after end
    assert plan_windows(NOW + DAY, NOW + 2 * DAY, NOW) == []  # wholly in the future
    assert plan_windows(NOW - 800 * DAY, NOW - 500 * DAY, NOW, 365) == []  # wholly beyond the plan's history


def test_history_clamp() -> None:
    assert earliest_allowed(NOW, 365) == NOW - 365 * DAY + HISTORY_LIMIT_MARGIN
    assert earliest_allowed(NOW, None) == HOURLY_HISTORY_START
    windows = plan_windows(datetime(2010, 1, 1, tzinfo=timezone.utc), datetime(2018, 3, 1, tzinfo=timezone.utc), NOW, None)
    assert_covers(windows, HOURLY_HISTORY_START, datetime(2018, 3, 1, tzinfo=timezone.utc))  # no hourly data earlier
    windows = plan_windows(NOW - 400 * DAY, NOW - 300 * DAY, NOW, 365)
    assert_covers(windows, NOW - 365 * DAY + HISTORY_LIMIT_MARGIN, NOW - 300 * DAY)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        plan_windows(datetime(2026, 1, 1), NOW, NOW)


def test_other_timezones_are_converted_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    windows = plan_windows((NOW - 3 * DAY).astimezone(plus2), NOW.astimezone(plus2), NOW, 365)
    assert all(w.start.utcoffset() == timedelta(0) for w in windows)
    assert_covers(windows, NOW - 3 * DAY, NOW)


def test_window_label_and_contains() -> None:
    w = RequestWindow(datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, 12, 30, tzinfo=timezone.utc))
    assert w.label == "2026-01-01 00:00..2026-01-02 12:30 UTC"
    start_ms = int(w.start.timestamp() * 1000)
    assert w.contains_ms(start_ms) and w.contains_ms(start_ms + DAY // timedelta(milliseconds=1))
    assert not w.contains_ms(start_ms - 1)


@settings(max_examples=300, deadline=None)
@given(
    start_h=st.integers(min_value=-5000 * 24, max_value=24),
    span_h=st.integers(min_value=-24, max_value=3000 * 24),
    history=st.sampled_from([None, 365]),
    seconds=st.integers(min_value=0, max_value=3599),
    span_s=st.integers(min_value=0, max_value=3599),
)
def test_plan_property(start_h: int, span_h: int, history: int | None, seconds: int, span_s: int) -> None:
    """For any range: the windows cover exactly its part inside [plan history, now] with the fewest requests."""
    start = NOW + timedelta(hours=start_h, seconds=seconds)
    end = start + timedelta(hours=span_h, seconds=span_s)
    windows = plan_windows(start, end, NOW, history)
    low, high = max(start, earliest_allowed(NOW, history)), min(end, NOW)
    if low >= high:
        assert windows == []
        return
    reaches_now = high >= NOW - timedelta(minutes=5)
    # A range ending within 5 minutes of now is served by the live day up to now.
    assert_covers(windows, low, NOW if reaches_now else high)
    assert windows[-1].live == reaches_now
    range_end = NOW - DAY if reaches_now else high
    range_span = max(timedelta(0), range_end - low)
    minimal = -(-range_span // MAX_RANGE_WINDOW) + (1 if reaches_now else 0)
    assert len(windows) == minimal
