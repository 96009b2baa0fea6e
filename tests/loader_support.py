"""Shared helpers for the loader tests: run the CLI, read PostgreSQL, count simulator requests,
and serve the real CoinGecko responses of shared/coingecko/ over a loopback HTTP server.

Nothing here replaces our own code: tests drive the real client, planner, dlt pipeline and CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

import psycopg2

from pipelines.database import Connection

REPO_ROOT = Path(__file__).resolve().parent.parent
# Copies of the real CoinGecko responses of shared/coingecko/ (see PROVENANCE.md there): in the repo, so
# the tests never depend on a folder beside the clone.
FIXTURES = Path(os.environ.get("ALPHADB_COINGECKO_FIXTURES", REPO_ROOT / "tests" / "fixtures" / "coingecko"))
STAGING = "staging.market_chart_points"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


# --- the CLI ------------------------------------------------------------------------------

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


# --- PostgreSQL ---------------------------------------------------------------------------

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


def dlt_cursors(connection: Connection) -> dict[str, int]:
    """The nightly cursors as dlt last stored them in PostgreSQL (staging._dlt_pipeline_state)."""
    import base64
    import zlib

    from pipelines.coingecko import saved_progress

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


# --- the simulator's request log -------------------------------------------------------------

def data_requests(sim: Any, coin: str | None = None) -> list[dict[str, Any]]:
    """market_chart and /range requests the simulator answered (any status), optionally for one coin."""
    return [
        r for r in sim.requests
        if "/market_chart" in r["path"] and (coin is None or r["coin"] == coin)
    ]


def ok_data_requests(sim: Any, coin: str | None = None) -> list[dict[str, Any]]:
    return [r for r in data_requests(sim, coin) if r["status"] == 200]


# --- the real responses of shared/coingecko/ ---------------------------------------------------

def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def load_fixture(path: Path) -> dict[str, list[list[float]]]:
    return json.loads(path.read_text())


def expected_points(body: Mapping[str, list[list[float]]]) -> list[tuple[int, float, float, float]]:
    """What the loader must store for a real response: one row per instant, sorted.

    The only documented exception (PROVENANCE.md, file #1): a second-truncated copy of an
    instant (`...54.000` next to `...54.955`) is the same instant and is dropped for the precise one.
    """
    series = {key: {int(t): v for t, v in body[key]} for key in ("prices", "market_caps", "total_volumes")}
    stamps = sorted(set().union(*series.values()))
    precise_seconds = {t // 1000 for t in stamps if t % 1000}
    stamps = [t for t in stamps if t % 1000 or t // 1000 not in precise_seconds]
    return [
        (t, series["prices"].get(t), series["market_caps"].get(t), series["total_volumes"].get(t))
        for t in stamps
    ]


@dataclass
class FixtureRoute:
    coin_id: str
    vs_currency: str
    body: dict[str, list[list[float]]]


class CannedServer:
    """A loopback HTTP server whose answers come from `respond(path, headers) -> (status, headers, body)`.

    For answers the simulator does not give (a plain `error code: 1015`, a body echoing the key).
    """

    def __init__(self, respond: Any) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append({"path": self.path, "headers": headers})
                status, extra, body = respond(self.path, headers)
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/v3"

    def __enter__(self) -> "CannedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class FixtureServer(CannedServer):
    """Serves real response bodies as CoinGecko would, on 127.0.0.1.

    `/coins/{id}/market_chart` answers the whole file; `/coins/{id}/market_chart/range` answers the
    file's points with from <= ts <= to (the real API filters the same way). Each coin id maps to
    one file. Requests are logged in `requests`.
    """

    def __init__(self, routes: Iterable[FixtureRoute]) -> None:
        self.routes = {r.coin_id: r for r in routes}
        super().__init__(self._respond)

    def _respond(self, path: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        url = urlsplit(path)
        status, payload = self.answer(url.path, dict(parse_qsl(url.query)))
        return status, {"Content-Type": "application/json"}, json.dumps(payload)

    def answer(self, path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        parts = path.split("/")
        # /api/v3/coins/{id}/market_chart[/range]
        if len(parts) < 6 or parts[3] != "coins" or parts[5] != "market_chart":
            return 404, {"error": "Incorrect path"}
        route = self.routes.get(parts[4])
        if route is None:
            return 404, {"error": "coin not found"}
        if query.get("vs_currency") != route.vs_currency:
            return 400, {"error": "invalid vs_currency"}
        if len(parts) > 6 and parts[6] == "range":
            low, high = float(query["from"]) * 1000, float(query["to"]) * 1000
            return 200, {k: [p for p in v if low <= p[0] <= high] for k, v in route.body.items()}
        return 200, route.body


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def loaded_line_rate(text: str) -> tuple[int, float, float] | None:
    """(points, seconds, points/s) from the CLI's closing `loaded N points ... in Xs (R points/s)` line."""
    import re

    match = re.search(r"loaded (\d+) points in \d+ request\(s\) in ([\d.]+)s \(([\d,]+) points/s\)", text)
    if not match:
        return None
    return int(match[1]), float(match[2]), float(match[3].replace(",", ""))
