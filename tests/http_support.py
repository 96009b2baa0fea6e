"""HTTP on loopback for the tests: one server implementation (`LoopbackServer`) and what is built on
it (the real CoinGecko responses served as CoinGecko would, a webhook receiver for Slack and
healthcheck pings), a port nothing listens on, and the simulator's request log.

Nothing here replaces our own code: the client, the loader and the alerts talk real HTTP to these.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from requests.structures import CaseInsensitiveDict

Answer = tuple[int, Mapping[str, str], "str | bytes"]  # status, headers, body
Respond = Callable[[str, Mapping[str, str]], Answer]  # (path with query, request headers) -> answer


@dataclass
class Received:
    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port) that records every request in `received` and
    answers GET and POST with `respond(path, headers)`."""

    def __init__(self, respond: Respond) -> None:
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = CaseInsensitiveDict(self.headers.items())
                server.received.append(Received(self.command, self.path, headers, body))
                status, extra, payload = respond(self.path, headers)
                data = payload.encode() if isinstance(payload, str) else payload
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def base_url(self) -> str:
        """As a CoinGecko base URL."""
        return self.url("/api/v3")

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WebhookReceiver(LoopbackServer):
    """Records the Slack webhook's and the healthcheck's requests; answers `status` (500 to test an
    undeliverable alert)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        super().__init__(lambda path, headers: (self.status, {}, "ok"))

    def posts(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(prefix)]


@dataclass
class FixtureRoute:
    coin_id: str
    vs_currency: str
    body: dict[str, list[list[float]]]


class FixtureServer(LoopbackServer):
    """Serves real response bodies as CoinGecko would: `/coins/{id}/market_chart` answers the whole
    file; `/coins/{id}/market_chart/range` its points with from <= ts <= to (the real API filters
    the same way). Each coin id maps to one file."""

    def __init__(self, routes: Iterable[FixtureRoute]) -> None:
        self.routes = {r.coin_id: r for r in routes}
        super().__init__(self._respond)

    def _respond(self, path: str, headers: Mapping[str, str]) -> Answer:
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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the simulator's request log -------------------------------------------------------------

def data_requests(sim: Any, coin: str | None = None) -> list[dict[str, Any]]:
    """market_chart and /range requests the simulator answered (any status), optionally for one coin."""
    return [r for r in sim.requests if "/market_chart" in r["path"] and (coin is None or r["coin"] == coin)]


def ok_data_requests(sim: Any, coin: str | None = None) -> list[dict[str, Any]]:
    return [r for r in data_requests(sim, coin) if r["status"] == 200]
