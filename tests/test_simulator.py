"""The CoinGecko simulator over real HTTP: data shape, plans and keys, faults, admin API, CLI."""

from __future__ import annotations

import email.utils
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from pipelines.simulator import FaultError, Simulator

REPO_ROOT = Path(__file__).resolve().parent.parent
DAY_S = 86_400
NOW = 1_767_272_400.4567  # 2026-01-01 13:00:00.4567 UTC: a fixed clock keeps assertions exact
PAST = int(NOW) - 1800  # windows anchored at half past the hour never cut a sample's jitter range
DEMO_KEY, PRO_KEY = "CG-demo-test-key", "CG-pro-test-key"
CHART = "/coins/{coin}/market_chart"
RANGE = "/coins/{coin}/market_chart/range"


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    """The simulator on a fixed clock."""
    simulator.configure(now=NOW)
    return simulator


@pytest.fixture
def pro_sim(sim: Simulator) -> Simulator:
    """The simulator as the Pro host, on the fixed clock."""
    sim.configure(host_kind="pro")
    return sim


def get(sim: Simulator, path: str, headers: dict[str, str] | None = None, timeout: float = 5,
        **params: Any) -> requests.Response:
    return requests.get(sim.base_url + path, params=params, headers=headers, timeout=timeout)


def days(sim: Simulator, n: int | str, coin: str = "bitcoin", **extra: Any) -> requests.Response:
    return get(sim, CHART.format(coin=coin), vs_currency="usd", days=n, **extra)


def window(sim: Simulator, start: float, end: float, coin: str = "bitcoin",
           **extra: Any) -> requests.Response:
    return get(sim, RANGE.format(coin=coin), vs_currency="usd", **{"from": start, "to": end}, **extra)


def ok(response: requests.Response) -> dict[str, list[list[float]]]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def stamps(body: dict[str, Any], key: str = "prices") -> list[int]:
    return [p[0] for p in body[key]]


def gaps_s(ts: list[int]) -> list[float]:
    return [(b - a) / 1000 for a, b in zip(ts, ts[1:])]


def error_code(response: requests.Response) -> int:
    body = response.json()
    return (body.get("error", body) if isinstance(body.get("error"), dict) else body)["status"]["error_code"]


# --- data: granularity, determinism, live point, jitter -------------------------------------

def test_ping(sim: Simulator) -> None:
    assert ok(get(sim, "/ping")) == {"gecko_says": "(V3) To the Moon!", "alphadb_simulator": True}


@pytest.mark.parametrize(
    ("n", "spacing_s", "count"),
    [(1, 300, 289), (2, 3600, 49), (7, 3600, 169), (30, 3600, 721), (90, 3600, 2161), (91, DAY_S, 92),
     (365, DAY_S, 366)],
)
def test_market_chart_granularity_by_span(sim: Simulator, n: int, spacing_s: int, count: int) -> None:
    body = ok(days(sim, n))
    ts = stamps(body)
    assert abs(len(ts) - count) <= 1  # a sample jittered past the window edge may drop out
    grid = ts[:-1]  # the last one is the live point
    assert abs(statistics.median(gaps_s(grid)) - spacing_s) < 0.02 * spacing_s
    assert grid[0] >= (NOW - n * DAY_S) * 1000
    assert stamps(body, "market_caps") == stamps(body, "total_volumes") == ts
    assert all(v > 0 for key in body for _, v in body[key])


def test_daily_points_sit_on_utc_midnight_then_live_point(sim: Simulator) -> None:
    ts = stamps(ok(days(sim, 200)))
    assert all(t % (DAY_S * 1000) == 0 for t in ts[:-1])
    assert ts[-1] == int(NOW) * 1000  # live point: now truncated to whole seconds


def test_interval_daily_forces_daily_points(sim: Simulator) -> None:
    ts = stamps(ok(days(sim, 30, interval="daily")))
    assert len(ts) == 31 and all(t % (DAY_S * 1000) == 0 for t in ts[:-1])


@pytest.mark.parametrize("interval", ["hourly", "5m"])
def test_enterprise_intervals_are_refused(sim: Simulator, interval: str) -> None:
    response = days(sim, 7, interval=interval)
    assert response.status_code == 401 and error_code(response) == 10005
    assert "Enterprise" in response.json()["status"]["error_message"]


