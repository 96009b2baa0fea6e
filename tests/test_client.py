"""CoinGeckoClient over real HTTP (the simulator, or a canned loopback server for answers the
simulator does not give): plan URLs and headers, the rate limiter, retries and their limits, each
error's message, and the API key never leaking.

A fake `sleep` keeps retry tests fast; `test_retry_after_seconds_real_wait` waits for real.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from http_support import LoopbackServer, closed_port, data_requests
from process_support import isolated_env

from pipelines.coingecko.client import (
    CoinGeckoClient,
    CoinGeckoError,
    CoinNotFound,
    HistoryLimitExceeded,
    RateLimiter,
    parse_retry_after,
)
from pipelines.config import Pair, Settings, load_settings
from pipelines.errors import ConfigError
from pipelines.source import HostUnreachable

BTC = Pair("BTC/USDT", "bitcoin", "usd")
DEMO_KEY, PRO_KEY = "CG-demo-test-key", "CG-pro-test-key"
SECRET = "CG-demo-s3cr3t-9f8e7d6c"


def settings(tmp_path: Path, base_url: str, **extra: str) -> Settings:
    limits = {"COINGECKO_TIMEOUT_S": "5", "COINGECKO_MAX_RETRY_AFTER_S": "300", "COINGECKO_RETRY_BUDGET_S": "900"}
    return load_settings(isolated_env(tmp_path, base_url, **{**limits, **extra}))


class Sleeps(list):
    """A fake sleep that records retry waits (the rate limiter's sub-10 ms waits are ignored)."""

    def __call__(self, seconds: float) -> None:
        if seconds > 0.01:
            self.append(seconds)


def client(tmp_path: Path, base_url: str, sleep: Any = None, **extra: str) -> CoinGeckoClient:
    """A client on its own rate limiter, and with a fake `sleep` when given, so that waits are
    recorded instead of slept (the process-wide limiter of its host is the default otherwise)."""
    s = settings(tmp_path, base_url, **extra)
    if sleep is None:
        return CoinGeckoClient(s)
    return CoinGeckoClient(s, limiter=RateLimiter(s.rate_limit_per_min, sleep=sleep), sleep=sleep)


def past_window(now: float | None = None) -> tuple[int, int]:
    """A past day anchored at half past the hour: samples land up to a minute after each full
    hour, so such a window holds exactly 24 of them whatever the time of day the test runs."""
    now = time.time() if now is None else now
    end = int(now) // 3600 * 3600 - 9 * 86400 + 1800
    return end - 86400, end


def fetch(c: CoinGeckoClient, pair: Pair = BTC) -> dict[str, Any]:
    start, end = past_window()
    return c.market_chart_range(pair, start, end, "test window")


@pytest.fixture
def captured() -> Iterator[list[str]]:
    """Every log line the client emits, formatted (the `alphadb` logger may not propagate)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    log = logging.getLogger("alphadb.coingecko")
    old_level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield lines
    log.removeHandler(handler)
    log.setLevel(old_level)


# --- plans: URL and header ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("plan", "key", "host_kind", "header"),
    [("public", None, "public", None), ("demo", DEMO_KEY, "public", "x-cg-demo-api-key"), ("pro", PRO_KEY, "pro", "x-cg-pro-api-key")],
)
def test_plan_header_accepted_by_the_simulator(tmp_path: Path, simulator, plan: str, key: str | None, host_kind: str, header: str | None) -> None:  # type: ignore[no-untyped-def]
    simulator.configure(host_kind=host_kind)
    extra = {"COINGECKO_PLAN": plan, **({"COINGECKO_API_KEY": key} if key else {})}
    c = client(tmp_path, simulator.base_url, **extra)
    c.ping()
    body = fetch(c)
    assert len(body["prices"]) == 24
    chart = data_requests(simulator)[-1]
    assert chart["status"] == 200
    assert chart["plan"] == plan and chart["key_header"] == header
    assert chart["path"] == "/api/v3/coins/bitcoin/market_chart/range"
    assert chart["query"]["vs_currency"] == "usd" and "x_cg_demo_api_key" not in chart["query"]


@pytest.mark.parametrize(
    ("plan", "key", "host", "header"),
    [
        ("public", None, "https://api.coingecko.com/api/v3", None),
        ("demo", SECRET, "https://api.coingecko.com/api/v3", "x-cg-demo-api-key"),
        ("pro", SECRET, "https://pro-api.coingecko.com/api/v3", "x-cg-pro-api-key"),
    ],
)
def test_plan_url_and_exact_header_sent(tmp_path: Path, plan: str, key: str | None, host: str, header: str | None) -> None:
    env = {"COINGECKO_PLAN": plan, **({"COINGECKO_API_KEY": key} if key else {})}
    s = load_settings({"ALPHADB_ENV_FILE": str(tmp_path / "absent.env"), **env})
    assert s.base_url == host  # the real host for the plan when no override is set
    with LoopbackServer(lambda path, headers: (200, {"Content-Type": "application/json"}, '{"gecko_says": "hi"}')) as server:
        c = client(tmp_path, server.base_url, **env)
        c.ping()
        fetch(c)
    for request in server.received:
        cg_headers = {k: v for k, v in request.headers.items() if k.startswith("x-cg-")}
        assert cg_headers == ({header: key} if header else {})
        assert SECRET not in request.path  # the key travels in the header only, never the URL
        assert request.headers["user-agent"].startswith("alphadb-elt")
    assert server.received[1].path.startswith("/api/v3/coins/bitcoin/market_chart/range?")


# --- rate limiter ---------------------------------------------------------------------------

def test_rate_limiter_spaces_requests_evenly_fake_clock() -> None:
    now = [100.0]
    starts: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(30, clock=lambda: now[0], sleep=sleep)  # one request per 2 s
    for _ in range(5):
        limiter.wait()
        starts.append(now[0])
    assert [b - a for a, b in zip(starts, starts[1:])] == [2.0, 2.0, 2.0, 2.0]
    now[0] += 10  # idle time is not banked into a burst
    limiter.wait()
    first = now[0]
    limiter.wait()
    assert now[0] - first == 2.0


def test_rate_limiter_never_fits_more_than_the_limit_in_a_minute_fake_clock() -> None:
    """Even spacing alone puts request N+1 exactly 60 s after request 1: a server counting a
    sliding minute (with network jitter) sees N+1 and answers 429. The guard leaves a margin."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(3, clock=lambda: now[0], sleep=sleep)  # 20 s apart, 3 a minute
    starts = []
    for _ in range(7):
        limiter.wait()
        starts.append(now[0])
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] > 60.0, starts
    assert starts[:3] == [0.0, 20.0, 40.0]


