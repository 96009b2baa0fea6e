"""The CoinGecko v3 imitation over HTTP: plans and keys, validation, rate limit, admin API.

stdlib only (ThreadingHTTPServer): tests and benchmarks talk to it over real sockets, offline.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import json
import math
import re
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import SHUT_RDWR
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import faults as flt
from . import prices
from .faults import Reply, json_reply

API_PREFIX = "/api/v3"
HOST_KINDS = ("public", "pro")
HISTORY_LIMIT_MS = 365 * prices.MS_DAY  # public and demo plans
HISTORY_GRACE_MS = 60_000  # clients compute `from` with their own clock a moment earlier
KEY_SOURCES = (  # (where, name); the first one present decides
    ("header", "x-cg-pro-api-key"), ("header", "x-cg-demo-api-key"),
    ("query", "x_cg_pro_api_key"), ("query", "x_cg_demo_api_key"),
)
KEY_PARAMS = frozenset(name for where, name in KEY_SOURCES if where == "query")
ENTERPRISE_INTERVALS = frozenset({"hourly", "5m", "5minutely", "minutely"})

_MSG_MISSING_KEY = (
    "API Key Missing. Please make sure you're using the right authentication method. For Pro API, "
    "please visit: https://docs.coingecko.com/reference/authentication."
)
_MSG_INVALID_KEY = "Invalid API Key. Please make sure you're using the right authentication method."
_MSG_PRO_ON_PUBLIC = (
    "If you are using Pro API key, please change your root URL from api.coingecko.com to "
    "pro-api.coingecko.com"
)
_MSG_DEMO_ON_PRO = (
    "If you are using Demo API key, please change your root URL from pro-api.coingecko.com to "
    "api.coingecko.com"
)
_MSG_TIME_RANGE = (
    "Your request exceeds the allowed time range. Public API users are limited to querying "
    "historical data within the past 365 days. Upgrade to a paid plan to enjoy full historical "
    "data access: https://www.coingecko.com/en/api/pricing. "
)
_CHART_PATH = re.compile(r"^/api/v3/coins/(?P<coin>[^/]+)/market_chart(?P<range>/range)?/?$")


@dataclass
class Settings:
    """Everything a test may change at runtime (Python API or POST /__admin/config)."""

    host_kind: str = "public"
    rate_limit_per_min: int | None = None
    now: float | None = None  # fixed clock, epoch seconds
    now_offset: float = 0.0  # added to the real clock when `now` is not fixed
    demo_keys: frozenset[str] = frozenset({"CG-demo-test-key"})
    pro_keys: frozenset[str] = frozenset({"CG-pro-test-key"})
    coins: frozenset[str] = prices.DEFAULT_COINS

    def update(self, changes: Mapping[str, Any]) -> None:
        """Validate all changes first, then apply: a bad request changes nothing."""
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "host_kind":
                if value not in HOST_KINDS:
                    raise ValueError(f"host_kind must be one of {HOST_KINDS}")
            elif key == "rate_limit_per_min":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                          or value < 1):
                    raise ValueError("rate_limit_per_min must be a positive integer or null")
            elif key in ("now", "now_offset"):
                if (value is None and key == "now") or _is_finite(value):
                    value = None if value is None else float(value)
                else:
                    raise ValueError(f"{key} must be a finite number (epoch seconds)")
            elif key in ("demo_keys", "pro_keys", "coins"):
                if not isinstance(value, (list, tuple, set, frozenset)) or not all(
                        isinstance(v, str) for v in value):
                    raise ValueError(f"{key} must be a list of strings")
                value = frozenset(value)
            else:
                raise ValueError(f"unknown setting {key!r}")
            checked[key] = value
        for key, value in checked.items():
            setattr(self, key, value)

    def public_view(self) -> dict[str, Any]:
        view = asdict(self)
        for key in ("demo_keys", "pro_keys", "coins"):
            view[key] = sorted(view[key])
        return view


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class State:
    """Shared by all request threads; every mutable part is behind `lock` or its own lock."""

    settings: Settings = field(default_factory=Settings)
    faults: flt.FaultBook = field(default_factory=flt.FaultBook)
    log: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _window: collections.deque[float] = field(default_factory=collections.deque)

    def now(self) -> float:
        s = self.settings
        return s.now if s.now is not None else time.time() + s.now_offset

    def admit(self) -> float | None:
        """Sliding one-minute window over real time; the seconds to wait when over the limit."""
        limit = self.settings.rate_limit_per_min
        if limit is None:
            return None
        with self.lock:
            t = time.monotonic()
            while self._window and self._window[0] <= t - 60:
                self._window.popleft()
            if len(self._window) >= limit:
                return self._window[0] + 60 - t
            self._window.append(t)
            return None

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.log]

    def clear_requests(self) -> None:
        with self.lock:
            self.log.clear()


# --- CoinGecko API -------------------------------------------------------------------------

def _error_status(info: dict[str, Any], http: int, code: int, message: str, now: float,
                  nested: bool = False) -> Reply:
    """CoinGecko's `status` error body; 10012 comes wrapped in an extra `error` object."""
    info["error_code"] = code
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds")
    status = {"timestamp": stamp, "error_code": code, "error_message": message}
    return json_reply(http, {"error": {"status": status}} if nested else {"status": status})


