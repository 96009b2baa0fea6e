"""The nightly job behind `alphadb run` and `scripts/run_elt.sh` (DESIGN.md §4).

lock → environment check → database check → load → dbt run → dbt source freshness + dbt test →
gap heal → data-quality report → finished, each step logged with its duration; on failure a Slack
alert and the healthcheck `/fail` ping, on success the success ping.

Exit codes: 0 success; 1 load, transform or unexpected failure; 2 configuration; 3 database not
accessible; 4 data-quality tests failed (data was loaded); 75 another run holds the lock. When
several steps fail, the first failure's code wins and the alert lists all of them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, Mapping

from pipelines import alerts, html_report, runlog
from pipelines.config import Settings
from pipelines.run_history import RunRecord, recording
from pipelines.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_QUALITY,
    AlphaDBError,
    LockHeld,
)

LOCK_NAME = "run.lock"

# The nightly's dbt tests check the candles rebuilt from the last week's loads, so their cost does
# not grow with the history and a failure keeps failing for a week; on Sundays (UTC) they check all
# history. The gaps the heal step reads (the `gaps` view) always cover all history.
TESTS_LOOKBACK = timedelta(days=7)
FULL_TESTS_WEEKDAY = 6  # Sunday


def tests_loaded_since(now: datetime) -> datetime | None:
    """The `loaded_since` of the nightly's dbt tests at `now`: None (all history) on Sundays."""
    return None if now.weekday() == FULL_TESTS_WEEKDAY else now - TESTS_LOOKBACK


class Interrupted(BaseException):
    """SIGTERM/SIGINT during a run (cron's timeout, a shutdown, Ctrl-C): stop, alert, exit 1.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way (the loader's
    per-pair isolation, dlt, requests) mistakes it for one pair's failure and carries on.
    """

    exit_code = EXIT_FAILURE


