"""Runs the dbt project (dbt_alphadb/, in place) as a subprocess and reports its results.

The CLI and the nightly job call only this module's public functions. dbt gets its connection from
the environment (profiles.yml reads POSTGRES_*; the password travels as
DBT_ENV_SECRET_POSTGRES_PASSWORD, which dbt scrubs from its logs and artifacts): no secret is ever on
a command line. dbt's target/ and logs/ live under ALPHADB_HOME/dbt (DBT_TARGET_PATH, DBT_LOG_PATH),
so runs with different homes (tests, parallel databases) never share state; dbt_packages/ stays in
the project, where `dbt deps` puts it. Pairs from ALPHADB_PAIRS reach dbt as the var `pairs`.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import psycopg2
import yaml

from pipelines import runlog
from pipelines.config import DBT_PROJECT_FILE, Settings, project_pairs
from pipelines.database import Connection, connect
from pipelines.errors import AlphaDBError, ConfigError

PROJECT_DIR = DBT_PROJECT_FILE.parent
CANDLE_SCHEMA = "dbt_intermediate"
# Schemas of the layout before dbt_staging/dbt_intermediate/dbt_test_failures and dlt_scratch.
LEGACY_SCHEMAS = ("alphadb_staging", "alphadb_intermediate", "alphadb_test_failures", "staging_staging")
DBT_TIMEOUT_S = 3600
FAILED_STATUSES = {"error", "fail", "runtime error"}
# Failing rows shown in a test's message (tests that store their failures: no_gaps, ...).
SHOWN_FAILURES = 5


@dataclass
class NodeResult:
    name: str  # e.g. "int_candles_1h", "no_gaps_int_candles_1h_1h", "coingecko.market_chart_points", "int_candles_1h::<unit test>"
    status: str  # dbt's: success, error, skipped, pass, fail, warn, runtime error
    message: str
    failures: int | None


@dataclass
class DbtOutcome:
    command: str  # e.g. "dbt build"
    success: bool
    results: list[NodeResult]
    elapsed_s: float

    @property
    def failed(self) -> list[NodeResult]:
        return [r for r in self.results if r.status in FAILED_STATUSES]

    @property
    def warned(self) -> list[NodeResult]:
        return [r for r in self.results if r.status == "warn"]


@dataclass
class Gap:
    pair: str
    timeframe: str
    start: datetime  # first missing bucket (UTC)
    end: datetime  # end of the last missing bucket (UTC, exclusive)
    missing_buckets: int


def dbt_dir(settings: Settings) -> Path:
    """dbt's working state (target/, logs/) for this ALPHADB_HOME."""
    return settings.home / "dbt"


def dbt_vars(settings: Settings, args: list[str], extra: Mapping[str, Any] | None = None) -> list[str]:
    """`args` with the vars this run needs merged into its `--vars` (a user's own vars are kept): the
    pairs, when they are not the project's (ALPHADB_PAIRS), and `extra`."""
    wanted = dict(extra or {})
    if settings.pairs != project_pairs():
        wanted["pairs"] = {pair.name: pair.series for pair in settings.pairs}
    if not wanted:
        return list(args)
    args = list(args)
    if "--vars" in args[:-1]:
        at = args.index("--vars")
        try:
            given = yaml.safe_load(args[at + 1]) or {}
        except yaml.YAMLError:
            given = None
        if not isinstance(given, dict):
            raise ConfigError(f"--vars {args[at + 1]!r} is not a YAML mapping, e.g. '{{gap_tolerance_1h: 3}}'")
        del args[at : at + 2]
        wanted = {**wanted, **given}
    return [*args, "--vars", json.dumps(wanted)]


def _dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def _environment(settings: Settings, connection: Connection, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "POSTGRES_", "PG"))}
    env.update(connection.environment())
    env["DBT_ENV_SECRET_POSTGRES_PASSWORD"] = connection.password
    # The password reaches dbt only through the scrubbed variable above (and libpq's PGPASSWORD).
    env.pop("POSTGRES_PASSWORD", None)
    state = dbt_dir(settings)
    env.update(
        {
            "DBT_TARGET_PATH": str(state / "target"),
            "DBT_LOG_PATH": str(state / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_USE_COLORS": "false",
            "DBT_VERSION_CHECK": "false",
        }
    )
    env.update(extra_env or {})
    return env


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _short_name(unique_id: str) -> str:
    """model.alphadb.int_candles_1h -> int_candles_1h; source.alphadb.coingecko.t -> coingecko.t;
    unit_test.alphadb.int_candles_1h.edges -> int_candles_1h::edges (as dbt prints it)."""
    parts = unique_id.split(".")
    if len(parts) < 3:
        return unique_id
    if parts[0] == "source":
        return ".".join(parts[2:])
    if parts[0] == "unit_test":
        return "::".join(parts[2:])
    return parts[2]


def _stored_failures(connection: Connection, relation: str) -> list[str]:
    """The first failing rows a test stored (its `store_failures` table), as text."""
    try:
        with connect(connection) as conn, conn.cursor() as cur:
            cur.execute(f"select * from {relation} limit {SHOWN_FAILURES}")  # relation comes from dbt
            columns = [c.name for c in cur.description]
            return [", ".join(f"{c}={_plain(v)}" for c, v in zip(columns, row)) for row in cur.fetchall()]
    except (AlphaDBError, psycopg2.Error):
        return []


def _plain(value: Any) -> str:
    return value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)


