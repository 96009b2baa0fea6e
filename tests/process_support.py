"""Running AlphaDB the way its users do: the `alphadb` command in a subprocess with exactly the
environment a test gives it (started, waited for, or killed at a chosen moment), and the settings
environments those runs use.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from pipelines.database import Connection

REPO_ROOT = Path(__file__).resolve().parent.parent


def alphadb_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m pipelines.cli`."""
    script = Path(sys.executable).with_name("alphadb")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`alphadb <args>` in a subprocess with exactly `env` (plus nothing from the test process)."""
    return subprocess.run(
        [*alphadb_command(), *args],
        env=dict(env),
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The ❌ lines a run printed (on stdout or stderr)."""
    return [line for line in output(result).splitlines() if "❌" in line]


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


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


# --- settings environments ---------------------------------------------------------------------

def isolated_env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    """Environment for in-process Settings against `base_url`, isolated from the repo's .env."""
    env = {
        "ALPHADB_ENV_FILE": str(tmp_path / "absent.env"),
        "ALPHADB_HOME": str(tmp_path / "home"),
        "ALPHADB_LOG_FILE": str(tmp_path / "alphadb.log"),
        "COINGECKO_BASE_URL": base_url,
        "COINGECKO_RATE_LIMIT_PER_MIN": "100000",
        "COINGECKO_MAX_RETRY_AFTER_S": "5",
        "COINGECKO_RETRY_BUDGET_S": "5",
    }
    env.update(extra)
    return env


def settings_env(database: Connection, tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    """`isolated_env` plus a test database."""
    database_env = {
        "POSTGRES_HOST": database.host,
        "POSTGRES_PORT": str(database.port),
        "POSTGRES_USER": database.user,
        "POSTGRES_PASSWORD": database.password,
        "POSTGRES_DB": database.dbname,
    }
    return isolated_env(tmp_path, base_url, **{**database_env, **extra})


def env_for(env: Mapping[str, str], connection: Connection, home: Path, **extra: str) -> dict[str, str]:
    """`env` pointed at another database and ALPHADB_HOME."""
    out = dict(env)
    out.update(
        POSTGRES_HOST=connection.host, POSTGRES_PORT=str(connection.port), POSTGRES_USER=connection.user,
        POSTGRES_PASSWORD=connection.password, POSTGRES_DB=connection.dbname, ALPHADB_HOME=str(home),
    )
    out.update(extra)
    return out


def loaded_line_rate(text: str) -> tuple[int, float, float] | None:
    """(points, seconds, points/s) from the CLI's closing `loaded N points ... in Xs (R points/s)` line."""
    match = re.search(r"loaded (\d+) points in \d+ request\(s\) in ([\d.]+)s \(([\d,]+) points/s\)", text)
    if not match:
        return None
    return int(match[1]), float(match[2]), float(match[3].replace(",", ""))
