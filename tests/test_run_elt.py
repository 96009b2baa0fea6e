"""scripts/run_elt.sh end to end, the way cron runs it: a bare environment (PATH=/usr/bin:/bin,
HOME and the AlphaDB settings only), another working directory, the CoinGecko simulator over HTTP
and a real PostgreSQL. Every exit code of docs/design.md is produced here for real."""

from __future__ import annotations

import fcntl
import signal
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cron_support import (
    DAILY_CRON,
    REPO_ROOT,
    RUN_ELT,
    assert_log_format,
    clone_without_venv,
    cron_env,
    log_lines,
    run_script,
    started_script,
)
from http_support import WebhookReceiver, closed_port
from process_support import wait_for



pytestmark = pytest.mark.skipif(
    not (REPO_ROOT / ".venv" / "bin" / "alphadb").exists(), reason="needs the project installed in .venv (make test does it)"
)

DEMO_KEY = "CG-demo-test-key"  # a key the simulator accepts on its public host


def run(env: dict[str, str], tmp_path: Path, script: Path = RUN_ELT, timeout: float = 600) -> tuple[int, str, list[str]]:
    workdir = tmp_path / "elsewhere"  # never the repo: cron starts jobs in $HOME
    workdir.mkdir(exist_ok=True)
    result = run_script(script, env, workdir, timeout=timeout)
    lines = log_lines(Path(env["ALPHADB_LOG_FILE"]))
    return result.returncode, result.stdout + result.stderr, lines


def secrets_of(env: dict[str, str], receiver: WebhookReceiver | None = None) -> list[str]:
    values = [env.get("POSTGRES_PASSWORD", ""), env.get("COINGECKO_API_KEY", "")]
    if receiver is not None and env.get("SLACK_WEBHOOK_URL"):
        values.append(env["SLACK_WEBHOOK_URL"].split("://", 1)[1])
    return [v for v in values if v]


def hours_ago(hours: float) -> float:
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return (now - timedelta(hours=hours)).timestamp()


def mart_count(database: Any, relation: str) -> int | None:
    conn = psycopg2.connect(**database.psycopg_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (f"public.{relation}",))
            if cur.fetchone()[0] is None:
                return None
            cur.execute(f'select count(*) from public."{relation}"')  # relation: a literal from this test
            return int(cur.fetchone()[0])
    finally:
        conn.close()


# -- fast: failures before any dbt work ---------------------------------------------------------

def test_database_down_exits_3(alphadb_env: dict[str, str], tmp_path: Path) -> None:
    env = cron_env(alphadb_env, POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=str(closed_port()))
    link = tmp_path / "bin" / "nightly"  # cron may call it through a symlink: it still finds the repo
    link.parent.mkdir()
    link.symlink_to(RUN_ELT)
    code, output, lines = run(env, tmp_path, script=link)
    assert code == 3, output
    assert_log_format(lines)
    assert lines[0].endswith("🕐 Starting daily backfill cron job")
    assert any("❌ Database not accessible. Is AlphaDB stack running?" in line for line in lines)
    assert "Database not accessible. Is AlphaDB stack running?" in output  # echoed to stdout too
    assert "exit 3" in lines[-1]
    assert env["POSTGRES_PASSWORD"] not in output + "\n".join(lines)


def test_bad_api_key_exits_2(alphadb_env: dict[str, str], tmp_path: Path) -> None:
    env = cron_env(alphadb_env, COINGECKO_PLAN="demo", COINGECKO_API_KEY="CG-not-a-valid-key-42")
    code, output, lines = run(env, tmp_path)
    assert code == 2, output
    assert_log_format(lines)
    assert any("❌" in line and "COINGECKO" in line for line in lines), "\n".join(lines)
    assert "CG-not-a-valid-key-42" not in output + "\n".join(lines)


def test_invalid_setting_exits_2(alphadb_env: dict[str, str], tmp_path: Path) -> None:
    env = cron_env(alphadb_env, ALPHADB_BACKFILL_DAYS="-3")
    code, output, _ = run(env, tmp_path)
    assert code == 2, output
    assert "ALPHADB_BACKFILL_DAYS" in output


def test_simulator_down_exits_1_and_undeliverable_alert_is_a_warning(alphadb_env: dict[str, str], tmp_path: Path) -> None:
    with WebhookReceiver(status=500) as receiver:
        env = cron_env(
            alphadb_env,
            COINGECKO_BASE_URL=f"http://127.0.0.1:{closed_port()}/api/v3",
            COINGECKO_RETRY_BUDGET_S="2",
            SLACK_WEBHOOK_URL=receiver.url("/services/T1/B2/hook-secret-part"),
        )
        code, output, lines = run(env, tmp_path)
    assert code == 1, output
    assert_log_format(lines)
    text = "\n".join(lines)
    assert "could not be reached (connection refused" in text and "`make demo` runs the job offline" in text
    assert "BTC/USDT failed to load" not in text  # the run stops once, before any pair is tried
    assert "⚠️ Slack alert could not be delivered (HTTP 500)" in text
    assert receiver.received, "the alert was attempted"
    assert "hook-secret-part" not in output + text


