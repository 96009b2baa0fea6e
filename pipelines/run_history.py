"""Run history: one row per `alphadb run`, `load`, `backfill` and `heal` in `ops.runs`.

A run inserts its row when it reaches the database (a command refused for bad settings or
arguments writes nothing) and updates it when it ends, with its exit code, totals, step durations,
failure messages (secrets redacted) and, for the nightly job, its last dbt test results.

A run also holds a PostgreSQL advisory lock keyed by its run id on the connection that inserted
the row, for as long as it runs. A process that dies without finishing (SIGKILL, OOM, power loss)
drops its connection and so its lock: the next run finds a `running` row whose lock nobody holds,
marks it `abandoned` and logs a warning naming it. A run that is merely still going keeps its lock
and is left alone.

Recording is best-effort: if the history cannot be written, the run logs a warning and carries on.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

import psycopg2

from pipelines import runlog
from pipelines.database import Connection
from pipelines.errors import EXIT_FAILURE

# The first key of the two-key advisory locks runs hold (the second is the run id): "AlDB".
LOCK_CLASS = 0x416C4442
COMMANDS = ("run", "load", "backfill", "heal")
MAX_MESSAGE_CHARS = 2000

SCHEMA_DDL = """
create schema if not exists ops;

create table if not exists ops.runs (
    run_id bigint generated always as identity primary key,
    command text not null,
    arguments text not null default '',
    started_at timestamptz not null default now(),
    ended_at timestamptz,
    status text not null default 'running' check (status in ('running', 'finished', 'abandoned')),
    exit_code integer,
    points bigint,
    requests integer,
    pairs_loaded text[] not null default '{}',
    pairs_failed text[] not null default '{}',
    failures text[] not null default '{}',
    host text not null,
    pid integer not null
);
create index if not exists runs_started_at on ops.runs (started_at desc);

create table if not exists ops.run_steps (
    run_id bigint not null references ops.runs on delete cascade,
    position integer not null,
    step text not null,
    seconds double precision not null,
    primary key (run_id, position)
);

create table if not exists ops.run_tests (
    run_id bigint not null references ops.runs on delete cascade,
    node text not null,
    status text not null,
    failures integer,
    message text not null default ''
);
create index if not exists run_tests_run_id on ops.run_tests (run_id);

create table if not exists ops.run_gaps (
    run_id bigint not null references ops.runs on delete cascade,
    pair text not null,
    timeframe text not null,
    gap_start timestamptz not null,
    gap_end timestamptz not null,
    missing_buckets integer not null,
    healed boolean not null
);
create index if not exists run_gaps_run_id on ops.run_gaps (run_id);

comment on schema ops is 'AlphaDB operational metadata: what the ELT did and when.';
comment on table ops.runs is
    'One row per alphadb run, load, backfill and heal: inserted when the run reaches the database, updated when it ends.';
comment on column ops.runs.command is 'run (the nightly job), load, backfill or heal.';
comment on column ops.runs.arguments is 'The command line arguments after the command, e.g. --days 30 --pair BTC/USDT.';
comment on column ops.runs.started_at is 'When the process started (UTC).';
comment on column ops.runs.ended_at is 'When it ended (UTC); null while running and for a run that never finished.';
comment on column ops.runs.status is
    'running; finished (exit_code is set); abandoned: the process died without finishing (killed), noticed by a later run.';
