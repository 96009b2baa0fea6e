"""Extract + load: CoinGecko → PostgreSQL `staging.market_chart_points` through dlt.

- `load_incremental`: each pair from its cursor (dlt state) minus ALPHADB_BACKFILL_DAYS to now.
- `load_range`: an explicit UTC range (backfill, heal); leaves the nightly cursors alone and can
  be resumed: each window step is its own dlt load, committed with its progress in dlt state.
Loads are serialized by a lock file, so a manual backfill never collides with the nightly job.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
# dlt gzips its load files by default: they are local, short-lived and COPY'd right away, so
# compressing them only costs CPU (about a third of normalize's time on a 1M-point backfill).
os.environ.setdefault("NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION", "true")

import dlt  # noqa: E402
from dlt.common.pipeline import LoadInfo  # noqa: E402
import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

from pipelines.coingecko import PairProgress, coingecko, lookback_start  # noqa: E402
from pipelines.coingecko.client import CoinGeckoClient  # noqa: E402
from pipelines.coingecko.planning import RequestWindow, earliest_allowed, plan_windows  # noqa: E402
from pipelines.coingecko.settings import RESOURCE_NAME  # noqa: E402
from pipelines.config import Pair, Settings  # noqa: E402
from pipelines.database import UNREACHABLE, Connection, connect  # noqa: E402
from pipelines.errors import AlphaDBError, DatabaseUnavailable, LockHeld  # noqa: E402
from pipelines.stored_points import StoredPoints  # noqa: E402

log = logging.getLogger("alphadb")

PIPELINE_NAME = "alphadb_coingecko"
DATASET = "staging"
LOCK_WAIT_S = float(os.environ.get("ALPHADB_LOAD_LOCK_WAIT_S", "3600"))


@dataclass
class PairResult:
    pair: Pair
    points: int = 0
    requests: int = 0
    error: AlphaDBError | None = None
    warnings: list[str] = field(default_factory=list)
    written: int = 0  # new or changed points (the rest were stored already, unchanged)


@dataclass
class LoadReport:
    results: list[PairResult]
    elapsed_s: float = 0.0

    @property
    def points(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def written(self) -> int:
        return sum(r.written for r in self.results)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.results)

    @property
    def failed(self) -> list[PairResult]:
        return [r for r in self.results if r.error is not None]

    @property
    def exit_code(self) -> int:
        return max((r.error.exit_code for r in self.failed if r.error), default=0)


@contextmanager
def load_lock(home: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """One load at a time per ALPHADB_HOME: dlt's staging tables and state are shared."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "load.lock", "w") as handle:
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(f"another load still holds {home / 'load.lock'} after {wait_s:.0f}s; nothing done") from None
                if not announced:
                    log.warning("another load is running; waiting for it to finish", extra={"marker": "⚠️"})
                    announced = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_pipeline(settings: Settings, connection: Connection) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(settings.home / "dlt"),
        destination=dlt.destinations.postgres(credentials=connection.dlt_credentials()),
        dataset_name=DATASET,
    )


def finish_pending(pipeline: dlt.Pipeline) -> None:
    """Load what an interrupted run left behind; a package that cannot be finished is dropped
    (the cursor did not move for it, so this run fetches the same points again)."""
    if not pipeline.has_pending_data:
        return
    log.warning("an earlier run was interrupted: finishing its pending load packages", extra={"marker": "⚠️"})
    try:
        pipeline.normalize()
        pipeline.load()
    except Exception as exc:  # noqa: BLE001 - any failure here means the package is unusable
        log.warning(f"dropping unfinished load packages ({type(exc).__name__})", extra={"marker": "⚠️"})
        pipeline.drop_pending_packages()


def ensure_indexes(connection: Connection) -> None:
    """dlt creates no index: the merge key must be unique and indexed; dbt scans by loaded_at.

    Also before each load step: the unchanged-point lookups and dlt's merge find rows by the key.
    """
    table = sql.Identifier(DATASET, RESOURCE_NAME)
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass(%s)", (f"{DATASET}.{RESOURCE_NAME}",))
        if cur.fetchone()[0] is None:
            return  # the first load creates the table; its indexes follow right after
        cur.execute(
            sql.SQL("create unique index if not exists market_chart_points_key on {} (coin_id, vs_currency, ts)").format(table)
        )
        cur.execute(
            sql.SQL("create index if not exists market_chart_points_loaded_at on {} (loaded_at)").format(table)
        )