def test_range_granularity(sim: Simulator) -> None:
    past_day = stamps(ok(window(sim, PAST - 40 * DAY_S, PAST - 39 * DAY_S)))
    assert len(past_day) == 24 and statistics.median(gaps_s(past_day)) == pytest.approx(3600, abs=60)
    last_day = stamps(ok(window(sim, NOW - DAY_S, NOW)))
    assert statistics.median(gaps_s(last_day)) == pytest.approx(300, abs=40)
    eighty = stamps(ok(window(sim, PAST - 100 * DAY_S, PAST - 20 * DAY_S)))
    assert len(eighty) == 80 * 24
    long = stamps(ok(window(sim, PAST - 200 * DAY_S, PAST - 50 * DAY_S)))
    assert len(long) == 150 and all(t % (DAY_S * 1000) == 0 for t in long)


def test_range_accepts_iso_dates_and_float_seconds(pro_sim: Simulator) -> None:
    headers = {"x-cg-pro-api-key": PRO_KEY}
    iso = ok(get(pro_sim, RANGE.format(coin="ethereum"), headers, vs_currency="usd",
                 **{"from": "2025-03-01", "to": "2025-03-02T12:30"}))
    secs = ok(get(pro_sim, RANGE.format(coin="ethereum"), headers, vs_currency="usd",
                  **{"from": 1740787200.0, "to": 1740918600.25}))
    assert iso == secs and len(iso["prices"]) == 37  # 00:00 .. 12:00 next day


def test_window_in_the_past_has_only_jittered_points_inside_it(sim: Simulator) -> None:
    start, end = PAST - 30 * DAY_S, PAST - 10 * DAY_S
    ts = stamps(ok(window(sim, start, end)))
    assert start * 1000 <= ts[0] and ts[-1] <= end * 1000
    offsets = [t % 3_600_000 for t in ts]
    assert all(0 <= o < 60_000 for o in offsets)  # within the hour's first minute...
    assert len(set(offsets)) > 0.9 * len(offsets)  # ...but scattered, never on the grid
    assert sum(o % 1000 == 0 for o in offsets) < 0.01 * len(offsets)  # ms precision, like real data


def test_five_minute_jitter_is_under_40_seconds(sim: Simulator) -> None:
    offsets = [t % 300_000 for t in stamps(ok(days(sim, 1)))[:-1]]
    assert all(o < 40_000 for o in offsets) and len(set(offsets)) > 250


def test_overlapping_requests_agree_point_for_point(sim: Simulator) -> None:
    a = ok(window(sim, PAST - 50 * DAY_S, PAST - 20 * DAY_S))
    b = ok(window(sim, PAST - 35 * DAY_S, PAST - 5 * DAY_S))
    for key in a:
        pa, pb = dict(map(tuple, a[key])), dict(map(tuple, b[key]))  # type: ignore[arg-type]
        shared = pa.keys() & pb.keys()
        assert len(shared) == 15 * 24
        assert all(pa[t] == pb[t] for t in shared)
    lo, hi = (PAST - 35 * DAY_S) * 1000, (PAST - 20 * DAY_S) * 1000
    assert {t for t in stamps(a) if t >= lo} == {t for t in stamps(b) if t <= hi}


def test_values_are_stable_across_restarts_and_clocks() -> None:
    args = (PAST - 30 * DAY_S, PAST - 29 * DAY_S)
    with Simulator(now=NOW) as one, Simulator(now=NOW + 5 * DAY_S) as two:
        assert ok(window(one, *args)) == ok(window(two, *args))


def test_levels_per_coin_and_eur_factor(sim: Simulator) -> None:
    btc = [v for _, v in ok(days(sim, 30))["prices"]]
    eth = [v for _, v in ok(days(sim, 30, coin="ethereum"))["prices"]]
    assert 20_000 < statistics.median(btc) < 150_000 and 1_000 < statistics.median(eth) < 8_000
    usd = ok(days(sim, 7))
    eur = ok(get(sim, CHART.format(coin="bitcoin"), vs_currency="EUR", days=7))
    assert stamps(usd) == stamps(eur)
    assert all(e == pytest.approx(u * 0.92) for (_, u), (_, e) in zip(usd["prices"], eur["prices"]))
    for (_, price), (_, cap) in zip(usd["prices"], usd["market_caps"]):
        assert cap / price == pytest.approx(usd["market_caps"][0][1] / usd["prices"][0][1])


