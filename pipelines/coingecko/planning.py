"""Request planning: the fewest requests that cover a time range at the finest granularity.

The last day comes from `market_chart?days=1` (5-minute points); older spans from
`market_chart/range` in windows of at most 90 days (hourly points). A 365-day backfill is
1 + 5 requests per pair, a nightly run 1-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pipelines.coingecko.settings import HISTORY_LIMIT_MARGIN, HOURLY_HISTORY_START, LIVE_WINDOW, MAX_RANGE_WINDOW


@dataclass(frozen=True)
class RequestWindow:
    """One request: `live` = market_chart?days=1 ending now, else a /range request."""

    start: datetime
    end: datetime
    live: bool = False

    @property
    def label(self) -> str:
        fmt = "%Y-%m-%d %H:%M"
        return f"{self.start:{fmt}}..{self.end:{fmt}} UTC"

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    @property
    def parse_end(self) -> datetime | None:
        """Where the points of its answer stop counting: at its end, except for the live window,
        which ends at the server's "now" (the moment it answered), whatever this run's `now` was."""
        return None if self.live else self.end

    def contains_ms(self, ts_ms: int) -> bool:
        return self.start.timestamp() * 1000 <= ts_ms <= self.end.timestamp() * 1000


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: every time in AlphaDB is explicit UTC")
    return value.astimezone(timezone.utc)


def earliest_allowed(now: datetime, history_days: int | None) -> datetime:
    """The oldest instant the plan can request (hourly history starts 2018-01-30 anyway)."""
    if history_days is None:
        return HOURLY_HISTORY_START
    return max(HOURLY_HISTORY_START, now - timedelta(days=history_days) + HISTORY_LIMIT_MARGIN)


def clamp_to_history(window: RequestWindow, now: datetime, history_days: int) -> RequestWindow | None:
    """The part of `window` a plan limited to `history_days` serves (None: nothing), after the
    server said so (error 10012): one more day of margin than planning keeps, because the server
    checks the limit against its own clock, which disagrees with ours a little."""
    floor = earliest_allowed(now, history_days - 1)
    if window.end <= floor:
        return None
    return RequestWindow(max(window.start, floor), window.end, window.live)


def lookback_start(cursor_ms: int | None, now: datetime, lookback_days: int) -> datetime:
    """Where a nightly load starts: the cursor (or now) minus the lookback, at least a day back."""
    anchor = datetime.fromtimestamp(cursor_ms / 1000, now.tzinfo) if cursor_ms is not None else now
    return min(anchor, now) - timedelta(days=max(lookback_days, 1 if cursor_ms is None else 0))


def plan_windows(start: datetime, end: datetime, now: datetime, history_days: int | None = None) -> list[RequestWindow]:
    """Windows covering [start, end] exactly (clamped to the plan's history and to now), oldest first."""
    start, end, now = utc(start), utc(end), utc(now)
    start = max(start, earliest_allowed(now, history_days))
    end = min(end, now)
    if start >= end:
        return []
    windows: list[RequestWindow] = []
    live_start = now - LIVE_WINDOW
    range_end = end
    if end >= now - timedelta(minutes=5) and start < now:
        # The range reaches now: the last day comes at 5-minute granularity in one request.
        windows.append(RequestWindow(max(start, live_start), now, live=True))
        range_end = live_start
    # Full windows from the start forward, the partial one last: a resumed backfill (which starts
    # where the last done window ended) re-plans the same boundaries instead of adding a sliver.
    cursor = start
    older: list[RequestWindow] = []
    while cursor < range_end:
        window_end = min(range_end, cursor + MAX_RANGE_WINDOW)
        older.append(RequestWindow(cursor, window_end))
        cursor = window_end
    return older + windows
