"""What the data-quality page shows, read from PostgreSQL: every query aggregates in the database
and returns at most one row per pair, timeframe and day (the coverage heatmap) or per candle shown.

Candles are read only through the product relations `public.ohlcv` and `public.gaps`; the run
history through `ops.runs`, `ops.run_steps` and `ops.run_tests`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

import yaml

from pipelines.config import REPO_ROOT
from pipelines.run_history import recent_runs

TIMEFRAMES = ("1h", "1d")
WIDTH = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
CANDLE_WINDOWS = {"1h": timedelta(days=7), "1d": timedelta(days=180)}
RUNS_SHOWN = 30
# The recency limits of the dbt tests (vars recency_max_age_<tf>): a pair is stale beyond them.
DEFAULT_MAX_AGE = {"1h": timedelta(hours=26), "1d": timedelta(hours=50)}

COVERAGE = """
with daily as (
    select candles.pair, candles.timeframe, date_trunc('day', candles.ts, 'UTC') as day,
           count(*)::integer as buckets,
           (count(*) filter (where candles.sample_count > 0))::integer as sampled
    from public.ohlcv as candles
    where candles.pair = any(%(pairs)s)
    group by 1, 2, 3
),
gap_days as (
    select gaps.pair, gaps.timeframe, days.day,
           sum(round(extract(epoch from least(gaps.gap_end, days.day + interval '1 day') - greatest(gaps.gap_start, days.day))
               / extract(epoch from case gaps.timeframe when '1h' then interval '1 hour' else interval '1 day' end)))::integer
               as missing
    from public.gaps as gaps
    cross join lateral generate_series(
        date_trunc('day', gaps.gap_start, 'UTC'), gaps.gap_end - interval '1 microsecond', interval '1 day'
    ) as days (day)
    where gaps.pair = any(%(pairs)s)
    group by 1, 2, 3
)
select daily.pair, daily.timeframe, daily.day, daily.buckets, daily.sampled, coalesce(gap_days.missing, 0)
from daily
left join gap_days on gap_days.pair = daily.pair and gap_days.timeframe = daily.timeframe and gap_days.day = daily.day
order by daily.pair, daily.timeframe, daily.day
"""

SUMMARY = """
select candles.pair, candles.timeframe, count(*)::integer, min(candles.ts), max(candles.ts),
       max(candles.ts) filter (where candles.sample_count > 0),
       (count(*) filter (where candles.sample_count = 0))::integer
from public.ohlcv as candles
where candles.pair = any(%(pairs)s)
group by 1, 2
"""

CANDLES = """
select candles.pair, candles.timeframe, candles.ts, candles.open, candles.high, candles.low, candles.close,
       candles.volume, candles.sample_count