def test_hourly_history_starts_2018_01_30(pro_sim: Simulator) -> None:
    body = ok(get(pro_sim, RANGE.format(coin="bitcoin"), {"x-cg-pro-api-key": PRO_KEY},
                  vs_currency="usd", **{"from": "2018-01-20", "to": "2018-02-01"}))
    assert stamps(body)[0] >= 1_517_270_400_000 and len(body["prices"]) == 48


def test_live_point_only_when_window_reaches_now(sim: Simulator) -> None:
    reaching = stamps(ok(window(sim, NOW - 10 * DAY_S, NOW + 3600)))
    assert reaching[-1] == int(NOW) * 1000 and all(t <= NOW * 1000 for t in reaching)
    past = stamps(ok(window(sim, NOW - 10 * DAY_S, NOW - DAY_S)))
    assert int(NOW - DAY_S) * 1000 not in past and past[-1] <= (NOW - DAY_S) * 1000


def test_midnight_clock_gives_live_point_at_midnight() -> None:
    midnight = 1_767_225_600  # 2026-01-01 00:00:00 UTC
    with Simulator(now=midnight + 0.25) as s:
        ts = stamps(ok(days(s, 2)))
        assert ts[-1] == midnight * 1000 and ts[-2] < midnight * 1000


def test_precision_rounds_values(sim: Simulator) -> None:
    body = ok(days(sim, 2, precision=2))
    assert all(round(v, 2) == v for _, v in body["prices"])


# --- request errors ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("path", "params", "status", "body"),
    [
        (CHART.format(coin="no-such-coin"), {"vs_currency": "usd", "days": 1}, 404,
         {"error": "coin not found"}),
        (CHART.format(coin="bitcoin"), {"vs_currency": "usdt", "days": 1}, 400,
         {"error": "invalid vs_currency"}),
        (CHART.format(coin="bitcoin"), {"vs_currency": "usd"}, 400, {"error": "Missing parameter days"}),
        (RANGE.format(coin="bitcoin"), {"vs_currency": "usd", "from": 1}, 400,
         {"error": "Missing parameter to"}),
        (RANGE.format(coin="bitcoin"), {"vs_currency": "usd", "from": "yesterday", "to": 2}, 400,
         {"error": "invalid from"}),
    ],
)
def test_request_errors(sim: Simulator, path: str, params: dict[str, Any], status: int,
                        body: dict[str, str]) -> None:
    response = get(sim, path, **params)
    assert (response.status_code, response.json()) == (status, body)


def test_configured_coin_set(sim: Simulator) -> None:
    assert days(sim, 2, coin="coin-40").status_code == 200
    sim.configure(coins=["bitcoin"])
    assert days(sim, 2, coin="ethereum").status_code == 404


# --- plans, keys, hosts ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("host_kind", "headers", "params", "status", "code", "plan"),
    [
        ("public", {}, {}, 200, None, "public"),
        ("public", {"x-cg-demo-api-key": DEMO_KEY}, {}, 200, None, "demo"),
        ("public", {}, {"x_cg_demo_api_key": DEMO_KEY}, 200, None, "demo"),
        ("public", {"x-cg-pro-api-key": PRO_KEY}, {}, 400, 10010, None),
        ("public", {}, {"x_cg_pro_api_key": PRO_KEY}, 400, 10010, None),
        ("public", {"x-cg-demo-api-key": "CG-wrong"}, {}, 401, 10002, None),
        ("pro", {"x-cg-pro-api-key": PRO_KEY}, {}, 200, None, "pro"),
        ("pro", {}, {"x_cg_pro_api_key": PRO_KEY}, 200, None, "pro"),
        ("pro", {}, {}, 401, 10002, None),
        ("pro", {"x-cg-demo-api-key": DEMO_KEY}, {}, 400, 10011, None),
        ("pro", {"x-cg-pro-api-key": DEMO_KEY}, {}, 400, 10011, None),
        ("pro", {"x-cg-pro-api-key": "CG-wrong"}, {}, 401, 10002, None),
    ],
)
def test_plan_key_host_rules(host_kind: str, headers: dict[str, str], params: dict[str, str],
                             status: int, code: int | None, plan: str | None) -> None:
    with Simulator(host_kind=host_kind, now=NOW) as s:
        response = get(s, CHART.format(coin="bitcoin"), headers, vs_currency="usd", days=2, **params)
        assert response.status_code == status
        if code is not None:
            body = response.json()
            assert body["status"]["error_code"] == code and body["status"]["error_message"]
        entry = s.requests[-1]
        assert (entry["plan"], entry["error_code"], entry["status"]) == (plan, code, status)


