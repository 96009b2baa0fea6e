"""The data-quality page's bounded reads (pipelines/report_data.py): the coverage heatmap's cells
from each relation's bounds and its unsampled and gap buckets, and the selection of charted pairs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pipelines import report_data
from pipelines.report_data import CoverageCell, GapRow, ReportData, Summary, charted_pairs, coverage_cells, coverage_period

UTC = timezone.utc
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def test_coverage_cells_count_buckets_from_the_bounds_and_bin_the_unsampled_and_gap_days() -> None:
    first = datetime(2026, 11, 26, 10, tzinfo=UTC)
    summaries = {("A/USD", "1h"): Summary(75, first, first + 74 * HOUR, first + 74 * HOUR, 5),
                 ("A/USD", "1d"): Summary(4, datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC), None, 0)}
    unsampled = {("A/USD", "1h"): {datetime(2026, 11, 27, tzinfo=UTC): 5}}
    missing = {("A/USD", "1h"): {datetime(2026, 11, 27, tzinfo=UTC): 3}}
    period, cells = coverage_cells(summaries, unsampled, missing, rows=2, now=NOW)
    assert period == DAY
    assert cells[("A/USD", "1h")] == [
        CoverageCell(datetime(2026, 11, 26, tzinfo=UTC), 14, 14, 0),  # from 10:00
        CoverageCell(datetime(2026, 11, 27, tzinfo=UTC), 24, 19, 3),  # 5 unsampled, 3 of them in a gap
        CoverageCell(datetime(2026, 11, 28, tzinfo=UTC), 24, 24, 0),
        CoverageCell(datetime(2026, 11, 29, tzinfo=UTC), 13, 13, 0),  # up to the latest candle, 12:00
    ]
    assert sum(cell.buckets for cell in cells[("A/USD", "1h")]) == 75 and cells[("A/USD", "1h")][1].filled == 2
    assert [cell.buckets for cell in cells[("A/USD", "1d")]] == [1, 1, 1, 1]


def test_many_pairs_with_long_histories_get_longer_cells_within_the_budget() -> None:
    three_years = timedelta(days=3 * 365)
    assert coverage_period(40, three_years) == DAY  # 20 pairs: a cell per day
    period = coverage_period(2000, three_years)  # 1000 pairs
    assert period > DAY and 2000 * (three_years / period + 1) <= report_data.HEATMAP_CELLS
    first = NOW - three_years
    summaries = {(f"P{n}/USD", "1h"): Summary(1, first, NOW, NOW, 0) for n in range(1000)}
    unsampled = {("P7/USD", "1h"): {first.replace(hour=0) + 10 * DAY: 2, first.replace(hour=0) + 11 * DAY: 1}}
    period, cells = coverage_cells(summaries, unsampled, {}, rows=2000, now=NOW)
    assert sum(len(row) for row in cells.values()) <= report_data.HEATMAP_CELLS
    assert sum(cell.buckets - cell.sampled for cell in cells[("P7/USD", "1h")]) == 3
    assert sum(cell.buckets for cell in cells[("P7/USD", "1h")]) == three_years // HOUR + 1


def test_charted_pairs_put_problems_first_and_stay_bounded() -> None:
    pairs = [f"P{n:04d}/USD" for n in range(1000)]
    fresh = Summary(10, NOW - 10 * HOUR, NOW - HOUR, NOW - HOUR, 0)
    stale = Summary(10, NOW - 10 * DAY, NOW - 5 * DAY, NOW - 5 * DAY, 0)
    data = ReportData(NOW, pairs, {"1h": timedelta(hours=26), "1d": timedelta(hours=50)})
    for pair in pairs:
        for timeframe in ("1h", "1d"):
            data.summaries[(pair, timeframe)] = fresh
    del data.summaries[("P0500/USD", "1h")], data.summaries[("P0500/USD", "1d")]  # no candles
    data.summaries[("P0900/USD", "1d")] = stale
    data.gaps = [GapRow("P0700/USD", "1h", NOW - 5 * HOUR, NOW - 2 * HOUR, 3)]
    charted = charted_pairs(data)
    assert len(charted) == report_data.CHARTED_PAIRS
    assert charted[:3] == ["P0500/USD", "P0700/USD", "P0900/USD"] and charted[3:] == pairs[: report_data.CHARTED_PAIRS - 3]
    few = ReportData(NOW, pairs[:3], data.max_age, summaries=data.summaries)
    assert charted_pairs(few) == pairs[:3]
