"""The loader's dlt side for the fault tests: the phases of dlt's working directory (to kill a load
inside one) and in-process loads at a chosen instant (clock edge cases)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from pipelines.config import load_settings
from pipelines.database import Connection
from pipelines.load import PIPELINE_NAME, LoadReport, load_incremental


def pipeline_dir(home: Path) -> Path:
    return Path(home) / "dlt" / PIPELINE_NAME


def packages(home: Path) -> dict[str, list[str]]:
    """Load packages by stage: extracted (normalize/extracted), new (load/new), normalized, loaded."""
    root = pipeline_dir(home)
    stages = {
        "extracted": root / "normalize" / "extracted",
        "new": root / "load" / "new",
        "normalized": root / "load" / "normalized",
        "loaded": root / "load" / "loaded",
    }
    out: dict[str, list[str]] = {}
    for stage, path in stages.items():
        try:
            out[stage] = sorted(p.name for p in path.iterdir() if p.is_dir())
        except FileNotFoundError:
            out[stage] = []
    return out


def started_jobs(home: Path) -> list[Path]:
    """Job files dlt is copying into PostgreSQL right now (load/normalized/<id>/started_jobs)."""
    root = pipeline_dir(home) / "load" / "normalized"
    return [p for p in root.glob("*/started_jobs/*") if p.is_file()] if root.exists() else []


def completed_jobs(home: Path) -> list[Path]:
    root = pipeline_dir(home) / "load" / "normalized"
    return [p for p in root.glob("*/completed_jobs/*") if p.is_file()] if root.exists() else []


def load_at(env: Mapping[str, str], connection: Connection, now_s: float, simulator: Any) -> LoadReport:
    """`load_incremental` in this process as if it were `now_s`, the simulator's clock fixed there too."""
    simulator.configure(now=float(now_s))
    settings = load_settings(environ=dict(env))
    return load_incremental(settings, connection, now=datetime.fromtimestamp(now_s, timezone.utc))
