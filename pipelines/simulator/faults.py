"""Fault state and how each fault bends a response.

Two families:
- queued faults (one per data response): the first one in the list matching the request's coin
  applies; with `count` it is used up after that many responses, without it it stays;
- window faults (`missing`, `correction`): every one overlapping the response's time range applies,
  because they model the source's data, not a single bad answer.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import prices

Chart = dict[str, Any]

WINDOW_KINDS = frozenset({"missing", "correction"})
RESPONSE_KINDS = frozenset({"rate_limit", "server_error", "slow", "html"})
BODY_KINDS = frozenset(
    {"truncated_json", "wrong_types", "empty", "nulls", "unsorted", "duplicates", "ragged",
     "outside_window"}
)
KINDS = WINDOW_KINDS | RESPONSE_KINDS | BODY_KINDS

MAX_DELAY_S = 30.0  # `slow` is for timeout tests; never let a typo hang a suite
SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})
WRONG_TYPE_VARIANTS = ("strings", "missing_prices", "not_list")
RATE_LIMIT_BODY = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit "
        "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher "
        "rate limits.",
    }
}
JSON_TYPE = "application/json; charset=utf-8"


class FaultError(ValueError):
    """A fault spec that cannot be honoured (reported to the caller, never half-applied)."""


@dataclass(frozen=True)
class Reply:
    """A whole HTTP answer. Lives here because faults produce whole answers, not just data."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    drop_after: int | None = None  # send only this many body bytes, then close the connection


def json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), headers=headers)


