"""Compare what a load read with what PostgreSQL holds, before dlt loads anything.

- Unchanged points are skipped. Re-reading a window (the nightly lookback, a repeated backfill, a
  heal) mostly returns points that are stored already. Merging them again would rewrite every row
  and index entry for nothing and move their `loaded_at`, which makes dbt rebuild candles that did
  not change. Only new points and late corrections go on to dlt, so `loaded_at` means "when this
  value was stored".
- Truncated twins across loads are found. A live point stored as `t.000` and read precisely as
  `t.xyz` later is one instant (`parsing.truncated_twins`): the stored copy is named for deletion
  once the precise one is committed, and a truncated copy read after the precise one is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from pipelines.coingecko.parsing import truncated_twins
from pipelines.config import Pair
from pipelines.database import Connection

VALUE_COLUMNS = ("price", "market_cap", "total_volume")
TWIN_REACH = timedelta(seconds=1)  # a truncated twin lies within a second of its precise instant


@dataclass(frozen=True)
class Reconciled:
    changed: pa.Table  # the rows read that are new or differ from what is stored
    stale_twins_ms: tuple[int, ...] = ()  # stored instants that are truncated twins of rows read


class StoredPoints:
    """A read-only view of the raw table, one connection for a load step."""

    def __init__(self, connection: Connection, schema: str, table: str) -> None:
        self._connection = connection
        self._relation = sql.Identifier(schema, table)
        self._qualified = f"{schema}.{table}"
        self._conn: psycopg2.extensions.connection | None = None
        self._exists: bool | None = None
        self._unavailable = False

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    def _cursor(self) -> psycopg2.extensions.cursor:
        if self._conn is None:
            self._conn = psycopg2.connect(**self._connection.psycopg_kwargs())
            self._conn.autocommit = True  # read-only lookups: no transaction held open during the load
        return self._conn.cursor()

    def _table_exists(self) -> bool:
        if self._exists is None:
            with self._cursor() as cur:
                cur.execute("select to_regclass(%s) is not null", (self._qualified,))
                self._exists = bool(cur.fetchone()[0])
        return self._exists

    def reconcile(self, pair: Pair, table: pa.Table) -> Reconciled:
        """Compare `table` (a pair's points of one load step) with what is stored (nulls compare equal).

        Only an optimisation: if the database cannot be read, every row goes on to dlt, whose load
        step then reports the database (and keeps the fetched points in a pending package).
        """
        if self._unavailable or table.num_rows == 0:
            return Reconciled(table)
        try:
            stored = self._stored(pair, table) if self._table_exists() else {}
        except psycopg2.Error:
            self._unavailable = True
            self.close()
            return Reconciled(table)
        if not stored:
            return Reconciled(table)
        read_ms = table.column("ts").cast(pa.int64()).combine_chunks()
        twins = _twins(read_ms, stored)
        columns = zip(read_ms.to_pylist(), *(table.column(name).to_pylist() for name in VALUE_COLUMNS))
        keep = [ms not in twins and stored.get(ms) != tuple(values) for ms, *values in columns]
        stale = tuple(sorted(ms for ms in twins if ms in stored))
        return Reconciled(table.filter(pa.array(keep, pa.bool_())), stale)

    def _stored(self, pair: Pair, table: pa.Table) -> dict[int, tuple[Any, ...]]:
        """ts ms -> values of the stored points from a second before the first point read to a
        second after the last (so that truncated twins on the edges are seen)."""
        ts = table.column("ts")
        low, high = pc.min(ts).as_py() - TWIN_REACH, pc.max(ts).as_py() + TWIN_REACH
        with self._cursor() as cur:
            cur.execute(
                sql.SQL(
                    "select (extract(epoch from ts) * 1000)::bigint, price, market_cap, total_volume from {}"
                    " where coin_id = %s and vs_currency = %s and ts between %s and %s"
                ).format(self._relation),
                (pair.coin_id, pair.vs_currency, low, high),
            )
            return {row[0]: row[1:] for row in cur.fetchall()}


def _twins(read_ms: pa.Array, stored: dict[int, tuple[Any, ...]]) -> set[int]:
    """The instants, read or stored, that are truncated twins of another one, read or stored."""
    everything = pc.unique(pa.concat_arrays([read_ms, pa.array(list(stored), pa.int64())]))
    ordered = pc.take(everything, pc.sort_indices(everything))
    return set(ordered.filter(truncated_twins(ordered)).to_pylist())