from public.ohlcv as candles
where candles.pair = any(%(pairs)s) and candles.timeframe = %(timeframe)s and candles.ts >= %(since)s
order by candles.pair, candles.ts
"""

GAPS = """
select gaps.pair, gaps.timeframe, gaps.gap_start, gaps.gap_end, gaps.missing_buckets
from public.gaps as gaps
where gaps.pair = any(%(pairs)s)
order by gaps.pair, gaps.timeframe, gaps.gap_start
"""

HEALED_SHOWN = 50
HEALED = """
select gaps.pair, gaps.timeframe, gaps.gap_start, gaps.gap_end, gaps.missing_buckets, runs.run_id, runs.started_at
from ops.run_gaps as gaps
join ops.runs as runs on runs.run_id = gaps.run_id
where gaps.healed and gaps.pair = any(%(pairs)s)
order by runs.started_at desc, gaps.pair, gaps.timeframe, gaps.gap_start
limit %(limit)s
"""

LAST_SUCCESS = "select max(started_at) from ops.runs where status = 'finished' and exit_code = 0"

LAST_TESTS = """
select tested.run_id, tested.started_at, tests.node, tests.status, tests.failures, tests.message
from (
    select runs.run_id, runs.started_at from ops.runs as runs
    where exists (select 1 from ops.run_tests as any_test where any_test.run_id = runs.run_id)
    order by runs.started_at desc limit 1
) as tested
join ops.run_tests as tests on tests.run_id = tested.run_id
order by tests.status, tests.node
"""


@dataclass(frozen=True)
class CoverageDay:
    day: datetime
    buckets: int  # candles in the relation that day
    sampled: int  # of which built from at least one source point
    missing: int  # of which inside a gap (unsampled beyond the tolerance)

    @property
    def filled(self) -> int:
        """Forward-filled within the tolerance: unsampled, but not part of a gap."""
        return self.buckets - self.sampled - self.missing


@dataclass(frozen=True)
class Summary:
    candles: int
    first: datetime
    latest: datetime
    latest_sampled: datetime | None
    filled: int  # every unsampled candle (tolerated fills and gap buckets)


@dataclass(frozen=True)
class Candle:
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    filled: bool


@dataclass(frozen=True)
class GapRow:
    pair: str
    timeframe: str
    start: datetime
    end: datetime
    missing_buckets: int


@dataclass(frozen=True)
class HealedRow:
    pair: str
    timeframe: str
    start: datetime
    end: datetime
    missing_buckets: int
    run_id: int
    run_started: datetime


@dataclass(frozen=True)
class TestRow:
    node: str
    status: str
    failures: int | None
    message: str


@dataclass
class ReportData:
    generated_at: datetime
    pairs: list[str]
    max_age: dict[str, timedelta]
    candles_available: bool = False  # public.ohlcv exists
    coverage: dict[tuple[str, str], list[CoverageDay]] = field(default_factory=dict)
    summaries: dict[tuple[str, str], Summary] = field(default_factory=dict)
    candles: dict[tuple[str, str], list[Candle]] = field(default_factory=dict)
    gaps: list[GapRow] = field(default_factory=list)
    healed: list[HealedRow] = field(default_factory=list)  # newest first
    runs: list[dict[str, Any]] = field(default_factory=list)  # newest first
    last_success: datetime | None = None
    tests: list[TestRow] = field(default_factory=list)
    tests_run_id: int | None = None


def max_ages(project_file: Any = REPO_ROOT / "dbt_alphadb" / "dbt_project.yml") -> dict[str, timedelta]:
    """The dbt project's recency limits (vars recency_max_age_1h/1d, e.g. "26 hours")."""
    try:
        variables = (yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}).get("vars") or {}
    except (OSError, yaml.YAMLError):
        variables = {}
    ages = dict(DEFAULT_MAX_AGE)
    for timeframe in TIMEFRAMES:
        count, _, unit = str(variables.get(f"recency_max_age_{timeframe}", "")).partition(" ")
        if count.isdigit() and unit.rstrip("s") in ("hour", "day"):
            ages[timeframe] = timedelta(**{unit.rstrip("s") + "s": int(count)})
    return ages


def _exists(cur: Any, relation: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (relation,))
    return bool(cur.fetchone()[0])


def _read_candle_relations(cur: Any, data: ReportData) -> None:
    params = {"pairs": data.pairs}
    cur.execute(COVERAGE, params)
    for pair, timeframe, day, buckets, sampled, missing in cur.fetchall():
        data.coverage.setdefault((pair, timeframe), []).append(CoverageDay(day, buckets, sampled, missing))
    cur.execute(SUMMARY, params)
    for pair, timeframe, *values in cur.fetchall():
        data.summaries[(pair, timeframe)] = Summary(*values)
    for timeframe, window in CANDLE_WINDOWS.items():
        cur.execute(CANDLES, {**params, "timeframe": timeframe, "since": data.generated_at - window})
        for pair, _tf, ts, o, h, low, c, volume, samples in cur.fetchall():
            data.candles.setdefault((pair, timeframe), []).append(Candle(ts, o, h, low, c, volume, samples == 0))
    cur.execute(GAPS, params)
    data.gaps = [GapRow(*row) for row in cur.fetchall()]


def _read_run_history(cur: Any, data: ReportData) -> None:
    data.runs = recent_runs(cur, RUNS_SHOWN)
    if not data.runs:
        return
    cur.execute(LAST_SUCCESS)
    data.last_success = cur.fetchone()[0]
    if _exists(cur, "ops.run_gaps"):  # a history recorded before healed gaps were
        cur.execute(HEALED, {"pairs": data.pairs, "limit": HEALED_SHOWN})
        data.healed = [HealedRow(*row) for row in cur.fetchall()]
    cur.execute(LAST_TESTS)
    rows = cur.fetchall()
    if rows:
        data.tests_run_id = rows[0][0]
        data.tests = [TestRow(node, status, failures, message) for _run, _started, node, status, failures, message in rows]


def collect(cur: Any, pairs: Sequence[str], now: datetime) -> ReportData:
    """Everything the page shows, for the configured `pairs`, as of `now` (UTC)."""
    data = ReportData(now, list(pairs), max_ages())
    data.candles_available = _exists(cur, "public.ohlcv") and _exists(cur, "public.gaps")
    if data.candles_available:
        _read_candle_relations(cur, data)
    _read_run_history(cur, data)
    return data
