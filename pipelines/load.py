"""Extract + load: CoinGecko → PostgreSQL `staging.market_chart_points` through dlt.

Every load runs one way: the settings and the saved progress give a plan (the windows of each pair,
`coingecko.planning`), cut into load steps of at most PAIRS_PER_STEP pairs; each step's windows are
read (`coingecko.helpers`: fetch, then parse), the points that are new or changed are kept
(`stored_points`) and handed to the dlt resource, which records its progress in its own state
(`coingecko`); the reads come back as data and make the load report.

The reads are what takes time (the API's rate limit), so they never wait for the database: a
reader thread reads the next step while this one is compared and loaded (`read_ahead`). The
thread is the only user of the load's API client, so the rate limit holds as before.

- `load_incremental`, the nightly load: each pair from its cursor minus the lookback
  (ALPHADB_BACKFILL_DAYS) to now; each step of pairs is its own dlt load, committing their cursors.
- `load_range`, a backfill (or a heal's re-fetch): an explicit UTC range. It leaves the nightly
  cursors alone and resumes when interrupted: each step (one window of a group of pairs) is its
  own dlt load, committed together with how far each pair got.

Loads take turns on ALPHADB_HOME/load.lock, so a manual backfill never collides with the nightly job.
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, ContextManager, Generator, Iterator, Mapping, Sequence

import dlt
import psycopg2
from dlt.common.runtime import telemetry
from psycopg2 import sql

from pipelines import runlog, source
from pipelines.coingecko import PairBatch, RangeJob, coingecko, saved_progress
from pipelines.coingecko.client import CoinGeckoClient
from pipelines.coingecko.helpers import PairRead, read_pair
from pipelines.coingecko.planning import RequestWindow, earliest_allowed, lookback_start, plan_windows
from pipelines.coingecko.settings import RESOURCE_NAME
from pipelines.config import Pair, Settings
from pipelines.database import UNREACHABLE, Connection, connect
from pipelines.errors import AlphaDBError, DatabaseUnavailable
from pipelines.locks import exclusive_lock
from pipelines.read_ahead import read_ahead
from pipelines.stored_points import Reconciled, StoredPoints

PIPELINE_NAME = "alphadb_coingecko"
DATASET = "staging"
SCRATCH_DATASET = "dlt_scratch"  # dlt's tables for merging a load into DATASET (by default staging_staging)
LOCK_NAME = "load.lock"
# Pairs per load step. Each step is its own dlt load, and only the last one runs after the last
# request; the others are hidden under the reading of the next step. 100 pairs keep that last load
# short (a nightly step is about 30k points: a second or so) and the steps few (10 at 1,000 pairs),
# so dlt's fixed cost per load (state, schema, merge statements: a fraction of a second) stays small
# beside the 200 requests (24 s at 500/min) that read the next step meanwhile.
PAIRS_PER_STEP = 100
# Up to this many pairs a load logs each window it read; beyond, only warnings and failures.
FEW_PAIRS = 10
READER_THREAD = "coingecko-reader"

Plan = Mapping[Pair, Sequence[RequestWindow]]


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    points: int = 0  # read and valid
    requests: int = 0
    error: AlphaDBError | None = None
    warnings: tuple[str, ...] = ()
    written: int = 0  # new or changed points (the rest were stored already, unchanged)


@dataclass(frozen=True)
class StepTiming:
    """When one load step was read (by the reader thread) and loaded; wall-clock epoch seconds, so
    they compare with a server's request log."""

    pairs: int
    requests: int
    read_started: float
    read_finished: float
    load_started: float
    load_finished: float


@dataclass(frozen=True)
class LoadReport:
    results: list[PairResult]
    elapsed_s: float = 0.0
    steps: tuple[StepTiming, ...] = ()

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


