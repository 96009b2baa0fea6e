"""The nightly job behind `alphadb run` and `scripts/run_elt.sh` (docs/design.md).

lock → environment check → database check → nightly load → dbt run → dbt source freshness + dbt
test → gap heal → data-quality report → finished, each step logged with its duration; on failure a
Slack alert and the healthcheck `/fail` ping, on success the success ping.

The job's collaborators (the database, the loader, the transformer, the healer, the reporter and
the alerter) are handed to it (`Collaborators`); `run` hands it the real ones unless told otherwise.

Exit codes: 0 success; 1 load, transform or unexpected failure; 2 configuration; 3 database not
accessible; 4 data-quality tests failed (data was loaded); 5 a configured coin is unknown to the API
(the other pairs were loaded); 75 another run holds the lock. When
several steps fail, the first failure's code wins and the alert lists all of them.
"""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

from pipelines import alerts, database, html_report, heal, load, logfile, report, runlog, transform
from pipelines.config import Pair, Settings, load_settings
from pipelines.database import Connection
from pipelines.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_LOCKED, EXIT_OK, EXIT_QUALITY, AlphaDBError, ConfigError, LockHeld
from pipelines.heal import HealResult, ModelBuilder, RangeLoader
from pipelines.load import LoadReport
from pipelines.locks import exclusive_lock
from pipelines.transform import DbtOutcome, Gap, NodeResult, TestsScope
from pipelines.run_history import RunRecord, recording

LOCK_NAME = "run.lock"
# The original guide's name for the nightly load's step, kept in the log lines and alerts it names.
NIGHTLY_LOAD_STEP = "Backfill"

# The nightly's dbt tests check the candles rebuilt from the last week's loads (a failure keeps
# failing for a week), plus the whole history of the seventh of the pairs whose audit weekday is
# tonight's (UTC): every pair's history is tested once a week, and no night's cost grows with all
# pairs' history. The gaps the heal step reads (the `gaps` view) always cover all history.
TESTS_LOOKBACK = timedelta(days=7)


def tests_scope(now: datetime) -> TestsScope:
    """The scope of the nightly's dbt tests at `now`."""
    return TestsScope(now - TESTS_LOOKBACK, now.astimezone(timezone.utc).weekday())


# --- the collaborators ---------------------------------------------------------------------------

class Database(Protocol):
    def resolve_connection(self, settings: Settings) -> Connection: ...

    def check_database(self, connection: Connection) -> int: ...


class Loader(RangeLoader, Protocol):
    def check_source(self, settings: Settings) -> int: ...

    def preflight(self, settings: Settings, connection: Connection) -> None: ...

    def load_incremental(
        self, settings: Settings, connection: Connection, pairs: Sequence[Pair] | None = None, now: datetime | None = None
    ) -> LoadReport: ...


class Transformer(ModelBuilder, Protocol):
    def source_freshness(self, settings: Settings, connection: Connection) -> DbtOutcome: ...

    def run_tests(self, settings: Settings, connection: Connection, scope: TestsScope | None = None) -> DbtOutcome: ...


class Healer(Protocol):
    def heal_gaps(
        self, settings: Settings, connection: Connection, gaps: Sequence[Gap], loader: RangeLoader,
        transformer: ModelBuilder, now: datetime,
    ) -> HealResult: ...


class Reporter(Protocol):
    def log_report(self, settings: Settings, connection: Connection, gaps: Sequence[Gap], now: datetime | None = None) -> int: ...


class Alerter(Protocol):
    def ping(self, settings: Settings, kind: str, body: str = "") -> bool: ...

    def notify_failure(self, settings: Settings, step: str, exit_code: int, summary: Iterable[str] = ()) -> None: ...


@dataclass(frozen=True)
class Collaborators:
    database: Database
    loader: Loader
    transformer: Transformer
    healer: Healer
    reporter: Reporter
    alerter: Alerter


def production_collaborators() -> Collaborators:
    """The real ones: PostgreSQL, CoinGecko through dlt, dbt, and Slack and healthcheck alerts."""
    return Collaborators(database, load, transform, heal, report, alerts)


# --- the job -------------------------------------------------------------------------------------

class Interrupted(BaseException):
    """SIGTERM/SIGINT during a run (cron's timeout, a shutdown, Ctrl-C): stop, alert, exit 1.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way (the loader's
    per-pair isolation, dlt, requests) mistakes it for one pair's failure and carries on.
    """

    exit_code = EXIT_FAILURE


