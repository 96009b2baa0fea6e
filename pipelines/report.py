"""The data-quality report: per pair and timeframe, what the marts hold and how fresh it is.

Printed as aligned run-log lines (🔍 heading, 📊 rows, ⚠️ for what needs attention), followed by the
original guide's check query generalised to every configured pair, so an operator can compare the
log with `alphadb psql`. With many pairs (more than `FULL_TABLE_PAIRS`) the nightly logs a summary
instead: totals, and the rows of the pairs that need attention (no candles, a gap, stale), at most
`ATTENTION_ROWS` of them; `alphadb report` prints the full table. Each pair costs a few index
probes (first and latest candle, the unsampled ones through their partial index), whatever its
history. Relation names come from validated pair slugs and are still quoted with
`psycopg2.sql.Identifier`: no SQL is built by concatenating configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

import psycopg2.extensions
from psycopg2 import sql

from pipelines import runlog
from pipelines.candles import TIMEFRAMES, Timeframe, relation_name
from pipelines.config import Pair, Settings
from pipelines.database import Connection, connect
from pipelines.errors import EXIT_OK, EXIT_QUALITY
from pipelines.report_data import existing_relations, max_ages, relation_summary
from pipelines.transform import Gap, find_gaps

SCHEMA = "public"
FULL_TABLE_PAIRS = 10  # up to this many pairs, the nightly logs the full table and the guide query
ATTENTION_ROWS = 20  # the summary's rows of pairs needing attention, at most


@dataclass(frozen=True)
class Quality:
    """One pair and timeframe as the marts hold it; `records` is None when the relation is missing."""

    pair: str
    timeframe: str
    relation: str
    records: int | None  # buckets from the first to the latest candle (the candle tables have no holes)
    first: datetime | None = None
    latest: datetime | None = None
    filled: int = 0  # forward-filled buckets (sample_count = 0)
    gaps: int = 0  # runs of unsampled buckets beyond the tolerance (docs/design.md)
    lag: timedelta | None = None  # now minus the end of the latest candle
    max_age: timedelta | None = None  # the dbt recency limit of this timeframe

    @property
    def healthy(self) -> bool:
        return bool(self.records) and self.gaps == 0

    @property
    def stale(self) -> bool:
        return self.lag is not None and self.max_age is not None and self.lag > self.max_age

    @property
    def needs_attention(self) -> bool:
        return not self.healthy or self.stale


def _exists(cur: psycopg2.extensions.cursor, relation: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (f'{SCHEMA}."{relation}"',))
    return bool(cur.fetchone()[0])


def _gap_counts(gaps: Iterable[Gap]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for gap in gaps:
        key = (gap.pair, gap.timeframe)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _quality(
    cur: psycopg2.extensions.cursor, pair: Pair, timeframe: Timeframe, gaps: int, now: datetime, max_age: timedelta
) -> Quality:
    relation = relation_name(pair, timeframe.name)
    summary = relation_summary(cur, relation, timeframe.name)  # index probes: the history is never scanned
    if summary is None:
        return Quality(pair.name, timeframe.name, relation, 0, gaps=gaps, max_age=max_age)
    lag = max(now - (summary.latest + timeframe.width), timedelta(0))
    return Quality(pair.name, timeframe.name, relation, summary.candles, summary.first, summary.latest, summary.filled, gaps, lag, max_age)


def collect(pairs: Sequence[Pair], connection: Connection, gaps: Iterable[Gap], now: datetime) -> list[Quality]:
    """Query every configured pair's marts (missing relations are reported, not fatal)."""
    gap_counts = _gap_counts(gaps)
    ages = max_ages()
    wanted = [(pair, timeframe) for pair in pairs for timeframe in TIMEFRAMES.values()]
    with connect(connection) as conn, conn.cursor() as cur:
        present = existing_relations(cur, [relation_name(pair, timeframe.name) for pair, timeframe in wanted])
        return [
            _quality(cur, pair, timeframe, gap_counts.get((pair.name, timeframe.name), 0), now, ages[timeframe.name])
            if relation_name(pair, timeframe.name) in present
            else Quality(pair.name, timeframe.name, relation_name(pair, timeframe.name), None)
            for pair, timeframe in wanted
        ]


def guide_query(pairs: Sequence[Pair]) -> sql.Composed:
    """The guide's `SELECT 'BTC' as symbol, COUNT(*) as records, MAX(ts) as latest FROM ohlcv_btc_usdt UNION ALL ...`."""
    parts = [
        sql.SQL("SELECT {} as symbol, COUNT(*) as records, MAX(ts) as latest FROM {}").format(
            sql.Literal(pair.name), sql.Identifier(relation_name(pair, "1h"))
        )
        for pair in pairs
    ]
    return sql.SQL(" UNION ALL ").join(parts)


def _stamp(value: datetime | None, timeframe: str) -> str:
    if value is None:
        return "-"
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d") if timeframe == "1d" else value.strftime("%Y-%m-%d %H:%M")