@dataclass
class _Tally:
    """The load report as the steps of one load add to it."""

    results: dict[Pair, PairResult] = field(default_factory=dict)
    steps: list[StepTiming] = field(default_factory=list)

    def add_step(self, reads: Sequence[PairRead], written: Mapping[Pair, int], timing: StepTiming) -> None:
        self.steps.append(timing)
        for read in reads:
            before = self.results.get(read.pair, PairResult(read.pair))
            self.results[read.pair] = replace(
                before,
                points=before.points + read.points,
                requests=before.requests + read.requests,
                error=before.error or read.error,
                warnings=before.warnings + read.warnings,
                written=before.written + written.get(read.pair, 0),
            )

    def report(self, pairs: Sequence[Pair], started: float) -> LoadReport:
        results = [self.results.get(pair, PairResult(pair)) for pair in pairs]
        return LoadReport(results, time.monotonic() - started, tuple(self.steps))


# --- dlt ---------------------------------------------------------------------------------------

@functools.cache
def configure_dlt() -> None:
    """dlt's settings for AlphaDB, in code and once per process, before the first pipeline."""
    # dlt gzips its load files by default: they are local, short-lived and COPY'd right away, so
    # compressing them only costs CPU (about a third of normalize's time on a 1M-point backfill).
    dlt.config["normalize.data_writer.disable_compression"] = True
    # No usage telemetry from an operator's machine. dlt starts it with its first run context (the
    # line above), so it is stopped and the runtime started again with the setting in place.
    dlt.config["runtime.dlthub_telemetry"] = False
    telemetry.stop_telemetry()
    dlt.current.run_context().initialize_runtime()


def make_pipeline(settings: Settings, connection: Connection) -> dlt.Pipeline:
    configure_dlt()
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(settings.home / "dlt"),
        destination=dlt.destinations.postgres(
            credentials=connection.dlt_credentials(), staging_dataset_name_layout=SCRATCH_DATASET
        ),
        dataset_name=DATASET,
    )


def finish_pending(pipeline: dlt.Pipeline) -> None:
    """Load what an interrupted run left behind; a package that cannot be finished is dropped
    (the cursor did not move for it, so this run fetches the same points again)."""
    if not pipeline.has_pending_data:
        return
    runlog.line(runlog.WARNING, "an earlier run was interrupted: finishing its pending load packages")
    try:
        pipeline.normalize()
        pipeline.load()
    except Exception as exc:  # noqa: BLE001 - any failure here means the package is unusable
        runlog.line(runlog.WARNING, f"dropping unfinished load packages ({type(exc).__name__})")
        pipeline.drop_pending_packages()


def load_lock(settings: Settings) -> ContextManager[None]:
    """The load's turn: one load at a time per ALPHADB_HOME (dlt's state and tables are shared)."""
    return exclusive_lock(settings.home / LOCK_NAME, "load", settings.load_lock_wait_s)


@contextmanager
def loading(settings: Settings, connection: Connection) -> Iterator[dlt.Pipeline]:
    """What every load starts with: its turn on the load lock, the pipeline, an interrupted run's
    packages loaded, and dlt's state restored from PostgreSQL if the working directory was lost."""
    with load_lock(settings):
        pipeline = make_pipeline(settings, connection)
        finish_pending(pipeline)
        pipeline.sync_destination()
        yield pipeline


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


def _run(pipeline: dlt.Pipeline, batches: Sequence[PairBatch], job: RangeJob | None) -> None:
    """Extract, normalize and load one step. Not `pipeline.run`: it would first sync with the
    database again, and if that is gone by now the points read would be lost; extracted first,
    they stay in a pending package that the next run loads."""
    try:
        pipeline.extract(coingecko(batches, job), loader_file_format="csv")
        pipeline.normalize()
        pipeline.load()
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


# --- the raw table -----------------------------------------------------------------------------

def ensure_indexes(connection: Connection) -> bool:
    """dlt creates no index: the merge key must be unique and indexed; dbt scans by loaded_at.
    False when there is no raw table yet (the first load creates it; its indexes follow right after).

    The stored-point lookups and dlt's merge of every later load step find rows by the key.
    """
    table = sql.Identifier(DATASET, RESOURCE_NAME)
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass(%s)", (f"{DATASET}.{RESOURCE_NAME}",))
        if cur.fetchone()[0] is None:
            return False
        cur.execute(
            sql.SQL("create unique index if not exists market_chart_points_key on {} (coin_id, vs_currency, ts)").format(table)
        )
        cur.execute(
            sql.SQL("create index if not exists market_chart_points_loaded_at on {} (loaded_at)").format(table)
        )
    return True