def test_clients_of_one_process_share_the_rate_budget(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    """A backfill then a nightly load (or a load then a heal) create new clients: they must not each
    start with a fresh budget, or the server sees more than the limit in its minute."""
    first = client(tmp_path, simulator.base_url, COINGECKO_RATE_LIMIT_PER_MIN="120")  # 0.5 s apart
    second = client(tmp_path, simulator.base_url, COINGECKO_RATE_LIMIT_PER_MIN="120")
    first.ping()
    second.ping()
    times = [r["time"] for r in simulator.requests]
    assert len(times) == 2 and times[1] - times[0] >= 0.45


def test_how_a_client_waits_between_retries_does_not_change_its_rate_budget(tmp_path: Path) -> None:
    """The shared budget is the default whatever `sleep` a client gets; only an explicit limiter
    replaces it."""
    s = settings(tmp_path, "http://127.0.0.1:9/api/v3")
    shared = CoinGeckoClient(s).limiter
    assert CoinGeckoClient(s, sleep=Sleeps()).limiter is shared
    own = RateLimiter(s.rate_limit_per_min)
    assert CoinGeckoClient(s, limiter=own).limiter is own


def test_rate_limiter_real_spacing_seen_by_the_server(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    c = client(tmp_path, simulator.base_url, COINGECKO_RATE_LIMIT_PER_MIN="400")  # 0.15 s apart
    before, started = time.time(), time.monotonic()
    for _ in range(4):
        c.ping()
    assert time.monotonic() - started >= 0.44
    times = [r["time"] for r in simulator.requests]  # wall clock, to the ms
    assert len(times) == 4
    # The limiter starts request k at its turn, k intervals after the first: the server never saw one
    # early (exact, whatever the machine's load: the server logs a request after it was sent)...
    assert all(t - before >= k * 0.15 - 0.001 for k, t in enumerate(times)), [t - before for t in times]
    # ...and saw them spread out, not in a burst. Only loosely: a request that starts late (a wake-up
    # or a new connection delayed on a busy machine) shortens the next gap by its lateness, since the
    # limiter keeps its schedule (a late first start and a 20 ms late wake-up gave 0.131 s here).
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.1


# --- 429 and Retry-After --------------------------------------------------------------------

def test_retry_after_seconds_real_wait(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "rate_limit", "retry_after": "1", "count": 1})
    c = client(tmp_path, simulator.base_url)  # real time.sleep
    started = time.monotonic()
    body = fetch(c)
    elapsed = time.monotonic() - started
    assert body["prices"] and 1.0 <= elapsed < 3.0
    assert [r["status"] for r in data_requests(simulator)] == [429, 200]
    gap = data_requests(simulator)[1]["time"] - data_requests(simulator)[0]["time"]
    assert gap >= 0.99  # the server saw the retry only after Retry-After
    assert c.retries == 1 and c.requests_made == 2


@pytest.mark.parametrize("seconds", ["4", "119"])  # also above 60 s (the official SDK's cap)
def test_retry_after_seconds_honoured(tmp_path: Path, simulator, seconds: str) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "rate_limit", "retry_after": seconds, "count": 1})
    sleeps = Sleeps()
    assert fetch(client(tmp_path, simulator.base_url, sleeps))["prices"]
    assert sleeps == [float(seconds)]


