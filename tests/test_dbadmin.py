"""`alphadb db status|stop|backup|restore`: a backup of a loaded database, restored into a fresh
ALPHADB_HOME (its own embedded server), holds the same raw points and candles, and the next nightly
load continues from the restored dlt cursors."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cron_support import REPO_ROOT
from http_support import data_requests
from postgres_support import dlt_cursors, query
from process_support import output, run_cli
from pipelines.admin import _process_running
from pipelines.config import load_settings
from pipelines.database import Connection, embedded_connection

RAW = "select coin_id, vs_currency, ts, price, market_cap, total_volume from staging.market_chart_points order by 1, 2, 3"
CANDLES = "select * from public.ohlcv order by 1, 2, 3"
PAIRS = (("BTC/USDT", "bitcoin"), ("ETH/USDT", "ethereum"))


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, output(result)
    return result


@pytest.fixture
def fresh_home(tmp_path: Path, alphadb_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Settings for a new install: an embedded server in its own ALPHADB_HOME, stopped at the end."""
    # Not under pytest's basetemp: another pytest session resets its permissions to 0700, and the
    # embedded server (user `pgserver` under root) must reach its data directory.
    home = Path(tempfile.mkdtemp(prefix="alphadb-restored-"))
    env = {k: v for k, v in alphadb_env.items() if not k.startswith("POSTGRES_")}
    env.update({"ALPHADB_HOME": str(home / "home"), "ALPHADB_LOG_FILE": str(tmp_path / "restored.log"),
                "POSTGRES_PASSWORD": "another-s3cret"})
    yield env
    run_cli(env, "db", "stop")
    shutil.rmtree(home, ignore_errors=True)


def embedded(env: dict[str, str]) -> Connection:
    return embedded_connection(load_settings(environ=env))


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it is not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def rows(connection: Connection, statement: str) -> list[tuple[Any, ...]]:
    return query(connection, statement)


@pytest.mark.slow
def test_backup_restores_into_a_fresh_home_and_the_nightly_continues(
    tmp_path: Path, alphadb_env: dict[str, str], database: Connection, simulator, fresh_home: dict[str, str]  # type: ignore[no-untyped-def]
) -> None:
    nightly = ok(run_cli(alphadb_env, "run", timeout=300))
    # The run says once, first, where it logs; its report points at the command that reaches the database.
    assert nightly.stdout.splitlines()[0].endswith(f"📊 Log file: {alphadb_env['ALPHADB_LOG_FILE']}")
    assert nightly.stdout.count("Log file:") == 1
    assert "🔍 Guide check query (alphadb psql):" in nightly.stdout
    backup = tmp_path / "backups" / "market.dump"
    backup.parent.mkdir()
    result = ok(run_cli(alphadb_env, "db", "backup", str(backup)))
    assert f"written to {backup}" in result.stdout
    assert backup.read_bytes()[:5] == b"PGDMP"  # PostgreSQL's custom dump format
    assert backup.stat().st_mode & 0o077 == 0  # all the data: its owner's only
    assert alphadb_env["POSTGRES_PASSWORD"] not in output(result)
    again = run_cli(alphadb_env, "db", "backup", str(backup))
    assert again.returncode == 2 and "--force" in output(again)  # never overwritten by accident

    status = run_cli(fresh_home, "db", "status")
    assert status.returncode == 3 and "not created yet" in status.stdout  # status starts nothing
    restored = ok(run_cli(fresh_home, "db", "restore", str(backup)))
    assert "the next run continues from its cursors" in restored.stdout
    target = embedded(fresh_home)
    raw = rows(database, RAW)
    assert len(raw) > 500 and rows(target, RAW) == raw
    candles = rows(database, CANDLES)
    assert len(candles) > 40 and rows(target, CANDLES) == candles
    cursors = dlt_cursors(database)
    assert set(cursors) == {name for name, _ in PAIRS} and dlt_cursors(target) == cursors

    refused = run_cli(fresh_home, "db", "restore", str(backup))
    assert refused.returncode == 2 and "already holds AlphaDB data" in refused.stderr and "--clean" in refused.stderr
    ok(run_cli(fresh_home, "db", "restore", "--clean", str(backup)))
    assert rows(target, RAW) == raw

    # The next nightly load on the restored install starts exactly ALPHADB_BACKFILL_DAYS (2) before
    # the restored cursors; without them it would start 2 days before now.
    simulator.clear_requests()
    ok(run_cli(fresh_home, "load"))
    for name, coin in PAIRS:
        ranges = [r for r in data_requests(simulator, coin) if r["path"].endswith("/range")]
        assert int(ranges[0]["query"]["from"]) == cursors[name] // 1000 - 2 * 86400
        assert dlt_cursors(target)[name] >= cursors[name]

    running = ok(run_cli(fresh_home, "db", "status"))
    assert "embedded PostgreSQL: running, PID" in running.stdout and "database market on embedded server: reachable" in running.stdout
    pid = int(running.stdout.split("PID ")[1].split()[0].rstrip(","))
    stopped = ok(run_cli(fresh_home, "db", "stop"))
    assert f"embedded PostgreSQL stopped (PID {pid})" in stopped.stdout
    assert not alive(pid)
    after = run_cli(fresh_home, "db", "status")
    assert after.returncode == 3 and "embedded PostgreSQL: stopped" in after.stdout
    assert "is not running" in ok(run_cli(fresh_home, "db", "stop")).stdout
    # The next command starts it again, with the data.
    count = ok(run_cli(fresh_home, "psql", "-tAc", "select count(*) from staging.market_chart_points"))
    assert int(count.stdout.split()[-1]) > len(raw)


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, alphadb_env: dict[str, str]) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a dump\n")
    result = run_cli(alphadb_env, "db", "restore", str(junk))
    assert result.returncode == 2 and "is not a backup in pg_dump's custom format" in result.stderr
    missing = run_cli(alphadb_env, "db", "restore", str(tmp_path / "nothing.dump"))
    assert missing.returncode == 2 and "is not a file" in missing.stderr


