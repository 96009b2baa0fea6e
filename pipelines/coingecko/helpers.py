"""Reading CoinGecko: one request per planned window (I/O), parsed by `parsing` (pure), and the two
policies around a request: the plan's history limit and an empty answer.

What a read found comes back as data (`WindowRead`, `PairRead`): points, requests, warnings and
the error that stopped a pair. Nothing here writes anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.coingecko.client import CoinGeckoClient, HistoryLimitExceeded
from pipelines.coingecko.parsing import SCHEMA, parse_market_chart
from pipelines.coingecko.planning import RequestWindow, clamp_to_history
from pipelines.config import Pair
from pipelines.errors import AlphaDBError

NO_POINTS = SCHEMA.empty_table()


@dataclass(frozen=True)
class WindowRead:
    """One planned window as read: `window` is what was asked in the end (clamped to the plan's
    history when the server said so), `table` its clean points."""

    window: RequestWindow
    table: pa.Table = field(default_factory=SCHEMA.empty_table)
    requests: int = 0
    warnings: tuple[str, ...] = ()
    error: AlphaDBError | None = None
    history_limited: bool = False  # the server answered 10012: later windows are clamped first


@dataclass(frozen=True)
class PairRead:
    """A pair's windows of one load step, in order; reading stops at the first failing window."""

    pair: Pair
    windows: tuple[WindowRead, ...]

    @property
    def done(self) -> tuple[WindowRead, ...]:
        return tuple(w for w in self.windows if w.error is None)

    @property
    def error(self) -> AlphaDBError | None:
        return next((w.error for w in self.windows if w.error is not None), None)

    @property
    def table(self) -> pa.Table:
        return pa.concat_tables([w.table for w in self.done]) if self.done else NO_POINTS

    @property
    def points(self) -> int:
        return sum(w.table.num_rows for w in self.done)

    @property
    def requests(self) -> int:
        return sum(w.requests for w in self.windows)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(text for w in self.windows for text in w.warnings)

    @property
    def newest_ms(self) -> int | None:
        """The newest point read: the nightly load's cursor moves there."""
        stamps = [pc.max(w.table.column("ts")).cast(pa.int64()).as_py() for w in self.done if w.table.num_rows]
        return max(stamps) if stamps else None

    @property
    def read_until_ms(self) -> int | None:
        """The end of the last window read: a range load resumes there."""
        return self.done[-1].window.end_ms if self.done else None


def fetch_window(client: CoinGeckoClient, pair: Pair, window: RequestWindow) -> Any:
    """One request: the live day at 5-minute points, or a past range at hourly points."""
    if window.live:
        return client.market_chart(pair, 1)
    return client.market_chart_range(pair, int(window.start.timestamp()), int(window.end.timestamp()), window.label)


def _fetch_within_history(
    client: CoinGeckoClient, pair: Pair, window: RequestWindow, now: datetime, history_days: int
) -> tuple[RequestWindow, Any, str | None]:
    """(the window asked in the end, its answer or None when nothing of it is served, the server's
    warning): a 10012 answer clamps the window to the plan's history and asks again."""
    try:
        return window, fetch_window(client, pair, window), None
    except HistoryLimitExceeded as exc:
        clamped = clamp_to_history(window, now, history_days)
        if clamped is None:
            return window, None, str(exc)
        return clamped, fetch_window(client, pair, clamped), str(exc)


def _parse(body: Any, pair: Pair, window: RequestWindow, loaded_at: datetime) -> pa.Table:
    return parse_market_chart(body, pair, window.start, window.parse_end, loaded_at, f"{pair.name} {window.label}")


def read_window(
    client: CoinGeckoClient, pair: Pair, window: RequestWindow, now: datetime, history_days: int, loaded_at: datetime
) -> WindowRead:
    """Fetch and parse one window. An empty answer for a past window is usually a glitch at the
    source: it is asked once more before it is accepted (a coin listed later says so twice)."""
    before = client.requests_made
    try:
        window, body, limit_warning = _fetch_within_history(client, pair, window, now, history_days)
        warnings = (limit_warning,) if limit_warning else ()
        table = NO_POINTS if body is None else _parse(body, pair, window, loaded_at)
        if body is not None and not table.num_rows and not window.live:
            table = _parse(fetch_window(client, pair, window), pair, window, loaded_at)
            if not table.num_rows:
                warnings += (f"CoinGecko {pair.name} {window.label}: no points, twice (not listed yet, or a gap at the source)",)
    except AlphaDBError as exc:
        return WindowRead(window, requests=client.requests_made - before, error=exc)
    return WindowRead(window, table, client.requests_made - before, warnings, history_limited=limit_warning is not None)


def read_pair(
    client: CoinGeckoClient,
    pair: Pair,
    windows: Sequence[RequestWindow],
    now: datetime,
    history_days: int,
    loaded_at: datetime,
) -> PairRead:
    """Read a pair's windows in order and stop at the first failure; once the server enforced the
    plan's history limit, the later windows are clamped before they are asked."""
    reads: list[WindowRead] = []
    limited = False
    for window in windows:
        if limited:
            clamped = clamp_to_history(window, now, history_days)
            if clamped is None:
                reads.append(WindowRead(window))  # nothing of it is served: done, with no points
                continue
            window = clamped
        read = read_window(client, pair, window, now, history_days, loaded_at)
        reads.append(read)
        limited = limited or read.history_limited
        if read.error is not None:
            break
    return PairRead(pair, tuple(reads))