def _results(connection: Connection, run_results: dict[str, Any] | None, sources: dict[str, Any] | None) -> list[NodeResult]:
    results: list[NodeResult] = []
    for item in (run_results or {}).get("results", []):
        message = (item.get("message") or "").strip()
        relation = item.get("relation_name")
        if item.get("status") in ("fail", "warn") and relation and item.get("unique_id", "").startswith("test."):
            rows = _stored_failures(connection, relation)
            if rows:
                message = f"{message}: " + "; ".join(rows)
        results.append(NodeResult(_short_name(item.get("unique_id", "?")), item.get("status", "?"), message, item.get("failures")))
    for item in (sources or {}).get("results", []):
        status = item.get("status", "?")
        if status == "runtime error":
            message = item.get("error") or "freshness query failed"
        else:
            age = item.get("max_loaded_at_time_ago_in_s")
            latest = item.get("max_loaded_at")
            message = f"latest load {latest} ({age / 3600:.1f} h ago)" if age is not None else "no rows"
        results.append(NodeResult(_short_name(item.get("unique_id", "?")), status, message, None))
    return results


def run_dbt(
    settings: Settings,
    connection: Connection,
    args: list[str],
    extra_env: Mapping[str, str] | None = None,
    extra_vars: Mapping[str, Any] | None = None,
) -> DbtOutcome:
    """Run one dbt command (e.g. ["build"], ["run", "--full-refresh"]) and collect its node results.

    `extra_env` overlays the child's environment (e.g. {"PGTZ": "America/Los_Angeles"}); `extra_vars`
    are dbt vars for this run (merged with any `--vars` in `args`).
    Raises AlphaDBError if dbt cannot run at all (not for failing models or tests).
    """
    state = dbt_dir(settings)
    target = state / "target"
    for artifact in ("run_results.json", "sources.json"):
        (target / artifact).unlink(missing_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    dirs = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    command = [_dbt_executable(), *dbt_vars(settings, args, extra_vars), *dirs]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            env=_environment(settings, connection, extra_env),
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=DBT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AlphaDBError(f"dbt {' '.join(args)} could not run: {type(exc).__name__}: {exc}") from None
    elapsed = time.monotonic() - started
    (state / "last_output.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    results = _results(connection, _read_json(target / "run_results.json"), _read_json(target / "sources.json"))
    if proc.returncode < 0:  # killed (the OOM killer, an operator): its output tail is only progress lines
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else -proc.returncode
        builds = args[:1] in (["run"], ["build"])
        raise AlphaDBError(
            f"dbt {' '.join(args)} was killed by {name} after {elapsed:.1f}s"
            + ("; models build in transactions: the candles keep their last complete state" if builds else "")
        )
    if proc.returncode not in (0, 1):  # 2: dbt itself failed (bad project, no connection, ...)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise AlphaDBError(f"dbt {' '.join(args)} failed to run (exit {proc.returncode}):\n{tail}")
    success = proc.returncode == 0 and not any(r.status in FAILED_STATUSES for r in results)
    if proc.returncode == 1 and not results:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        results.append(NodeResult("dbt", "error", tail, None))
    return DbtOutcome("dbt " + " ".join(args), success, results, elapsed)


def run_models(settings: Settings, connection: Connection, full_refresh: bool = False) -> DbtOutcome:
    """`dbt run`: build the candle models and marts (incrementally unless full_refresh). Once the
    candles are built, schemas of the earlier layout that are still there are named in the log with
    the command that removes them."""
    outcome = run_dbt(settings, connection, ["run", *(["--full-refresh"] if full_refresh else [])])
    if outcome.success:
        leftovers = legacy_schemas(connection)
        if leftovers:
            runlog.line(
                runlog.WARNING,
                f"Schemas of an earlier AlphaDB layout are no longer used (the candles are now in {CANDLE_SCHEMA}): "
                f"{', '.join(leftovers)}. Remove them with: alphadb psql -c 'drop schema {', '.join(leftovers)} cascade'"
                " (cascade also drops the views left on them, e.g. of pairs removed before the upgrade)",
            )
    return outcome


def legacy_schemas(connection: Connection) -> list[str]:
    """The schemas of the earlier layout (before dbt_staging, dbt_intermediate, dbt_test_failures and
    dlt_scratch) that still exist."""
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname = any(%s) order by nspname", (list(LEGACY_SCHEMAS),))
        return [row[0] for row in cur.fetchall()]


def source_freshness(settings: Settings, connection: Connection) -> DbtOutcome:
    """`dbt source freshness`: fails (status error) when the raw table's last load is too old."""
    return run_dbt(settings, connection, ["source", "freshness"])


@dataclass(frozen=True)
class TestsScope:
    """What the nightly's data tests read (dbt_alphadb/macros/tests_scope.sql): the points loaded
    since `loaded_since` and the candles an incremental run can have rebuilt from them (dbt computes
    where those start), plus, with `audit_weekday` (0 = Monday ... 6 = Sunday), the whole history of
    the pairs whose `int_configured_pairs.audit_weekday` is that day."""

    __test__ = False  # not a pytest test class, whatever its name

    loaded_since: datetime
    audit_weekday: int | None = None

    def dbt_vars(self) -> dict[str, Any]:
        scope: dict[str, Any] = {"tests_loaded_since": self.loaded_since.astimezone(timezone.utc).isoformat()}
        if self.audit_weekday is not None:
            scope["tests_audit_weekday"] = self.audit_weekday
        return scope

    def describe(self) -> str:
        text = f"candles loaded since {self.loaded_since.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
        if self.audit_weekday is not None:
            text += f" + all history of the pairs audited on {WEEKDAYS[self.audit_weekday]}s"
        return text


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def run_tests(settings: Settings, connection: Connection, scope: TestsScope | None = None) -> DbtOutcome:
    """`dbt test`: data tests (no gaps, candle sanity, recency, not null, ...) and unit tests, on the
    nightly's `scope` (see TestsScope), or on all history without one."""
    return run_dbt(settings, connection, ["test"], extra_vars=scope.dbt_vars() if scope else None)


def shell_environment(settings: Settings, connection: Connection) -> str:
    """`export` lines that let dbt run by hand in dbt_alphadb/ reach this database: POSTGRES_HOST
    (for the embedded server, its socket directory), _PORT, _USER and _DB. Never the password: the
    embedded server trusts local connections, and for another server profiles.yml reads
    POSTGRES_PASSWORD from the caller's environment."""
    values = {key: value for key, value in connection.environment().items() if key.startswith("POSTGRES_")}
    values.pop("POSTGRES_PASSWORD")
    lines = [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    if not settings.embedded_database:
        lines.append("# the password: export POSTGRES_PASSWORD (or DBT_ENV_SECRET_POSTGRES_PASSWORD) yourself")
    if settings.pairs != project_pairs():
        pairs = json.dumps({"pairs": {pair.name: pair.series for pair in settings.pairs}})
        lines.append(f"# ALPHADB_PAIRS is set; dbt reads {DBT_PROJECT_FILE.name}'s pairs unless given --vars {shlex.quote(pairs)}")
    return "\n".join(lines) + "\n"


def generate_docs(settings: Settings, connection: Connection, static: bool = True) -> Path:
    """`dbt docs generate` (offline); returns the single-file static_index.html or the docs index.html."""
    outcome = run_dbt(settings, connection, ["docs", "generate", *(["--static"] if static else [])])
    if not outcome.success:
        raise AlphaDBError("dbt docs generate failed: " + "; ".join(r.message for r in outcome.failed))
    target = dbt_dir(settings) / "target"
    page = target / ("static_index.html" if static else "index.html")
    if not page.exists():
        raise AlphaDBError(f"dbt docs generate wrote no {page.name}")
    return page


def find_gaps(connection: Connection) -> list[Gap]:
    """The gaps the `gaps` model lists (runs of unsampled buckets beyond the tolerance); [] if not built."""
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('public.gaps')")
        if cur.fetchone()[0] is None:
            return []
        cur.execute(
            "select pair, timeframe, gap_start, gap_end, missing_buckets from public.gaps"
            " order by pair, timeframe, gap_start"
        )
        return [Gap(*row) for row in cur.fetchall()]
