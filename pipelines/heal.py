"""Gap heal: re-fetch exactly the missing ranges, rebuild the candles, look again.

A gap (docs/design.md) is a run of unsampled buckets beyond the tolerance. The heal step takes the gaps the
transformer finds, merges them per pair into padded UTC ranges, reloads those ranges with the
loader's range load (which leaves the nightly cursor alone), rebuilds the models and looks again:
at most `MAX_ROUNDS` rounds, and it stops as soon as a round changes nothing, so a gap the source
itself cannot fill is reported (pair and range) instead of being fetched forever.

The loader and the transformer are passed in: the nightly job hands over its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Protocol, Sequence

from pipelines import runlog
from pipelines.config import Pair, Settings
from pipelines.database import Connection
from pipelines.errors import EXIT_FAILURE, EXIT_OK, EXIT_QUALITY, AlphaDBError
from pipelines.load import LoadReport
from pipelines.report import describe_gap
from pipelines.run_history import RunRecord
from pipelines.transform import DbtOutcome, Gap

MAX_ROUNDS = 2
PADDING = timedelta(hours=2)  # a little context on each side so edge buckets get real samples


class RangeLoader(Protocol):
    def load_range(
        self, settings: Settings, connection: Connection, start: datetime, end: datetime,
        pairs: Sequence[Pair] | None = None, job: str | None = None, now: datetime | None = None,
    ) -> LoadReport: ...


class ModelBuilder(Protocol):
    def run_models(self, settings: Settings, connection: Connection, full_refresh: bool = False) -> DbtOutcome: ...

    def find_gaps(self, connection: Connection) -> list[Gap]: ...


@dataclass
class HealResult:
    found: list[Gap] = field(default_factory=list)  # the gaps before healing
    remaining: list[Gap] = field(default_factory=list)  # the gaps the source could not fill
    rounds: int = 0
    points: int = 0
    requests: int = 0
    failures: list[str] = field(default_factory=list)  # re-fetches or rebuilds that failed

    @property
    def exit_code(self) -> int:
        """1 when a re-fetch or rebuild failed, else 0 (remaining gaps are the caller's call)."""
        return EXIT_FAILURE if self.failures else EXIT_OK


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def find_pair(pairs: Sequence[Pair], gap: Gap) -> Pair | None:
    return next((pair for pair in pairs if pair.name == gap.pair), None)


def plan_ranges(
    gaps: Iterable[Gap], pairs: Sequence[Pair], now: datetime, padding: timedelta = PADDING
) -> list[tuple[Pair, datetime, datetime]]:
    """Padded, merged UTC ranges per pair covering every gap (a Gap's end is exclusive: the end of
    its last missing bucket)."""
    spans: dict[Pair, list[tuple[datetime, datetime]]] = {}
    for gap in gaps:
        pair = find_pair(pairs, gap)
        if pair is None:
            continue
        start = _utc(gap.start) - padding
        end = min(_utc(gap.end) + padding, now)
        if end > start:
            spans.setdefault(pair, []).append((start, end))
    ranges: list[tuple[Pair, datetime, datetime]] = []
    for pair in pairs:
        merged: list[list[datetime]] = []
        for start, end in sorted(spans.get(pair, [])):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        ranges.extend((pair, start, end) for start, end in merged)
    return ranges


def _key(gap: Gap) -> tuple[str, str, datetime, datetime]:
    return (gap.pair, gap.timeframe, _utc(gap.start), _utc(gap.end))


def _refetch(
    settings: Settings, connection: Connection, loader: RangeLoader, gaps: Sequence[Gap], now: datetime, result: HealResult
) -> None:
    """One round's re-fetches, each range on its own: one that fails does not stop the others.
    Each load stamps its points with its own time (no `now` passed on): dbt's incremental models
    pick up the points stored after their last build by that time."""
    for pair, start, end in plan_ranges(gaps, settings.pairs, now):
        span = f"{pair.name} {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC"
        try:
            report = loader.load_range(settings, connection, start, end, pairs=[pair])
        except AlphaDBError as exc:
            result.failures.append(f"re-fetch {span}: {exc}")
            runlog.line(runlog.ERROR, f"Re-fetch {span} failed: {exc}")
            continue
        result.points += report.points
        result.requests += report.requests
        for failed in report.failed:
            result.failures.append(f"re-fetch {span}: {failed.error}")
            runlog.line(runlog.ERROR, f"Re-fetch {span} failed: {failed.error}")
        if not report.failed:
            runlog.line(runlog.OK, f"Re-fetched {span}: {report.points} points, {report.requests} requests (round {result.rounds})")


def _configured(settings: Settings, gaps: Iterable[Gap]) -> list[Gap]:
    return [gap for gap in gaps if find_pair(settings.pairs, gap) is not None]


def heal_gaps(
    settings: Settings,
    connection: Connection,
    gaps: Sequence[Gap],
    loader: RangeLoader,
    transformer: ModelBuilder,
    now: datetime,
    max_rounds: int = MAX_ROUNDS,
) -> HealResult:
    """Re-fetch and rebuild until no gap is left, a round makes no progress, or `max_rounds` ran."""
    result = HealResult(found=list(gaps))
    for gap in gaps:
        if find_pair(settings.pairs, gap) is None:
            runlog.line(runlog.WARNING, f"Gap in a pair that is not configured (not healed): {describe_gap(gap)}")
    current = _configured(settings, gaps)
    while current and result.rounds < max_rounds:
        result.rounds += 1
        for gap in current:
            runlog.line(runlog.CHECK, f"Gap found: {describe_gap(gap)}")
        _refetch(settings, connection, loader, current, now, result)
        if not transformer.run_models(settings, connection).success:
            result.failures.append("dbt run failed while healing")
            runlog.line(runlog.ERROR, "dbt run failed while healing gaps")
            break
        remaining = _configured(settings, transformer.find_gaps(connection))
        left = {_key(g) for g in remaining}
        for gap in current:
            if _key(gap) not in left:
                runlog.line(runlog.OK, f"Gap healed: {describe_gap(gap)}")
        no_progress = left == {_key(g) for g in current}
        current = remaining
        if no_progress:
            break
    result.remaining = current
    for gap in result.remaining:
        runlog.line(runlog.ERROR, f"Gap the source cannot fill: {describe_gap(gap)}")
    return result


def heal(
    settings: Settings, connection: Connection, loader: RangeLoader, transformer: ModelBuilder, now: datetime,
    record: RunRecord | None = None,
) -> int:
    """`alphadb heal`: heal every gap now; 0 when none is left, 4 when some remain, 1 on a failure.
    `record` (the run's row in ops.runs) receives the totals."""
    result = heal_gaps(settings, connection, transformer.find_gaps(connection), loader, transformer, now)
    runlog.line(
        runlog.OK if result.exit_code == EXIT_OK and not result.remaining else runlog.WARNING,
        f"Gap heal: {len(result.found)} gap(s) found, {len(result.remaining)} remaining, "
        f"{result.points} points, {result.requests} requests in {result.rounds} round(s)",
    )
    if record is not None:
        record.add_heal(result, [pair.name for pair in settings.pairs])
    if result.exit_code != EXIT_OK:
        return result.exit_code
    return EXIT_QUALITY if result.remaining else EXIT_OK
