"""What the data-quality page shows, read from PostgreSQL, at a cost that does not grow with the
history: per pair and timeframe a few index probes (first, latest and latest sampled candle, and the
unsampled candles through their partial index), the open gaps, and the candles of the charted pairs'
recent windows. The number of candle charts is bounded (`CHARTED_PAIRS`: the pairs with problems
first, then in configured order), and so is the coverage heatmap's (`HEATMAP_CELLS`: a cell is a
UTC day, or a longer period when all pairs' histories would need more cells), so neither the page
nor the memory that builds it grows with all pairs' candles.

Candles are read only through the product relations: `public.pairs` and its per-pair views,
`public.ohlcv` and `public.gaps`; the run history through `ops.runs`, `ops.run_steps` and
`ops.run_tests`. The buckets of a pair and timeframe are counted from its first to its latest
candle: the candle tables have no holes (the `no_gaps` test checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import yaml
from psycopg2 import sql

from pipelines.config import REPO_ROOT
from pipelines.run_history import recent_runs

TIMEFRAMES = ("1h", "1d")
WIDTH = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
CANDLE_WINDOWS = {"1h": timedelta(days=7), "1d": timedelta(days=180)}
RUNS_SHOWN = 30
CHARTED_PAIRS = 20  # pairs with candle charts, at most
HEATMAP_CELLS = 100_000  # coverage cells, at most (about 16 bytes of page each)
COVERAGE_PERIODS = tuple(timedelta(days=days) for days in (1, 7, 28, 91, 364))
# The recency limits of the dbt tests (vars recency_max_age_<tf>): a pair is stale beyond them.
DEFAULT_MAX_AGE = {"1h": timedelta(hours=26), "1d": timedelta(hours=50)}

RELATIONS = "select pairs.pair, pairs.hourly_relation, pairs.daily_relation from public.pairs as pairs where pairs.pair = any(%(pairs)s)"

# Index probes only: first and latest through the (pair, ts) index, the latest sampled one by a
# backward scan of it, the unsampled candles through their partial index.
STATS = """
select
    (select min(candles.ts) from {relation} as candles),
    (select max(candles.ts) from {relation} as candles),
    (select max(candles.ts) from {relation} as candles where candles.sample_count > 0),
    (select count(*) from {relation} as candles where candles.sample_count = 0)::integer
"""

UNSAMPLED_DAYS = """
select candles.pair, candles.timeframe, date_trunc('day', candles.ts, 'UTC') as day, count(*)::integer
from public.ohlcv as candles
where candles.sample_count = 0 and candles.pair = any(%(pairs)s)
group by 1, 2, 3
"""

GAP_DAYS = """
select gaps.pair, gaps.timeframe, days.day,
       sum(round(extract(epoch from least(gaps.gap_end, days.day + interval '1 day') - greatest(gaps.gap_start, days.day))
           / extract(epoch from case gaps.timeframe when '1h' then interval '1 hour' else interval '1 day' end)))::integer
from public.gaps as gaps
cross join lateral generate_series(
    date_trunc('day', gaps.gap_start, 'UTC'), gaps.gap_end - interval '1 microsecond', interval '1 day'
) as days (day)
where gaps.pair = any(%(pairs)s)
group by 1, 2, 3
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
class CoverageCell:
    start: datetime  # a UTC day, or the first day of a longer period (ReportData.coverage_period)
    buckets: int  # candles in the relation in that period
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

    def stale(self, timeframe: str, now: datetime, max_age: timedelta) -> bool:
        """The latest sampled candle ended longer than `max_age` ago (or there is none)."""
        age = self.age(timeframe, now)
        return age is None or age > max_age

    def age(self, timeframe: str, now: datetime) -> timedelta | None:
        """How long ago the latest sampled candle ended."""
        return max(now - (self.latest_sampled + WIDTH[timeframe]), timedelta(0)) if self.latest_sampled else None


def relation_summary(cur: Any, relation: str, timeframe: str) -> Summary | None:
    """A pair's candle relation (e.g. public.ohlcv_btc_usdt) in a few index probes; None when empty."""
    cur.execute(sql.SQL(STATS).format(relation=sql.Identifier("public", relation)))
    first, latest, latest_sampled, filled = cur.fetchone()
    if latest is None:
        return None
    return Summary(int((latest - first) / WIDTH[timeframe]) + 1, first, latest, latest_sampled, filled)


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
    candles_available: bool = False  # public.ohlcv, public.gaps and public.pairs exist
    coverage: dict[tuple[str, str], list[CoverageCell]] = field(default_factory=dict)
    coverage_period: timedelta = timedelta(days=1)
    summaries: dict[tuple[str, str], Summary] = field(default_factory=dict)
    charted: list[str] = field(default_factory=list)  # the pairs with candle charts (CHARTED_PAIRS at most)
    candles: dict[tuple[str, str], list[Candle]] = field(default_factory=dict)  # of the charted pairs
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


def existing_relations(cur: Any, relations: Sequence[str]) -> set[str]:
    """Which of these relations of the schema public exist (one query for any number)."""
    cur.execute("select relname from pg_class where relnamespace = 'public'::regnamespace and relname = any(%s)", (list(relations),))
    return {row[0] for row in cur.fetchall()}