def _simple_error(http: int, message: str) -> Reply:
    return json_reply(http, {"error": message})


def authenticate(state: State, headers: Mapping[str, str], query: Mapping[str, str],
                 info: dict[str, Any]) -> Reply | None:
    """Decide the plan from host kind and key, as CoinGecko does; sets info['plan']."""
    s = state.settings
    found = [(name, value) for where, name in KEY_SOURCES
             if (value := (headers if where == "header" else query).get(name)) is not None]
    if not found:
        if s.host_kind == "pro":
            return _error_status(info, 401, 10002, _MSG_MISSING_KEY, state.now())
        info["plan"] = "public"
        return None
    name, value = found[0]
    info["key_header"] = name  # which header/param carried it; never the key itself
    sent_as = "pro" if "pro" in name else "demo"
    if value in s.pro_keys:
        key_kind = "pro"
    elif value in s.demo_keys:
        key_kind = "demo"
    else:
        return _error_status(info, 401, 10002, _MSG_INVALID_KEY, state.now())
    if s.host_kind == "public" and "pro" in (key_kind, sent_as):
        return _error_status(info, 400, 10010, _MSG_PRO_ON_PUBLIC, state.now())
    if s.host_kind == "pro" and "demo" in (key_kind, sent_as):
        return _error_status(info, 400, 10011, _MSG_DEMO_ON_PRO, state.now())
    info["plan"] = key_kind
    return None


def parse_instant_ms(text: str) -> int:
    """UNIX seconds (float allowed) or ISO `YYYY-MM-DD` / `YYYY-MM-DDTHH:MM`, as UTC."""
    try:
        seconds = float(text)
    except ValueError:
        for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M"):
            try:
                parsed = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
            return int(parsed.timestamp() * 1000)
        raise ValueError(text) from None
    if not math.isfinite(seconds):
        raise ValueError(text)
    return round(seconds * 1000)


def _window(coin: str, is_range: bool, query: Mapping[str, str], now_ms: int) -> tuple[int, int] | Reply:
    """The requested [from, to] in ms, or the 400 reply CoinGecko gives for bad parameters."""
    if is_range:
        bounds = []
        for name in ("from", "to"):
            if not query.get(name):
                return _simple_error(400, f"Missing parameter {name}")
            try:
                bounds.append(parse_instant_ms(query[name]))
            except ValueError:
                return _simple_error(400, f"invalid {name}")
        return bounds[0], bounds[1]
    days = query.get("days")
    if not days:
        return _simple_error(400, "Missing parameter days")
    if days == "max":
        return prices.profile(coin).genesis_ms, now_ms
    try:
        n = float(days)
    except ValueError:
        return _simple_error(400, "invalid days")
    if not math.isfinite(n) or n <= 0:
        return _simple_error(400, "invalid days")
    return now_ms - round(n * prices.MS_DAY), now_ms


