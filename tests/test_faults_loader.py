"""Fault injection at the loader level: crashes (SIGKILL) in each dlt phase, API faults, state loss,
concurrent loads, clock edges. Every test drives the real CLI or loader against the simulator and a
real PostgreSQL, and compares what is stored with an uninterrupted reference load.

Each test records what it measured (runs survived, points lost, duplicates) through
`fault_support.record`; docs/reliability.md is rendered from those records.
"""

from __future__ import annotations

import shutil
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from fault_support import (
    TempDatabase,
    compare,
    duplicates,
    env_for,
    kill_when,
    packages,
    pipeline_dir,
    record,
    staging_keys,
    staging_rows,
    start_cli,
    started_jobs,
)
from loader_support import (
    STAGING,
    counts,
    data_requests,
    dlt_cursors,
    error_lines,
    ok_data_requests,
    output,
    run_cli,
    scalar,
    staging_exists,
)

TODAY = datetime.now(timezone.utc).date()
# A range fully in the past: every run plans exactly the same windows (3 per pair, 3 dlt packages).
START = TODAY - timedelta(days=200)
END = TODAY - timedelta(days=10)
RANGE_ARGS = ("backfill", "--start", START.isoformat(), "--end", END.isoformat())
RANGE_LOW_MS = int(datetime.combine(START, datetime.min.time(), timezone.utc).timestamp() * 1000)
RANGE_HIGH_MS = int(datetime.combine(END + timedelta(days=1), datetime.min.time(), timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def reference(pg_admin_uri: str, pg_role: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Any, Any]]:
    """What an uninterrupted backfill of RANGE_ARGS stores: key -> (price, market_cap, total_volume)."""
    from pipelines.simulator import Simulator

    from pipelines.database import Connection
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(pg_admin_uri)
    host = parse_qs(parsed.query).get("host", [parsed.hostname or "127.0.0.1"])[0]
    template = Connection(host, parsed.port or 5432, pg_role[0], pg_role[1], "x")
    db = TempDatabase(pg_admin_uri, pg_role, template)
    tmp = tmp_path_factory.mktemp("reference")
    with Simulator() as sim:
        env = env_for(
            {
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp),
                "ALPHADB_ENV_FILE": str(tmp / "no.env"),
                "ALPHADB_LOG_FILE": str(tmp / "log"),
                "COINGECKO_BASE_URL": sim.base_url,
                "COINGECKO_RATE_LIMIT_PER_MIN": "6000",
            },
            db.connection,
            tmp / "home",
        )
        result = run_cli(env, *RANGE_ARGS)
        assert result.returncode == 0, output(result)
        rows = staging_rows(db.connection)
    db.drop()
    assert len(rows) > 8000
    yield rows


def _check_against_reference(database: Any, reference: dict[Any, Any]) -> tuple[int, int, int]:
    """(points lost, duplicates, values differing) after recovery."""
    keys = staging_keys(database)
    lost, dups = compare(set(reference), keys)
    rows = staging_rows(database)
    differing = sum(1 for k, v in reference.items() if k in rows and rows[k] != v)
    extra = set(rows) - set(reference)
    assert not extra, f"{len(extra)} points that the reference load does not have"
    return lost, dups, differing


# --- 1. crash mid-load -------------------------------------------------------------------------

def _phase_predicate(phase: str, home: Path, simulator: Any) -> Any:
    """A predicate that is truthy (with a description of what it saw) inside the given phase."""
    if phase == "extract":
        seen: dict[str, float] = {}

        def in_extract() -> Any:
            done = len(ok_data_requests(simulator))
            if done >= 3 and "at" not in seen:
                seen["at"] = time.monotonic()  # request 4 (ETH, 2nd package) is now in flight (slow)
            if "at" in seen and time.monotonic() - seen["at"] > 0.2:
                stage = packages(home)
                if not stage["new"] and not stage["normalized"]:
                    return f"extract: HTTP request {done + 1} in flight, {len(stage['loaded'])} package(s) loaded"
            return None

        return in_extract
    if phase == "normalize":

        def in_normalize() -> Any:
            stage = packages(home)
            if stage["loaded"] and stage["new"]:
                return f"normalize: package {stage['new'][0]} in load/new, {len(stage['loaded'])} loaded"
            return None

        return in_normalize
    if phase in ("load_copy", "load_merge"):
        suffix = ".csv.gz" if phase == "load_copy" else ".sql"

        def in_load() -> Any:
            jobs = [p for p in started_jobs(home) if p.name.startswith("market_chart_points.") and p.name.endswith(suffix)]
            if jobs and packages(home)["loaded"]:
                what = "COPY into the staging table" if phase == "load_copy" else "MERGE into the final table"
                return f"load: {what} running ({jobs[0].name})"
            return None

        return in_load
    raise ValueError(phase)


@pytest.mark.parametrize("phase", ["extract", "normalize", "load_copy", "load_merge"])
def test_sigkill_backfill_then_resume(phase: str, alphadb_env: dict[str, str], database: Any, simulator: Any, reference: dict[Any, Any]) -> None:
    home = Path(alphadb_env["ALPHADB_HOME"])
    if phase == "extract":
        simulator.add_fault({"kind": "slow", "delay_s": 0.5})  # every response: holds extract
    hit = None
    for attempt in range(3):  # a phase lasts tens of ms: retry if the run finished before we saw it
        proc = start_cli(alphadb_env, *RANGE_ARGS)
        hit = kill_when(proc, _phase_predicate(phase, home, simulator), timeout=120, interval=0.002)
        if hit:
            break
    assert hit, f"never caught the {phase} phase"
    simulator.clear_faults()
    killed_state = packages(home)
    time.sleep(0.6)  # a slow reply still in flight when the loader died is logged late
    simulator.clear_requests()

    result = run_cli(alphadb_env, *RANGE_ARGS)
    assert result.returncode == 0, output(result)
    recovery_requests = len(data_requests(simulator))
    lost, dups, differing = _check_against_reference(database, reference)
    assert (lost, dups, differing) == (0, 0, 0)
    # Resumed, not restarted: the windows of the packages already loaded are not fetched again.
    assert recovery_requests < 6, f"recovery fetched {recovery_requests} windows of 6"
    assert not any(packages(home)[s] for s in ("extracted", "new", "normalized")), packages(home)
    record(
        f"SIGKILL backfill during {phase}",
        f"`alphadb backfill --start/--end` (3 dlt packages) killed with SIGKILL when the dlt working dir showed: {hit}",
        runs_survived=1,
        points_lost=lost,
        duplicates=dups,
        values_differing=differing,
        recovery=f"next backfill resumed ({recovery_requests} of 6 window requests), pending before: "
        + (", ".join(f"{k}={len(v)}" for k, v in killed_state.items() if k != "loaded" and v) or "none"),
    )