def delete_stale_twins(connection: Connection, twins: Mapping[Pair, Sequence[int]]) -> int:
    """Delete stored truncated twins (found by `stored_points`) once their precise instants are committed."""
    statement = sql.SQL("delete from {} where coin_id = %s and vs_currency = %s and ts = any(%s)").format(
        sql.Identifier(DATASET, RESOURCE_NAME)
    )
    removed = 0
    with connect(connection) as conn, conn.cursor() as cur:
        for pair, stamps in twins.items():
            instants = [datetime.fromtimestamp(ms / 1000, timezone.utc) for ms in stamps]
            cur.execute(statement, (pair.coin_id, pair.vs_currency, instants))
            removed += cur.rowcount
    return removed


# --- one load step: read, compare with what is stored, load ------------------------------------

def preflight(settings: Settings, connection: Connection) -> None:
    """Before a load writes anything: the API host answers, and it is the source this database
    already holds (pipelines/source.py)."""
    source.preflight(settings, connection)


def check_source(settings: Settings) -> int:
    """One cheap request proving the host is reachable and the key fits the plan; returns the
    requests it took (a bad key or a wrong plan raises ConfigError saying what to set)."""
    client = CoinGeckoClient(settings)
    client.ping()
    return client.requests_made


def _log_reads(reads: Sequence[PairRead], every_window: bool) -> None:
    """The windows read (for a load of few pairs: at 1,000 pairs they would bury the rest) and
    every warning."""
    for read in reads:
        several = len(read.windows) > 1
        for number, window_read in enumerate(read.done if every_window else (), start=1):
            which = f"window {number}/{len(read.windows)} " if several else ""
            runlog.line(runlog.RUNNING, f"{read.pair.name} {which}{window_read.window.label}: {window_read.table.num_rows} points")
        for warning in read.warnings:
            runlog.line(runlog.WARNING, warning)


def _reconcile(connection: Connection, reads: Sequence[PairRead]) -> dict[Pair, Reconciled]:
    stored = StoredPoints(connection, DATASET, RESOURCE_NAME)
    try:
        return {read.pair: stored.reconcile(read.pair, read.table) for read in reads if read.done}
    finally:
        stored.close()


def load_step(
    pipeline: dlt.Pipeline, connection: Connection, reads: Sequence[PairRead], job: RangeJob | None
) -> dict[Pair, int]:
    """Load what these reads found that is new or changed; returns how many points each pair wrote.

    Indexes are made (`ensure_indexes`) before the reads or right after a load, while the database
    is known to be there: if it goes away during the reads, the stored-point check gives way and
    dlt's load step reports it, keeping what was read in a pending package for the next run."""
    reconciled = _reconcile(connection, reads)
    batches = [
        PairBatch(read.pair.name, reconciled[read.pair].changed, read.newest_ms, read.read_until_ms)
        for read in reads
        if read.pair in reconciled
    ]
    if batches:
        _run(pipeline, batches, job)
        twins = {pair: found.stale_twins_ms for pair, found in reconciled.items() if found.stale_twins_ms}
        if twins:
            delete_stale_twins(connection, twins)
    return {pair: found.changed.num_rows for pair, found in reconciled.items()}


class ReadStopped(Exception):
    """The load stopped (an error, an interrupt): the reader thread abandons its step."""


def _sleep_unless_stopped(stop: threading.Event) -> Callable[[float], None]:
    """The client's wait between retries, cut short (ending its read) when the load stops."""
    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise ReadStopped
    return sleep