def market_chart(state: State, coin: str, is_range: bool, query: Mapping[str, str],
                 info: dict[str, Any]) -> Reply:
    info["coin"] = coin
    now = state.now()
    info["now"] = now  # the request log's `now`: the instant this answer is computed at
    now_ms = int(now * 1000)
    if coin not in state.settings.coins:
        return _simple_error(404, "coin not found")
    vs = (query.get("vs_currency") or "").lower()
    if not vs:
        return _simple_error(400, "Missing parameter vs_currency")
    if vs not in prices.VS_FACTORS:
        return _simple_error(400, "invalid vs_currency")
    interval = query.get("interval") or ""
    if interval in ENTERPRISE_INTERVALS:
        return _error_status(info, 401, 10005, f"interval={interval} is exclusive to Enterprise "
                             "plan customers only", now)
    if interval not in ("", "daily"):
        return _simple_error(400, "invalid interval")
    precision_text = query.get("precision") or "full"
    if precision_text != "full" and not (precision_text.isdigit() and int(precision_text) <= 18):
        return _simple_error(400, "invalid precision")
    precision = None if precision_text == "full" else int(precision_text)
    window = _window(coin, is_range, query, now_ms)
    if isinstance(window, Reply):
        return window
    from_ms, to_ms = window
    if info.get("plan") != "pro" and from_ms < now_ms - HISTORY_LIMIT_MS - HISTORY_GRACE_MS:
        return _error_status(info, 401, 10012, _MSG_TIME_RANGE, now, nested=True)

    fault = state.faults.take(coin)
    if fault is not None:
        info["fault"] = fault["kind"]
        if (reply := flt.response_fault(fault)) is not None:
            return reply
    gran = prices.granularity_for(from_ms, to_ms, now_ms, daily=interval == "daily")
    chart = prices.chart(coin, vs, from_ms, to_ms, now_ms, gran, precision)
    chart = flt.apply_windows(chart, state.faults.windows(coin, from_ms, to_ms))
    if fault is not None and fault["kind"] in flt.BODY_KINDS:
        chart = flt.body_fault(fault, chart, coin, vs, from_ms, to_ms, gran.step_ms)
    info["points"] = len(chart["prices"]) if isinstance(chart.get("prices"), list) else 0
    return flt.encode(fault, chart, (("Cache-Control", f"public, max-age={gran.cache_s}"),))


def api(state: State, method: str, path: str, query: Mapping[str, str],
        headers: Mapping[str, str], info: dict[str, Any]) -> Reply:
    if method != "GET":
        return _simple_error(405, "Method not allowed")
    wait = state.admit()
    if wait is not None:
        info["error_code"] = 429
        return json_reply(429, flt.RATE_LIMIT_BODY, (("Retry-After", str(math.ceil(wait))),))
    if (denied := authenticate(state, headers, query, info)) is not None:
        return denied
    if path.rstrip("/") == f"{API_PREFIX}/ping":
        # The simulator says what it is: a database can then tell simulated points from real ones.
        return json_reply(200, {"gecko_says": "(V3) To the Moon!", "alphadb_simulator": True})
    if (match := _CHART_PATH.match(path)) is None:
        return _simple_error(404, "Incorrect path. Please check https://www.coingecko.com/api/")
    return market_chart(state, unquote(match["coin"]), bool(match["range"]), query, info)


# --- admin API (test control) --------------------------------------------------------------

def admin(state: State, method: str, path: str, body: bytes) -> Reply:
    route = (method, path.rstrip("/"))
    try:
        payload = json.loads(body) if body.strip() else None
    except ValueError:
        return _simple_error(400, "body is not JSON")
    try:
        if route == ("POST", "/__admin/faults"):
            specs = payload if isinstance(payload, list) else [payload]
            state.faults.add(specs)
        elif route == ("DELETE", "/__admin/faults"):
            state.faults.clear()
        elif route == ("POST", "/__admin/config"):
            if not isinstance(payload, dict):
                return _simple_error(400, "config must be a JSON object")
            with state.lock:
                state.settings.update(payload)
        elif route == ("DELETE", "/__admin/requests"):
            state.clear_requests()
        elif route == ("GET", "/__admin/requests"):
            return json_reply(200, state.requests())
        elif route not in (("GET", "/__admin/faults"), ("GET", "/__admin/config")):
            return _simple_error(404, f"no admin route {method} {path}")
    except ValueError as exc:  # FaultError is a ValueError
        return _simple_error(400, str(exc))
    if route[1] == "/__admin/config":
        return json_reply(200, state.settings.public_view())
    if route[1] == "/__admin/faults":
        return json_reply(200, state.faults.snapshot())
    return json_reply(200, {"ok": True})


