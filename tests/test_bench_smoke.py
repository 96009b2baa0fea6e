"""The benchmark suite on tiny sizes: proves `make bench` still works end to end (not its timings)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from benchmarks import __main__ as bench
from benchmarks.harness import Postgres, bench_pairs
from benchmarks.transformbench import hand_written_candles, populate
from pipelines.database import connect

pytestmark = pytest.mark.slow  # the benchmarks end to end, on real servers: `make test`, not `make check`


def test_smoke_run_of_loader_and_api_benchmarks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results.md"
    results = bench.run(["--smoke", "--only", "1,2,5,6", "--out", str(out)])
    load = results["load"]
    # The loader stored every point once, the re-load merged without duplicates, COPY copied them all.
    assert load["first"]["points"] == load["rows_after_first"] == load["rows_after_reload"] == load["copy_rows"] > 0
    assert load["small"]["points"] < load["first"]["points"]
    # The ceilings saw the same points: fetched and parsed again, and COPY'd into the keyed table.
    assert load["fetch_points"] == load["first"]["points"] and load["keyed_copy_s"] > 0
    assert load["first"]["peak_rss_kb"] > 0 and load["small"]["peak_rss_kb"] > 0
    api = results["api"]
    assert api["backfill_requests_per_pair_max"] <= 6 and api["nightly_requests_per_pair_max"] <= 2
    assert api["status_429"] == 0 and not api["failures"]
    numbers = {row["number"] for row in results["rows"]}
    assert numbers == {1, 2, 5, 6}
    text = out.read_text()
    for needle in ("## Machine", "CPU", "PostgreSQL", "dlt", "dbt-core", "| 1 |", "| 6 |"):
        assert needle in text


def test_smoke_run_of_the_backfill_pace_benchmark(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Benchmark 9 end to end on 3 pairs: at both rates every point stored once, every request
    counted by the rate-limited replay server and by the loader, no 429, the ratio computed."""
    out = tmp_path / "results.md"
    results = bench.run(["--smoke", "--only", "9", "--out", str(out)])
    pace = results["pace"]
    assert pace["pairs"] == 3 and pace["days"] == 365 and set(pace["runs"]) == {"500", "1000"}
    for rate, run in pace["runs"].items():
        assert run["rows"] == run["keys"] == run["points"] > 0, (rate, run)
        # 365 days: four 90-day windows, the rest of the year, the live day; the replay saw each one
        assert run["requests_served"] == run["requests_made"] == 3 * 6 and run["status_429"] == 0, (rate, run)
        assert run["api_minimum_s"] == pytest.approx(18 * 60 / int(rate))
        assert run["ratio"] == pytest.approx(run["wall_s"] / run["api_minimum_s"])
        # the parts add up to the wall time: before the first request, the requests, the tail
        parts = run["before_first_request_s"] + run["request_span_s"] + run["tail_s"]
        assert min(run["before_first_request_s"], run["tail_s"]) >= 0 and parts == pytest.approx(run["wall_s"], abs=0.01)
        assert run["steps"] == 6 and len(run["step_timings"]) == 6 and run["reader_waited_on_loader_s"] >= 0
    assert [row["number"] for row in results["rows"]] == [9, 9]
    assert "| 9 | backfill 3 pairs x 365 d, client and server at 500 requests/min" in out.read_text()


def test_smoke_run_of_transform_benchmarks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Benchmarks 3 and 4 end to end on tiny histories: dbt built the candles in every round, and
    every kind of night passed on both histories, from the simulator and at scale (30 synthetic
    pairs: more than the page charts and the log lists), whose page and report stayed bounded."""
    out = tmp_path / "results.md"
    results = bench.run(["--smoke", "--only", "3,4", "--out", str(out)])
    transform = results["transform"]
    assert transform["long"]["full_refresh_ok"] and transform["short"]["full_refresh_ok"]
    assert transform["long"]["rows"] > transform["short"]["rows"] > 0
    assert len(transform["candle_rounds_s"]) == 2 and all(dbt > 0 and hand > 0 for dbt, hand in transform["candle_rounds_s"])
    scale = results["nightly_scale"]
    assert scale["pairs"] == 30 and scale["long"]["full_refresh_ok"] and scale["short"]["full_refresh_ok"]
    for nights in (transform["nights"], scale["nights"]):
        assert set(nights) == {"recent", "audit", "all"}
        for night in nights.values():
            assert night["long"]["ok"] and night["short"]["ok"], (night["long"].get("failed"), night["short"].get("failed"))
            assert night["long"]["dbt_test_nodes"] > 0 and night["long"]["load_points"] > 0
    assert 1 <= transform["audit_pairs"] <= 2 and 1 <= scale["audit_pairs"] < 30 and 0 <= scale["audit_weekday"] <= 6
    page = scale["page"]
    assert page["charts"] == 2 * 20 and page["left_out_note"] and page["gaps"] == scale["gaps_found"] == 0
    assert page["report_lines"] <= 3  # a summary line, no pair needs attention, where the full table is
    assert any("Index" in line and "pair_ts_idx" in line for line in scale["gaps_plan"]), scale["gaps_plan"]
    assert page["peak_rss_kb"] > 0 and page["page_bytes"] > 1_000_000
    assert {row["number"] for row in results["rows"]} == {3, 4, 7}
    text = out.read_text()
    assert "| 3 |" in text and "| 4 |" in text and "30 pairs" in text and "| 7 | after the tests at 30 pairs" in text


def test_smoke_run_of_the_many_pairs_benchmark(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Benchmark 8 end to end on 20 pairs: every dbt step of the nightly passed and every pair got its views."""
    results = bench.run(["--smoke", "--only", "8", "--out", str(tmp_path / "results.md")])
    scale = results["scale"]
    assert scale["ok"], scale.get("failed")
    assert scale["pairs"] == 20 and scale["rows"] == 20 * 2 * 24 and scale["views"] == 40
    assert scale["dbt_test_nodes"] > 0 and scale["dbt_s"] > 0
    assert {row["number"] for row in results["rows"]} == {8}