def _number(spec: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultError(f"{key} must be a number, got {value!r}")
    return float(value)


def _positive_int(spec: Mapping[str, Any], key: str) -> None:
    value = spec.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise FaultError(f"{key} must be a positive integer, got {value!r}")


def normalize(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a fault spec and fill defaults, so state holds only well-formed faults."""
    if not isinstance(spec, Mapping):
        raise FaultError(f"a fault must be a JSON object, got {spec!r}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {sorted(KINDS)}")
    fault = dict(spec)
    if fault.get("coin") is not None and not isinstance(fault["coin"], str):
        raise FaultError("coin must be a string")
    _positive_int(fault, "count")
    _positive_int(fault, "remaining_requests")
    if kind == "rate_limit":
        if not isinstance(fault.setdefault("retry_after", "1"), (str, int, float, type(None))):
            raise FaultError("retry_after must be seconds (number or string) or null")
        _number(fault, "retry_after_http_date")
    elif kind in ("server_error", "html"):
        status = fault.setdefault("status", 500 if kind == "server_error" else 503)
        allowed = SERVER_ERROR_STATUSES if kind == "server_error" else {429, 503}
        if status not in allowed:
            raise FaultError(f"{kind} status must be one of {sorted(allowed)}")
        if fault.setdefault("body", "json") not in ("json", "plain"):
            raise FaultError("body must be 'json' or 'plain'")
    elif kind == "slow":
        delay = _number(fault, "delay_s", 0.5)
        if delay is None or not 0 <= delay <= MAX_DELAY_S:
            raise FaultError(f"delay_s must be within [0, {MAX_DELAY_S}]")
        fault["delay_s"] = delay
    elif kind == "truncated_json":
        if fault.setdefault("mode", "short_body") not in ("short_body", "connection_drop"):
            raise FaultError("mode must be 'short_body' or 'connection_drop'")
    elif kind == "wrong_types":
        if fault.setdefault("variant", "strings") not in WRONG_TYPE_VARIANTS:
            raise FaultError(f"variant must be one of {WRONG_TYPE_VARIANTS}")
    elif kind in ("nulls", "duplicates"):
        fault.setdefault("every", 5)
        _positive_int(fault, "every")
    elif kind in WINDOW_KINDS:
        start, end = _number(fault, "start"), _number(fault, "end")
        if start is None or end is None or end <= start:
            raise FaultError(f"{kind} needs numeric start < end (epoch seconds)")
        if kind == "correction":
            factor = _number(fault, "factor")
            if factor is None or factor <= 0:
                raise FaultError("correction needs a positive factor")
    return fault


class FaultBook:
    """The live fault list, shared by request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict[str, Any]] = []

    def add(self, specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        checked = [normalize(s) for s in specs]  # all or nothing
        with self._lock:
            self._faults.extend(checked)
        return [dict(f) for f in checked]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def take(self, coin: str) -> dict[str, Any] | None:
        """The first queued fault for this coin, using up one of its `count`."""
        with self._lock:
            for fault in self._faults:
                if fault["kind"] in WINDOW_KINDS or fault.get("coin") not in (None, coin):
                    continue
                self._use(fault, "count")
                return dict(fault)
        return None

    def windows(self, coin: str, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
        """Window faults overlapping [from_ms, to_ms] for this coin, counting this response."""
        with self._lock:
            hits = [
                f for f in self._faults
                if f["kind"] in WINDOW_KINDS and f.get("coin") in (None, coin)
                and f["start"] * 1000 <= to_ms and f["end"] * 1000 > from_ms
            ]
            for fault in hits:
                self._use(fault, "remaining_requests" if fault["kind"] == "missing" else "count")
            return [dict(f) for f in hits]

    def _use(self, fault: dict[str, Any], counter: str) -> None:
        if fault.get(counter) is None:
            return  # permanent
        fault[counter] -= 1
        if fault[counter] <= 0:  # by identity: an equal-looking twin must stay
            self._faults = [f for f in self._faults if f is not fault]


def response_fault(fault: Mapping[str, Any]) -> Reply | None:
    """A reply replacing the real one, or None to answer normally (after `slow` has slept)."""
    kind = fault["kind"]
    if kind == "slow":
        time.sleep(fault["delay_s"])
        return None
    if kind == "rate_limit":
        headers: tuple[tuple[str, str], ...] = ()
        if fault.get("retry_after_http_date") is not None:
            # A date in real (wall-clock) time: the client waits in real time, whatever our clock.
            when = time.time() + fault["retry_after_http_date"]
            headers = (("Retry-After", email.utils.formatdate(when, usegmt=True)),)
        elif fault.get("retry_after") is not None:
            headers = (("Retry-After", str(fault["retry_after"])),)
        return json_reply(429, RATE_LIMIT_BODY, headers)
    if kind == "html":
        return Reply(fault["status"], _cloudflare_page(fault["status"]), "text/html; charset=UTF-8")
    if kind == "server_error":
        status = fault["status"]
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout"}[status]
        if fault["body"] == "plain":
            return Reply(status, text.encode(), "text/plain; charset=utf-8")
        return json_reply(status, {"error": text})
    return None


def _cloudflare_page(status: int) -> bytes:
    title = "Access denied" if status == 429 else "Service unavailable"
    return (
        "<!DOCTYPE html>\n<html><head><title>"
        f"{title} | api.coingecko.com | Cloudflare</title></head>\n"
        f'<body><div id="cf-error-details"><h1>{title}</h1>\n'
        "<p>error code: 1015</p>\n<p>You are being rate limited.</p>\n"
        "<p>Cloudflare Ray ID: 8a1b2c3d4e5f6789</p></div></body></html>\n"
    ).encode()


def apply_windows(chart: Chart, windows: list[dict[str, Any]]) -> Chart:
    """Drop points inside `missing` ranges, scale values inside `correction` ranges."""
    for fault in windows:
        lo, hi = fault["start"] * 1000, fault["end"] * 1000
        for key, points in chart.items():
            if fault["kind"] == "missing":
                chart[key] = [p for p in points if not lo <= p[0] < hi]
            else:
                factor = fault["factor"]
                chart[key] = [[t, v * factor] if lo <= t < hi else [t, v] for t, v in points]
    return chart


def body_fault(
    fault: Mapping[str, Any], chart: Chart, coin: str, vs_currency: str,
    from_ms: int, to_ms: int, step_ms: int,
) -> Chart:
    """Corrupt a chart the way real (or plausible) bad 200 responses are corrupt."""
    kind = fault["kind"]
    keys = ("prices", "market_caps", "total_volumes")
    if kind == "empty":
        return {k: [] for k in keys}
    if kind == "wrong_types":
        variant = fault["variant"]
        if variant == "missing_prices":
            return {k: v for k, v in chart.items() if k != "prices"}
        if variant == "not_list":
            return {**chart, "prices": {"error": "unavailable"}}
        return {k: [[str(t), str(v)] for t, v in pts] for k, pts in chart.items()}
    if kind == "nulls":
        every = fault["every"]  # offset per series, so each series has nulls at other rows
        return {k: [[t, None] if (i + n) % every == 0 else [t, v] for i, (t, v) in enumerate(pts)]
                for n, (k, pts) in enumerate(chart.items())}
    if kind == "duplicates":
        every = fault["every"]
        return {k: [q for i, p in enumerate(pts) for q in ([p, p] if i % every == 0 else [p])]
                for k, pts in chart.items()}
    if kind == "unsorted":
        order = list(range(len(chart["prices"])))
        random.Random(f"{coin}:{from_ms}:{to_ms}").shuffle(order)  # same shuffle for all three
        return {k: [pts[i] for i in order] for k, pts in chart.items()}
    if kind == "ragged":
        # Three lengths; the first cap dropped, so zipping by index misaligns every row.
        return {"prices": chart["prices"], "market_caps": chart["market_caps"][1:],
                "total_volumes": chart["total_volumes"][:-2]}
    if kind == "outside_window":
        before = [from_ms - k * step_ms - 1 for k in (2, 1)]
        after = [to_ms + k * step_ms + 1 for k in (1, 2)]
        extra_before = prices.series(coin, before, vs_currency)
        extra_after = prices.series(coin, after, vs_currency)
        return {k: extra_before[k] + pts + extra_after[k] for k, pts in chart.items()}
    return chart


def encode(fault: Mapping[str, Any] | None, chart: Chart, headers: tuple[tuple[str, str], ...]) -> Reply:
    """Serialise a 200 body; `truncated_json` cuts it in the middle."""
    body = json.dumps(chart, separators=(",", ":")).encode()
    if fault is None or fault["kind"] != "truncated_json":
        return Reply(200, body, headers=headers)
    half = len(body) // 2
    if fault["mode"] == "connection_drop":  # promise the full length, deliver half, hang up
        return Reply(200, body, headers=headers, drop_after=half)
    return Reply(200, body[:half], headers=headers)
