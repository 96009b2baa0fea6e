"""Gap heal: re-fetch exactly the missing ranges, rebuild the candles, look again.

A gap (DESIGN.md §3) is a run of unsampled buckets beyond the tolerance. The heal step asks the
transform's `find_gaps` for them, merges them per pair into padded UTC ranges, reloads those
ranges with `load_range` (which leaves the nightly cursor alone), rebuilds the models and checks
again: at most `MAX_ROUNDS` rounds, and it stops as soon as a round changes nothing, so a gap the
source itself cannot fill is reported (pair and range) instead of being fetched forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from pipelines import runlog
from pipelines.config import Pair, Settings
from pipelines.database import Connection
from pipelines.errors import EXIT_FAILURE, EXIT_OK, EXIT_QUALITY, AlphaDBError
from pipelines.report import describe_gap, gap_pair_name

MAX_ROUNDS = 2
PADDING = timedelta(hours=2)  # a little context on each side so edge buckets get real samples


@dataclass
class HealResult:
    found: list[Any] = field(default_factory=list)  # the gaps before healing
    remaining: list[Any] = field(default_factory=list)  # the gaps the source could not fill
    rounds: int = 0
    points: int = 0
    requests: int = 0
    failures: list[str] = field(default_factory=list)  # re-fetches or rebuilds that failed
    exit_code: int = EXIT_OK  # 1 when a re-fetch or rebuild failed, else 0 (remaining gaps are the caller's call)

    @property
    def rebuilt(self) -> bool:
        return self.rounds > 0


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if hasattr(value, "year"):  # a date: the start of that UTC day
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise TypeError(f"not a timestamp: {value!r}")


def find_pair(pairs: Sequence[Pair], gap: Any) -> Pair | None:
    name = gap_pair_name(gap)
    for pair in pairs:
        if pair.name == name or pair.slug == name.lower().replace("/", "_"):
            return pair
    return None


def plan_ranges(
    gaps: Iterable[Any], pairs: Sequence[Pair], now: datetime | None = None, padding: timedelta = PADDING
) -> list[tuple[Pair, datetime, datetime]]:
    """Padded, merged UTC ranges per pair covering every gap (a Gap's end is exclusive: the end of
    its last missing bucket)."""
    now = now or datetime.now(timezone.utc)
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


def _key(gap: Any) -> tuple[str, str, datetime, datetime]:
    return (gap_pair_name(gap), str(gap.timeframe), _utc(gap.start), _utc(gap.end))


def heal_gaps(
    settings: Settings,
    connection: Connection,
    gaps: Sequence[Any] | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> HealResult:
    """Re-fetch and rebuild until no gap is left, a round makes no progress, or `max_rounds` ran."""
    from pipelines.load import load_range
    from pipelines.transform import find_gaps, run_models

    result = HealResult()
    current = list(find_gaps(connection) if gaps is None else gaps)
    result.found = list(current)
    unknown = [gap for gap in current if find_pair(settings.pairs, gap) is None]
    for gap in unknown:
        runlog.line(runlog.WARNING, f"Gap in a pair that is not configured (not healed): {describe_gap(gap)}")
    current = [gap for gap in current if find_pair(settings.pairs, gap) is not None]

    while current and result.rounds < max_rounds:
        result.rounds += 1
        for gap in current:
            runlog.line(runlog.CHECK, f"Gap found: {describe_gap(gap)}")
        for pair, start, end in plan_ranges(current, settings.pairs):
            span = f"{pair.name} {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC"
            try:
                report = load_range(settings, connection, start, end, pairs=[pair])
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
                runlog.line(
                    runlog.OK, f"Re-fetched {span}: {report.points} points, {report.requests} requests (round {result.rounds})"
                )
        outcome = run_models(settings, connection)
        if not outcome.success:
            result.failures.append("dbt run failed while healing")
            runlog.line(runlog.ERROR, "dbt run failed while healing gaps")
            break
        remaining = [gap for gap in find_gaps(connection) if find_pair(settings.pairs, gap) is not None]
        healed = {_key(g) for g in current} - {_key(g) for g in remaining}
        for gap in current:
            if _key(gap) in healed:
                runlog.line(runlog.OK, f"Gap healed: {describe_gap(gap)}")
        no_progress = {_key(g) for g in remaining} == {_key(g) for g in current}
        current = remaining
        if no_progress:
            break
    result.remaining = current
    if result.failures and result.exit_code == EXIT_OK:
        result.exit_code = EXIT_FAILURE
    for gap in result.remaining:
        runlog.line(runlog.ERROR, f"Gap the source cannot fill: {describe_gap(gap)}")
    return result


def heal(settings: Settings, connection: Connection, record: Any = None) -> int:
    """`alphadb heal`: heal every gap now; 0 when none is left, 4 when some remain, 1 on a failure.
    `record` (a run_history.RunRecord) receives the totals."""
    if not runlog.logger().handlers:
        runlog.setup(settings.log_file)
        runlog.register_secrets(settings.secrets())
    with runlog.step("Gap heal") as details:
        result = heal_gaps(settings, connection)
        details["gaps found"] = len(result.found)
        details["remaining"] = len(result.remaining)
        details["points"] = result.points
        details["requests"] = result.requests
    if record is not None:
        record.add_heal(result, [pair.name for pair in settings.pairs])
    if result.exit_code != EXIT_OK:
        return result.exit_code
    return EXIT_QUALITY if result.remaining else EXIT_OK