def test_retry_after_http_date_honoured(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "rate_limit", "retry_after_http_date": 3, "count": 1})
    sleeps = Sleeps()
    assert fetch(client(tmp_path, simulator.base_url, sleeps))["prices"]
    assert len(sleeps) == 1 and 1.8 <= sleeps[0] <= 3.1  # an HTTP date has whole seconds


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("") is None


def test_rate_limit_without_retry_after_backs_off(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "rate_limit", "retry_after": None, "count": 2})
    sleeps = Sleeps()
    assert fetch(client(tmp_path, simulator.base_url, sleeps))["prices"]
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_retry_after_above_the_cap_is_a_clear_error(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "rate_limit", "retry_after": "600"})
    sleeps = Sleeps()
    c = client(tmp_path, simulator.base_url, sleeps, COINGECKO_MAX_RETRY_AFTER_S="120")
    with pytest.raises(CoinGeckoError) as info:
        fetch(c)
    message = str(info.value)
    assert "600s" in message and "COINGECKO_MAX_RETRY_AFTER_S=120" in message and "BTC/USDT" in message
    assert info.value.exit_code == 1
    assert sleeps == [] and len(data_requests(simulator)) == 1  # gave up at once, no waiting


# --- 5xx, budget, timeouts, connection errors -------------------------------------------------

def test_server_error_burst_is_retried_with_exponential_backoff(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_faults([
        {"kind": "server_error", "status": 500, "count": 1},
        {"kind": "server_error", "status": 502, "count": 1},
        {"kind": "server_error", "status": 503, "body": "plain", "count": 1},
        {"kind": "server_error", "status": 504, "count": 1},
    ])
    sleeps = Sleeps()
    c = client(tmp_path, simulator.base_url, sleeps)
    assert len(fetch(c)["prices"]) == 24
    assert [r["status"] for r in data_requests(simulator)] == [500, 502, 503, 504, 200]
    for attempt, wait in enumerate(sleeps):
        assert 2**attempt * 0.5 <= wait <= 2**attempt  # jittered exponential backoff
    assert c.retries == 4


def test_retries_exhausted_names_pair_and_window(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "server_error", "status": 503})
    sleeps = Sleeps()
    c = client(tmp_path, simulator.base_url, sleeps, COINGECKO_RETRY_BUDGET_S="60")
    with pytest.raises(CoinGeckoError) as info:
        fetch(c)
    message = str(info.value)
    assert "BTC/USDT test window" in message and "HTTP 503" in message
    assert "failed after 6 attempt(s)" in message and "COINGECKO_RETRY_BUDGET_S=60" in message
    assert len(data_requests(simulator)) == 6 and len(sleeps) == 5


def test_retry_budget_bounds_real_time(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "server_error", "status": 500})
    c = client(tmp_path, simulator.base_url, COINGECKO_RETRY_BUDGET_S="1.5")  # real sleep
    started = time.monotonic()
    with pytest.raises(CoinGeckoError, match=r"COINGECKO_RETRY_BUDGET_S=1.5s"):
        fetch(c)
    assert time.monotonic() - started < 2.5  # the next backoff would overrun the budget: stop
    assert 1 <= len(data_requests(simulator)) <= 2