def lock_path(settings: Settings) -> Path:
    return settings.home / LOCK_NAME


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """An exclusive, non-blocking flock on `path`, held for the whole run.

    The kernel drops it when the process dies, however it dies, so a crash never leaves a stale
    lock. The descriptor is not inherited by dbt or other children (PEP 446), so a child that
    outlives the run cannot keep the lock either. The holder's PID is written into the file for
    the "in progress" message.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise LockHeld(f"Another run is in progress (PID {holder}, lock {path}); nothing done") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@dataclass
class Failure:
    step: str
    exit_code: int
    message: str


@dataclass
class Job:
    settings: Settings
    failures: list[Failure] = field(default_factory=list)
    points: int = 0
    requests: int = 0
    record: RunRecord = field(default_factory=lambda: RunRecord("run"))  # its row in ops.runs

    @property
    def step_name(self) -> str:
        return self.record.current_step or "start"

    @step_name.setter
    def step_name(self, name: str) -> None:
        self.record.enter_step(name)  # the step's duration goes to ops.run_steps

    # -- bookkeeping ---------------------------------------------------------------------------
    def fail(self, exit_code: int, message: str, step: str | None = None) -> None:
        self.failures.append(Failure(step or self.step_name, exit_code, message))
        _error_lines(message)

    @property
    def exit_code(self) -> int:
        return self.failures[0].exit_code if self.failures else EXIT_OK

    @contextmanager
    def step(self, name: str, running: str | None = None) -> Iterator[dict[str, object]]:
        """Log a step's start and outcome with its duration; an AlphaDBError fails the step."""
        self.step_name = name
        details: dict[str, object] = {}
        if running:
            runlog.line(runlog.RUNNING, running)
        started = time.monotonic()
        try:
            yield details
        except AlphaDBError as exc:
            self.fail(exc.exit_code, str(exc))
            runlog.line(runlog.ERROR, f"{name} failed after {time.monotonic() - started:.1f}s")
            raise
        extra = "".join(f", {key} {value}" for key, value in details.items())
        runlog.line(runlog.OK, f"{name} passed in {time.monotonic() - started:.1f}s{extra}")

    # -- steps ---------------------------------------------------------------------------------
    def environment_check(self) -> None:
        settings = self.settings
        with self.step("Environment check") as details:
            details["plan"] = settings.plan
            details["pairs"] = ", ".join(p.name for p in settings.pairs)
            details["backfill"] = f"{settings.backfill_days} days"
            if settings.api_key:
                from pipelines.coingecko.client import CoinGeckoClient

                client = CoinGeckoClient(settings)
                client.ping()  # a bad key or wrong plan raises ConfigError with what to set
                self.requests += getattr(client, "requests_made", 1)
                details["API key"] = "accepted"

    def database_check(self) -> Any:
        from pipelines.database import check_database, resolve_connection

        with self.step("Database connectivity check") as details:
            connection = resolve_connection(self.settings)
            version = check_database(connection)
            details["PostgreSQL"] = f"{version // 10000}.{version % 10000}"
            details["database"] = connection.dbname
        self.record.start(connection)
        return connection

    def load(self, connection: Any) -> bool:
        """Load every pair; True when at least one pair loaded (the rest of the job can run)."""
        from pipelines.load import load_incremental

        settings = self.settings
        self.step_name = "Backfill"
        runlog.line(runlog.RUNNING, f"Running backfill for last {settings.backfill_days} days...")
        started = time.monotonic()
        try:
            report = load_incremental(settings, connection)
        except AlphaDBError as exc:
            self.fail(exc.exit_code, f"Backfill failed after {time.monotonic() - started:.1f}s: {exc}")
            raise
        self.points += report.points
        self.requests += report.requests
        self.record.add_load(report)
        for result in report.results:
            if result.error is None:
                runlog.line(runlog.OK, f"{result.pair.name}: {result.points} points, {result.requests} requests")
            else:
                code = getattr(result.error, "exit_code", EXIT_FAILURE) or EXIT_FAILURE
                self.fail(code, f"{result.pair.name} failed to load: {result.error}", step=f"Backfill ({result.pair.name})")
        elapsed = f"{time.monotonic() - started:.1f}s"
        loaded = len(report.results) - len(report.failed)
        totals = f"{report.points} points, {report.requests} requests, {loaded}/{len(report.results)} pairs"
        if not report.failed:
            runlog.line(runlog.OK, f"Backfill completed successfully in {elapsed}: {totals}")
            return True
        names = ", ".join(r.pair.name for r in report.failed)
        runlog.line(runlog.ERROR, f"Backfill failed for {names} in {elapsed}: {totals}")
        if loaded == 0:
            runlog.line(runlog.ERROR, "No pair loaded: skipping dbt")
            return False
        return True

    def transform(self, connection: Any) -> bool:
        from pipelines.transform import run_models

        with self.step("dbt run", "Building candles (dbt run)...") as details:
            outcome = run_models(self.settings, connection)
            details["results"] = _summary(outcome)
            if not outcome.success:
                raise AlphaDBError("dbt run failed: " + _problems(outcome))
        return True

    def quality_tests(self, connection: Any, label: str = "Data quality checks") -> list[str]:
        """dbt source freshness + dbt test; returns what failed (empty when everything passed)."""
        from pipelines.transform import run_tests, source_freshness

        self.step_name = label
        since = tests_loaded_since(datetime.now(timezone.utc))
        scope = f"candles loaded since {since:%Y-%m-%d %H:%M} UTC" if since else "all history"
        runlog.line(runlog.CHECK, f"Running {label.lower()} (dbt source freshness, dbt test on {scope})...")
        started = time.monotonic()
        outcomes = (source_freshness(self.settings, connection), run_tests(self.settings, connection, since))
        elapsed = f"{time.monotonic() - started:.1f}s"
        self.record.set_tests(outcomes)
        problems: list[str] = []
        for outcome in outcomes:
            failed = [f"{outcome.command}: {_node_text(node)}" for node in outcome.results if _failed(node)]
            if not outcome.success and not failed:
                failed = [f"{outcome.command} failed"]
            problems.extend(failed)
        if not problems:
            runlog.line(runlog.OK, f"{label} passed in {elapsed} (dbt test: {_summary(outcomes[1])})")
            return []
        for problem in problems:
            _error_lines(problem)
        runlog.line(runlog.ERROR, f"{label} failed in {elapsed}: {len(problems)} problem(s)")
        return problems

    def heal(self, connection: Any, gaps: list[Any]) -> tuple[list[Any], int]:
        """Heal gaps; returns the gaps the source could not fill and how many were healed."""
        from pipelines.heal import heal_gaps

        self.step_name = "Gap heal"
        runlog.line(runlog.RUNNING, f"Healing {len(gaps)} gap(s)...")
        started = time.monotonic()
        try:
            result = heal_gaps(self.settings, connection, gaps)
        except AlphaDBError as exc:
            self.fail(exc.exit_code, f"Gap heal failed after {time.monotonic() - started:.1f}s: {exc}")
            raise
        healed = len(result.found) - len(result.remaining)
        self.record.add_heal(result, [pair.name for pair in self.settings.pairs])  # gaps found and healed: ops.run_gaps
        self.points += result.points
        self.requests += result.requests
        for message in result.failures:
            self.failures.append(Failure("Gap heal", EXIT_FAILURE, message))
        summary = (
            f"in {time.monotonic() - started:.1f}s: {healed}/{len(result.found)} gap(s) healed in {result.rounds} round(s),"
            f" {result.points} points, {result.requests} requests"
        )
        if result.remaining or result.failures:
            runlog.line(runlog.ERROR, f"Gap heal incomplete {summary}")
        else:
            runlog.line(runlog.OK, f"Gap heal completed {summary}")
        return result.remaining, healed

    def report(self, connection: Any, gaps: list[Any]) -> None:
        from pipelines import report

        self.step_name = "Data quality report"
        try:
            report.log_report(self.settings, connection, gaps)
        except Exception as exc:  # the report informs; it never fails a run that loaded and passed
            runlog.line(runlog.WARNING, f"Data quality report failed: {type(exc).__name__}: {exc}")

    # -- the job -------------------------------------------------------------------------------
    def steps(self) -> None:
        from pipelines.report import describe_gap
        from pipelines.transform import find_gaps

        self.environment_check()
        connection = self.database_check()
        if not self.load(connection):
            return
        self.transform(connection)
        problems = self.quality_tests(connection)
        remaining = find_gaps(connection)
        if remaining:
            remaining, healed = self.heal(connection, remaining)
            if healed:  # the candles changed: test again
                problems = self.quality_tests(connection, "Data quality re-checks")
        for gap in remaining:
            self.failures.append(Failure("Gap heal", EXIT_QUALITY, f"Gap the source cannot fill: {describe_gap(gap)}"))
        for problem in problems:
            self.failures.append(Failure("Data quality checks", EXIT_QUALITY, problem))
        self.report(connection, remaining)

    def run(self) -> int:
        started = time.monotonic()
        runlog.line(runlog.START, "Starting daily backfill cron job")
        alerts.ping(self.settings, "start")
        try:
            self.steps()
        except AlphaDBError as exc:
            # A step that failed already logged it (load and heal prefix the step and its duration).
            if not any(str(exc) in f.message for f in self.failures):
                self.fail(exc.exit_code, str(exc))
        except Interrupted as exc:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish reporting; the job is ending anyway
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.fail(exc.exit_code, f"{exc} during {self.step_name}: stopping")
        except Exception as exc:  # unexpected: log it as one line (no traceback with secrets), exit 1
            self.fail(EXIT_FAILURE, f"Unexpected error in {self.step_name}: {type(exc).__name__}: {exc}")
        elapsed = f"{time.monotonic() - started:.1f}s"
        totals = f"{self.points} points, {self.requests} requests"
        code = self.exit_code
        self.record.close(code, self.points, self.requests, [f"{f.step}: {f.message}" for f in self.failures])
        html_report.write_after_run(self.settings, code)  # after the row is final: the page shows this run
        if code == EXIT_OK:
            runlog.line(runlog.FINISHED, f"Daily backfill cron job completed successfully in {elapsed} ({totals})")
            alerts.ping(self.settings, "success")
        else:
            first = self.failures[0]
            runlog.line(runlog.FINISHED, f"Daily backfill cron job failed at {first.step} (exit {code}) after {elapsed} ({totals})")
            alerts.notify_failure(
                self.settings, first.step, code, [f"{f.step}: {f.message}" for f in self.failures]
            )
        return code


