"""scripts/setup_cron.sh against a stand-in `crontab` on PATH (the real crontab is never touched)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cron_support import CRON_PATH, REPO_ROOT, RUN_ELT, SETUP_CRON, install_fake_crontab

TAG = "# alphadb-nightly"


@pytest.fixture
def cron(tmp_path: Path):  # type: ignore[no-untyped-def]
    bin_dir = tmp_path / "bin"
    install_fake_crontab(bin_dir)
    table = tmp_path / "crontab.txt"
    env = {"PATH": f"{bin_dir}:{CRON_PATH}", "HOME": str(tmp_path), "FAKE_CRONTAB": str(table)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SETUP_CRON), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)

    run.table = table  # type: ignore[attr-defined]
    return run


def ours(table: Path) -> list[str]:
    return [line for line in table.read_text().splitlines() if TAG in line] if table.exists() else []


def test_install_twice_leaves_one_line_and_remove_removes_it(cron) -> None:  # type: ignore[no-untyped-def]
    table: Path = cron.table
    table.write_text("MAILTO=ops@example.com\n15 * * * * /usr/bin/true\n")

    first = cron()
    assert first.returncode == 0, first.stderr
    assert "Current crontab" in first.stdout and "15 * * * * /usr/bin/true" in first.stdout
    assert "✅" in first.stdout
    lines = ours(table)
    assert len(lines) == 1
    assert lines[0].startswith("0 2 * * * ")
    assert f"'{RUN_ELT}'" in lines[0]
    assert ">>" in lines[0] and "2>&1" in lines[0]  # output goes to a file, not to cron mail

    second = cron("--schedule", "30 3 * * *")
    assert second.returncode == 0, second.stderr
    assert "replace" in second.stdout
    assert [line[:9] for line in ours(table)] == ["30 3 * * "]
    # The user's other lines are untouched, in order.
    assert table.read_text().splitlines()[:2] == ["MAILTO=ops@example.com", "15 * * * * /usr/bin/true"]

    removed = cron("--remove")
    assert removed.returncode == 0, removed.stderr
    assert ours(table) == []
    assert table.read_text().splitlines() == ["MAILTO=ops@example.com", "15 * * * * /usr/bin/true"]
    again = cron("--remove")
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_no_crontab_yet_and_dry_run_changes_nothing(cron) -> None:  # type: ignore[no-untyped-def]
    table: Path = cron.table
    dry = cron("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "(no crontab for" in dry.stdout
    assert "Dry run: would add: 0 2 * * *" in dry.stdout
    assert not table.exists()
    assert Path(f"{table}.calls").read_text().split() == ["-l"]  # only read, never written

    assert cron().returncode == 0
    before = table.read_text()
    dry_remove = cron("--remove", "--dry-run")
    assert dry_remove.returncode == 0 and "would remove" in dry_remove.stdout
    assert table.read_text() == before


def test_replaces_a_hand_added_guide_line(cron) -> None:  # type: ignore[no-untyped-def]
    table: Path = cron.table
    table.write_text(f"0 2 * * * {REPO_ROOT}/scripts/daily_backfill_cron.sh >> /var/log/alphadb-backfill.log 2>&1\n")
    result = cron()
    assert result.returncode == 0, result.stderr
    assert len(table.read_text().splitlines()) == 1
    assert len(ours(table)) == 1


@pytest.mark.parametrize("schedule", ["bad", "0 2 * *", "0 2 * * * *", "@sometimes", "0 2 * * *; rm -rf /"])
def test_rejects_bad_schedules(cron, schedule: str) -> None:  # type: ignore[no-untyped-def]
    result = cron("--schedule", schedule)
    assert result.returncode == 1
    assert "invalid schedule" in result.stderr
    assert not cron.table.exists()


def test_accepts_schedule_variations(cron) -> None:  # type: ignore[no-untyped-def]
    for schedule in ("0 */6 * * *", "0 2 * * 1", "@daily", "15 1,13 * * mon-fri"):
        result = cron("--schedule", schedule)
        assert result.returncode == 0, result.stderr
        assert [line.split(" '")[0] for line in ours(cron.table)] == [schedule]


def test_run_script_must_be_executable(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("setup_cron.sh", "run_elt.sh"):
        (repo / "scripts" / name).write_bytes((REPO_ROOT / "scripts" / name).read_bytes())
    (repo / "scripts" / "setup_cron.sh").chmod(0o755)
    (repo / "scripts" / "run_elt.sh").chmod(0o644)
    install_fake_crontab(tmp_path / "bin")
    env = {"PATH": f"{tmp_path / 'bin'}:{CRON_PATH}", "HOME": str(tmp_path), "FAKE_CRONTAB": str(tmp_path / "tab")}
    result = subprocess.run([str(repo / "scripts" / "setup_cron.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "not executable" in result.stderr and "chmod +x" in result.stderr
    assert not (tmp_path / "tab").exists()


def test_missing_crontab_command_is_explained(tmp_path: Path) -> None:
    # A PATH with every system command except crontab.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/bin", "/bin"):
        for entry in Path(directory).iterdir():
            target = bin_dir / entry.name
            if entry.name != "crontab" and not target.exists() and os.access(entry, os.X_OK):
                target.symlink_to(entry)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    result = subprocess.run([str(SETUP_CRON)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "crontab not found" in result.stderr and "apt-get install cron" in result.stderr