def test_timeout_is_retried(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "slow", "delay_s": 5, "count": 1})
    sleeps = Sleeps()
    # A timeout the retry's normal answer meets even on a busy machine (with 0.3 s, an answer 350 ms
    # late timed out too: a third request).
    c = client(tmp_path, simulator.base_url, sleeps, COINGECKO_TIMEOUT_S="1")
    started = time.monotonic()
    assert len(fetch(c)["prices"]) == 24
    assert time.monotonic() - started < 4  # did not wait for the slow (5 s) answer
    assert c.requests_made == 2 and c.retries == 1 and len(sleeps) == 1


def test_timeouts_exhausted_say_so(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "slow", "delay_s": 1.0})
    c = client(tmp_path, simulator.base_url, Sleeps(), COINGECKO_TIMEOUT_S="0.2")
    with pytest.raises(CoinGeckoError, match=r"no answer within 0.2s"):
        fetch(c)
    assert c.requests_made == 6


def test_connection_refused(tmp_path: Path) -> None:
    port = closed_port()
    sleeps = Sleeps()
    c = client(tmp_path, f"http://127.0.0.1:{port}/api/v3", sleeps)
    with pytest.raises(HostUnreachable) as info:
        fetch(c)
    assert f"host 127.0.0.1:{port} could not be reached (connection refused" in str(info.value)
    assert c.requests_made == 2 and len(sleeps) == 1  # one quick retry, not the transient-error backoff


# --- bodies that are not JSON ------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 503])
def test_cloudflare_html_page_is_retried(tmp_path: Path, simulator, status: int) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "html", "status": status, "count": 1})
    assert len(fetch(client(tmp_path, simulator.base_url, Sleeps()))["prices"]) == 24
    assert [r["status"] for r in data_requests(simulator)] == [status, 200]


def test_persistent_html_page_gives_a_clear_error(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "html", "status": 503})  # Cloudflare's page says "error code: 1015"
    with pytest.raises(CoinGeckoError) as info:
        fetch(client(tmp_path, simulator.base_url, Sleeps()))
    message = str(info.value)
    assert "rate limited (HTTP 503)" in message and "<" not in message and "BTC/USDT" in message
    page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
    with LoopbackServer(lambda path, headers: (502, {"Content-Type": "text/html"}, page)) as server:
        with pytest.raises(CoinGeckoError) as info:
            fetch(client(tmp_path, server.base_url, Sleeps()))
    message = str(info.value)
    assert "HTTP 502: an HTML error page" in message and "<" not in message


def test_plain_error_code_1015_is_a_rate_limit(tmp_path: Path) -> None:
    answers = iter([(403, {"Content-Type": "text/plain"}, "error code: 1015"), (200, {"Content-Type": "application/json"}, '{"prices": []}')])
    with LoopbackServer(lambda path, headers: next(answers)) as server:
        sleeps = Sleeps()
        assert fetch(client(tmp_path, server.base_url, sleeps)) == {"prices": []}
    assert len(sleeps) == 1
    with LoopbackServer(lambda path, headers: (403, {"Content-Type": "text/plain"}, "error code: 1015")) as server:
        with pytest.raises(CoinGeckoError, match=r"rate limited \(HTTP 403\)"):
            fetch(client(tmp_path, server.base_url, Sleeps()))


@pytest.mark.parametrize("mode", ["short_body", "connection_drop"])
def test_truncated_json_is_retried(tmp_path: Path, simulator, mode: str) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "truncated_json", "mode": mode, "count": 1})
    assert len(fetch(client(tmp_path, simulator.base_url, Sleeps()))["prices"]) == 24
    assert len(data_requests(simulator)) == 2


def test_persistent_truncated_json_gives_a_clear_error(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "truncated_json"})
    with pytest.raises(CoinGeckoError, match="not valid JSON"):
        fetch(client(tmp_path, simulator.base_url, Sleeps()))


# --- fatal errors: not retried, actionable ---------------------------------------------------

