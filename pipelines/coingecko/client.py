"""HTTP client for CoinGecko's market_chart endpoints: plan-aware auth, client-side rate limit,
bounded retries, and errors that tell the operator what to change.

The API key travels only in a request header; it never appears in a URL, a log line or an
exception message (every message passes through `_scrub`).
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import orjson
import requests

from pipelines.coingecko.settings import USER_AGENT
from pipelines.config import Pair, Settings
from pipelines.errors import AlphaDBError, ConfigError, UnknownCoin
from pipelines.source import QUICK_RETRY_S, UNREACHABLE_ATTEMPTS, HostUnreachable, host_unreachable, unreachable_reason

log = logging.getLogger("alphadb.coingecko")

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
MAX_ATTEMPTS = 6


class CoinGeckoError(AlphaDBError):
    """The API could not deliver a window after bounded retries (exit 1)."""


class CoinNotFound(UnknownCoin):
    """A configured coin id does not exist (exit 5): only that pair fails, the others load."""


class HistoryLimitExceeded(ConfigError):
    """The plan cannot see this far back (error 10012)."""


class RateLimiter:
    """Spaces request starts evenly, and never lets more than `per_minute` start in any 60 s.

    Even spacing alone lets request N+1 start exactly 60 s after request 1; with network jitter the
    server then sees N+1 requests in its minute and answers 429. The sliding-window guard keeps a
    small margin beyond the minute.
    """

    WINDOW_S = 60.0
    MARGIN_S = 0.25

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / per_minute
        self.capacity = max(1, int(per_minute))
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._starts: deque[float] = deque(maxlen=self.capacity)
        self._lock = threading.Lock()

    def wait(self) -> float:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            if len(self._starts) == self.capacity:
                start = max(start, self._starts[0] + self.WINDOW_S + self.MARGIN_S)
            self._starts.append(start)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            self._sleep(delay)
        return max(0.0, delay)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(base_url: str, per_minute: float) -> RateLimiter:
    """One limiter per process and host: a backfill followed by a nightly load (or a heal after the
    load) must share the budget, or the server counts more than the limit in its minute."""
    with _limiters_lock:
        return _limiters.setdefault((base_url, per_minute), RateLimiter(per_minute))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_code(body: Any) -> int | None:
    """CoinGecko puts error codes at the top, in status.error_code or in error.status.error_code."""
    if not isinstance(body, dict):
        return None
    for holder in (body, body.get("status"), (body.get("error") or {}).get("status") if isinstance(body.get("error"), dict) else None):
        if isinstance(holder, dict) and isinstance(holder.get("error_code"), int):
            return holder["error_code"]
    return None


def _error_text(body: Any, raw: str) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, str):
            return err
        for holder in (body.get("status"), err.get("status") if isinstance(err, dict) else None):
            if isinstance(holder, dict) and holder.get("error_message"):
                return str(holder["error_message"])
    text = " ".join(raw.split())
    return text[:200] if text else "empty body"


class CoinGeckoClient:
    """`limiter`: the host's shared limiter unless one is given; `sleep`: how retries wait."""

    def __init__(
        self,
        settings: Settings,
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        if settings.key_header and settings.api_key:
            self.session.headers[settings.key_header] = settings.api_key
        self.limiter = limiter or shared_limiter(self.base_url, settings.rate_limit_per_min)
        self._sleep = sleep
        self.requests_made = 0
        self.retries = 0
        self.unreachable: HostUnreachable | None = None  # once seen, every later request fails at once

    # -- public endpoints -------------------------------------------------------------------
    def ping(self) -> Any:
        """One cheap request that proves the host is reachable and the key fits the plan."""
        return self._get("/ping", {}, "ping")

    def market_chart(self, pair: Pair, days: int) -> dict[str, Any]:
        params = {"vs_currency": pair.vs_currency, "days": str(days), "precision": "full"}
        return self._get(f"/coins/{pair.coin_id}/market_chart", params, f"{pair.name} last {days} day(s)", pair)

    def market_chart_range(self, pair: Pair, start_s: int, end_s: int, label: str) -> dict[str, Any]:
        params = {"vs_currency": pair.vs_currency, "from": str(start_s), "to": str(end_s), "precision": "full"}
        return self._get(f"/coins/{pair.coin_id}/market_chart/range", params, f"{pair.name} {label}", pair)

    # -- the request loop ------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in self.settings.secrets():
            text = text.replace(secret, "***")
        return text

    def _get(self, path: str, params: dict[str, str], what: str, pair: Pair | None = None) -> Any:
        if self.unreachable is not None:
            raise self.unreachable
        deadline = time.monotonic() + self.settings.retry_budget_s
        last_problem = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.limiter.wait()
            self.requests_made += 1
            try:
                response = self.session.get(
                    self.base_url + path, params=params, timeout=(10, self.settings.request_timeout_s)
                )
            except requests.Timeout:
                wait, last_problem = self._backoff(attempt), f"no answer within {self.settings.request_timeout_s:g}s"
            except requests.RequestException as exc:
                unreachable = unreachable_reason(exc)
                if unreachable is not None and attempt >= UNREACHABLE_ATTEMPTS:
                    self.unreachable = host_unreachable(self._host(), unreachable, attempt)
                    raise self.unreachable from None
                wait = QUICK_RETRY_S if unreachable is not None else self._backoff(attempt)
                last_problem = f"cannot connect to {self._host()} ({unreachable or type(exc).__name__})"
            else:
                outcome = self._handle(response, what, pair)
                if not isinstance(outcome, _Retry):
                    return outcome
                wait, last_problem = outcome.wait if outcome.wait is not None else self._backoff(attempt), outcome.problem
            if attempt == MAX_ATTEMPTS:
                break
            if wait > self.settings.max_retry_after_s:
                raise CoinGeckoError(
                    self._scrub(
                        f"CoinGecko {what}: {last_problem}; it asks to wait {wait:.0f}s, more than "
                        f"COINGECKO_MAX_RETRY_AFTER_S={self.settings.max_retry_after_s:g}s. "
                        "Try again later or lower COINGECKO_RATE_LIMIT_PER_MIN."
                    )
                )
            if time.monotonic() + wait > deadline:
                break
            self.retries += 1
            log.warning(self._scrub(f"CoinGecko {what}: {last_problem}; retry {attempt} in {wait:.1f}s"))
            self._sleep(wait)
        raise CoinGeckoError(
            self._scrub(
                f"CoinGecko {what} failed after {attempt} attempt(s) within "
                f"COINGECKO_RETRY_BUDGET_S={self.settings.retry_budget_s:g}s: {last_problem}"
            )
        )

    def _backoff(self, attempt: int) -> float:
        return min(60.0, 2.0 ** (attempt - 1)) * (0.5 + random.random() / 2)

    def _host(self) -> str:
        return requests.utils.urlparse(self.base_url).netloc

    def _handle(self, response: requests.Response, what: str, pair: Pair | None) -> Any:
        # Bytes straight to orjson: requests' .text would guess the charset over the whole body.
        try:
            body: Any = orjson.loads(response.content)
            is_json = True
        except (orjson.JSONDecodeError, ValueError):
            body, is_json = None, False
        status = response.status_code
        if status == 200 and is_json:
            return body
        raw = response.content.decode("utf-8", "replace")
        code = _error_code(body)
        message = _error_text(body, raw)

        if status == 200:
            return _Retry(None, "the response was not valid JSON (truncated or malformed)")
        if status == 429 or "error code: 1015" in raw:
            return _Retry(parse_retry_after(response.headers.get("Retry-After")), f"rate limited (HTTP {status})")
        if status in RETRYABLE_STATUS or status >= 500:
            kind = "an HTML error page" if not is_json and "<" in raw else message
            return _Retry(None, f"HTTP {status}: {kind}")
        raise self._fatal(status, code, message, what, pair)

    def _fatal(self, status: int, code: int | None, message: str, what: str, pair: Pair | None) -> AlphaDBError:
        plan = self.settings.plan
        if code == 10010:
            return ConfigError(
                "CoinGecko rejected the key (error 10010): this is a Pro API key used on the public host. "
                "Set COINGECKO_PLAN=pro (and leave COINGECKO_BASE_URL unset)."
            )
        if code == 10011:
            return ConfigError(
                "CoinGecko rejected the key (error 10011): this is a Demo API key used on the Pro host. "
                "Set COINGECKO_PLAN=demo (and leave COINGECKO_BASE_URL unset)."
            )
        if code == 10012:
            return HistoryLimitExceeded(
                f"CoinGecko {what}: the {plan} plan only serves the past {self.settings.history_limit_days} days (error 10012); "
                "requests are clamped to that limit. Use COINGECKO_PLAN=pro with a Pro key for older history."
            )
        if status in (401, 403):
            hint = "is missing" if not self.settings.api_key else "was rejected"
            return ConfigError(
                self._scrub(
                    f"CoinGecko authentication failed (HTTP {status}{f', error {code}' if code else ''}): the API key {hint} "
                    f"for COINGECKO_PLAN={plan}. Check COINGECKO_API_KEY and COINGECKO_PLAN. ({message})"
                )
            )
        if status == 404 and pair is not None:
            return CoinNotFound(
                f"CoinGecko does not know coin id {pair.coin_id!r} (pair {pair.name}): fix it in dbt_alphadb/dbt_project.yml (vars: pairs) or ALPHADB_PAIRS "
                "(ids are like 'bitcoin', see /coins/list)."
            )
        if status == 400 and pair is not None and "vs_currency" in message:
            return ConfigError(f"CoinGecko rejected vs_currency {pair.vs_currency!r} of pair {pair.name}: {message}")
        return CoinGeckoError(self._scrub(f"CoinGecko {what}: HTTP {status}: {message}"))


@dataclass(frozen=True)
class _Retry:
    wait: float | None
    problem: str