def test_missing_virtualenv_exits_2_with_instructions(tmp_path: Path) -> None:
    repo = clone_without_venv(tmp_path / "clone")
    log = tmp_path / "job.log"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ALPHADB_LOG_FILE": str(log)}
    result = run_script(repo / "scripts" / "daily_backfill_cron.sh", env, tmp_path)
    assert result.returncode == 2
    lines = log_lines(log)
    assert_log_format(lines)
    assert "make run" in lines[-1] and str(repo / ".venv") in lines[-1]
    assert lines[-1] in result.stdout


def test_missing_virtualenv_log_file_from_dotenv(tmp_path: Path) -> None:
    repo = clone_without_venv(tmp_path / "clone")
    log = tmp_path / "from env file.log"
    (repo / ".env").write_text(f'# settings\nexport ALPHADB_LOG_FILE="{log}"  # the log\n')
    result = run_script(repo / "scripts" / "run_elt.sh", {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, tmp_path)
    assert result.returncode == 2
    assert "Virtualenv not ready" in log.read_text()


def test_sigterm_to_the_wrapper_stops_the_job_with_exit_1(alphadb_env: dict[str, str], tmp_path: Path, simulator: Any) -> None:
    simulator.add_fault({"kind": "slow", "delay_s": 20})  # keeps the load busy
    env = cron_env(alphadb_env)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    log = Path(env["ALPHADB_LOG_FILE"])
    with started_script(RUN_ELT, env, workdir) as job:
        assert wait_for(lambda: "Running backfill" in log.read_text() if log.exists() else False, timeout=60)
        time.sleep(0.5)
        job.send_signal(signal.SIGTERM)  # what `timeout`, systemd or a shutdown sends to cron's child
        out, err = job.communicate(timeout=60)
    assert job.returncode == 1, out + err
    lines = log_lines(log)
    assert_log_format(lines)
    assert any("❌ Interrupted by SIGTERM" in line for line in lines), "\n".join(lines)
    assert "(exit 1)" in lines[-1]
    # The lock went with the job: the next run is not refused.
    lock = Path(env["ALPHADB_HOME"]) / "run.lock"
    with open(lock) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


# -- slow: whole runs with dbt ----------------------------------------------------------------

@pytest.mark.slow
def test_success_and_a_second_run_at_the_same_time_exits_75(
    alphadb_env: dict[str, str], tmp_path: Path, database: Any, simulator: Any
) -> None:
    with WebhookReceiver() as receiver:
        env = cron_env(alphadb_env, ALPHADB_HEALTHCHECK_URL=receiver.url("/ping/abc"), SLACK_WEBHOOK_URL=receiver.url("/hook/x"))
        workdir = tmp_path / "elsewhere"
        workdir.mkdir()
        lock = Path(env["ALPHADB_HOME"]) / "run.lock"
        with started_script(RUN_ELT, env, workdir) as first:
            assert wait_for(lambda: lock.exists() and lock.read_text().strip().isdigit(), timeout=60), "the first run never took the lock"
            second = run_script(DAILY_CRON, env, workdir, timeout=120)
            assert second.returncode == 75, second.stdout + second.stderr
            assert "Another run is in progress" in second.stdout
            out, err = first.communicate(timeout=600)
        lines = log_lines(Path(env["ALPHADB_LOG_FILE"]))
        assert first.returncode == 0, out + err
        paths = [r.path for r in receiver.received]
    assert_log_format(lines)
    text = "\n".join(lines)
    for expected in (
        "🕐 Starting daily backfill cron job",
        "✅ Environment check passed",
        "✅ Database connectivity check passed",
        "📊 Running backfill for last 2 days...",
        "📊 BTC/USDT window ",  # a load of few pairs logs each window it read
        "✅ Backfill completed successfully in ",
        "✅ dbt run passed in ",
        "✅ Data quality checks passed in ",
        "🔍 Data quality report",
        "🔍 Guide check query",
        "🏁 Daily backfill cron job completed successfully",
    ):
        assert expected in text, f"{expected!r} missing from the log:\n{text}"
    assert "⚠️ Another run is in progress" in text  # the second run logged why it did nothing
    assert lines[-1].split("] ", 1)[1].startswith("🏁")  # the first run finished last
    assert out.count("🏁") == 1 and "🔍 Data quality report" in out  # echoed to stdout too
    assert paths == ["/ping/abc/start", "/ping/abc"]  # start and success pings; no alert
    for relation in ("ohlcv_btc_usdt", "ohlcv_eth_usdt", "ohlcv_btc_usdt_1d", "ohlcv_eth_usdt_1d", "ohlcv"):
        assert mart_count(database, relation), relation
    # The steps report their duration, points and requests.
    backfill = next(line for line in lines if "Backfill completed" in line)
    assert "points" in backfill and "requests" in backfill


@pytest.mark.slow
def test_a_gap_that_heals(alphadb_env: dict[str, str], tmp_path: Path, simulator: Any) -> None:
    # Four hours missing from the first answer only: the heal step's re-fetch gets them.
    simulator.add_fault({"kind": "missing", "coin": "ethereum", "start": hours_ago(40), "end": hours_ago(36), "remaining_requests": 1})
    env = cron_env(alphadb_env)
    code, output, lines = run(env, tmp_path)
    assert code == 0, output
    assert_log_format(lines)
    text = "\n".join(lines)
    assert "Gap found: ETH/USDT 1h" in text
    assert "Gap healed: ETH/USDT 1h" in text
    assert "Data quality re-checks passed" in text
    assert "🏁 Daily backfill cron job completed successfully" in lines[-1]


@pytest.mark.slow
def test_a_gap_the_source_cannot_fill_exits_4_and_alerts_without_secrets(
    alphadb_env: dict[str, str], tmp_path: Path, simulator: Any
) -> None:
    start, end = hours_ago(40), hours_ago(36)
    simulator.add_fault({"kind": "missing", "coin": "bitcoin", "start": start, "end": end})  # permanent
    with WebhookReceiver() as receiver:
        env = cron_env(
            alphadb_env,
            COINGECKO_PLAN="demo",
            COINGECKO_API_KEY=DEMO_KEY,
            SLACK_WEBHOOK_URL=receiver.url("/services/T0AAA/B0BBB/s3cr3t-hook-token"),
            ALPHADB_HEALTHCHECK_URL=receiver.url("/hc/uuid"),
        )
        code, output, lines = run(env, tmp_path)
        alerts = receiver.posts("/services/")
        pings = [r.path for r in receiver.received if r.path.startswith("/hc")]
    assert code == 4, output
    assert_log_format(lines)
    gap_range = (
        f"BTC/USDT 1h {datetime.fromtimestamp(start, timezone.utc):%Y-%m-%d %H:%M}"
        f" → {datetime.fromtimestamp(end, timezone.utc):%Y-%m-%d %H:%M}"
    )
    text = "\n".join(lines)
    assert f"❌ Gap the source cannot fill: {gap_range}" in text
    assert text.count("Re-fetched BTC/USDT") == 1  # one round: the re-fetch changed nothing, no loop
    assert "exit 4" in lines[-2] or "exit 4" in lines[-1]
    [alert] = alerts
    message = alert.json()["text"]
    assert socket.gethostname() in message
    assert "*Exit code:* 4" in message and "Gap heal" in message
    assert gap_range in message
    assert "🏁" in message  # the log's last lines
    for secret in secrets_of(env, receiver):
        assert secret not in message, "a secret leaked into the alert"
        assert secret not in output and secret not in text, "a secret leaked into the log"
    assert pings == ["/hc/uuid/start", "/hc/uuid/fail"]

    # The same database through the CLI: `alphadb heal` tries once more (exit 4: still missing),
    # `alphadb report` shows the gap (exit 4). No Slack or pings from these.
    alphadb = str(REPO_ROOT / ".venv" / "bin" / "alphadb")
    healed = subprocess.run([alphadb, "heal"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert healed.returncode == 4, healed.stdout + healed.stderr
    assert f"Gap the source cannot fill: {gap_range}" in healed.stdout
    shown = subprocess.run([alphadb, "report"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 4, shown.stdout + shown.stderr
    assert f"Gap {gap_range}" in shown.stdout and "🔍 Data quality report" in shown.stdout
    assert "Guide check query" in shown.stdout


@pytest.mark.slow
def test_an_unknown_coin_fails_its_pair_only(alphadb_env: dict[str, str], tmp_path: Path, database: Any) -> None:
    env = cron_env(alphadb_env, ALPHADB_PAIRS="BTC/USDT=bitcoin:usd,NOPE/USDT=no-such-coin:usd")
    code, output, lines = run(env, tmp_path)
    assert code not in (0, 75), output
    assert_log_format(lines)
    text = "\n".join(lines)
    failed = [line for line in lines if "❌" in line and "NOPE/USDT" in line]
    assert failed and any("no-such-coin" in line for line in failed), text
    assert f"(exit {code})" in lines[-1] and "NOPE/USDT" in lines[-1]
    assert "📊 BTC/USDT window " in text and ", 1/2 pairs" in text
    assert mart_count(database, "ohlcv_btc_usdt")  # the other pair was loaded and built