def drop_same_instant_twins(connection: Connection, progress: Sequence[PairProgress]) -> int:
    """A live point stored as `t.000` and later served precisely as `t.xyz` is one instant: keep the precise row.

    The parser's rule: only a precise row that carries a value makes a whole-second row its twin."""
    removed = 0
    table = sql.Identifier(DATASET, RESOURCE_NAME)
    statement = sql.SQL(
        """delete from {table} as truncated
        using {table} as precise
        where truncated.coin_id = %(coin)s and truncated.vs_currency = %(vs)s
          and truncated.ts between %(low)s and %(high)s
          and date_trunc('second', truncated.ts) = truncated.ts
          and precise.coin_id = truncated.coin_id and precise.vs_currency = truncated.vs_currency
          and precise.ts > truncated.ts and precise.ts < truncated.ts + interval '1 second'
          and num_nonnulls(precise.price, precise.market_cap, precise.total_volume) > 0"""
    ).format(table=table)
    with connect(connection) as conn, conn.cursor() as cur:
        for item in progress:
            if item.min_ts_ms is None or item.max_ts_ms is None:
                continue
            cur.execute(
                statement,
                {
                    "coin": item.pair.coin_id,
                    "vs": item.pair.vs_currency,
                    "low": datetime.fromtimestamp(item.min_ts_ms / 1000 - 1, timezone.utc),
                    "high": datetime.fromtimestamp(item.max_ts_ms / 1000 + 1, timezone.utc),
                },
            )
            removed += cur.rowcount
    return removed


def _run(
    pipeline: dlt.Pipeline,
    connection: Connection,
    client: CoinGeckoClient,
    plan: dict[Pair, list[RequestWindow]],
    progress: dict[Pair, PairProgress],
    now: datetime,
    on_window_done: Any = None,
) -> LoadInfo | None:
    if not any(plan.values()):
        return None
    ensure_indexes(connection)
    stored = StoredPoints(connection, DATASET, RESOURCE_NAME)
    source = coingecko(client, plan, progress, now, now, on_window_done, stored.drop_unchanged)
    try:
        return pipeline.run(source, loader_file_format="csv")
    except Exception as exc:
        lost = _connection_lost(exc)
        if lost is None:
            raise
        step = getattr(exc, "step", None) or "load"
        reason = next((line.strip() for line in str(lost).splitlines() if line.strip()), type(lost).__name__)
        raise DatabaseUnavailable(
            f"{UNREACHABLE} (lost during the dlt {step} step: {reason}). The points fetched so far are kept "
            "in a pending load package: the next run loads it first, then fetches from its cursor as usual"
        ) from None
    finally:
        stored.close()