def lock_path(settings: Settings) -> Path:
    return settings.home / LOCK_NAME


@dataclass
class Failure:
    step: str
    exit_code: int
    message: str


@dataclass
class Job:
    settings: Settings
    parts: Collaborators
    now: datetime  # when the job started: its nightly load's "now" and its tests' scope
    failures: list[Failure] = field(default_factory=list)
    points: int = 0
    requests: int = 0
    history: RunRecord = field(default_factory=lambda: RunRecord("run"))  # its row in ops.runs

    @property
    def step_name(self) -> str:
        return self.history.current_step or "start"

    @step_name.setter
    def step_name(self, name: str) -> None:
        self.history.enter_step(name)  # the step's duration goes to ops.run_steps

    # -- bookkeeping ---------------------------------------------------------------------------
    def record(self, exit_code: int, message: str, step: str | None = None) -> None:
        self.failures.append(Failure(step or self.step_name, exit_code, message))

    def fail(self, exit_code: int, message: str, step: str | None = None) -> None:
        self.record(exit_code, message, step)
        runlog.error_lines(message)

    @property
    def exit_code(self) -> int:
        return self.failures[0].exit_code if self.failures else EXIT_OK

    @contextmanager
    def step(self, name: str, running: str | None = None) -> Iterator[dict[str, object]]:
        """A logged step (see `runlog.step`) whose AlphaDBError fails the job with its exit code."""
        self.step_name = name
        try:
            with runlog.step(name, running) as details:
                yield details
        except AlphaDBError as exc:
            self.record(exc.exit_code, str(exc))
            raise

    # -- steps ---------------------------------------------------------------------------------
    def environment_check(self) -> None:
        settings = self.settings
        with self.step("Environment check") as details:
            details["plan"] = settings.plan
            details["pairs"] = pairs_text(settings.pairs)
            details["lookback"] = f"{settings.lookback_days} days"
            if settings.api_key:
                # A bad key or a wrong plan raises ConfigError saying what to set.
                self.requests += self.parts.loader.check_source(settings)
                details["API key"] = "accepted"

    def database_check(self) -> Connection:
        with self.step("Database connectivity check") as details:
            connection = self.parts.database.resolve_connection(self.settings)
            version = self.parts.database.check_database(connection)
            details["PostgreSQL"] = f"{version // 10000}.{version % 10000}"
            details["database"] = connection.dbname
        self.history.start(connection)
        return connection

    def nightly_load(self, connection: Connection) -> bool:
        """Load every pair; True when at least one pair loaded (the rest of the job can run)."""
        self.step_name = NIGHTLY_LOAD_STEP
        runlog.line(runlog.RUNNING, f"Running backfill for last {self.settings.lookback_days} days...")
        started = time.monotonic()
        try:
            # the source is reachable, and is this database's own, before anything is written
            self.parts.loader.preflight(self.settings, connection)
            load_report = self.parts.loader.load_incremental(self.settings, connection, now=self.now)
        except AlphaDBError as exc:
            self.fail(exc.exit_code, f"{NIGHTLY_LOAD_STEP} failed after {time.monotonic() - started:.1f}s: {exc}")
            raise
        self.points += load_report.points
        self.requests += load_report.requests
        self._log_failed_pairs(load_report)
        self.history.add_load(load_report)
        elapsed = f"{time.monotonic() - started:.1f}s"
        loaded = len(load_report.results) - len(load_report.failed)
        totals = f"{load_report.points} points, {load_report.requests} requests, {loaded}/{len(load_report.results)} pairs"
        if not load_report.failed:
            runlog.line(runlog.OK, f"{NIGHTLY_LOAD_STEP} completed successfully in {elapsed}: {totals}")
            return True
        failed = pairs_text([r.pair for r in load_report.failed])
        runlog.line(runlog.ERROR, f"{NIGHTLY_LOAD_STEP} failed for {failed} in {elapsed}: {totals}")
        if loaded == 0:
            runlog.line(runlog.ERROR, "No pair loaded: skipping dbt")
            return False
        return True

    def _log_failed_pairs(self, load_report: LoadReport) -> None:
        """A line per failing pair; the pairs that loaded are in the summary line (at 1,000 pairs a
        line each would bury the failures). The loader logged the warnings as it read."""
        for result in load_report.failed:
            step = f"{NIGHTLY_LOAD_STEP} ({result.pair.name})"
            self.fail(result.error.exit_code, f"{result.pair.name} failed to load: {result.error}", step=step)

    def transform(self, connection: Connection) -> None:
        with self.step("dbt run", "Building candles (dbt run)...") as details:
            outcome = self.parts.transformer.run_models(self.settings, connection)
            details["results"] = _summary(outcome)
            if not outcome.success:
                raise AlphaDBError("dbt run failed: " + _problems(outcome))

    def quality_tests(self, connection: Connection, label: str = "Data quality checks") -> list[str]:
        """dbt source freshness + dbt test; returns what failed (empty when everything passed)."""
        self.step_name = label
        scope = tests_scope(self.now)
        runlog.line(runlog.CHECK, f"Running {label.lower()} (dbt source freshness, dbt test on {scope.describe()})...")
        started = time.monotonic()
        transformer = self.parts.transformer
        outcomes = (
            transformer.source_freshness(self.settings, connection),
            transformer.run_tests(self.settings, connection, scope),
        )
        elapsed = f"{time.monotonic() - started:.1f}s"
        self.history.set_tests(outcomes)
        problems = [problem for outcome in outcomes for problem in _outcome_problems(outcome)]
        if not problems:
            runlog.line(runlog.OK, f"{label} passed in {elapsed} (dbt test: {_summary(outcomes[1])})")
            return []
        for problem in problems:
            runlog.error_lines(problem)
        runlog.line(runlog.ERROR, f"{label} failed in {elapsed}: {len(problems)} problem(s)")
        return problems

    def heal(self, connection: Connection, gaps: Sequence[Gap]) -> tuple[list[Gap], int]:
        """Heal gaps; returns the gaps the source could not fill and how many were healed."""
        self.step_name = "Gap heal"
        runlog.line(runlog.RUNNING, f"Healing {len(gaps)} gap(s)...")
        started = time.monotonic()
        parts = self.parts
        try:
            result = parts.healer.heal_gaps(self.settings, connection, gaps, parts.loader, parts.transformer, self.now)
        except AlphaDBError as exc:
            self.fail(exc.exit_code, f"Gap heal failed after {time.monotonic() - started:.1f}s: {exc}")
            raise
        healed = len(result.found) - len(result.remaining)
        self.history.add_heal(result, [pair.name for pair in self.settings.pairs])  # gaps found and healed: ops.run_gaps
        self.points += result.points
        self.requests += result.requests
        for message in result.failures:
            self.record(EXIT_FAILURE, message, "Gap heal")
        summary = (
            f"in {time.monotonic() - started:.1f}s: {healed}/{len(result.found)} gap(s) healed in {result.rounds} round(s),"
            f" {result.points} points, {result.requests} requests"
        )
        if result.remaining or result.failures:
            runlog.line(runlog.ERROR, f"Gap heal incomplete {summary}")
        else:
            runlog.line(runlog.OK, f"Gap heal completed {summary}")
        return result.remaining, healed

    def report(self, connection: Connection, gaps: Sequence[Gap]) -> None:
        self.step_name = "Data quality report"
        try:
            self.parts.reporter.log_report(self.settings, connection, gaps)
        except Exception as exc:  # the report informs; it never fails a run that loaded and passed
            runlog.line(runlog.WARNING, f"Data quality report failed: {type(exc).__name__}: {exc}")

    def steps(self) -> None:
        self.environment_check()
        connection = self.database_check()
        if not self.nightly_load(connection):
            return
        self.transform(connection)
        problems = self.quality_tests(connection)
        remaining = self.parts.transformer.find_gaps(connection)
        if remaining:
            remaining, healed = self.heal(connection, remaining)
            if healed:  # the candles changed: test again
                problems = self.quality_tests(connection, "Data quality re-checks")
        for gap in remaining:
            self.record(EXIT_QUALITY, f"Gap the source cannot fill: {report.describe_gap(gap)}", "Gap heal")
        for problem in problems:
            self.record(EXIT_QUALITY, problem, "Data quality checks")
        self.report(connection, remaining)

    def run(self) -> int:
        started = time.monotonic()
        runlog.line(runlog.START, "Starting daily backfill cron job")
        self.parts.alerter.ping(self.settings, "start")
        try:
            self.steps()
        except AlphaDBError as exc:
            # A step that failed recorded it already (the load and heal prefix their step and duration).
            if not any(str(exc) in f.message for f in self.failures):
                self.fail(exc.exit_code, str(exc))
        except Interrupted as exc:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish reporting; the job is ending anyway
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.fail(exc.exit_code, f"{exc} during {self.step_name}: stopping")
        except Exception as exc:  # unexpected: log it as one line (no traceback with secrets), exit 1
            self.fail(EXIT_FAILURE, f"Unexpected error in {self.step_name}: {type(exc).__name__}: {exc}")
        self._finish(time.monotonic() - started)
        return self.exit_code

    def _finish(self, elapsed_s: float) -> None:
        totals = f"{self.points} points, {self.requests} requests"
        code = self.exit_code
        self.history.close(code, self.points, self.requests, [f"{f.step}: {f.message}" for f in self.failures])
        html_report.write_after_run(self.settings, code)  # after the row is final: the page shows this run
        if code == EXIT_OK:
            runlog.line(runlog.FINISHED, f"Daily backfill cron job completed successfully in {elapsed_s:.1f}s ({totals})")
            self.parts.alerter.ping(self.settings, "success")
            return
        first = self.failures[0]
        runlog.line(runlog.FINISHED, f"Daily backfill cron job failed at {first.step} (exit {code}) after {elapsed_s:.1f}s ({totals})")
        self.parts.alerter.notify_failure(self.settings, first.step, code, [f"{f.step}: {f.message}" for f in self.failures])