def _read_summaries(cur: Any, data: ReportData) -> None:
    cur.execute(RELATIONS, {"pairs": data.pairs})
    relations = cur.fetchall()
    present = existing_relations(cur, [name for _pair, hourly, daily in relations for name in (hourly, daily)])
    for pair, hourly, daily in relations:
        for timeframe, relation in (("1h", hourly), ("1d", daily)):
            if relation in present:
                summary = relation_summary(cur, relation, timeframe)
                if summary is not None:
                    data.summaries[(pair, timeframe)] = summary


def _by_day(cur: Any, query: str, pairs: Sequence[str]) -> dict[tuple[str, str], dict[datetime, int]]:
    cur.execute(query, {"pairs": list(pairs)})
    days: dict[tuple[str, str], dict[datetime, int]] = {}
    for pair, timeframe, day, count in cur.fetchall():
        days.setdefault((pair, timeframe), {})[day] = count
    return days


def coverage_period(rows: int, span: timedelta) -> timedelta:
    """The shortest of COVERAGE_PERIODS whose cells for `rows` rows over `span` fit HEATMAP_CELLS."""
    for period in COVERAGE_PERIODS:
        if rows * math.ceil(span / period) <= HEATMAP_CELLS:
            return period
    return COVERAGE_PERIODS[-1]


def _binned(days: dict[datetime, int], origin: datetime, period: timedelta) -> dict[int, int]:
    cells: dict[int, int] = {}
    for day, count in days.items():
        index = (day - origin) // period
        cells[index] = cells.get(index, 0) + count
    return cells


def coverage_cells(
    summaries: dict[tuple[str, str], Summary], unsampled: dict[tuple[str, str], dict[datetime, int]],
    missing: dict[tuple[str, str], dict[datetime, int]], rows: int, now: datetime,
) -> tuple[timedelta, dict[tuple[str, str], list[CoverageCell]]]:
    """(period, cells per pair and timeframe) of the heatmap, from each relation's first and latest
    candle and the unsampled and gap buckets per day: no candle is read."""
    if not summaries:
        return COVERAGE_PERIODS[0], {}
    first = min(summary.first for summary in summaries.values()).astimezone(timezone.utc)
    origin = first.replace(hour=0, minute=0, second=0, microsecond=0)
    period = coverage_period(rows, now - origin)
    coverage: dict[tuple[str, str], list[CoverageCell]] = {}
    for key, summary in summaries.items():
        width = WIDTH[key[1]]
        unsampled_cells = _binned(unsampled.get(key, {}), origin, period)
        missing_cells = _binned(missing.get(key, {}), origin, period)
        cells = coverage.setdefault(key, [])
        for index in range((summary.first - origin) // period, (summary.latest - origin) // period + 1):
            start = origin + index * period
            buckets = (min(summary.latest + width, start + period) - max(summary.first, start)) // width
            cells.append(CoverageCell(start, buckets, buckets - unsampled_cells.get(index, 0), missing_cells.get(index, 0)))
    return period, coverage


def charted_pairs(data: ReportData) -> list[str]:
    """The pairs with candle charts: those with an open gap, stale or without candles first, then the
    others in configured order; CHARTED_PAIRS at most."""
    gapped = {gap.pair for gap in data.gaps}

    def needs_attention(pair: str) -> bool:
        summaries = [(timeframe, data.summaries.get((pair, timeframe))) for timeframe in TIMEFRAMES]
        return pair in gapped or any(
            summary is None or summary.stale(timeframe, data.generated_at, data.max_age[timeframe]) for timeframe, summary in summaries
        )

    first = [pair for pair in data.pairs if needs_attention(pair)]
    return (first + [pair for pair in data.pairs if pair not in set(first)])[:CHARTED_PAIRS]


def _read_candle_relations(cur: Any, data: ReportData) -> None:
    _read_summaries(cur, data)
    cur.execute(GAPS, {"pairs": data.pairs})
    data.gaps = [GapRow(*row) for row in cur.fetchall()]
    data.charted = charted_pairs(data)
    data.coverage_period, data.coverage = coverage_cells(
        data.summaries, _by_day(cur, UNSAMPLED_DAYS, data.pairs), _by_day(cur, GAP_DAYS, data.pairs),
        len(data.pairs) * len(TIMEFRAMES), data.generated_at,
    )
    for timeframe, window in CANDLE_WINDOWS.items():
        cur.execute(CANDLES, {"pairs": data.charted, "timeframe": timeframe, "since": data.generated_at - window})
        for pair, _tf, ts, o, h, low, c, volume, samples in cur.fetchall():
            data.candles.setdefault((pair, timeframe), []).append(Candle(ts, o, h, low, c, volume, samples == 0))


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
    data.candles_available = all(_exists(cur, f"public.{name}") for name in ("ohlcv", "gaps", "pairs"))
    if data.candles_available:
        _read_candle_relations(cur, data)
    else:
        data.charted = charted_pairs(data)
    _read_run_history(cur, data)
    return data