def _connection_lost(exc: BaseException) -> BaseException | None:
    """The psycopg2 error behind a dlt failure when it is the server going away (connection refused or
    broken, an administrator or crash shutdown), else None. Walks causes and dlt's wrapped exception."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, psycopg2.OperationalError):
            code = getattr(item, "pgcode", None)
            if code is None or code.startswith(("08", "57P")):
                return item
        todo += [item.__cause__, item.__context__, getattr(item, "exception", None)]
    return None


def _cursor_state(pipeline: dlt.Pipeline) -> dict[str, int]:
    state: dict[str, Any] = pipeline.state.get("sources", {}).get("coingecko", {})
    return dict(state.get("cursors", {}))


def load_incremental(settings: Settings, connection: Connection, pairs: Sequence[Pair] | None = None) -> LoadReport:
    """The nightly load: each pair from its cursor minus the lookback, up to now."""
    started = time.monotonic()
    pairs = list(pairs or settings.pairs)
    client = CoinGeckoClient(settings)
    now = datetime.now(timezone.utc)
    with load_lock(settings.home):
        pipeline = make_pipeline(settings, connection)
        finish_pending(pipeline)
        pipeline.sync_destination()  # restores the cursors from PostgreSQL if the working dir was lost
        cursors = _cursor_state(pipeline)
        plan = {
            pair: plan_windows(lookback_start(cursors.get(pair.name), now, settings.backfill_days), now, now, settings.history_days)
            for pair in pairs
        }
        progress = {pair: PairProgress(pair) for pair in pairs}

        def advance_cursor(pair: Pair, window: RequestWindow, item: PairProgress) -> None:
            if item.max_ts_ms is not None:
                cursors_state = dlt.current.source_state().setdefault("cursors", {})
                cursors_state[pair.name] = max(cursors_state.get(pair.name, 0), item.max_ts_ms)

        _run(pipeline, connection, client, plan, progress, now, advance_cursor)
        _after_load(connection, progress.values())
    return _report(progress.values(), started)


def load_range(
    settings: Settings,
    connection: Connection,
    start: datetime,
    end: datetime,
    pairs: Sequence[Pair] | None = None,
    job: str | None = None,
) -> LoadReport:
    """Backfill or heal an explicit range; the nightly cursors stay where they are.

    Resumable: each window step is its own dlt load, committed together with how far each pair
    got. Re-running the same job (`job`, e.g. "days=365", else the range itself) after an
    interruption continues from there instead of starting over.
    """
    started = time.monotonic()
    pairs = list(pairs or settings.pairs)
    client = CoinGeckoClient(settings)
    now = datetime.now(timezone.utc)
    job = (job or f"{start.isoformat()}..{end.isoformat()}") + "|" + ",".join(p.name for p in pairs)
    with load_lock(settings.home):
        pipeline = make_pipeline(settings, connection)
        finish_pending(pipeline)
        pipeline.sync_destination()
        saved = pipeline.state.get("sources", {}).get("coingecko", {}).get("backfill", {})
        resume = saved.get("job") == job and not saved.get("complete")
        done_until: dict[str, int] = dict(saved.get("done_until", {})) if resume else {}
        if resume:
            start = datetime.fromisoformat(saved["start"])
            log.info(f"resuming an interrupted backfill ({len(done_until)} pair(s) partly loaded)", extra={"marker": "📊"})

        def pair_start(pair: Pair) -> datetime:
            if pair.name in done_until:
                return max(start, datetime.fromtimestamp(done_until[pair.name] / 1000, timezone.utc))
            return start

        floor = earliest_allowed(now, settings.history_days)
        if start < floor - timedelta(days=1) and end > floor:
            # Planning clamps the range to what the plan can see: say so instead of loading less silently
            # (not for the hour of margin a `--days 365` loses).
            log.warning(
                f"the {settings.plan} plan serves only the past {settings.history_days} days: loading from "
                f"{floor:%Y-%m-%d %H:%M} UTC, not {start:%Y-%m-%d %H:%M} UTC (COINGECKO_PLAN=pro has full history)",
                extra={"marker": "⚠️"},
            )
        plans = {pair: plan_windows(pair_start(pair), end, now, settings.history_days) for pair in pairs}
        remaining = {pair.name: len(windows) for pair, windows in plans.items()}
        progress = {pair: PairProgress(pair) for pair in pairs}

        def record_window(pair: Pair, window: RequestWindow, item: PairProgress) -> None:
            state = dlt.current.source_state()
            if state.get("backfill", {}).get("job") != job:
                state["backfill"] = {"job": job, "start": start.isoformat(), "done_until": {}, "complete": False}
            backfill = state["backfill"]
            backfill["done_until"][pair.name] = int(window.end.timestamp() * 1000)
            remaining[pair.name] -= 1
            backfill["complete"] = not any(remaining.values())

        # One dlt load per window step: an interruption loses at most the step in flight.
        steps = max((len(w) for w in plans.values()), default=0)
        for step in range(steps):
            log.info(f"backfill step {step + 1}/{steps}", extra={"marker": "📊"})
            step_plan = {
                pair: windows[step : step + 1]
                for pair, windows in plans.items()
                if progress[pair].error is None and step < len(windows)
            }
            _run(pipeline, connection, client, step_plan, progress, now, record_window)
        _after_load(connection, progress.values())
    return _report(progress.values(), started)


def _after_load(connection: Connection, progress: Any) -> None:
    items = list(progress)
    if any(p.points for p in items):
        ensure_indexes(connection)
        drop_same_instant_twins(connection, items)


def _report(progress: Any, started: float) -> LoadReport:
    results = [PairResult(p.pair, p.points, p.requests, p.error, p.warnings, p.written) for p in progress]
    return LoadReport(results, time.monotonic() - started)