def pairs_text(pairs: Sequence[Pair]) -> str:
    """Pair names for a log line: every name when few (load.FEW_PAIRS), else the count and the
    first few, so that 1,000 pairs stay one readable line."""
    names = [pair.name for pair in pairs]
    if len(names) <= load.FEW_PAIRS:
        return ", ".join(names)
    return f"{len(names)} ({', '.join(names[:3])} and {len(names) - 3} more)"


def _node_text(node: NodeResult, max_chars: int = 600) -> str:
    """`name status (n failing rows): message`, the message's lines joined and shortened."""
    message = " | ".join(part.strip() for part in (node.message or "").splitlines() if part.strip())
    if len(message) > max_chars:
        message = message[: max_chars - 1] + "…"
    text = f"{node.name} {node.status}"
    if node.failures:
        text += f" ({node.failures} failing rows)"
    return f"{text}: {message}" if message else text


def _outcome_problems(outcome: DbtOutcome) -> list[str]:
    failed = [f"{outcome.command}: {_node_text(node)}" for node in outcome.failed]
    return failed or ([] if outcome.success else [f"{outcome.command} failed"])


def _summary(outcome: DbtOutcome) -> str:
    counts: dict[str, int] = {}
    for node in outcome.results:
        counts[node.status] = counts.get(node.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no nodes"


def _problems(outcome: DbtOutcome) -> str:
    failed = [_node_text(node) for node in outcome.failed]
    return "; ".join(failed) if failed else f"{outcome.command} did not succeed"


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"Interrupted by {signal.Signals(signum).name}")


