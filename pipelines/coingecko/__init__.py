"""dlt source for CoinGecko market_chart points: one resource, merged on (coin_id, vs_currency, ts).

The loader reads the planned windows (`helpers`), keeps the points that are new or changed, and
hands them over as one `PairBatch` per pair and load step: Arrow tables, which dlt loads through
COPY rather than row by row. The resource owns its incremental state, so dlt commits it together
with the points it belongs to:

- `cursors`: per pair, the newest point a nightly load read; the next nightly load re-reads from
  there minus the lookback (ALPHADB_BACKFILL_DAYS);
- `backfill`: how far an explicit-range load got per pair, so the same load, interrupted, resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TColumnSchema
from dlt.extract.resource import DltResource

from pipelines.coingecko.settings import PRIMARY_KEY, RESOURCE_NAME

SOURCE_NAME = "coingecko"
# Where the state lived before the resource owned it (the source's state): read once and moved.
LEGACY_STATE_KEYS = ("cursors", "backfill")

COLUMNS: dict[str, TColumnSchema] = {
    "coin_id": {"data_type": "text", "nullable": False},
    "vs_currency": {"data_type": "text", "nullable": False},
    "ts": {"data_type": "timestamp", "precision": 3, "nullable": False, "timezone": True},
    "price": {"data_type": "double", "nullable": True},
    "market_cap": {"data_type": "double", "nullable": True},
    "total_volume": {"data_type": "double", "nullable": True},
    "loaded_at": {"data_type": "timestamp", "precision": 6, "nullable": False, "timezone": True},
}


@dataclass(frozen=True)
class PairBatch:
    """A pair's part of one load step: the points to merge and how far the read got."""

    pair_name: str
    rows: pa.Table  # new or changed points (the rest are stored already, unchanged)
    newest_ms: int | None  # the newest point read, changed or not
    read_until_ms: int | None  # the end of the last window read


@dataclass(frozen=True)
class RangeJob:
    """An explicit-range load, as its resume state names it."""

    key: str  # e.g. "days=365|BTC/USDT,ETH/USDT": the same command, the same pairs
    start: str  # ISO start of the range: a resumed job keeps it
    completes: bool  # this step reads every pair to the end of the range


@dataclass(frozen=True)
class SavedProgress:
    """The resource's state as the last committed load left it."""

    cursors: dict[str, int] = field(default_factory=dict)
    backfill: dict[str, Any] = field(default_factory=dict)

    def unfinished(self, job_key: str) -> dict[str, Any] | None:
        """The saved progress of this range job when it was interrupted (None: start afresh)."""
        if self.backfill.get("job") == job_key and not self.backfill.get("complete"):
            return self.backfill
        return None


def saved_progress(pipeline_state: Mapping[str, Any]) -> SavedProgress:
    """Read the resource's state from a pipeline's state (after `sync_destination`, or as stored
    in `_dlt_pipeline_state`)."""
    source = pipeline_state.get("sources", {}).get(SOURCE_NAME, {})
    own = {**{key: source[key] for key in LEGACY_STATE_KEYS if key in source}, **source.get("resources", {}).get(RESOURCE_NAME, {})}
    return SavedProgress(dict(own.get("cursors", {})), dict(own.get("backfill", {})))


def _own_state() -> dict[str, Any]:
    state: dict[str, Any] = dlt.current.resource_state()
    legacy: dict[str, Any] = dlt.current.source_state()
    for key in LEGACY_STATE_KEYS:
        if key in legacy:
            state.setdefault(key, legacy.pop(key))
    return state


def _advance_cursor(state: dict[str, Any], batch: PairBatch) -> None:
    if batch.newest_ms is not None:
        cursors = state.setdefault("cursors", {})
        cursors[batch.pair_name] = max(cursors.get(batch.pair_name, 0), batch.newest_ms)


def _record_job(state: dict[str, Any], batch: PairBatch, job: RangeJob) -> None:
    progress = state.get("backfill") or {}
    if progress.get("job") != job.key:
        progress = state["backfill"] = {"job": job.key, "start": job.start, "done_until": {}, "complete": False}
    if batch.read_until_ms is not None:
        progress["done_until"][batch.pair_name] = batch.read_until_ms
    progress["complete"] = job.completes


@dlt.resource(name=RESOURCE_NAME, write_disposition="merge", primary_key=PRIMARY_KEY, columns=COLUMNS)
def market_chart_points(batches: Sequence[PairBatch], job: RangeJob | None = None) -> Iterator[pa.Table]:
    """The points of one load step, as one Arrow table: dlt works out the table schema for every
    item it is given (about 5 ms each), which a table per pair would pay 100 times a step. A nightly
    load (`job` None) moves each pair's cursor to the newest point read; a range load records how
    far each pair got instead."""
    state = _own_state()
    for batch in batches:
        if job is None:
            _advance_cursor(state, batch)
        else:
            _record_job(state, batch, job)
    changed = [batch.rows for batch in batches if batch.rows.num_rows]
    if changed:
        yield pa.concat_tables(changed)


@dlt.source(name=SOURCE_NAME, max_table_nesting=0)
def coingecko(batches: Sequence[PairBatch], job: RangeJob | None = None) -> DltResource:
    """Raw market_chart points, one load step at a time."""
    return market_chart_points(batches, job)