comment on column ops.runs.exit_code is '0 success, 1 failure, 2 configuration, 3 database, 4 data quality, 5 unknown coin, 75 locked, 130 interrupted.';
comment on column ops.runs.points is 'Price points fetched from CoinGecko (loads and gap heals).';
comment on column ops.runs.requests is 'HTTP requests made to CoinGecko.';
comment on column ops.runs.pairs_loaded is 'Pairs whose load succeeded.';
comment on column ops.runs.pairs_failed is 'Pairs whose load failed.';
comment on column ops.runs.failures is 'Failure messages, "step: message", secrets replaced by ***.';
comment on column ops.runs.host is 'Host name of the machine that ran it.';
comment on column ops.runs.pid is 'Process id of the run.';
comment on table ops.run_steps is 'Each step of a run in order, with how long it took (until the next step started).';
comment on column ops.run_steps.seconds is 'Wall-clock duration of the step in seconds.';
comment on table ops.run_tests is 'The last dbt test and source freshness results of a nightly run, one row per node.';
comment on column ops.run_tests.node is 'The dbt node, e.g. no_gaps_ohlcv or coingecko.market_chart_points.';
comment on column ops.run_tests.status is 'dbt''s status: pass, warn, fail, error, runtime error.';
comment on column ops.run_tests.failures is 'Failing rows the test found (null for freshness).';
comment on column ops.run_tests.message is 'dbt''s message, secrets replaced by ***.';
comment on table ops.run_gaps is 'The gaps a run''s heal step found (nightly run, alphadb heal) and whether it healed them.';
comment on column ops.run_gaps.gap_start is 'Start (UTC) of the first missing bucket.';
comment on column ops.run_gaps.gap_end is 'End (UTC, exclusive) of the last missing bucket.';
comment on column ops.run_gaps.healed is 'true: re-fetching filled it; false: the source could not fill it.';
"""

ABANDON_DEAD_RUNS = """
update ops.runs as run set status = 'abandoned'
where run.status = 'running' and not exists (
    select 1 from pg_locks as held
    where held.locktype = 'advisory' and held.granted and held.objsubid = 2
      and held.database = (select oid from pg_database where datname = current_database())
      and held.classid = %(lock_class)s::oid and held.objid = run.run_id::oid
)
returning run.run_id, run.command, run.started_at, run.host, run.pid
"""


@dataclass(frozen=True)
class StepTime:
    step: str
    seconds: float


@dataclass(frozen=True)
class HealedGap:
    pair: str
    timeframe: str
    start: datetime
    end: datetime
    missing_buckets: int
    healed: bool


@dataclass(frozen=True)
class TestResult:
    node: str
    status: str
    failures: int | None
    message: str


def ensure_schema(cur: Any) -> None:
    """Create the `ops` run-history tables if missing (serialized: two first runs may race)."""
    cur.execute("select pg_advisory_xact_lock(%s)", (LOCK_CLASS,))
    cur.execute(SCHEMA_DDL)


def _clip(text: str) -> str:
    text = runlog.redact(text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


@dataclass
class RunRecord:
    """What one run did, written to `ops.runs` once `start` has reached the database."""

    command: str
    arguments: str = ""
    points: int = 0
    requests: int = 0
    pairs_loaded: list[str] = field(default_factory=list)
    pairs_failed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    gaps: list[HealedGap] = field(default_factory=list)
    run_id: int | None = None
    exit_code: int | None = None
    _steps: list[tuple[str, float]] = field(default_factory=list)
    _ended: float | None = None
    _conn: Any = None
    _connection: Connection | None = None

    # -- what happened -------------------------------------------------------------------------
    @property
    def current_step(self) -> str | None:
        return self._steps[-1][0] if self._steps else None

    def enter_step(self, name: str) -> None:
        """The run moves on to step `name` (the previous step ends now)."""
        if self.current_step != name:
            self._steps.append((name, time.monotonic()))

    def steps(self) -> list[StepTime]:
        """Each step with its duration: until the next step began, the last one until the run ended."""
        end = self._ended or time.monotonic()
        starts = [started for _, started in self._steps[1:]] + [end]
        return [StepTime(name, max(0.0, until - started)) for (name, started), until in zip(self._steps, starts)]

    def add_load(self, report: Any) -> None:
        """Totals and pair outcomes of a LoadReport (load, backfill, the nightly's load)."""
        self.points += report.points
        self.requests += report.requests
        for result in report.results:
            (self.pairs_failed if result.error is not None else self.pairs_loaded).append(result.pair.name)
            if result.error is not None:
                self.failures.append(f"{result.pair.name}: {result.error}")

    def add_heal(self, result: Any, pairs: Iterable[str]) -> None:
        """Totals, failures and the gaps found in the configured `pairs` (healed or not) of a
        HealResult; gaps of other pairs are not healed, so not recorded as healed either."""
        self.points += result.points
        self.requests += result.requests
        self.failures.extend(result.failures)
        configured, remaining = set(pairs), {_gap_key(gap) for gap in result.remaining}
        self.gaps.extend(
            HealedGap(*_gap_key(gap), gap.missing_buckets, _gap_key(gap) not in remaining)
            for gap in result.found
            if str(gap.pair) in configured
        )

    def set_tests(self, outcomes: Iterable[Any]) -> None:
        """The node results of dbt outcomes (freshness, test): the last call wins."""
        self.tests = [
            TestResult(node.name, str(node.status), node.failures, _clip(node.message or ""))
            for outcome in outcomes
            for node in outcome.results
        ]

    # -- the database row ----------------------------------------------------------------------
    def start(self, connection: Connection) -> None:
        """Insert the row and hold its advisory lock; warn about runs that died unfinished."""
        if self._conn is not None:
            return
        try:
            conn = psycopg2.connect(**connection.psycopg_kwargs())
        except Exception as exc:  # noqa: BLE001 - recording is best-effort: the run goes on without it
            runlog.line(runlog.WARNING, f"Run history not recorded (cannot connect): {_first_line(exc)}")
            return
        try:
            with conn, conn.cursor() as cur:
                ensure_schema(cur)
                cur.execute(ABANDON_DEAD_RUNS, {"lock_class": LOCK_CLASS})
                abandoned = cur.fetchall()
                cur.execute(
                    "insert into ops.runs (command, arguments, started_at, host, pid)"
                    " values (%s, %s, now() - make_interval(secs => %s), %s, %s) returning run_id",
                    (self.command, _clip(self.arguments), self._age(), socket.gethostname(), os.getpid()),
                )
                self.run_id = cur.fetchone()[0]
                # Session-level: held until this connection closes, i.e. until the process ends.
                cur.execute("select pg_advisory_lock(%s, %s)", (LOCK_CLASS, self.run_id))
        except psycopg2.Error as exc:
            conn.close()
            self.run_id = None
            runlog.line(runlog.WARNING, f"Run history not recorded: {_first_line(exc)}")
            return
        self._conn, self._connection = conn, connection
        for run_id, command, started_at, host, pid in abandoned:
            runlog.line(
                runlog.WARNING,
                f"Run {run_id} ({command}, started {started_at:%Y-%m-%d %H:%M:%S} UTC on {host}, PID {pid}) did not"
                " finish: it was killed or lost its database connection (marked abandoned in ops.runs)",
            )

    def _age(self) -> float:
        return time.monotonic() - self._steps[0][1] if self._steps else 0.0

    def close(
        self, exit_code: int, points: int | None = None, requests: int | None = None, failures: list[str] | None = None
    ) -> None:
        """Finish the row with the exit code and everything recorded (the totals and failures given
        here replace what was added: the nightly job keeps its own); idempotent."""
        if self.exit_code is not None:
            return
        self.exit_code = exit_code
        self.points = self.points if points is None else points
        self.requests = self.requests if requests is None else requests
        self.failures = self.failures if failures is None else failures
        self._ended = time.monotonic()
        if self._conn is None:
            return
        try:
            self._write_end()
        except psycopg2.Error as exc:
            runlog.line(runlog.WARNING, f"Run history: run {self.run_id} not marked finished: {_first_line(exc)}")
        finally:
            self._conn.close()
            self._conn = None

    def _write_end(self) -> None:
        conn = self._conn
        if conn.closed:  # the connection was lost during the run: one fresh attempt
            assert self._connection is not None
            conn = self._conn = psycopg2.connect(**self._connection.psycopg_kwargs())
        with conn, conn.cursor() as cur:
            cur.execute(
                "update ops.runs set ended_at = now(), status = 'finished', exit_code = %s, points = %s, requests = %s,"
                " pairs_loaded = %s, pairs_failed = %s, failures = %s where run_id = %s",
                (
                    self.exit_code, self.points, self.requests, self.pairs_loaded, self.pairs_failed,
                    [_clip(text) for text in self.failures], self.run_id,
                ),
            )
            for position, step in enumerate(self.steps()):
                cur.execute(
                    "insert into ops.run_steps (run_id, position, step, seconds) values (%s, %s, %s, %s)",
                    (self.run_id, position, step.step, step.seconds),
                )
            for test in self.tests:
                cur.execute(
                    "insert into ops.run_tests (run_id, node, status, failures, message) values (%s, %s, %s, %s, %s)",
                    (self.run_id, test.node, test.status, test.failures, test.message),
                )
            for gap in self.gaps:
                cur.execute(
                    "insert into ops.run_gaps (run_id, pair, timeframe, gap_start, gap_end, missing_buckets, healed)"
                    " values (%s, %s, %s, %s, %s, %s, %s)",
                    (self.run_id, gap.pair, gap.timeframe, gap.start, gap.end, gap.missing_buckets, gap.healed),
                )


def _gap_key(gap: Any) -> tuple[str, str, datetime, datetime]:
    return (str(gap.pair), str(gap.timeframe), gap.start, gap.end)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return runlog.redact(text.splitlines()[0] if text else type(exc).__name__)


def exit_code_of(exc: BaseException) -> int:
    """The exit code a run ends with when `exc` escapes it."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    return int(getattr(exc, "exit_code", EXIT_FAILURE) or EXIT_FAILURE)


@contextmanager
def recording(command: str, arguments: Sequence[str] = ()) -> Iterator[RunRecord]:
    """A RunRecord for the block; it is closed (and its row finished) however the block ends.

    The block sets `record.exit_code` through `close` when it knows it; an exception escaping it
    closes the record with that exception's exit code and its message as a failure.
    """
    record = RunRecord(command, " ".join(arguments))
    record.enter_step(command)
    try:
        yield record
    except BaseException as exc:
        record.failures.append(f"{record.current_step}: {type(exc).__name__}: {exc}".rstrip(": "))
        record.close(exit_code_of(exc))
        raise
    finally:
        record.close(EXIT_FAILURE if record.exit_code is None else record.exit_code)


def recent_runs(cur: Any, limit: int = 30) -> list[dict[str, Any]]:
    """The last `limit` runs, newest first, each with its steps (reads ops.runs; [] if none)."""
    cur.execute("select to_regclass('ops.runs') is not null")
    if not cur.fetchone()[0]:
        return []
    cur.execute(
        """
        select runs.run_id, runs.command, runs.arguments, runs.started_at, runs.ended_at, runs.status,
               runs.exit_code, runs.points, runs.requests, runs.pairs_loaded, runs.pairs_failed, runs.failures,
               coalesce(steps.steps, '[]'::jsonb) as steps
        from (select * from ops.runs order by started_at desc, run_id desc limit %s) as runs
        left join lateral (
            select jsonb_agg(jsonb_build_object('step', step, 'seconds', seconds) order by position) as steps
            from ops.run_steps where run_steps.run_id = runs.run_id
        ) as steps on true
        order by runs.started_at desc, runs.run_id desc
        """,
        (limit,),
    )
    columns = [c.name for c in cur.description]
    return [dict(zip(columns, row)) for row in cur.fetchall()]

