"""The fault suite's measurements: every fault test records what it measured (runs, points lost,
duplicates) with `record()`. `make reliability` points ALPHADB_RELIABILITY_JSON at
docs/reliability.json and renders docs/reliability.md from it (scripts/render_reliability.py); a
plain `make test` records into a scratch file, so a test run never modifies a tracked file.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MEASUREMENTS = Path(
    os.environ.get("ALPHADB_RELIABILITY_JSON") or Path(tempfile.gettempdir()) / f"alphadb-reliability-{os.getpid()}.json"
)
_record_lock = threading.Lock()


def record(fault: str, injection: str, **outcome: Any) -> None:
    """Append one measured outcome to docs/reliability.json (keyed by fault, last run wins)."""
    with _record_lock:
        try:
            data = json.loads(MEASUREMENTS.read_text())
        except (OSError, ValueError):
            data = {}
        data[fault] = {"injection": injection, **outcome, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
        MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = MEASUREMENTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(MEASUREMENTS)