def format_lag(lag: timedelta | None) -> str:
    if lag is None:
        return "-"
    minutes = int(lag.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"


def format_table(rows: Sequence[Quality]) -> list[tuple[str, str]]:
    """(marker, text) lines with aligned columns; rows needing attention get ⚠️."""
    header = ("pair", "tf", "records", "first", "latest", "filled", "gaps", "lag")
    cells = [header]
    for row in rows:
        if row.records is None:
            cells.append((row.pair, row.timeframe, "-", "-", "-", "-", "-", f"- (no table {SCHEMA}.{row.relation})"))
            continue
        cells.append(
            (
                row.pair, row.timeframe, str(row.records), _stamp(row.first, row.timeframe),
                _stamp(row.latest, row.timeframe), str(row.filled), str(row.gaps), format_lag(row.lag),
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    numeric = {2, 5, 6}
    lines: list[tuple[str, str]] = []
    for index, cell in enumerate(cells):
        text = "  ".join(cell[i].rjust(widths[i]) if i in numeric else cell[i].ljust(widths[i]) for i in range(len(cell)))
        marker = runlog.RUNNING if index == 0 or not rows[index - 1].needs_attention else runlog.WARNING
        lines.append((marker, text.rstrip()))
    return lines


def format_guide_result(result: Sequence[tuple[str, int, datetime | None]]) -> list[str]:
    header = ("symbol", "records", "latest")
    cells = [header] + [(s, str(n), _stamp(latest, "1h") + (" UTC" if latest else "")) for s, n, latest in result]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    return [f"{c[0].ljust(widths[0])} | {c[1].rjust(widths[1])} | {c[2]}" for c in cells]


def run_guide_query(pairs: Sequence[Pair], connection: Connection) -> list[tuple[str, int, datetime | None]]:
    with connect(connection) as conn, conn.cursor() as cur:
        present = [pair for pair in pairs if _exists(cur, relation_name(pair, "1h"))]
        if not present:
            return []
        cur.execute(guide_query(present))
        return [(str(symbol), int(records), latest) for symbol, records, latest in cur.fetchall()]


def summary_line(rows: Sequence[Quality], gaps: Sequence[Gap]) -> str:
    """`1,000 pairs: 1h 26,280,000 candles, 1d 1,095,000; 3 gap(s) in 2 pair(s), 1 stale, 0 without candles`."""
    pairs = {row.pair for row in rows}
    totals = ", ".join(
        f"{timeframe} {sum(row.records or 0 for row in rows if row.timeframe == timeframe):,}" for timeframe in TIMEFRAMES
    )
    stale = {row.pair for row in rows if row.stale}
    empty = {row.pair for row in rows if not row.records}
    return (
        f"{len(pairs):,} pairs, candles: {totals}; {len(gaps)} gap(s) in {len({gap.pair for gap in gaps})} pair(s),"
        f" {len(stale)} pair(s) stale, {len(empty)} without candles"
    )


def log_report(
    settings: Settings, connection: Connection, gaps: Sequence[Gap], now: datetime | None = None, full: bool | None = None
) -> int:
    """Log the report; return 0 when every pair and timeframe has candles and no gap, else 4.
    `full`: the whole table and the guide query; by default only for up to FULL_TABLE_PAIRS pairs,
    a summary beyond (see the module's docstring)."""
    now = now or datetime.now(timezone.utc)
    full = len(settings.pairs) <= FULL_TABLE_PAIRS if full is None else full
    rows = collect(settings.pairs, connection, gaps, now)
    runlog.line(runlog.CHECK, f"Data quality report ({now:%Y-%m-%d %H:%M} UTC): {summary_line(rows, gaps)}")
    shown = rows if full else [row for row in rows if row.needs_attention]
    if shown:
        for marker, text in format_table(shown[: len(shown) if full else ATTENTION_ROWS]):
            runlog.line(marker, text)
    if len(shown) > ATTENTION_ROWS and not full:
        runlog.line(runlog.WARNING, f"... and {len(shown) - ATTENTION_ROWS} more row(s) needing attention")
    for gap in gaps[: len(gaps) if full else ATTENTION_ROWS]:
        runlog.line(runlog.WARNING, f"Gap {describe_gap(gap)}")
    if len(gaps) > ATTENTION_ROWS and not full:
        runlog.line(runlog.WARNING, f"... and {len(gaps) - ATTENTION_ROWS} more gap(s)")
    if not full:
        runlog.line(runlog.RUNNING, "Every pair and timeframe, with the guide check query: alphadb report")
        return _exit_code(rows, gaps)
    result = run_guide_query(settings.pairs, connection)
    if result:
        runlog.line(runlog.CHECK, "Guide check query (alphadb psql):")
        for text in format_guide_result(result):
            runlog.line(runlog.RUNNING, text)
    return _exit_code(rows, gaps)


def _exit_code(rows: Sequence[Quality], gaps: Sequence[Gap]) -> int:
    return EXIT_OK if all(row.healthy for row in rows) and not gaps else EXIT_QUALITY


def describe_gap(gap: Gap) -> str:
    """`BTC/USDT 1h 2025-06-12 03:00 → 2025-06-12 05:00 (3 missing buckets)`."""
    return (
        f"{gap.pair} {gap.timeframe} {_stamp(gap.start, gap.timeframe)} → {_stamp(gap.end, gap.timeframe)}"
        f" ({gap.missing_buckets} missing buckets)"
    )


def print_report(settings: Settings, connection: Connection) -> int:
    """`alphadb report`: the nightly job's report on demand, every pair and timeframe whatever their number."""
    return log_report(settings, connection, find_gaps(connection), full=True)
