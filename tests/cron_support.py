"""Running the shell scripts the way cron does (a bare environment, another working directory), a
stand-in `crontab`, a clone without its virtualenv, and the run log's format."""

from __future__ import annotations

import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_ELT = REPO_ROOT / "scripts" / "run_elt.sh"
DAILY_CRON = REPO_ROOT / "scripts" / "daily_backfill_cron.sh"
SETUP_CRON = REPO_ROOT / "scripts" / "setup_cron.sh"
CRON_PATH = "/usr/bin:/bin"
LOG_LINE = re.compile(r"^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] (🕐|✅|📊|🔍|❌|⚠️|🏁) \S")


FAKE_CRONTAB = """#!/bin/sh
# Stand-in for crontab(1): the table lives in $FAKE_CRONTAB.
f="${FAKE_CRONTAB:?}"
echo "$*" >> "$f.calls"
case "$1" in
  -l) [ -f "$f" ] || { echo "no crontab for $(id -un)" >&2; exit 1; }; cat "$f" ;;
  -r) [ -f "$f" ] || { echo "no crontab for $(id -un)" >&2; exit 1; }; rm -f "$f" ;;
  -) cat > "$f" ;;
  *) [ -f "$1" ] && cp "$1" "$f" || { echo "usage: crontab [-l|-r|-|file]" >&2; exit 1; } ;;
esac
"""


def clone_without_venv(repo: Path) -> Path:
    """The repository's scripts and Python package as a clone has them, but no `.venv` (never installed)."""
    for part in ("scripts", "pipelines"):
        shutil.copytree(REPO_ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def install_fake_crontab(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "crontab"
    path.write_text(FAKE_CRONTAB)
    path.chmod(0o755)
    return path


def cron_env(settings_env: Mapping[str, str], **extra: str) -> dict[str, str]:
    """What `env -i PATH=/usr/bin:/bin HOME=... <settings>` gives a process: nothing else."""
    env = {k: v for k, v in settings_env.items() if k not in ("PATH", "HOME")}
    env.update({"PATH": CRON_PATH, "HOME": settings_env.get("HOME", "/tmp")})
    env.update(extra)
    return env


def run_script(
    script: Path, env: Mapping[str, str], cwd: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a script exactly as cron would: only `env` (like `env -i`), from an unrelated cwd.

    The environment is passed directly rather than as `env -i K=V` arguments, so the test
    database password never appears on a command line (`ps`).
    """
    return subprocess.run(
        [str(script), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def started_script(script: Path, env: Mapping[str, str], cwd: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A script running in the background (same bare environment); killed if still running at the end."""
    proc = subprocess.Popen(
        [str(script), *args], env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def log_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def assert_log_format(lines: list[str]) -> None:
    """Every line is `[YYYY-MM-DD HH:MM:SS] <marker> <message>` (docs/design.md)."""
    bad = [line for line in lines if not LOG_LINE.match(line)]
    assert not bad, "log lines not in docs/design.md format:\n" + "\n".join(bad)


def secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s and s in text]