def _failed(node: Any) -> bool:
    return str(getattr(node, "status", "")).lower() in ("fail", "error", "runtime error", "runtime_error")


def _error_lines(message: str) -> None:
    """A multi-line message (dbt's output tail) as several log lines, each in the log format.

    Each line is stripped on both sides: psycopg2's messages indent their continuation lines with
    spaces and tabs, and `<marker> <message>` must be followed by the message itself.
    """
    for text in message.strip().splitlines() or [""]:
        if text.strip():
            runlog.line(runlog.ERROR, text.strip())


def _node_text(node: Any, max_chars: int = 600) -> str:
    """`name status (n failing rows): message`, the message's lines joined and shortened."""
    failures = getattr(node, "failures", None)
    message = " | ".join(part.strip() for part in (getattr(node, "message", None) or "").splitlines() if part.strip())
    if len(message) > max_chars:
        message = message[: max_chars - 1] + "…"
    text = f"{node.name} {node.status}"
    if failures:
        text += f" ({failures} failing rows)"
    return f"{text}: {message}" if message else text


def _summary(outcome: Any) -> str:
    counts: dict[str, int] = {}
    for node in outcome.results:
        counts[str(node.status)] = counts.get(str(node.status), 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no nodes"


def _problems(outcome: Any) -> str:
    failed = [_node_text(node) for node in outcome.results if _failed(node)]
    return "; ".join(failed) if failed else f"{outcome.command} did not succeed"


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"Interrupted by {signal.Signals(signum).name}")


