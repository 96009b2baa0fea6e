"""The data-quality report: per pair and timeframe, what the marts hold and how fresh it is.

Printed as aligned run-log lines (🔍 heading, 📊 rows, ⚠️ for what needs attention), followed by the
original guide's check query generalised to every configured pair, so an operator can compare the
log with `alphadb psql`. Relation names come from validated pair slugs and are still quoted with
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
from pipelines.transform import Gap, find_gaps

SCHEMA = "public"


@dataclass(frozen=True)
class Quality:
    """One pair and timeframe as the marts hold it; `records` is None when the relation is missing."""

    pair: str
    timeframe: str
    relation: str
    records: int | None
    first: datetime | None = None
    latest: datetime | None = None
    filled: int = 0  # forward-filled buckets (sample_count = 0)
    gaps: int = 0  # runs of unsampled buckets beyond the tolerance (docs/design.md)
    lag: timedelta | None = None  # now minus the end of the latest candle

    @property
    def healthy(self) -> bool:
        return bool(self.records) and self.gaps == 0


def _exists(cur: psycopg2.extensions.cursor, relation: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (f'{SCHEMA}."{relation}"',))
    return bool(cur.fetchone()[0])


def _gap_counts(gaps: Iterable[Gap]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for gap in gaps:
        key = (gap.pair, gap.timeframe)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _quality(cur: psycopg2.extensions.cursor, pair: Pair, timeframe: Timeframe, gaps: int, now: datetime) -> Quality:
    relation = relation_name(pair, timeframe.name)
    if not _exists(cur, relation):
        return Quality(pair.name, timeframe.name, relation, None)
    cur.execute(
        sql.SQL("select count(*), min(ts), max(ts), count(*) filter (where sample_count = 0) from {}.{}").format(
            sql.Identifier(SCHEMA), sql.Identifier(relation)
        )
    )
    records, first, latest, filled = cur.fetchone()
    lag = max(now - (latest + timeframe.width), timedelta(0)) if latest else None
    return Quality(pair.name, timeframe.name, relation, records, first, latest, filled, gaps, lag)


def collect(pairs: Sequence[Pair], connection: Connection, gaps: Iterable[Gap], now: datetime) -> list[Quality]:
    """Query every configured pair's marts (missing relations are reported, not fatal)."""
    gap_counts = _gap_counts(gaps)
    with connect(connection) as conn, conn.cursor() as cur:
        return [
            _quality(cur, pair, timeframe, gap_counts.get((pair.name, timeframe.name), 0), now)
            for pair in pairs
            for timeframe in TIMEFRAMES.values()
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
        marker = runlog.RUNNING if index == 0 or rows[index - 1].healthy else runlog.WARNING
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


def log_report(settings: Settings, connection: Connection, gaps: Sequence[Gap], now: datetime | None = None) -> int:
    """Log the report; return 0 when every pair and timeframe has candles and no gap, else 4."""
    now = now or datetime.now(timezone.utc)
    rows = collect(settings.pairs, connection, gaps, now)
    runlog.line(runlog.CHECK, f"Data quality report ({now:%Y-%m-%d %H:%M} UTC)")
    for marker, text in format_table(rows):
        runlog.line(marker, text)
    for gap in gaps:
        runlog.line(runlog.WARNING, f"Gap {describe_gap(gap)}")
    result = run_guide_query(settings.pairs, connection)
    if result:
        runlog.line(runlog.CHECK, "Guide check query (alphadb psql):")
        for text in format_guide_result(result):
            runlog.line(runlog.RUNNING, text)
    return EXIT_OK if all(row.healthy for row in rows) and not gaps else EXIT_QUALITY


def describe_gap(gap: Gap) -> str:
    """`BTC/USDT 1h 2025-06-12 03:00 → 2025-06-12 05:00 (3 missing buckets)`."""
    return (
        f"{gap.pair} {gap.timeframe} {_stamp(gap.start, gap.timeframe)} → {_stamp(gap.end, gap.timeframe)}"
        f" ({gap.missing_buckets} missing buckets)"
    )


def print_report(settings: Settings, connection: Connection) -> int:
    """`alphadb report`: the same report as the nightly job logs, on demand."""
    return log_report(settings, connection, find_gaps(connection))