# --- HTTP plumbing -------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: benchmarks make hundreds of requests
    timeout = 120  # idle keep-alive connections are dropped after this
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK, about 40 ms per request, which no real API adds and which hides the loader's pace.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def version_string(self) -> str:
        return "cloudflare"  # what the real API answers with

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr access lines

    def _serve(self, method: str) -> None:
        started = time.perf_counter()
        state = self.server.state
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        is_admin = url.path.startswith("/__admin/")
        info: dict[str, Any] = {"plan": None, "key_header": None, "coin": None,
                                "error_code": None, "fault": None, "points": 0}
        try:
            if is_admin:
                reply = admin(state, method, url.path, body)
            else:
                reply = api(state, method, url.path, query, self.headers, info)
        except Exception as exc:  # a simulator bug must show up as a 500, not a hung client
            traceback.print_exc(file=sys.stderr)
            reply = _simple_error(500, f"simulator error: {exc!r}")
        if not is_admin:  # logged before sending, so a client never sees a reply it cannot find
            # A chart answer's own `now` (its live point is that instant): a fresh reading of the clock
            # here can be a second later once computing the answer crossed a second boundary.
            answered_at = info.pop("now", None)
            state.record({
                "time": round(time.time(), 3), "now": state.now() if answered_at is None else answered_at,
                "method": method,
                "path": url.path,
                "query": {k: ("<redacted>" if k in KEY_PARAMS else v) for k, v in query.items()},
                **info, "status": reply.status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            })
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout tests); nothing to do

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if not any(name.lower() == "cache-control" for name, _ in reply.headers):
            self.send_header("Cache-Control", "no-cache")
        body = reply.body
        if reply.drop_after is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
            body = body[: reply.drop_after]
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a `slow` reply must not delay stop()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close idle keep-alive sockets so clients of a stopped simulator fail fast."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            try:
                sock.shutdown(SHUT_RDWR)
            except OSError:
                pass


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback IPv4 address, got {host!r}") from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"the simulator binds to loopback only (127.0.0.0/8), got {host!r}")
    return host


class Simulator:
    """A CoinGecko v3 look-alike on 127.0.0.1, served from a daemon thread."""

    def __init__(
        self,
        host_kind: str = "public",
        rate_limit_per_min: int | None = None,
        now: float | None = None,
        *,
        now_offset: float = 0.0,
        demo_keys: set[str] | frozenset[str] | list[str] | None = None,
        pro_keys: set[str] | frozenset[str] | list[str] | None = None,
        coins: set[str] | frozenset[str] | list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = State()
        options = {"host_kind": host_kind, "rate_limit_per_min": rate_limit_per_min, "now": now,
                   "now_offset": now_offset, "demo_keys": demo_keys, "pro_keys": pro_keys,
                   "coins": coins}
        self.state.settings.update({k: v for k, v in options.items()
                                    if v is not None or k in ("now", "rate_limit_per_min")})
        self._address = (_loopback(host), port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Simulator:
        if self._server is not None:
            return self
        self._server = _Server(self._address, self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="coingecko-sim",
                                        kwargs={"poll_interval": 0.02}, daemon=True)  # fast stop()
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + API_PREFIX

    def now(self) -> float:
        """The simulator's clock, epoch seconds."""
        return self.state.now()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Same keys as POST /__admin/config; returns the resulting settings."""
        with self.state.lock:
            self.state.settings.update(changes)
            return self.state.settings.public_view()

    def add_fault(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self.state.faults.add([spec])[0]

    def add_faults(self, specs: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self.state.faults.add(specs)

    @property
    def faults(self) -> list[dict[str, Any]]:
        return self.state.faults.snapshot()

    def clear_faults(self) -> None:
        self.state.faults.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests()

    def clear_requests(self) -> None:
        self.state.clear_requests()
