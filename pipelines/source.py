"""The data source of a run, checked before anything is written.

- Reachability: a host whose name does not resolve, that refuses connections or has no route is
  not worth minutes of retries. The client retries such a failure once, quickly, then stops with
  one line that says so and how to run the job offline (`make demo`). Timeouts, 5xx and 429 are
  transient and keep their retries (see the client).
- Provenance: a database holds the points of one source, recorded in `ops.data_source`. The
  bundled simulator says so in its `/ping` answer (its port changes every run, so its URL cannot
  tell). A run whose source differs from the recorded one stops (exit 2) before writing, so a
  demo never mixes simulated prices into a production database.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

from pipelines.database import connect
from pipelines.errors import AlphaDBError, ConfigError

QUICK_RETRY_S = 1.0  # the one retry of an unreachable host: a blip of the resolver or a restart
UNREACHABLE_ATTEMPTS = 2
OFFLINE_HINT = "`make demo` runs the job offline against the bundled CoinGecko simulator"
SIMULATOR_MARK = "alphadb_simulator"  # in the bundled simulator's /ping answer
_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED}


class HostUnreachable(AlphaDBError):
    """The API host cannot be reached at all (exit 1): no name, no route or nothing listening."""


def unreachable_reason(exc: BaseException) -> str | None:
    """Why a request could not even connect (name resolution, refused, no route), else None.

    requests wraps urllib3's error, which wraps the socket's: walk the chain of causes.
    """
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return "its name does not resolve"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, OSError) and item.errno in _NO_ROUTE:
            return "no route to it"
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return None


def host_unreachable(host: str, reason: str, attempts: int) -> HostUnreachable:
    return HostUnreachable(
        f"the CoinGecko host {host} could not be reached ({reason}, {attempts} attempt(s)): check the network "
        f"or COINGECKO_BASE_URL; {OFFLINE_HINT}"
    )


@dataclass(frozen=True)
class Source:
    """Where a run's points come from: `simulator` or `coingecko`, and the base URL used."""

    kind: str
    base_url: str

    @property
    def label(self) -> str:
        return f"the CoinGecko simulator ({self.base_url})" if self.kind == "simulator" else f"CoinGecko ({self.base_url})"


class SourceMismatch(ConfigError):
    """The database holds another source's points (exit 2): nothing was written."""


def identify(ping_answer: Any, base_url: str) -> Source:
    """The source behind an API's `/ping` answer: the bundled simulator marks its own."""
    simulated = isinstance(ping_answer, dict) and ping_answer.get(SIMULATOR_MARK) is True
    return Source("simulator" if simulated else "coingecko", base_url)


def where(settings: Any, connection: Any) -> str:
    """`database market at /socket (ALPHADB_HOME=...)`: enough to tell two databases apart."""
    place = f"ALPHADB_HOME={settings.home}" if settings.embedded_database else f"{connection.host}:{connection.port}"
    return f"database {connection.dbname} ({place})"


_CREATE = """
create schema if not exists ops;
create table if not exists ops.data_source (
    only_row boolean primary key default true check (only_row),
    kind text not null check (kind in ('coingecko', 'simulator')),
    base_url text not null,
    recorded_at timestamptz not null default now()
);
comment on table ops.data_source is
    'Where this database''s raw points come from (one row): coingecko or the bundled simulator. '
    'Runs from another source stop before writing; `alphadb reset-source --yes` clears it.';
"""


def claim(connection: Any, source: Source, place: str) -> None:
    """Record the database's source on its first run; raise SourceMismatch when it holds another."""
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('ops.data_source') is not null")
        if not cur.fetchone()[0]:
            cur.execute(_CREATE)
        cur.execute(
            "insert into ops.data_source (kind, base_url) values (%s, %s) on conflict (only_row) do nothing",
            (source.kind, source.base_url),
        )
        cur.execute("select kind, base_url from ops.data_source")
        kind, base_url = cur.fetchone()
    if kind != source.kind:
        held = Source(kind, base_url)
        raise SourceMismatch(
            f"{place} holds points from {held.label}, but this run's source is {source.label}; nothing written. "
            "Give this source its own ALPHADB_HOME or POSTGRES_DB, or run `alphadb reset-source --yes` to delete "
            "this database's points and switch it to the new source"
        )


def preflight(settings: Any, connection: Any) -> Source:
    """Before a load writes anything: the API host answers `/ping` (reachable, key accepted) and
    is the source this database already holds."""
    from pipelines.coingecko.client import CoinGeckoClient

    client = CoinGeckoClient(settings)
    source = identify(client.ping(), client.base_url)
    claim(connection, source, where(settings, connection))
    return source
