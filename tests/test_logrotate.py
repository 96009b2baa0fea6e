"""scripts/install_logrotate.sh: a rule for the log file the job really writes, `su` where
logrotate needs it, checked by rotating real files with the real logrotate."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

import pytest

from cron_daemon_support import REQUIRE_TOOLS, missing_tool
from cron_support import REPO_ROOT

LOGROTATE = "/usr/sbin/logrotate"


def checkout(root: Path) -> Path:
    """The script and its template in a copy of the repository (its logs/ is the test's own)."""
    (root / "scripts" / "logrotate").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "scripts" / "install_logrotate.sh", root / "scripts")
    shutil.copy2(REPO_ROOT / "scripts" / "logrotate" / "alphadb", root / "scripts" / "logrotate")
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    return root


def install(repo: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(repo / "scripts" / "install_logrotate.sh"), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_dry_run_covers_the_configured_log_file_and_cron_log(tmp_path: Path) -> None:
    repo = checkout(tmp_path / "repo")
    env_file = tmp_path / ".env"
    env_file.write_text(f"ALPHADB_LOG_FILE={repo}/logs/alphadb-backfill.log\n")
    env_file.chmod(0o600)
    result = install(repo, {"ALPHADB_ENV_FILE": str(env_file)}, "--dry-run")
    assert result.returncode == 0, result.stderr
    # Both files in logs/: one block, no placeholder left.
    assert f"\n{repo}/logs/alphadb-backfill.log {repo}/logs/cron.log {{\n" in result.stdout
    assert result.stdout.count("{") == 1 and "@" not in result.stdout
    for directive in ("daily", "rotate 30", "compress", "delaycompress", "missingok", "notifempty", "copytruncate"):
        assert f"\n    {directive}\n" in result.stdout
    assert not (repo / "logs").exists()  # a dry run creates nothing

    elsewhere = tmp_path / "var" / "alphadb.log"
    moved = install(repo, {"ALPHADB_ENV_FILE": str(tmp_path / "none.env"), "ALPHADB_LOG_FILE": str(elsewhere)}, "--dry-run")
    assert moved.returncode == 0, moved.stderr
    assert f"\n{elsewhere} {{\n" in moved.stdout and f"\n{repo}/logs/cron.log {{\n" in moved.stdout


def test_bad_settings_stop_before_anything_is_installed(tmp_path: Path) -> None:
    repo = checkout(tmp_path / "repo")
    dest = tmp_path / "alphadb.conf"
    result = install(repo, {"ALPHADB_ENV_FILE": str(tmp_path / "none.env"), "COINGECKO_PLAN": "gold"}, "--dest", str(dest))
    assert result.returncode == 1
    assert "COINGECKO_PLAN='gold' is unknown" in result.stderr and "fix .env" in result.stderr
    assert not dest.exists()


def test_rotates_a_log_in_a_group_writable_directory(tmp_path: Path) -> None:
    reason = missing_tool(LOGROTATE)
    if reason:
        if os.environ.get(REQUIRE_TOOLS):
            pytest.fail(f"{REQUIRE_TOOLS} is set but logrotate cannot run: {reason}")
        pytest.skip(reason)
    repo = checkout(tmp_path / "repo")
    shared = tmp_path / "shared"  # e.g. a team's log directory: group `users` may write
    shared.mkdir()
    os.chown(shared, 0, grp.getgrnam("users").gr_gid)
    shared.chmod(0o775)
    log = shared / "alphadb.log"
    log.write_text("[2026-11-29 02:00:01] 🕐 Starting daily backfill cron job\n")
    dest = tmp_path / "alphadb.conf"

    result = install(repo, {"ALPHADB_ENV_FILE": str(tmp_path / "none.env"), "ALPHADB_LOG_FILE": str(log)}, "--dest", str(dest))
    assert result.returncode == 0, result.stderr
    assert "config parses" in result.stdout, result.stdout
    config = dest.read_text()
    assert f"{log} {{\n    su root users\n" in config

    state = tmp_path / "state"
    # Without the su line, logrotate refuses the directory: the line is what makes rotation work.
    without_su = tmp_path / "without-su.conf"
    without_su.write_text(config.replace("    su root users\n", ""))
    refused = subprocess.run([LOGROTATE, "-f", "-s", str(state), str(without_su)], capture_output=True, text=True, timeout=30)
    assert "insecure permissions" in refused.stderr
    assert sorted(p.name for p in shared.iterdir()) == ["alphadb.log"]

    for night in range(2):  # the second rotation compresses the first (delaycompress)
        rotated = subprocess.run([LOGROTATE, "-f", "-s", str(state), str(dest)], capture_output=True, text=True, timeout=30)
        assert rotated.returncode == 0 and "error" not in rotated.stderr, rotated.stderr
        log.write_text(f"[2026-11-3{night} 02:00:01] 🕐 Starting daily backfill cron job\n")
    assert sorted(p.name for p in shared.iterdir()) == ["alphadb.log", "alphadb.log.1", "alphadb.log.2.gz"]
    assert (shared / "alphadb.log.1").read_text().startswith("[2026-11-30")
