"""One loader run in a child process: `python -m benchmarks.child` reads a JSON job on stdin and
prints a JSON result on stdout, including its own peak RSS (so memory is measured per run)."""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict
from datetime import datetime
from typing import Any


def _peak_rss_kb() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def run(job: dict[str, Any]) -> dict[str, Any]:
    from pipelines.config import load_settings
    from pipelines.database import Connection
    from pipelines.load import load_incremental, load_range

    settings = load_settings(job["env"])
    connection = Connection(**job["connection"])
    rss_before = _peak_rss_kb()
    started_at = time.time()  # wall clock: comparable with a server's request log
    started = time.perf_counter()
    if job["kind"] == "range":
        now = datetime.fromisoformat(job["now"]) if "now" in job else None
        report = load_range(settings, connection, datetime.fromisoformat(job["start"]), datetime.fromisoformat(job["end"]), now=now)
    else:
        report = load_incremental(settings, connection)
    elapsed = time.perf_counter() - started
    errors = [f"{r.pair.name}: {r.error}" for r in report.failed]
    return {
        "points": report.points,
        "requests": report.requests,
        "elapsed_s": elapsed,
        "started_at": started_at,
        "finished_at": started_at + elapsed,
        "peak_rss_kb": _peak_rss_kb(),
        "rss_after_imports_kb": rss_before,
        "errors": errors,
        "steps": [asdict(step) for step in report.steps],  # when each load step was read and loaded
    }


def main() -> int:
    job = json.loads(sys.stdin.read())
    result = run(job)
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
