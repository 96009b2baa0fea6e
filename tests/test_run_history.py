"""Run history in `ops.runs`: real commands in subprocesses against the simulator and a real
PostgreSQL, a run killed with SIGKILL, and a run that is only slow (not mistaken for a dead one)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from typing import Any

import pytest

from http_support import data_requests
from postgres_support import query
from process_support import alphadb_command, output, run_cli
from pipelines import run_history, runlog
from pipelines.errors import EXIT_CONFIG, EXIT_UNKNOWN_COIN


def runs(database: Any) -> list[dict[str, Any]]:
    rows = query(
        database,
        "select run_id, command, arguments, status, exit_code, points, requests, pairs_loaded, pairs_failed,"
        " failures, started_at, ended_at from ops.runs order by run_id",
    )
    names = ("run_id", "command", "arguments", "status", "exit_code", "points", "requests", "pairs_loaded",
             "pairs_failed", "failures", "started_at", "ended_at")
    return [dict(zip(names, row)) for row in rows]


def steps(database: Any, run_id: int) -> list[tuple[str, float]]:
    return [tuple(row) for row in query(database, "select step, seconds from ops.run_steps where run_id = %s order by position", (run_id,))]  # type: ignore[misc]


def has_ops_schema(database: Any) -> bool:
    return bool(query(database, "select 1 from pg_namespace where nspname = 'ops'"))


def has_runs_table(database: Any) -> bool:
    # The ops schema appears first (with the data-source record); the runs table a moment later.
    return query(database, "select to_regclass('ops.runs') is not null")[0][0]


def printed_totals(text: str) -> tuple[int, int]:
    found = re.search(r"loaded (\d+) points in (\d+) request", text)
    assert found, text
    return int(found.group(1)), int(found.group(2))


def test_load_backfill_and_heal_each_record_one_finished_row(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    loaded = run_cli(alphadb_env, "load")
    assert loaded.returncode == 0, output(loaded)
    load_requests = len(data_requests(simulator))
    backfilled = run_cli(alphadb_env, "backfill", "--days", "3", "--pair", "ETH/USDT")
    assert backfilled.returncode == 0, output(backfilled)
    healed = run_cli(alphadb_env, "heal")
    assert healed.returncode == 0, output(healed)

    load, backfill, heal = runs(database)
    assert [load["command"], backfill["command"], heal["command"]] == ["load", "backfill", "heal"]
    assert backfill["arguments"] == "--days 3 --pair ETH/USDT"
    for row in (load, backfill, heal):
        assert row["status"] == "finished" and row["exit_code"] == 0 and row["failures"] == []
        assert row["started_at"] < row["ended_at"]
    # The totals are the ones each command printed, and the requests the simulator served.
    assert (load["points"], load["requests"]) == printed_totals(loaded.stdout) and load["points"] > 0
    assert load["requests"] == load_requests
    assert (backfill["points"], backfill["requests"]) == printed_totals(backfilled.stdout)
    assert sorted(load["pairs_loaded"]) == ["BTC/USDT", "ETH/USDT"] and backfill["pairs_loaded"] == ["ETH/USDT"]
    assert (heal["points"], heal["pairs_loaded"]) == (0, [])
    # One step per command, as long as the run itself (the row spans the whole process).
    (name, seconds), = steps(database, load["run_id"])
    assert name == "load" and 0 < seconds <= (load["ended_at"] - load["started_at"]).total_seconds() + 0.5


def test_a_refused_command_writes_no_history(alphadb_env, database) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(alphadb_env, "backfill", "--days", "0")
    assert result.returncode == EXIT_CONFIG, output(result)
    assert not has_ops_schema(database)


def test_a_failed_pair_is_recorded_with_its_message(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    env = {**alphadb_env, "ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd,NOPE/USDT=no-such-coin:usd"}
    result = run_cli(env, "load")
    assert result.returncode == EXIT_UNKNOWN_COIN, output(result)
    (row,) = runs(database)
    assert (row["status"], row["exit_code"]) == ("finished", EXIT_UNKNOWN_COIN)
    assert row["pairs_loaded"] == ["BTC/USDT"] and row["pairs_failed"] == ["NOPE/USDT"]
    assert len(row["failures"]) == 1 and row["failures"][0].startswith("NOPE/USDT: ") and "no-such-coin" in row["failures"][0]


def test_failure_messages_are_stored_with_secrets_redacted(database) -> None:  # type: ignore[no-untyped-def]
    secret = "sk-history-s3cr3t"
    runlog.register_secrets([secret])
    with run_history.recording("load", ["--pair", "BTC/USDT"]) as record:
        record.start(database)
        record.failures.append(f"BTC/USDT: HTTP 401 for key {secret}")
        record.close(1)
    (row,) = runs(database)
    assert row["failures"] == ["BTC/USDT: HTTP 401 for key ***"] and row["exit_code"] == 1
    dump = query(database, "select string_agg(runs::text, ' ') from ops.runs")[0][0]
    assert secret not in dump and database.password not in dump


def test_an_exception_escaping_the_run_finishes_its_row_with_its_exit_code(database) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KeyboardInterrupt):
        with run_history.recording("backfill", ["--days", "30"]) as record:
            record.start(database)
            raise KeyboardInterrupt
    (row,) = runs(database)
    assert (row["status"], row["exit_code"]) == ("finished", 130)
    assert row["failures"] == ["backfill: KeyboardInterrupt"]


def test_a_run_still_going_is_not_taken_for_a_dead_one(database, capsys) -> None:  # type: ignore[no-untyped-def]
    runlog.setup(None)
    with run_history.recording("backfill") as slow:
        slow.start(database)
        with run_history.recording("load") as other:
            other.start(database)
            other.close(0)
        statuses = {row["command"]: row["status"] for row in runs(database)}
        assert statuses == {"backfill": "running", "load": "finished"}
        slow.close(0)
    assert "did not finish" not in capsys.readouterr().out
    assert {row["status"] for row in runs(database)} == {"finished"}


def _wait(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_killed_run_stays_unfinished_and_the_next_run_names_it(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "slow", "delay_s": 2.0})  # every response: the backfill takes a while
    proc = subprocess.Popen(
        [*alphadb_command(), "backfill", "--days", "60"], env=alphadb_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait(lambda: has_runs_table(database) and bool(runs(database)))
        (killed,) = runs(database)
        assert killed["status"] == "running" and killed["ended_at"] is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    # The server notices the dead client and drops its session (and the run's advisory lock).
    _wait(lambda: not query(database, "select 1 from pg_locks where locktype = 'advisory' and objid = %s::oid", (killed["run_id"],)))
    assert runs(database)[0]["status"] == "running"  # nobody finished it

    simulator.clear_faults()
    result = run_cli(alphadb_env, "load")
    assert result.returncode == 0, output(result)
    warnings = [line for line in output(result).splitlines() if "did not finish" in line]
    assert len(warnings) == 1 and f"Run {killed['run_id']} (backfill, started " in warnings[0], output(result)
    assert "⚠️" in warnings[0]
    before, after = runs(database)
    assert (before["status"], before["exit_code"], before["ended_at"]) == ("abandoned", None, None)
    assert (after["command"], after["status"], after["exit_code"]) == ("load", "finished", 0)
    # Told once: the run after that does not warn again.
    again = run_cli(alphadb_env, "load")
    assert "did not finish" not in output(again)


@pytest.mark.slow
def test_the_nightly_job_records_its_steps_and_dbt_results(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(alphadb_env, "run", timeout=600)
    assert result.returncode == 0, output(result)
    (row,) = runs(database)
    assert (row["command"], row["status"], row["exit_code"], row["failures"]) == ("run", "finished", 0, [])
    assert row["points"] > 0 and row["requests"] >= len(data_requests(simulator)) > 0
    assert sorted(row["pairs_loaded"]) == ["BTC/USDT", "ETH/USDT"] and row["pairs_failed"] == []
    recorded = steps(database, row["run_id"])
    names = [name for name, _ in recorded]
    for step in ("Environment check", "Database connectivity check", "Backfill", "dbt run", "Data quality checks"):
        assert step in names, names
    assert names.index("Backfill") < names.index("dbt run") < names.index("Data quality checks")
    total = sum(seconds for _, seconds in recorded)
    assert abs(total - (row["ended_at"] - row["started_at"]).total_seconds()) < 2.0
    tests = query(database, "select node, status from ops.run_tests where run_id = %s", (row["run_id"],))
    assert tests and {status for _, status in tests} <= {"pass", "warn"}
    assert any(node == "coingecko.market_chart_points" for node, _ in tests)  # source freshness too