def read_step(
    settings: Settings, client: CoinGeckoClient, plan: Plan, now: datetime, stop: threading.Event | None = None
) -> list[PairRead]:
    """Read every pair's windows of one step, pair after pair until `stop` is set; the points are
    stamped with the load's `now` (`loaded_at`: when their values were stored)."""
    reads: list[PairRead] = []
    for pair, windows in plan.items():
        if stop is not None and stop.is_set():
            break
        if windows:
            reads.append(read_pair(client, pair, windows, now, settings.history_limit_days, now))
    return reads


# --- load steps, read one ahead ----------------------------------------------------------------

@dataclass(frozen=True)
class LoadStep:
    """One dlt load's share of a load: these pairs' windows."""

    number: int  # from 1
    total: int
    plan: Plan


@dataclass(frozen=True)
class StepRead:
    """A load step as the reader thread read it."""

    step: LoadStep
    reads: list[PairRead]
    completes: bool  # the load's last step, and no pair failed in it or before: a range job is done
    read_started: float  # epoch seconds
    read_finished: float


def pair_groups(pairs: Sequence[Pair]) -> list[list[Pair]]:
    """The pairs in load-step groups of at most PAIRS_PER_STEP, in their configured order."""
    return [list(pairs[i : i + PAIRS_PER_STEP]) for i in range(0, len(pairs), PAIRS_PER_STEP)]


def numbered(plans: Sequence[Plan]) -> list[LoadStep]:
    return [LoadStep(number, len(plans), plan) for number, plan in enumerate(plans, start=1)]


def read_steps(
    settings: Settings, steps: Sequence[LoadStep], now: datetime, stop: threading.Event
) -> Generator[StepRead, None, None]:
    """Read the steps in order with one client (the load's rate limit); a pair whose read failed
    is left out of its later steps. Runs in the reader thread: it returns as soon as `stop` is set."""
    client = CoinGeckoClient(settings, sleep=_sleep_unless_stopped(stop))
    failed: set[Pair] = set()
    for step in steps:
        started = time.time()
        plan = {pair: windows for pair, windows in step.plan.items() if pair not in failed}
        reads = read_step(settings, client, plan, now, stop)
        if stop.is_set():
            return
        failed |= {read.pair for read in reads if read.error is not None}
        yield StepRead(step, reads, step.number == step.total and not failed, started, time.time())


def _load_steps(
    settings: Settings,
    connection: Connection,
    pipeline: dlt.Pipeline,
    steps: Sequence[LoadStep],
    now: datetime,
    step_line: str | None,
    job: RangeJob | None,
) -> _Tally:
    """Load the steps as the reader thread hands them over, logging `"<step_line> step k/N"` as each
    one's load starts (the progress bar counts them). A range load's `job` is committed with each
    step, complete with the step that completes it."""
    tally = _Tally()
    every_window = len({pair for step in steps for pair in step.plan}) <= FEW_PAIRS
    indexed = ensure_indexes(connection)  # first, while the database is known to be there (see load_step)
    stop = threading.Event()
    with read_ahead(read_steps(settings, steps, now, stop), stop, READER_THREAD) as step_reads:
        for step_read in step_reads:
            load_started = time.time()
            if step_line:
                runlog.line(runlog.RUNNING, f"{step_line} step {step_read.step.number}/{step_read.step.total}")
            _log_reads(step_read.reads, every_window)
            step_job = None if job is None else replace(job, completes=step_read.completes)
            written = load_step(pipeline, connection, step_read.reads, step_job)
            indexed = indexed or ensure_indexes(connection)  # right after the load that created the table
            timing = StepTiming(
                len(step_read.reads), sum(read.requests for read in step_read.reads),
                step_read.read_started, step_read.read_finished, load_started, time.time(),
            )
            tally.add_step(step_read.reads, written, timing)
    return tally


# --- the two loads -----------------------------------------------------------------------------

