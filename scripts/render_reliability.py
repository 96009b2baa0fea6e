"""Render docs/reliability.md from docs/reliability.json, the measurements the fault suite records
(`make reliability` runs the suite with ALPHADB_RELIABILITY_JSON set, then this).

    python scripts/render_reliability.py [docs/reliability.json]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent


# A test's temporary directory (pytest's `<basetemp>/test_name0`), wherever the suite ran.
_TEST_TMP_DIR = re.compile(r"(?:/[\w.+-]+)+?/test_\w*?\d+(?=/)")


def portable(text: str) -> str:
    """`text` without the paths of the machine it was measured on: `<tmp>/envs/as_dir.env`."""
    return _TEST_TMP_DIR.sub("<tmp>", text)


def render_table(data: Mapping[str, Any]) -> str:
    """The reliability table of docs/reliability.md from the recorded measurements."""
    faults = {k: v for k, v in data.items() if not k.startswith("bad input")}
    bad = {k: v for k, v in data.items() if k.startswith("bad input")}
    cell = lambda value: portable(str(value)).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "# Reliability: faults injected and measured",
        "",
        "Generated from `docs/reliability.json`, which the fault suite (`tests/test_faults_*.py`,",
        "`tests/test_security.py`) writes when run by `make reliability`, which also regenerates this page.",
        "Every row is a test that injects the fault for real (a SIGKILL, a simulator fault over HTTP,",
        "a deleted directory...) against a real PostgreSQL, and compares what is stored with an",
        "uninterrupted reference load of the same windows from the deterministic simulator.",
        "",
        "| fault | how it is injected | runs survived | points lost | duplicates | outcome |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in sorted(faults.items()):
        outcome = m.get("outcome") or m.get("recovery") or ""
        lines.append(
            f"| {cell(name)} | {cell(m.get('injection', ''))} | {m.get('runs_survived', '–')} | "
            f"{m.get('points_lost', '–')} | {m.get('duplicates', '–')} | {cell(outcome)} |"
        )
    lines += ["", "## Bad input", "", "| input | command | exit code | message | written |", "| --- | --- | --- | --- | --- |"]
    for name, m in sorted(bad.items()):
        lines.append(
            f"| {cell(name[len('bad input: '):])} | {cell(m.get('injection', ''))} | {m.get('exit_code', '')} | "
            f"{cell(m.get('message', ''))} | {cell(m.get('written', ''))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    measurements = Path(argv[0]) if argv else REPO_ROOT / "docs" / "reliability.json"
    page = measurements.parent / "reliability.md"
    page.write_text(render_table(json.loads(measurements.read_text())))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
