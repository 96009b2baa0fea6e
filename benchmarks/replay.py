"""A replaying CoinGecko: the simulator behind a cache, in its own process.

`python -m benchmarks.replay` prints its base URL and serves until stdin closes. The first
request for a URL goes to an in-process `Simulator` (pro host) and its 200 body is kept; every
later request for the same URL is answered from memory. The load benchmarks warm the cache
first, so the timed loads measure the loader and PostgreSQL, not the simulator's data
generation (which, in-process, would also compete with the loader for the GIL and a core).
Cached replies skip the simulator's authentication and rate limit: use the plain simulator for
anything that tests those.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from pipelines.simulator import Simulator

API_PREFIX = "/api/v3"


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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        cache = self.server.cache
        if self.path == "/__replay/stats":
            status, body = 200, json.dumps({"hits": cache.hits, "misses": cache.misses, "urls": len(cache.bodies)}).encode()
        else:
            keep = {k: v for k, v in self.headers.items() if k.lower().startswith("x-cg-")}
            status, body = cache.get(self.path, keep)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cache: _Cache) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cache = cache


def main() -> int:
    with Simulator(host_kind="pro") as sim:
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
