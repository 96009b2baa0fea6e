"""Skip points PostgreSQL already holds with the same values.

Re-reading a window (the nightly lookback, a repeated backfill, a heal) mostly returns points that
are stored already. Merging them again would rewrite every row and index entry for nothing and
move their `loaded_at`, which makes dbt rebuild candles that did not change. Only new points and
late corrections go on to dlt, so `loaded_at` means "when this value was stored".
"""

from __future__ import annotations

from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from pipelines.config import Pair
from pipelines.database import Connection

VALUE_COLUMNS = ("price", "market_cap", "total_volume")


class StoredPoints:
    """A read-only view of the raw table, one connection for a whole load."""

    def __init__(self, connection: Connection, schema: str, table: str) -> None:
        self._connection = connection
        self._relation = sql.Identifier(schema, table)
        self._qualified = f"{schema}.{table}"
        self._conn: Any = None
        self._exists: bool | None = None
        self._unavailable = False

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    def _cursor(self) -> Any:
        if self._conn is None:
            self._conn = psycopg2.connect(**self._connection.psycopg_kwargs())
            self._conn.autocommit = True  # read-only lookups: no transaction held open during extract
        return self._conn.cursor()

    def _table_exists(self) -> bool:
        if self._exists is None:
            with self._cursor() as cur:
                cur.execute("select to_regclass(%s) is not null", (self._qualified,))
                self._exists = bool(cur.fetchone()[0])
        return self._exists

    def drop_unchanged(self, pair: Pair, table: pa.Table) -> pa.Table:
        """The rows of `table` that are new or differ from what is stored (nulls compare equal).

        Only an optimisation: if the database cannot be read, every row goes on to dlt, whose load
        step then reports the database (and keeps the fetched points in a pending package).
        """
        if self._unavailable or table.num_rows == 0:
            return table
        try:
            return self._drop_unchanged(pair, table)
        except psycopg2.Error:
            self._unavailable = True
            self.close()
            return table

    def _drop_unchanged(self, pair: Pair, table: pa.Table) -> pa.Table:
        if not self._table_exists():
            return table
        ts = table.column("ts")
        with self._cursor() as cur:
            cur.execute(
                sql.SQL(
                    "select (extract(epoch from ts) * 1000)::bigint, price, market_cap, total_volume from {}"
                    " where coin_id = %s and vs_currency = %s and ts between %s and %s"
                ).format(self._relation),
                (pair.coin_id, pair.vs_currency, pc.min(ts).as_py(), pc.max(ts).as_py()),
            )
            stored = {row[0]: row[1:] for row in cur.fetchall()}
        if not stored:
            return table
        columns = zip(
            ts.cast(pa.int64()).to_pylist(), *(table.column(name).to_pylist() for name in VALUE_COLUMNS)
        )
        keep = [stored.get(ms) != tuple(values) for ms, *values in columns]
        return table.filter(pa.array(keep, pa.bool_()))