def test_external_server_status_and_stop(alphadb_env: dict[str, str], database: Connection) -> None:
    status = ok(run_cli(alphadb_env, "db", "status"))
    assert f"database {database.dbname} on {database.host}:{database.port}: reachable, PostgreSQL" in status.stdout
    stop = ok(run_cli(alphadb_env, "db", "stop"))
    assert "nothing to stop" in stop.stdout and "not managed by AlphaDB" in stop.stdout
    down = run_cli({**alphadb_env, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1"}, "db", "status")
    assert down.returncode == 3 and "Database not accessible" in down.stderr


def test_make_clean_stops_the_embedded_server_before_deleting(tmp_path: Path, fresh_home: dict[str, str]) -> None:
    import fcntl

    checkout = tmp_path / "checkout"  # the Makefile beside a link to this checkout's .venv
    checkout.mkdir()
    shutil.copy2(REPO_ROOT / "Makefile", checkout / "Makefile")
    (checkout / ".venv").symlink_to(REPO_ROOT / ".venv")
    ok(run_cli(fresh_home, "psql", "-c", "select 1"))  # starts the embedded server
    pid = int(ok(run_cli(fresh_home, "db", "status")).stdout.split("PID ")[1].split()[0].rstrip(","))

    def make_clean() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "-C", str(checkout), "clean"], env=fresh_home, capture_output=True, text=True, timeout=120)

    with open(Path(fresh_home["ALPHADB_HOME"]) / "run.lock", "w") as lock:  # a nightly run in progress
        fcntl.flock(lock, fcntl.LOCK_EX)
        refused = make_clean()
    assert refused.returncode != 0 and "nothing deleted" in refused.stderr and "Another run is in progress" in refused.stderr
    assert (checkout / ".venv").is_symlink() and alive(pid)

    cleaned = make_clean()
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"embedded PostgreSQL stopped (PID {pid})" in cleaned.stdout
    assert not alive(pid) and not (checkout / ".venv").exists()
    assert (Path(fresh_home["ALPHADB_HOME"]) / "pgdata").is_dir()  # the data stays



def test_process_running_tells_a_live_process_from_an_ended_or_zombie_one() -> None:
    """What `db stop` waits on: pg_ctl returns once postmaster.pid is gone, before the process ends."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert _process_running(child.pid) and _process_running(os.getpid())
        child.kill()
        deadline = time.monotonic() + 10
        while _process_running(child.pid):  # killed but not reaped yet: a zombie has ended too
            assert time.monotonic() < deadline, "a killed child still counts as running"
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
    assert not _process_running(child.pid)