def run(settings: Settings) -> int:
    """Run the nightly job once; return its exit code (DESIGN.md §4)."""
    runlog.setup(settings.log_file)
    runlog.register_secrets(settings.secrets())
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with run_lock(lock_path(settings)):
            with recording("run") as record:
                return Job(settings, record=record).run()
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
    """`alphadb run` whose settings do not load: still log the error to the run log (exit 2).

    The log file is resolved as far as possible (ALPHADB_LOG_FILE from the environment or `.env`,
    else the default), so a cron run that stops on a bad setting leaves its reason in the log.
    """
    from pipelines.config import default_log_file, merged_environment

    try:
        env = merged_environment(environ)
    except AlphaDBError:  # an unreadable .env: the environment alone
        env = dict(os.environ if environ is None else environ)
    raw = env.get("ALPHADB_LOG_FILE", "").strip()
    log_file = Path(raw).expanduser() if raw else default_log_file(Path())
    runlog.setup(log_file)
    runlog.line(runlog.START, "Starting daily backfill cron job")
    runlog.line(runlog.ERROR, f"Configuration error: {exc}")
    runlog.line(runlog.FINISHED, f"Daily backfill cron job failed at Configuration (exit {EXIT_CONFIG})")
    return EXIT_CONFIG


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.nightly`: the job without the CLI (settings errors exit 2, logged)."""
    from pipelines.config import load_settings
    from pipelines.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as exc:
        return log_config_error(exc)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
