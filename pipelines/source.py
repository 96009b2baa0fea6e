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
from typing import Any

from pipelines.errors import AlphaDBError

QUICK_RETRY_S = 1.0  # the one retry of an unreachable host: a blip of the resolver or a restart
UNREACHABLE_ATTEMPTS = 2
OFFLINE_HINT = "`make demo` runs the job offline against the bundled CoinGecko simulator"
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


def preflight(settings: Any, connection: Any) -> None:
    """Before a load writes anything: one cheap request proves the API host is reachable."""
    from pipelines.coingecko.client import CoinGeckoClient

    CoinGeckoClient(settings).ping()