def test_pro_key_on_public_host_10010(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    c = client(tmp_path, simulator.base_url, Sleeps(), COINGECKO_PLAN="pro", COINGECKO_API_KEY=PRO_KEY)
    with pytest.raises(ConfigError) as info:
        fetch(c)
    assert "10010" in str(info.value) and "COINGECKO_PLAN=pro" in str(info.value)
    assert info.value.exit_code == 2 and len(data_requests(simulator)) == 1


def test_demo_key_on_pro_host_10011(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.configure(host_kind="pro")
    c = client(tmp_path, simulator.base_url, Sleeps(), COINGECKO_PLAN="demo", COINGECKO_API_KEY=DEMO_KEY)
    with pytest.raises(ConfigError) as info:
        c.ping()
    assert "10011" in str(info.value) and "COINGECKO_PLAN=demo" in str(info.value)
    assert info.value.exit_code == 2 and len(simulator.requests) == 1


def test_invalid_or_missing_key(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    c = client(tmp_path, simulator.base_url, Sleeps(), COINGECKO_PLAN="demo", COINGECKO_API_KEY=SECRET)
    with pytest.raises(ConfigError) as info:
        fetch(c)
    assert "HTTP 401" in str(info.value) and "was rejected" in str(info.value) and "COINGECKO_API_KEY" in str(info.value)
    assert SECRET not in str(info.value)
    simulator.configure(host_kind="pro")
    with pytest.raises(ConfigError, match="key is missing for COINGECKO_PLAN=public"):
        fetch(client(tmp_path, simulator.base_url, Sleeps()))
    assert len(data_requests(simulator)) == 2  # neither was retried


def test_unknown_coin_is_named(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    pair = Pair("NOPE/USDT", "no-such-coin", "usd")
    with pytest.raises(CoinNotFound) as info:
        fetch(client(tmp_path, simulator.base_url, Sleeps()), pair)
    assert "'no-such-coin'" in str(info.value) and "NOPE/USDT" in str(info.value) and "ALPHADB_PAIRS" in str(info.value)
    assert info.value.exit_code == 5 and len(data_requests(simulator)) == 1


def test_invalid_vs_currency_is_a_config_error(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="vs_currency 'xyz'"):
        fetch(client(tmp_path, simulator.base_url, Sleeps()), Pair("BTC/XYZ", "bitcoin", "xyz"))


def test_history_beyond_365_days_10012(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    c = client(tmp_path, simulator.base_url, Sleeps())
    now = int(time.time())
    with pytest.raises(HistoryLimitExceeded) as info:
        c.market_chart_range(BTC, now - 400 * 86400, now - 380 * 86400, "old window")
    message = str(info.value)
    assert "10012" in message and "365 days" in message and "clamped" in message and "public" in message
    assert len(data_requests(simulator)) == 1


# --- the key never leaks ----------------------------------------------------------------------

def test_api_key_never_in_exceptions_logs_or_request_log(tmp_path: Path, simulator, captured: list[str]) -> None:  # type: ignore[no-untyped-def]
    simulator.configure(demo_keys=[SECRET])
    texts: list[str] = []

    def attempt(c: CoinGeckoClient, pair: Pair = BTC) -> None:
        try:
            fetch(c, pair)
        except Exception as exc:  # noqa: BLE001 - collecting every message
            texts.extend([str(exc), repr(exc), repr(exc.args)])

    env = {"COINGECKO_PLAN": "demo", "COINGECKO_API_KEY": SECRET}
    simulator.add_faults([{"kind": "server_error", "count": 2}, {"kind": "rate_limit", "retry_after": "1", "count": 1}])
    attempt(client(tmp_path, simulator.base_url, Sleeps(), **env))  # retries logged, then success
    simulator.add_fault({"kind": "rate_limit", "retry_after": "999", "count": 1})
    attempt(client(tmp_path, simulator.base_url, Sleeps(), **env))  # above the cap
    simulator.add_fault({"kind": "server_error"})
    attempt(client(tmp_path, simulator.base_url, Sleeps(), **env))  # retries exhausted
    simulator.clear_faults()
    attempt(client(tmp_path, simulator.base_url, Sleeps(), **env), Pair("X/USDT", "no-such-coin", "usd"))
    simulator.configure(host_kind="pro")
    attempt(client(tmp_path, simulator.base_url, Sleeps(), **env))  # 10011
    # A server that echoes the key back in its error bodies: every message is scrubbed.
    answers = iter([(500, {}, "boom for key " + SECRET), (500, {}, "again " + SECRET)] + [(401, {}, json.dumps({"error": "bad key " + SECRET}))])
    with LoopbackServer(lambda path, headers: next(answers)) as server:
        attempt(client(tmp_path, server.base_url, Sleeps(), **env))
    with LoopbackServer(lambda path, headers: (502, {}, "upstream said " + headers.get("x-cg-demo-api-key", ""))) as server:
        attempt(client(tmp_path, server.base_url, Sleeps(), **env))
    assert len(texts) >= 5 and captured, (texts, captured)
    everything = "\n".join(texts + captured) + json.dumps(simulator.requests)
    assert SECRET not in everything
    assert any("***" in t for t in texts + captured)  # the echoed key was there, masked