def _utc_now(now: datetime | None) -> datetime:
    """The load's `now`: the caller's, else this moment (the one place a load reads the clock)."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def load_incremental(
    settings: Settings, connection: Connection, pairs: Sequence[Pair] | None = None, now: datetime | None = None
) -> LoadReport:
    """The nightly load: each pair from its cursor minus the lookback, up to now, in steps of
    PAIRS_PER_STEP pairs (each step's cursors are committed with its points)."""
    started, now = time.monotonic(), _utc_now(now)
    pairs = list(pairs or settings.pairs)
    with loading(settings, connection) as pipeline:
        cursors = saved_progress(pipeline.state).cursors
        plans = [
            {
                pair: plan_windows(lookback_start(cursors.get(pair.name), now, settings.lookback_days), now, now, settings.history_days)
                for pair in group
            }
            for group in pair_groups(pairs)
        ]
        steps = numbered(plans)
        tally = _load_steps(settings, connection, pipeline, steps, now, "load" if len(steps) > 1 else None, job=None)
    return tally.report(pairs, started)


def _warn_history_clamp(settings: Settings, start: datetime, end: datetime, now: datetime) -> None:
    """Planning clamps a range to what the plan can see: say so instead of loading less silently
    (not for the hour of margin a `--days 365` loses)."""
    floor = earliest_allowed(now, settings.history_days)
    if start < floor - timedelta(days=1) and end > floor:
        runlog.line(
            runlog.WARNING,
            f"the {settings.plan} plan serves only the past {settings.history_days} days: loading from "
            f"{floor:%Y-%m-%d %H:%M} UTC, not {start:%Y-%m-%d %H:%M} UTC (COINGECKO_PLAN=pro has full history)",
        )


def _range_plan(
    settings: Settings, pairs: Sequence[Pair], start: datetime, end: datetime, now: datetime, done_until: Mapping[str, int]
) -> dict[Pair, list[RequestWindow]]:
    """Each pair's windows from where it got to (a resumed job) or from the start."""
    def pair_start(pair: Pair) -> datetime:
        if pair.name in done_until:
            return max(start, datetime.fromtimestamp(done_until[pair.name] / 1000, timezone.utc))
        return start

    return {pair: plan_windows(pair_start(pair), end, now, settings.history_days) for pair in pairs}


def window_steps(plan: Mapping[Pair, Sequence[RequestWindow]]) -> list[Plan]:
    """A range load's steps: the first window of every pair, then the second, and so on, each in
    groups of PAIRS_PER_STEP pairs; an interruption loses at most the step in flight."""
    depth = max((len(windows) for windows in plan.values()), default=0)
    return [
        {pair: plan[pair][index : index + 1] for pair in group}
        for index in range(depth)
        for group in pair_groups([pair for pair, windows in plan.items() if len(windows) > index])
    ]


def load_range(
    settings: Settings,
    connection: Connection,
    start: datetime,
    end: datetime,
    pairs: Sequence[Pair] | None = None,
    job: str | None = None,
    now: datetime | None = None,
) -> LoadReport:
    """Backfill (or heal) an explicit range; the nightly cursors stay where they are.

    Resumable: each step is its own dlt load, committed together with how far each pair got.
    Re-running the same job (`job`, e.g. "days=365", else the range itself) after an interruption
    continues from there instead of starting over.
    """
    started, now = time.monotonic(), _utc_now(now)
    pairs = list(pairs or settings.pairs)
    key = (job or f"{start.isoformat()}..{end.isoformat()}") + "|" + ",".join(p.name for p in pairs)
    with loading(settings, connection) as pipeline:
        unfinished = saved_progress(pipeline.state).unfinished(key) or {}
        if unfinished:
            start = datetime.fromisoformat(unfinished["start"])
            runlog.line(runlog.RUNNING, f"resuming an interrupted backfill ({len(unfinished['done_until'])} pair(s) partly loaded)")
        _warn_history_clamp(settings, start, end, now)
        steps = numbered(window_steps(_range_plan(settings, pairs, start, end, now, unfinished.get("done_until", {}))))
        range_job = RangeJob(key, start.isoformat(), completes=False)
        tally = _load_steps(settings, connection, pipeline, steps, now, "backfill", range_job)
    return tally.report(pairs, started)
