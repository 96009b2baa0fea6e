"""setup_cron.sh for operators: the log file the job really uses, a warning when no cron daemon
runs, a clean second `--remove`, and `--mailto` failure mail, checked with the real cron daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

import pytest

from cron_daemon_support import CRON, REQUIRE_TOOLS, cron_daemon_running, mails, missing_tool, private_cron
from cron_support import CRON_PATH, REPO_ROOT, install_fake_crontab
from process_support import wait_for

TAG = "# alphadb-nightly"
NO_DAEMON = "No cron daemon is running"
JOB_SCRIPTS = ("setup_cron.sh", "run_elt.sh", "mail_on_failure.sh", "daily_backfill_cron.sh")


def needs_cron() -> None:
    reason = missing_tool(CRON, "unshare", "crontab")
    if reason:
        if os.environ.get(REQUIRE_TOOLS):
            pytest.fail(f"{REQUIRE_TOOLS} is set but the real cron cannot run: {reason}")
        pytest.skip(reason)


def checkout(root: Path) -> Path:
    """A copy of the job's scripts with this checkout's .venv: its cron log lands under `root`."""
    (root / "scripts").mkdir(parents=True)
    for name in JOB_SCRIPTS:
        shutil.copy2(REPO_ROOT / "scripts" / name, root / "scripts" / name)
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    return root


def write_env(path: Path, values: Mapping[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    path.chmod(0o600)
    return path


def setup_cron(repo: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(repo / "scripts" / "setup_cron.sh"), *args], env=dict(env), cwd=repo,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def fake_cron(tmp_path: Path) -> dict[str, str]:
    install_fake_crontab(tmp_path / "bin")
    return {"PATH": f"{tmp_path / 'bin'}:{CRON_PATH}", "HOME": str(tmp_path), "FAKE_CRONTAB": str(tmp_path / "crontab.txt"),
            "ALPHADB_ENV_FILE": str(tmp_path / "no.env")}


def test_prints_the_log_file_the_job_resolves_from_env_file(tmp_path: Path, fake_cron: dict[str, str]) -> None:
    log_file = tmp_path / "elsewhere" / "alphadb.log"
    env = {**fake_cron, "ALPHADB_ENV_FILE": str(write_env(tmp_path / ".env", {"ALPHADB_LOG_FILE": str(log_file)}))}
    result = setup_cron(REPO_ROOT, env)
    assert result.returncode == 0, result.stderr
    assert f"The job logs to {log_file}\n" in result.stdout
    answer = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "alphadb"), "log-file"], env=env, capture_output=True, text=True)
    assert answer.stdout.strip() == str(log_file)  # the same resolution the job uses


def test_settings_that_do_not_load_stop_the_install(tmp_path: Path, fake_cron: dict[str, str]) -> None:
    env = {**fake_cron, "ALPHADB_ENV_FILE": str(write_env(tmp_path / ".env", {"COINGECKO_PLAN": "platinum"}))}
    result = setup_cron(REPO_ROOT, env)
    assert result.returncode == 2
    assert "COINGECKO_PLAN='platinum' is unknown" in result.stderr and "every run would exit 2" in result.stderr
    assert not Path(fake_cron["FAKE_CRONTAB"]).exists()


def test_second_remove_says_no_job_is_installed(fake_cron: dict[str, str]) -> None:
    table = Path(fake_cron["FAKE_CRONTAB"])
    assert setup_cron(REPO_ROOT, fake_cron).returncode == 0
    first = setup_cron(REPO_ROOT, fake_cron, "--remove")
    assert first.returncode == 0 and "remove the AlphaDB job (1 line(s))" in first.stdout
    assert table.exists() and table.read_text().strip() == ""  # an empty crontab, not none
    second = setup_cron(REPO_ROOT, fake_cron, "--remove")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "✅ No AlphaDB job is installed in the crontab of root: nothing to remove."
    installed = setup_cron(REPO_ROOT, fake_cron, "--dry-run")
    assert "Current crontab of root:\n    (empty)\n" in installed.stdout


def test_mailto_block_is_replaced_and_removed_with_the_job(fake_cron: dict[str, str]) -> None:
    table = Path(fake_cron["FAKE_CRONTAB"])
    table.write_text("MAILTO=me@example.com\n15 * * * * /usr/bin/true\n")
    result = setup_cron(REPO_ROOT, fake_cron, "--mailto", "ops@example.com,oncall@example.org")
    assert result.returncode == 0, result.stderr
    lines = table.read_text().splitlines()
    assert lines[:2] == ["MAILTO=me@example.com", "15 * * * * /usr/bin/true"]
    assert lines[2].startswith(TAG) and lines[3] == "MAILTO=ops@example.com,oncall@example.org"
    assert lines[4] == (f"0 2 * * * '{REPO_ROOT}/scripts/mail_on_failure.sh' '{REPO_ROOT}/logs/cron.log' "
                        f"'{REPO_ROOT}/scripts/run_elt.sh' {TAG}")
    assert len(lines) == 5
    assert "mails ops@example.com,oncall@example.org a short summary when a run fails" in result.stdout

    assert setup_cron(REPO_ROOT, fake_cron).returncode == 0  # without --mailto: the MAILTO line goes too
    lines = table.read_text().splitlines()
    assert lines[:2] == ["MAILTO=me@example.com", "15 * * * * /usr/bin/true"] and len(lines) == 3
    assert ">>" in lines[2] and "mail_on_failure" not in lines[2]

    assert setup_cron(REPO_ROOT, fake_cron, "--mailto", "ops@example.com").returncode == 0
    assert setup_cron(REPO_ROOT, fake_cron, "--remove").returncode == 0
    assert table.read_text().splitlines() == ["MAILTO=me@example.com", "15 * * * * /usr/bin/true"]


@pytest.mark.parametrize("address", ["", "ops", "ops@example.com bob@example.com", "a@b.c\nMAILTO=x@y.z", "o%s@x.io", "'@x.io"])
def test_rejects_bad_mailto(fake_cron: dict[str, str], address: str) -> None:
    result = setup_cron(REPO_ROOT, fake_cron, "--mailto", address)
    assert result.returncode == 1 and "invalid --mailto" in result.stderr
    assert not Path(fake_cron["FAKE_CRONTAB"]).exists()


@pytest.mark.xdist_group("cron-daemon")
def test_warns_when_no_cron_daemon_runs(tmp_path: Path, fake_cron: dict[str, str]) -> None:
    needs_cron()
    if not cron_daemon_running():
        without = setup_cron(REPO_ROOT, fake_cron)
        assert without.returncode == 0, without.stderr  # the install itself succeeds...
        assert f"⚠️  {NO_DAEMON}" in without.stdout  # ...with a warning and how to start cron
        assert "sudo service cron start" in without.stdout and "sudo cron" in without.stdout
        assert "systemctl enable --now cron" in without.stdout
    with private_cron(tmp_path / "cron", "true"):
        assert wait_for(cron_daemon_running, timeout=20)
        running = setup_cron(REPO_ROOT, fake_cron)
    assert running.returncode == 0, running.stderr
    assert NO_DAEMON not in running.stdout


# Inside the cron namespace: install each checkout's job with its own setup_cron.sh and the real
# `crontab`, then one crontab holding both, each after the settings file its job reads.
INSTALL_TWO_JOBS = r"""
set -Eeuo pipefail
out=$1 failing=$2 failing_env=$3 passing=$4 passing_env=$5
"$failing/scripts/setup_cron.sh" --mailto ops@example.com --schedule "* * * * *" >"$out/failing.txt"
crontab -l >"$out/failing.tab"
"$passing/scripts/setup_cron.sh" --mailto ops@example.com --schedule "* * * * *" >"$out/passing.txt"
crontab -l >"$out/passing.tab"
{ echo "ALPHADB_ENV_FILE=$failing_env"; cat "$out/failing.tab"; echo "ALPHADB_ENV_FILE=$passing_env"; cat "$out/passing.tab"; } | crontab -
"""


@pytest.mark.slow
@pytest.mark.xdist_group("cron-daemon")
def test_real_cron_mails_only_the_failed_run(tmp_path: Path, alphadb_env: dict[str, str]) -> None:
    """Two installed jobs at the same minute under the real cron daemon: the one whose database is
    unreachable (exit 3) mails a short summary to MAILTO; the one that succeeds mails nothing."""
    needs_cron()
    password = "pg-pass-never-mailed"
    failing, passing = checkout(tmp_path / "failing"), checkout(tmp_path / "passing")
    failing_env = write_env(tmp_path / "failing.env", {
        "ALPHADB_HOME": str(tmp_path / "failing-home"), "ALPHADB_LOG_FILE": str(tmp_path / "failing.log"),
        "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1", "POSTGRES_PASSWORD": password,
        "COINGECKO_BASE_URL": alphadb_env["COINGECKO_BASE_URL"]})
    passing_env = write_env(tmp_path / "passing.env", {k: v for k, v in alphadb_env.items() if k not in ("PATH", "HOME")})
    out = tmp_path / "out"
    out.mkdir()
    with private_cron(tmp_path / "cron", "bash", "-c", INSTALL_TWO_JOBS, "install", str(out), str(failing),
                      str(failing_env), str(passing), str(passing_env)) as root:
        installed = (root / "installed-crontab").read_text()
        assert installed.count("MAILTO=ops@example.com") == 2, (root / "setup.out").read_text() + installed
        finished = passing / "logs" / "cron.log"
        assert wait_for(lambda: mails(root) and "🏁" in (finished.read_text() if finished.exists() else ""),
                        timeout=240, interval=1), (root / "setup.out").read_text()
        # The passing run's last line is written just before it exits: give cron a moment to mail
        # (it must not).
        wait_for(lambda: any(f"{passing}/scripts/" in mail for mail in mails(root)), timeout=5)
    assert "Daily backfill cron job completed successfully" in finished.read_text()
    assert (failing / "logs" / "cron.log").read_text().count("Database not accessible") >= 1

    # "* * * * *": cron starts both jobs again every minute. When the passing run outlasts its minute
    # (a loaded machine: CI's full suite on two cores), the failing job runs and mails again meanwhile,
    # and the passing job's second start finds the run lock taken (exit 75: no mail). So: every mail
    # is a failed run's summary, and not one comes from the passing job.
    sent = mails(root)
    assert sent and not [mail for mail in sent if f"{passing}/scripts/" in mail], sent  # the failed runs only
    for mail in sent:
        assert "To: ops@example.com" in mail
        assert f"{failing}/scripts/mail_on_failure.sh" in mail  # cron's subject names the command
        body = mail.split("\n\n", 1)[1]
        assert re.search(r"AlphaDB nightly job failed on \S+ at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", body)
        assert "Exit code: 3 (database not accessible)" in body
        assert "Failed step: Database connectivity check" in body
        assert "❌ Database not accessible" in body
        assert f"Run log: {tmp_path / 'failing.log'}" in body
        assert password not in mail and alphadb_env["POSTGRES_PASSWORD"] not in mail
        assert len(body.splitlines()) <= 20