def test_smoke_run_of_the_report_benchmark(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Benchmark 7 end to end on a tiny history: candles built, 30 runs recorded, the page written
    with a candle chart per pair and timeframe, row 7 reported."""
    out = tmp_path / "results.md"
    results = bench.run(["--smoke", "--only", "7", "--out", str(out)])
    report = results["report"]
    assert report["candles_ok"] and report["rows"] > 0 and report["runs"] == 30
    assert report["charts"] == 2 * 2 and report["page_bytes"] > 1_000_000  # BokehJS inlined
    assert len(report["rounds_s"]) == 3 and report["generation_s"] > 0
    assert report["child"]["peak_rss_kb"] > 0 and report["child"]["charts"] == 2 * 2 and not report["child"]["left_out_note"]
    assert {row["number"] for row in results["rows"]} == {7}
    assert "| 7 | data-quality page" in out.read_text()


def test_transform_benchmark_data_and_baseline() -> None:
    """Benchmarks 3/4's history generator and hand-written candle SQL (dbt itself is tested elsewhere)."""
    pg = Postgres()
    try:
        connection = pg.new_database("smoke")
        with connect(connection) as conn, conn.cursor() as cur:
            cur.execute("create schema staging")
            cur.execute(
                """create table staging.market_chart_points (coin_id text, vs_currency text, ts timestamptz,
                price double precision, market_cap double precision, total_volume double precision, loaded_at timestamptz)"""
            )
        end = datetime(2024, 1, 10, tzinfo=timezone.utc)
        rows, _ = populate(connection, bench_pairs(2), end - timedelta(days=2), end)
        assert rows == pytest.approx(2 * 48, abs=2)
        assert hand_written_candles(connection) >= 0
        with connect(connection) as conn, conn.cursor() as cur:
            cur.execute("select count(*), min(ts) >= %s, max(ts) < %s, bool_and(loaded_at = ts + interval '1 day')"
                        " from staging.market_chart_points", (end - timedelta(days=2), end))
            assert cur.fetchone() == (rows, True, True, True)
    finally:
        pg.close()


def test_smoke_run_of_the_whole_nightly_benchmark(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Benchmark 10 end to end on a few pairs: both `alphadb run`s exited 0 against their simulator
    processes, every pair made its nightly requests, the steps came from the run history and the
    peak RSS of each process tree was measured."""
    results = bench.run(["--smoke", "--only", "10", "--out", str(tmp_path / "results.md")])
    nightly = results["nightly"]
    assert nightly["ok"], (nightly["scale"]["tail"], nightly["baseline"]["tail"])
    for side, pairs in (("scale", 4), ("baseline", 2)):
        run = nightly[side]
        assert run["exit_code"] == 0 and run["status_429"] == 0
        # a live day and a range window per pair (the history ends two days ago), besides the pings
        assert run["chart_requests"] == 2 * pairs and run["requests"] > run["chart_requests"]
        assert run["api_minimum_s"] == pytest.approx(run["requests"] * 60 / 6000)
        assert {"Backfill", "dbt run", "Data quality checks"} <= set(run["steps_s"])
        assert run["peak_rss_kb"] > 50_000  # at least the job's own interpreter with dlt loaded
    assert nightly["rss_ratio"] == pytest.approx(nightly["scale"]["peak_rss_kb"] / nightly["baseline"]["peak_rss_kb"])
    assert [row["number"] for row in results["rows"]] == [10, 10]
