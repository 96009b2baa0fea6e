"""`alphadb` in a subprocess: every error path's message and exit code (docs/design.md), and that a
refused command writes nothing.
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from http_support import closed_port, data_requests
from postgres_support import counts, dlt_cursors, user_tables
from process_support import error_lines, output, run_cli

from pipelines.errors import EXIT_CONFIG, EXIT_DATABASE, EXIT_FAILURE, EXIT_LOCKED, EXIT_UNKNOWN_COIN

TODAY = datetime.now(timezone.utc).date()
SECRET = "CG-demo-cli-s3cr3t-key"

BAD_BACKFILL = [
    (["--start", (TODAY - timedelta(days=3)).isoformat(), "--end", (TODAY - timedelta(days=5)).isoformat()], "is after --end"),
    (["--start", (TODAY + timedelta(days=1)).isoformat(), "--end", (TODAY + timedelta(days=2)).isoformat()], "future"),
    (["--start", (TODAY - timedelta(days=2)).isoformat(), "--end", (TODAY + timedelta(days=3)).isoformat()], "future"),
    (["--days", "-1"], "--days -1 is out of range"),
    (["--days", "0"], "--days 0 is out of range"),
    (["--days", "999999"], "--days 999999 is out of range"),
    (["--days", "ten"], "'ten' is not a whole number of days"),
    (["--start", "2026-13-01"], "'2026-13-01' is not a date"),
    (["--days", "3", "--start", (TODAY - timedelta(days=5)).isoformat()], "either --days or --start/--end"),
    ([], "backfill needs --days N or --start"),
    (["--days", "3", "--pair", "DOGE/USDT"], "'DOGE/USDT' is not configured"),
    (["--days", "3", "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_BACKFILL, ids=[" ".join(a) or "no-args" for a, _ in BAD_BACKFILL])
def test_bad_backfill_arguments_exit_2(tmp_path: Path, monkeypatch, capsys, args: list[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    """In-process `main()` (the console script's entry point) for every case: fast and exact.

    The database and the API point at a closed port: touching either would give exit 3 or 1, not 2.
    """
    import logging

    from pipelines.cli import main

    log = logging.getLogger("alphadb")  # main() configures it: restore it for the tests that follow
    saved = (list(log.handlers), log.propagate, log.level)
    monkeypatch.setattr(log, "handlers", saved[0][:])
    monkeypatch.setattr(log, "propagate", saved[1])
    monkeypatch.setattr(log, "level", saved[2])
    for key in list(os.environ):
        if key.startswith(("COINGECKO_", "POSTGRES_", "ALPHADB_", "SLACK_")):
            monkeypatch.delenv(key)
    port = str(closed_port())
    env = {
        "ALPHADB_ENV_FILE": str(tmp_path / "absent.env"),
        "ALPHADB_HOME": str(tmp_path / "home"),
        "COINGECKO_BASE_URL": f"http://127.0.0.1:{port}/api/v3",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": port,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["backfill", *args]) == EXIT_CONFIG
    captured = capsys.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines() if "❌" in line]
    assert len(errors) == 1 and fragment in errors[0], captured
    assert not (tmp_path / "home").exists()


def test_bad_arguments_in_a_subprocess_exit_2_and_write_nothing(alphadb_env: dict[str, str], database, simulator) -> None:  # type: ignore[no-untyped-def]
    cases = [BAD_BACKFILL[0], BAD_BACKFILL[2], BAD_BACKFILL[4]]  # every case runs in-process above
    for args, fragment in cases:
        result = run_cli(alphadb_env, "backfill", *args)
        assert result.returncode == EXIT_CONFIG, (args, output(result))
        errors = error_lines(result)
        assert len(errors) == 1 and fragment in errors[0], (args, output(result))
        assert "Traceback" not in output(result)
    for args, fragment in ([["frobnicate"], "invalid choice"], [["load", "--pair", "XRP/USDT"], "'XRP/USDT' is not configured"], [[], "required"]):
        result = run_cli(alphadb_env, *args)
        assert result.returncode == EXIT_CONFIG and fragment in " ".join(error_lines(result)), output(result)
    assert user_tables(database) == []  # nothing written
    assert not Path(alphadb_env["ALPHADB_HOME"]).exists()
    assert data_requests(simulator) == []  # and nothing asked of CoinGecko


def test_unknown_coin_other_pair_loaded_exit_5(alphadb_env: dict[str, str], database, simulator) -> None:  # type: ignore[no-untyped-def]
    env = {**alphadb_env, "ALPHADB_PAIRS": "NOPE/USDT=no-such-coin:usd,BTC/USDT=bitcoin:usd"}
    result = run_cli(env, "load")
    assert result.returncode == EXIT_UNKNOWN_COIN, output(result)  # not 2: the other pair was written
    errors = error_lines(result)
    assert len(errors) == 1 and "'no-such-coin'" in errors[0] and "NOPE/USDT" in errors[0], output(result)
    assert "✅ BTC/USDT" in output(result)
    found = counts(database)
    assert set(found) == {"bitcoin"} and found["bitcoin"][0] > 280
    assert set(dlt_cursors(database)) == {"BTC/USDT"}  # the failed pair has no cursor
    assert len(data_requests(simulator, "no-such-coin")) == 1  # not retried


def test_wrong_plan_and_key_never_printed(alphadb_env: dict[str, str], database, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.configure(demo_keys=[SECRET])
    env = {**alphadb_env, "COINGECKO_PLAN": "demo", "COINGECKO_API_KEY": SECRET}
    # Retries (logged as warnings) then success: the key is in no line.
    simulator.add_faults([{"kind": "server_error", "count": 1}, {"kind": "html", "status": 429, "count": 1}])
    result = run_cli(env, "load")
    assert result.returncode == 0, output(result)
    assert "retry 1" in output(result)
    texts = [output(result)]
    # The demo key on the Pro host (error 10011): exit 2, told which COINGECKO_PLAN to set.
    simulator.configure(host_kind="pro")
    result = run_cli(env, "load")
    assert result.returncode == EXIT_CONFIG, output(result)
    errors = error_lines(result)
    assert errors and all("10011" in line and "COINGECKO_PLAN=demo" in line for line in errors), output(result)
    texts.append(output(result))
    # A Pro key on the public host (10010).
    simulator.configure(host_kind="public", pro_keys=[SECRET], demo_keys=[])
    result = run_cli({**env, "COINGECKO_PLAN": "pro"}, "load")
    assert result.returncode == EXIT_CONFIG and "COINGECKO_PLAN=pro" in " ".join(error_lines(result)), output(result)
    texts.append(output(result))
    for text in texts:
        assert SECRET not in text
    import json

    assert SECRET not in json.dumps(simulator.requests)
    log_file = Path(alphadb_env["ALPHADB_LOG_FILE"])
    assert not log_file.exists() or SECRET not in log_file.read_text()


def test_retries_exhausted_exit_1(alphadb_env: dict[str, str], database, simulator) -> None:  # type: ignore[no-untyped-def]
    simulator.add_fault({"kind": "server_error", "status": 502, "coin": "ethereum"})
    result = run_cli({**alphadb_env, "COINGECKO_RETRY_BUDGET_S": "0.4"}, "load")
    assert result.returncode == EXIT_FAILURE, output(result)
    errors = error_lines(result)
    assert len(errors) == 1 and "ETH/USDT" in errors[0] and "HTTP 502" in errors[0] and "COINGECKO_RETRY_BUDGET_S=0.4s" in errors[0]
    assert set(counts(database)) == {"bitcoin"}  # the other pair was loaded


def test_database_not_accessible_exit_3(alphadb_env: dict[str, str]) -> None:
    env = {**alphadb_env, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(closed_port()), "POSTGRES_PASSWORD": "pg-pass-never-shown"}
    for command in (["load"], ["backfill", "--days", "2"]):
        result = run_cli(env, *command)
        assert result.returncode == EXIT_DATABASE, output(result)
        errors = error_lines(result)
        assert len(errors) == 1 and "Database not accessible" in errors[0]
        assert "pg-pass-never-shown" not in output(result)


@pytest.mark.parametrize("command", [["load"], ["backfill", "--days", "2"]])
def test_lock_held_exit_75(alphadb_env: dict[str, str], database, simulator, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    home = Path(alphadb_env["ALPHADB_HOME"])
    home.mkdir(parents=True)
    with open(home / "load.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli({**alphadb_env, "ALPHADB_LOAD_LOCK_WAIT_S": "0.5"}, *command)
    assert result.returncode == EXIT_LOCKED, output(result)
    assert "load.lock" in " ".join(error_lines(result))
    assert data_requests(simulator) == []  # nothing fetched


def test_dbt_passthrough_uses_the_same_connection_and_the_configured_pairs(alphadb_env) -> None:  # type: ignore[no-untyped-def]
    """`alphadb dbt ...` is how a user runs dbt on AlphaDB's settings: ALPHADB_PAIRS reaches dbt as the var `pairs`, the password stays hidden."""
    env = {**alphadb_env, "ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd,SOL/USDT=solana:usd"}
    result = run_cli(env, "dbt", "ls", "--resource-type", "model", "--output", "name")
    assert result.returncode == 0, output(result)
    assert {"int_configured_pairs", "ohlcv", "gaps", "pairs"} <= set(result.stdout.split())
    result = run_cli(env, "dbt", "compile", "--select", "int_configured_pairs")
    assert result.returncode == 0, output(result)
    assert "SOL/USDT" in result.stdout and "BTC/USDT" in result.stdout and "ETH/USDT" not in result.stdout
    assert alphadb_env["POSTGRES_PASSWORD"] not in output(result)

    missing = run_cli(env, "dbt")
    assert missing.returncode == EXIT_CONFIG and "name a dbt command" in output(missing)
