"""dlt source for CoinGecko market_chart points: one resource, merged on (coin_id, vs_currency, ts).

Each pair is fetched window by window; a pair that fails is recorded in `PairProgress` and the
other pairs go on (per-pair isolation). Windows are yielded as Arrow tables so dlt loads them
through COPY rather than row by row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TColumnSchema

from pipelines.coingecko.client import CoinGeckoClient, HistoryLimitExceeded
from pipelines.coingecko.helpers import parse_market_chart
from pipelines.coingecko.planning import RequestWindow, earliest_allowed
from pipelines.coingecko.settings import PRIMARY_KEY, RESOURCE_NAME
from pipelines.config import Pair
from pipelines.errors import AlphaDBError

log = logging.getLogger("alphadb")

COLUMNS: dict[str, TColumnSchema] = {
    "coin_id": {"data_type": "text", "nullable": False},
    "vs_currency": {"data_type": "text", "nullable": False},
    "ts": {"data_type": "timestamp", "precision": 3, "nullable": False, "timezone": True},
    "price": {"data_type": "double", "nullable": True},
    "market_cap": {"data_type": "double", "nullable": True},
    "total_volume": {"data_type": "double", "nullable": True},
    "loaded_at": {"data_type": "timestamp", "precision": 6, "nullable": False, "timezone": True},
}


@dataclass
class PairProgress:
    """What happened to one pair in one run: filled in while dlt extracts."""

    pair: Pair
    points: int = 0  # fetched and valid
    written: int = 0  # of those, new or changed: what goes on to dlt
    requests: int = 0
    windows_done: int = 0
    max_ts_ms: int | None = None
    min_ts_ms: int | None = None
    error: AlphaDBError | None = None
    warnings: list[str] = field(default_factory=list)


# Called after each window is yielded: lets the caller record progress in dlt state.
WindowDone = Callable[[Pair, RequestWindow, PairProgress], None]
# Drops the rows already stored with the same values (see pipelines/stored_points.py).
KeepChanged = Callable[[Pair, pa.Table], pa.Table]


def _fetch(client: CoinGeckoClient, pair: Pair, window: RequestWindow) -> Any:
    if window.live:
        return client.market_chart(pair, 1)
    return client.market_chart_range(pair, int(window.start.timestamp()), int(window.end.timestamp()), window.label)


def _clamp_to_history(window: RequestWindow, now: datetime, history_days: int) -> RequestWindow | None:
    # One more day of margin than planned: the server's clock and ours disagree a little.
    floor = earliest_allowed(now, history_days - 1)
    if window.end <= floor:
        return None
    return RequestWindow(max(window.start, floor), window.end, window.live)


def pair_tables(
    client: CoinGeckoClient,
    pair: Pair,
    windows: Sequence[RequestWindow],
    progress: PairProgress,
    now: datetime,
    loaded_at: datetime,
    on_window_done: WindowDone | None = None,
    keep_changed: KeepChanged | None = None,
) -> Iterator[pa.Table]:
    """Fetch and parse a pair's windows in order; stop at the first failing window."""
    history_limited = False
    for number, window in enumerate(windows, start=1):
        if history_limited:
            clamped = _clamp_to_history(window, now, 365)
            if clamped is None:
                continue
            window = clamped
        before = client.requests_made
        try:
            try:
                body = _fetch(client, pair, window)
            except HistoryLimitExceeded as exc:
                # Say so once, then clamp this and every later window to the plan's limit.
                history_limited = True
                progress.warnings.append(str(exc))
                log.warning(str(exc), extra={"marker": "⚠️"})
                clamped = _clamp_to_history(window, now, 365)
                if clamped is None:
                    continue
                window = clamped
                body = _fetch(client, pair, window)
            # A live window ends at the server's "now" (the moment it answered), not at the `now` this
            # run planned with: keep the trailing live point and any point served since.
            until = max(window.end, datetime.now(timezone.utc)) if window.live else window.end
            table = parse_market_chart(body, pair, window.start, until, loaded_at, f"{pair.name} {window.label}")
            if not table.num_rows and not window.live:
                # An empty answer for a past window is usually a glitch at the source: ask once more
                # before accepting it (a coin listed later has no points there, and says so twice).
                body = _fetch(client, pair, window)
                table = parse_market_chart(body, pair, window.start, window.end, loaded_at, f"{pair.name} {window.label}")
                if not table.num_rows:
                    message = f"CoinGecko {pair.name} {window.label}: no points, twice (not listed yet, or a gap at the source)"
                    progress.warnings.append(message)
                    log.warning(message, extra={"marker": "⚠️"})
        except AlphaDBError as exc:
            progress.requests += client.requests_made - before
            progress.error = exc
            return
        progress.requests += client.requests_made - before
        progress.points += table.num_rows
        progress.windows_done += 1
        if table.num_rows:
            ts = table.column("ts").cast(pa.int64())
            low, high = pa.compute.min(ts).as_py(), pa.compute.max(ts).as_py()
            progress.max_ts_ms = high if progress.max_ts_ms is None else max(progress.max_ts_ms, high)
            progress.min_ts_ms = low if progress.min_ts_ms is None else min(progress.min_ts_ms, low)
        changed = keep_changed(pair, table) if keep_changed else table
        progress.written += changed.num_rows
        log.info(
            f"{pair.name} {f'window {number}/{len(windows)} ' if len(windows) > 1 else ''}{window.label}: "
            f"{table.num_rows} points, {changed.num_rows} new or changed",
            extra={"marker": "📊"},
        )
        if changed.num_rows:
            yield changed
        if on_window_done:
            on_window_done(pair, window, progress)


@dlt.source(name="coingecko", max_table_nesting=0)
def coingecko(
    client: CoinGeckoClient,
    plan: dict[Pair, list[RequestWindow]],
    progress: dict[Pair, PairProgress],
    now: datetime,
    loaded_at: datetime,
    on_window_done: WindowDone | None = None,
    keep_changed: KeepChanged | None = None,
) -> Any:
    """Raw market_chart points for the planned windows of every pair."""

    @dlt.resource(
        name=RESOURCE_NAME,
        write_disposition="merge",
        primary_key=PRIMARY_KEY,
        columns=COLUMNS,
    )
    def market_chart_points() -> Iterator[pa.Table]:
        for pair, windows in plan.items():
            yield from pair_tables(client, pair, windows, progress[pair], now, loaded_at, on_window_done, keep_changed)

    return market_chart_points


def lookback_start(cursor_ms: int | None, now: datetime, lookback_days: int) -> datetime:
    """Where a nightly run starts: the cursor (or now) minus the lookback, at least a day back."""
    anchor = datetime.fromtimestamp(cursor_ms / 1000, now.tzinfo) if cursor_ms is not None else now
    return min(anchor, now) - timedelta(days=max(lookback_days, 1 if cursor_ms is None else 0))