def test_wrong_host_messages_name_the_right_host() -> None:
    with Simulator() as public, Simulator(host_kind="pro") as pro:
        to_public = get(public, "/ping", {"x-cg-pro-api-key": PRO_KEY}).json()
        to_pro = get(pro, "/ping", {"x-cg-demo-api-key": DEMO_KEY}).json()
    assert "pro-api.coingecko.com" in to_public["status"]["error_message"]
    assert "to api.coingecko.com" in to_pro["status"]["error_message"]


@pytest.mark.parametrize("headers", [{}, {"x-cg-demo-api-key": DEMO_KEY}])
def test_public_and_demo_limited_to_365_days(sim: Simulator, headers: dict[str, str]) -> None:
    assert get(sim, CHART.format(coin="bitcoin"), headers, vs_currency="usd", days=365).status_code == 200
    for params in ({"days": 366}, {"days": "max"}, {"from": NOW - 400 * DAY_S, "to": NOW - 390 * DAY_S}):
        path = RANGE if "from" in params else CHART
        response = get(sim, path.format(coin="bitcoin"), headers, vs_currency="usd", **params)
        assert response.status_code == 401
        status = response.json()["error"]["status"]
        assert status["error_code"] == 10012 and "within the past 365 days" in status["error_message"]
        assert status["timestamp"].startswith("2026-01-01T13:00:00.456")


def test_pro_has_full_history(pro_sim: Simulator) -> None:
    headers = {"x-cg-pro-api-key": PRO_KEY}
    body = ok(get(pro_sim, CHART.format(coin="bitcoin"), headers, vs_currency="usd", days="max"))
    first = stamps(body)[0]
    assert first == 1_367_107_200_000 and all(t % (DAY_S * 1000) == 0 for t in stamps(body)[:-1])
    old = ok(get(pro_sim, RANGE.format(coin="bitcoin"), headers, vs_currency="usd",
                 **{"from": "2019-01-01", "to": "2019-02-01"}))
    assert len(old["prices"]) == 31 * 24


# --- server-side rate limit ------------------------------------------------------------------