def run(settings: Settings, parts: Collaborators | None = None) -> int:
    """Run the nightly job once with these collaborators (the real ones by default); return its exit code."""
    runlog.setup(settings.log_file)
    runlog.register_secrets(settings.secrets())
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with exclusive_lock(lock_path(settings), "run"), recording("run") as history:
            return Job(settings, parts or production_collaborators(), datetime.now(timezone.utc), history=history).run()
    except LockHeld as exc:
        runlog.line(runlog.START, "Starting daily backfill cron job")
        runlog.line(runlog.WARNING, str(exc))
        return EXIT_LOCKED
    except Interrupted as exc:  # before the job started or after it reported
        runlog.line(runlog.ERROR, str(exc))
        return EXIT_FAILURE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def log_config_error(exc: Exception, environ: Mapping[str, str] | None = None) -> int:
    """`alphadb run` whose settings do not load: still log the error to the run log (exit 2), as
    far as the log file can be known, so a cron run that stops on a bad setting leaves its reason."""
    runlog.setup(logfile.resolve(environ))
    runlog.line(runlog.START, "Starting daily backfill cron job")
    runlog.line(runlog.ERROR, f"Configuration error: {exc}")
    runlog.line(runlog.FINISHED, f"Daily backfill cron job failed at Configuration (exit {EXIT_CONFIG})")
    return EXIT_CONFIG


def main() -> int:
    """`python -m pipelines.nightly`: the job without the CLI (settings errors exit 2, logged)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return log_config_error(exc)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
