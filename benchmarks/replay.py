"""A replaying CoinGecko: the simulator behind a cache, in its own process.

`python -m benchmarks.replay [--coins N]` prints its base URL and serves until stdin closes. The
first request for a URL goes to an in-process `Simulator` (pro host, coin-01..coin-N besides its
default coins) and its 200 body is kept; every later request for the same URL is answered from
memory. The load benchmarks warm the cache first, so the timed loads measure the loader and
PostgreSQL, not the simulator's data generation (which, in-process, would also compete with the
loader for the GIL and a core).

Cached replies skip the simulator's authentication. The server-side rate limit is the simulator's
own (the same sliding minute, the same 429 with Retry-After), off until a benchmark sets it, so
the cache is warmed at full speed and only the timed load is limited:

- `POST /__replay/limit` with `{"per_min": 500}` (or `null`): a fresh limit, its minute empty;
- `GET /__replay/requests`: the data requests served since the last `DELETE /__replay/requests`
  (time, path, status), the simulator's request log format.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from pipelines.simulator import Simulator
from pipelines.simulator.faults import RATE_LIMIT_BODY
from pipelines.simulator.prices import DEFAULT_COINS
from pipelines.simulator.server import Settings, State

API_PREFIX = "/api/v3"


def bench_coins(count: int) -> frozenset[str]:
    """The simulator's default coins plus coin-01..coin-`count` (the benchmarks' synthetic pairs)."""
    return DEFAULT_COINS | {f"coin-{i:02d}" for i in range(1, count + 1)}


class _Cache:
    def __init__(self, upstream_root: str) -> None:
        self.upstream_root = upstream_root
        self.bodies: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        with self.lock:
            body = self.bodies.get(path)
            if body is not None:
                self.hits += 1
                return 200, body
            self.misses += 1
        try:
            with urlopen(Request(self.upstream_root + path, headers=headers), timeout=120) as reply:
                status, body = reply.status, reply.read()
        except HTTPError as exc:
            return exc.code, exc.read()
        if status == 200:
            with self.lock:
                self.bodies[path] = body
        return status, body


def limited(per_min: int | None) -> State:
    """The simulator's request state with only a rate limit: its sliding minute and its request log."""
    return State(settings=Settings(rate_limit_per_min=per_min))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers, 40 ms a request, which would be counted against the loader.
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        cache, state = self.server.cache, self.server.state
        headers: tuple[tuple[str, str], ...] = ()
        if self.path == "/__replay/stats":
            status, body = 200, json.dumps({"hits": cache.hits, "misses": cache.misses, "urls": len(cache.bodies)}).encode()
        elif self.path == "/__replay/requests":
            status, body = 200, json.dumps(state.requests()).encode()
        elif (wait := state.admit()) is not None:
            status, body = 429, json.dumps(RATE_LIMIT_BODY).encode()
            headers = (("Retry-After", str(math.ceil(wait))),)
        else:
            keep = {k: v for k, v in self.headers.items() if k.lower().startswith("x-cg-")}
            status, body = cache.get(self.path, keep)
        if not self.path.startswith("/__replay/"):
            state.record({"time": round(time.time(), 3), "path": self.path, "status": status})
        self._reply(status, body, headers)

    def do_POST(self) -> None:
        if self.path != "/__replay/limit":
            return self._reply(404, b"{}")
        length = int(self.headers.get("Content-Length") or 0)
        per_min = json.loads(self.rfile.read(length) or b"{}").get("per_min")
        self.server.state = limited(per_min)  # a fresh minute (and an empty request log)
        self._reply(200, json.dumps({"per_min": per_min}).encode())

    def do_DELETE(self) -> None:
        if self.path != "/__replay/requests":
            return self._reply(404, b"{}")
        self.server.state.clear_requests()
        self._reply(200, b"{}")

    def _reply(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cache: _Cache) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cache = cache
        self.state = limited(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__)
    parser.add_argument("--coins", type=int, default=40, help="serve coin-01..coin-N (default 40)")
    args = parser.parse_args(argv)
    with Simulator(host_kind="pro", coins=bench_coins(args.coins)) as sim:
        server = _Server(_Cache(sim.root_url))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        print(f"http://127.0.0.1:{server.server_address[1]}{API_PREFIX}", flush=True)
        sys.stdin.read()  # the parent closes our stdin (or dies) to stop us
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