def test_rate_limit_per_minute_answers_429_with_retry_after() -> None:
    with Simulator(rate_limit_per_min=3, now=NOW) as s:
        statuses = [get(s, "/ping").status_code for _ in range(3)]
        limited = days(s, 2)
        assert statuses == [200, 200, 200] and limited.status_code == 429
        assert limited.json()["status"]["error_code"] == 429
        assert "exceeded the Rate Limit" in limited.json()["status"]["error_message"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert [e["status"] for e in s.requests] == [200, 200, 200, 429]
        s.configure(rate_limit_per_min=None)
        assert days(s, 2).status_code == 200


# --- faults ----------------------------------------------------------------------------------

def test_faults_are_consumed_in_order_then_disappear(sim: Simulator) -> None:
    sim.add_faults([{"kind": "rate_limit", "count": 2, "retry_after": 119},
                    {"kind": "server_error", "status": 502, "count": 1}])
    responses = [days(sim, 2) for _ in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 502, 200]
    assert responses[0].headers["Retry-After"] == "119"
    assert responses[0].json()["status"]["error_code"] == 429
    assert sim.faults == []
    log = sim.requests
    assert [(e["status"], e["fault"]) for e in log] == [
        (429, "rate_limit"), (429, "rate_limit"), (502, "server_error"), (200, None)]


def test_rate_limit_fault_with_http_date(sim: Simulator) -> None:
    sim.add_fault({"kind": "rate_limit", "count": 1, "retry_after_http_date": 3})
    response = days(sim, 2)
    assert response.status_code == 429
    when = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert time.time() < when <= time.time() + 4


def test_rate_limit_fault_without_retry_after(sim: Simulator) -> None:
    sim.add_fault({"kind": "rate_limit", "count": 1, "retry_after": None})
    response = days(sim, 2)
    assert response.status_code == 429 and "Retry-After" not in response.headers


def test_fault_limited_to_a_coin(sim: Simulator) -> None:
    sim.add_fault({"kind": "server_error", "coin": "ethereum", "status": 503})
    assert days(sim, 2).status_code == 200
    assert days(sim, 2, coin="ethereum").status_code == 503
    assert days(sim, 2, coin="ethereum").status_code == 503  # no count: stays until cleared
    sim.clear_faults()
    assert days(sim, 2, coin="ethereum").status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("body", ["json", "plain"])
def test_server_errors(sim: Simulator, status: int, body: str) -> None:
    sim.add_fault({"kind": "server_error", "status": status, "body": body, "count": 1})
    response = days(sim, 2)
    assert response.status_code == status
    if body == "json":
        assert "error" in response.json()
    else:
        assert response.headers["Content-Type"].startswith("text/plain") and response.text


def test_slow_fault_delays_and_can_time_a_client_out(sim: Simulator) -> None:
    sim.add_fault({"kind": "slow", "delay_s": 0.3, "count": 2})
    started = time.perf_counter()
    assert days(sim, 2).status_code == 200
    assert time.perf_counter() - started >= 0.3
    with pytest.raises(requests.Timeout):
        days(sim, 2, timeout=0.1)
    time.sleep(0.3)
    assert days(sim, 2).status_code == 200


@pytest.mark.parametrize("status", [503, 429])
def test_html_fault_is_a_cloudflare_page(sim: Simulator, status: int) -> None:
    sim.add_fault({"kind": "html", "status": status, "count": 1})
    response = days(sim, 2)
    assert response.status_code == status and response.headers["Content-Type"].startswith("text/html")
    assert "error code: 1015" in response.text and response.text.lstrip().startswith("<!DOCTYPE html>")


def test_truncated_json_short_body(sim: Simulator) -> None:
    sim.add_fault({"kind": "truncated_json", "count": 1})
    response = days(sim, 2)
    assert response.status_code == 200 and response.text.startswith('{"prices":[[')
    with pytest.raises(ValueError):
        response.json()


def test_truncated_json_connection_drop(sim: Simulator) -> None:
    sim.add_fault({"kind": "truncated_json", "mode": "connection_drop", "count": 1})
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        days(sim, 2)
    assert days(sim, 2).status_code == 200


def test_wrong_types(sim: Simulator) -> None:
    sim.add_faults([{"kind": "wrong_types", "count": 1},
                    {"kind": "wrong_types", "variant": "missing_prices", "count": 1},
                    {"kind": "wrong_types", "variant": "not_list", "count": 1}])
    strings, missing, not_list = (ok(days(sim, 2)) for _ in range(3))
    assert all(isinstance(t, str) and isinstance(v, str) for t, v in strings["prices"])
    assert "prices" not in missing and missing["market_caps"]
    assert not isinstance(not_list["prices"], list)


def test_empty(sim: Simulator) -> None:
    sim.add_fault({"kind": "empty", "count": 1})
    assert ok(days(sim, 2)) == {"prices": [], "market_caps": [], "total_volumes": []}
    assert sim.requests[-1]["points"] == 0


def test_nulls(sim: Simulator) -> None:
    sim.add_fault({"kind": "nulls", "every": 4, "count": 1})
    body = ok(days(sim, 2))
    for key, points in body.items():
        nulls = [t for t, v in points if v is None]
        assert 0 < len(nulls) < len(points) / 3, key
    null_rows = {key: {t for t, v in points if v is None} for key, points in body.items()}
    assert null_rows["prices"] != null_rows["market_caps"]


def test_unsorted_duplicates_ragged_keep_the_same_points(sim: Simulator) -> None:
    clean = ok(window(sim, PAST - 10 * DAY_S, PAST - 8 * DAY_S))
    sim.add_faults([{"kind": k, "count": 1} for k in ("unsorted", "duplicates", "ragged")])
    unsorted, duplicated, ragged = (ok(window(sim, PAST - 10 * DAY_S, PAST - 8 * DAY_S)) for _ in range(3))
    assert stamps(unsorted) != sorted(stamps(unsorted))
    assert sorted(map(tuple, unsorted["prices"])) == sorted(map(tuple, clean["prices"]))
    assert len(duplicated["prices"]) > len(clean["prices"])
    assert set(map(tuple, duplicated["prices"])) == set(map(tuple, clean["prices"]))
    lengths = {len(v) for v in ragged.values()}
    assert len(lengths) == 3 and ragged["prices"] == clean["prices"]
    assert set(map(tuple, ragged["market_caps"])) < set(map(tuple, clean["market_caps"]))


def test_outside_window(sim: Simulator) -> None:
    start, end = PAST - 10 * DAY_S, PAST - 9 * DAY_S
    sim.add_fault({"kind": "outside_window", "count": 1})
    ts = stamps(ok(window(sim, start, end)))
    outside = [t for t in ts if not start * 1000 <= t <= end * 1000]
    assert len(outside) == 4 and len(ts) == 24 + 4


def test_missing_heals_after_n_covering_responses(sim: Simulator) -> None:
    start, end = PAST - 20 * DAY_S, PAST - 19 * DAY_S
    sim.add_fault({"kind": "missing", "coin": "bitcoin", "start": start, "end": end,
                   "remaining_requests": 2})
    holed = lambda body: [t for t in stamps(body) if start * 1000 <= t < end * 1000]  # noqa: E731
    assert len(holed(ok(window(sim, start - DAY_S, end + DAY_S, coin="ethereum")))) == 24  # other coin
    ok(window(sim, PAST - 5 * DAY_S, PAST - 4 * DAY_S))  # not covering: does not count
    assert holed(ok(window(sim, start - DAY_S, end + DAY_S))) == []
    assert sim.faults[0]["remaining_requests"] == 1
    assert holed(ok(window(sim, start - 2 * DAY_S, start + 3600))) == []
    assert len(holed(ok(window(sim, start - DAY_S, end + DAY_S)))) == 24  # healed: the source filled it
    assert sim.faults == []


def test_missing_without_remaining_requests_is_permanent(sim: Simulator) -> None:
    start, end = PAST - 20 * DAY_S, PAST - 20 * DAY_S + 3 * 3600
    sim.add_fault({"kind": "missing", "start": start, "end": end})
    for _ in range(3):
        body = ok(window(sim, start - DAY_S, end + DAY_S))
        assert not [t for t in stamps(body) if start * 1000 <= t < end * 1000]
        assert len(body["prices"]) == (end - start + 2 * DAY_S) // 3600 - 3


def test_correction_scales_values_in_its_range(sim: Simulator) -> None:
    start, end = PAST - 20 * DAY_S, PAST - 19 * DAY_S
    before = ok(window(sim, start - DAY_S, end + DAY_S))
    sim.add_fault({"kind": "correction", "coin": "bitcoin", "start": start, "end": end, "factor": 1.5})
    after = ok(window(sim, start - DAY_S, end + DAY_S))
    assert stamps(after) == stamps(before)
    for key in after:
        for (t, old), (_, new) in zip(before[key], after[key]):
            assert new == pytest.approx(old * 1.5 if start * 1000 <= t < end * 1000 else old)


def test_invalid_faults_are_rejected_whole(sim: Simulator) -> None:
    with pytest.raises(FaultError):
        sim.add_faults([{"kind": "empty"}, {"kind": "earthquake"}])
    with pytest.raises(FaultError):
        sim.add_fault({"kind": "slow", "delay_s": 3600})
    with pytest.raises(FaultError):
        sim.add_fault({"kind": "missing", "start": 10, "end": 5})
    assert sim.faults == []


# --- admin API, request log ------------------------------------------------------------------

def test_admin_faults_and_config_over_http(sim: Simulator) -> None:
    admin = sim.root_url + "/__admin"
    posted = requests.post(f"{admin}/faults", json=[{"kind": "empty", "count": 1},
                                                    {"kind": "rate_limit", "count": 1}], timeout=5)
    assert posted.status_code == 200 and [f["kind"] for f in posted.json()] == ["empty", "rate_limit"]
    assert requests.post(f"{admin}/faults", json={"kind": "nope"}, timeout=5).status_code == 400
    assert [f["kind"] for f in requests.get(f"{admin}/faults", timeout=5).json()] == ["empty", "rate_limit"]
    assert ok(days(sim, 2))["prices"] == []
    assert requests.delete(f"{admin}/faults", timeout=5).status_code == 200
    assert days(sim, 2).status_code == 200

    config = requests.post(f"{admin}/config", json={"host_kind": "pro", "now": NOW + DAY_S}, timeout=5)
    assert config.status_code == 200 and config.json()["host_kind"] == "pro"
    assert days(sim, 2).status_code == 401  # pro host now: no key = missing key
    live = stamps(ok(days(sim, 2, x_cg_pro_api_key=PRO_KEY)))[-1]
    assert live == int(NOW + DAY_S) * 1000
    assert requests.post(f"{admin}/config", json={"colour": "red"}, timeout=5).status_code == 400
    for bad in ({"rate_limit_per_min": -1}, {"coins": 7}, {"host_kind": "enterprise"}):
        assert requests.post(f"{admin}/config", json=bad, timeout=5).status_code == 400
    assert requests.get(f"{admin}/config", timeout=5).json()["host_kind"] == "pro"


def test_admin_request_log_and_key_redaction(sim: Simulator) -> None:
    admin = sim.root_url + "/__admin/requests"
    days(sim, 2, x_cg_demo_api_key=DEMO_KEY)
    get(sim, "/ping", {"x-cg-demo-api-key": DEMO_KEY})
    days(sim, 2, coin="nope")
    log = requests.get(admin, timeout=5).json()
    assert log == sim.requests and len(log) == 3  # admin calls are not logged
    first = log[0]
    assert first["method"] == "GET" and first["path"] == "/api/v3/coins/bitcoin/market_chart"
    assert first["query"] == {"vs_currency": "usd", "days": "2", "x_cg_demo_api_key": "<redacted>"}
    assert (first["key_header"], first["plan"], first["status"], first["points"]) == (
        "x_cg_demo_api_key", "demo", 200, 49)
    assert first["duration_ms"] >= 0 and abs(first["time"] - time.time()) < 10 and first["now"] == NOW
    assert log[1]["key_header"] == "x-cg-demo-api-key"
    assert (log[2]["status"], log[2]["coin"]) == (404, "nope")
    assert DEMO_KEY not in json.dumps(log)
    assert requests.delete(admin, timeout=5).status_code == 200
    assert sim.requests == []


def test_admin_unknown_route_and_bad_json(sim: Simulator) -> None:
    assert requests.get(sim.root_url + "/__admin/nothing", timeout=5).status_code == 404
    bad = requests.post(sim.root_url + "/__admin/faults", data=b"{not json", timeout=5)
    assert bad.status_code == 400


def test_ninety_day_window_serves_every_hour_on_a_kept_alive_session(sim: Simulator) -> None:
    # How fast it serves is measured by `make bench` (a timed unit test flakes on a busy machine).
    session = requests.Session()
    for _ in range(5):
        assert len(ok(session.get(sim.base_url + RANGE.format(coin="coin-07"), timeout=5, params={
            "vs_currency": "usd", "from": PAST - 91 * DAY_S, "to": PAST - DAY_S}))["prices"]) == 2160
    assert [e["status"] for e in sim.requests] == [200] * 5


def test_only_loopback_binds() -> None:
    with pytest.raises(ValueError):
        Simulator(host="0.0.0.0")


# --- CLI -------------------------------------------------------------------------------------

def test_cli_prints_base_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "sim.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.simulator", "--port", "0", "--host-kind", "pro",
         "--now", str(NOW), "--pidfile", str(pidfile)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/api/v3")
        assert pidfile.read_text().strip() == str(proc.pid)
        assert requests.get(base_url + "/ping", timeout=5).status_code == 401  # pro host, no key
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not pidfile.exists()
        assert proc.stderr is not None and proc.stderr.read() == ""  # no access-log spam
    finally:
        proc.kill()
