"""The candles as the Python side knows them: the timeframes and the candle columns, in one place.

The dbt project builds the candles; the report, the heal step and the tests read them through the
names defined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pipelines.config import Pair


@dataclass(frozen=True)
class Timeframe:
    name: str  # "1h", "1d": the `timeframe` column of the unified `ohlcv` relation and of gaps
    width: timedelta  # a fixed length of time: a daily bucket is 24 hours of UTC, never a local day
    relation_suffix: str  # of the pair's relation: ohlcv_<base>_<quote><suffix>
    label: str


TIMEFRAMES: dict[str, Timeframe] = {
    "1h": Timeframe("1h", timedelta(hours=1), "", "Hourly"),
    "1d": Timeframe("1d", timedelta(days=1), "_1d", "Daily (UTC days)"),
}


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # as PostgreSQL names it


# A candle's columns in the order the relations hold them.
CANDLE_COLUMNS: tuple[Column, ...] = (
    Column("ts", "timestamp with time zone"),
    Column("open", "double precision"),
    Column("high", "double precision"),
    Column("low", "double precision"),
    Column("close", "double precision"),
    Column("volume", "double precision"),
    Column("market_cap", "double precision"),
    Column("sample_count", "integer"),
    Column("is_complete", "boolean"),
)
CANDLE_COLUMN_LIST = ", ".join(column.name for column in CANDLE_COLUMNS)


def relation_name(pair: Pair, timeframe: str) -> str:
    """`ohlcv_btc_usdt` (hourly), `ohlcv_btc_usdt_1d` (daily): the pair's relation in `public`."""
    return f"ohlcv_{pair.slug}{TIMEFRAMES[timeframe].relation_suffix}"
