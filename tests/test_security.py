"""Security and bad input: secrets never leave the process (logs, alerts, dbt artifacts, command
lines), bad input stops with a clear message and exit 2 before anything is written, the embedded
database listens on a Unix socket only."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from cron_support import RUN_ELT, clone_without_venv, cron_env, log_lines, run_script
from http_support import WebhookReceiver
from postgres_support import user_tables
from process_support import REPO_ROOT, output, run_cli
from reliability_support import record

pytestmark = pytest.mark.faults  # the fault suite: `make reliability` measures it, `make check` skips it

TODAY = datetime.now(timezone.utc).date()

# name -> (extra env, CLI args, text the error must contain)
BAD_INPUT: dict[str, tuple[dict[str, str], tuple[str, ...], str]] = {
    "pair BTC-USDT": ({"ALPHADB_PAIRS": "BTC-USDT=bitcoin:usd"}, ("load",), "malformed pair 'BTC-USDT=bitcoin:usd'"),
    "empty pairs": ({"ALPHADB_PAIRS": " , "}, ("load",), "no pairs configured"),
    "pair x;drop table": ({"ALPHADB_PAIRS": "x;drop table/USD=bitcoin:usd"}, ("load",), "malformed pair"),
    "coin id x;drop table": ({"ALPHADB_PAIRS": "X/USD=x;drop table:usd"}, ("load",), "invalid CoinGecko coin id"),
    "--pair x;drop table": ({}, ("load", "--pair", "x;drop table"), "is not configured"),
    "--pair empty": ({}, ("backfill", "--days", "3", "--pair", ""), "is not configured"),
    "unknown plan": ({"COINGECKO_PLAN": "gold"}, ("load",), "COINGECKO_PLAN='gold' is unknown"),
    "--days -1": ({}, ("backfill", "--days", "-1"), "out of range"),
    "--days 0": ({}, ("backfill", "--days", "0"), "out of range"),
    "--days 100000": ({}, ("backfill", "--days", "100000"), "out of range"),
    "--days abc": ({}, ("backfill", "--days", "abc"), "not a whole number"),
    "--start after --end": ({}, ("backfill", "--start", "2026-03-05", "--end", "2026-03-01"), "is after --end"),
    "future --start": ({}, ("backfill", "--start", (TODAY + timedelta(days=3)).isoformat()), "in the future"),
    "future --end": ({}, ("backfill", "--start", (TODAY - timedelta(days=3)).isoformat(), "--end", (TODAY + timedelta(days=30)).isoformat()), "in the future"),
    "malformed date": ({}, ("backfill", "--start", "2026-13-45"), "not a date"),
    "POSTGRES_PORT=abc": ({"POSTGRES_PORT": "abc"}, ("load",), "POSTGRES_PORT='abc' is not a whole number"),
    "POSTGRES_PORT=70000": ({"POSTGRES_PORT": "70000"}, ("load",), "POSTGRES_PORT=70000 is out of range"),
    "COINGECKO_BASE_URL=ftp": ({"COINGECKO_BASE_URL": "ftp://example.com/api"}, ("load",), "is not an http(s) URL"),
    "COINGECKO_BASE_URL=garbage": ({"COINGECKO_BASE_URL": "not a url"}, ("load",), "is not an http(s) URL"),
    "SLACK_WEBHOOK_URL malformed": ({"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/s3cr3tHookPath"}, ("load",), "SLACK_WEBHOOK_URL (value hidden)"),
    "POSTGRES_DB sql": ({"POSTGRES_DB": "market;drop"}, ("load",), "not a valid PostgreSQL identifier"),
    "POSTGRES_USER sql": ({"POSTGRES_USER": 'x" or "1'}, ("load",), "not a valid PostgreSQL identifier"),
    "ALPHADB_BACKFILL_DAYS=-2": ({"ALPHADB_BACKFILL_DAYS": "-2"}, ("load",), "ALPHADB_BACKFILL_DAYS=-2 is out of range"),
}


def _wipe(database: Any, home: Path) -> None:
    """Undo what a failed case wrote, so the next case is judged on its own."""
    import shutil

    conn = psycopg2.connect(**database.psycopg_kwargs())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname like 'staging%%'")
        for (schema,) in cur.fetchall():
            cur.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
    conn.close()
    shutil.rmtree(home, ignore_errors=True)


def test_bad_input_clear_message_exit_2_nothing_written(alphadb_env: dict[str, str], database: Any, tmp_path: Path) -> None:
    problems = []
    env_dir = tmp_path / "envs"
    env_dir.mkdir()
    # .env cases: a directory where the file should be, and a file that is not text.
    (env_dir / "as_dir.env").mkdir()
    (env_dir / "binary.env").write_bytes(b"\xff\xfe\x00POSTGRES_PASSWORD=\x80\x81\n")
    cases = dict(BAD_INPUT)
    cases["unreadable .env (a directory)"] = ({"ALPHADB_ENV_FILE": str(env_dir / "as_dir.env")}, ("load",), "cannot read")
    cases["unreadable .env (not UTF-8)"] = ({"ALPHADB_ENV_FILE": str(env_dir / "binary.env")}, ("load",), "cannot read")
    home = Path(alphadb_env["ALPHADB_HOME"])
    for name, (extra, args, expected) in cases.items():
        result = run_cli({**alphadb_env, **extra}, *args)
        text = output(result)
        errors = [line for line in text.splitlines() if "❌" in line]
        ok = result.returncode == 2 and errors and expected in errors[-1] and "Traceback" not in text
        if not ok:
            problems.append(f"{name}: exit {result.returncode}: {text.strip()[-300:]}")
        written = user_tables(database) + ([str(home)] if home.exists() else [])
        if written:
            problems.append(f"{name}: wrote {written}")
            _wipe(database, home)
        record(
            f"bad input: {name}",
            f"`alphadb {' '.join(args)}`" + (f" with {', '.join(f'{k}={v!r}' for k, v in extra.items())}" if extra else ""),
            exit_code=result.returncode,
            message=errors[-1].split("❌ ", 1)[-1][:140] if errors else "",
            written="nothing" if not written else ", ".join(written),
        )
    assert not problems, "\n".join(problems)


def test_missing_venv_when_cron_runs_the_script(tmp_path: Path) -> None:
    """A copy of the scripts in a repo skeleton without .venv: a clear message, exit 2, nothing run."""
    skeleton = clone_without_venv(tmp_path / "repo")
    log = tmp_path / "cron.log"
    for script in ("run_elt.sh", "daily_backfill_cron.sh"):
        result = run_script(skeleton / "scripts" / script, {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ALPHADB_LOG_FILE": str(log)}, tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Virtualenv not ready" in result.stdout and "make run" in result.stdout
    assert not (skeleton / ".alphadb").exists() and not (skeleton / "logs").exists()
    record(
        "bad input: missing .venv under cron",
        "scripts copied to a repo skeleton without .venv, run with cron's PATH",
        exit_code=2,
        message="Virtualenv not ready: …/.venv/bin/alphadb is missing. Run `make run` …",
        written="nothing but the log line",
    )


def test_env_file_readable_by_others_warns(alphadb_env: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / "shared.env"
    env_file.write_text("ALPHADB_BACKFILL_DAYS=2\n")
    env_file.chmod(0o644)
    result = run_cli({**alphadb_env, "ALPHADB_ENV_FILE": str(env_file), "POSTGRES_PORT": "nope"}, "load")
    assert "readable by other users" in output(result) and "chmod 600" in output(result)
    env_file.chmod(0o600)
    result = run_cli({**alphadb_env, "ALPHADB_ENV_FILE": str(env_file), "POSTGRES_PORT": "nope"}, "load")
    assert "readable by other users" not in output(result)


def test_embedded_database_listens_on_a_unix_socket_only(tmp_path: Path) -> None:
    from pipelines.config import load_settings
    from pipelines.database import resolve_connection

    home = tmp_path / "home"
    settings = load_settings(
        environ={"ALPHADB_ENV_FILE": str(tmp_path / "no.env"), "ALPHADB_HOME": str(home), "POSTGRES_PASSWORD": "Emb3dded-pw-xyz"}
    )
    try:
        connection = resolve_connection(settings)
        assert connection.host.startswith("/"), connection.host  # a socket directory, not a host name
        conn = psycopg2.connect(**connection.psycopg_kwargs())
        with conn.cursor() as cur:
            cur.execute("show listen_addresses")
            listen = cur.fetchone()[0]
            cur.execute("select pg_backend_pid(), inet_server_addr()")
            _, server_addr = cur.fetchone()
        conn.close()
        assert listen == "", listen
        assert server_addr is None  # this very session came over the Unix socket
        pid = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        assert f"pid={pid}," not in listening, listening
    finally:
        # Fast shutdown of the server this test started (SIGINT to its postmaster), whatever pg_ctl it came with.
        pid_file = home / "pgdata" / "postmaster.pid"
        if pid_file.exists():
            postmaster = int(pid_file.read_text().split()[0])
            os.kill(postmaster, 2)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and Path(f"/proc/{postmaster}").exists():
                time.sleep(0.1)
    record(
        "security: embedded database network exposure",
        "start the embedded server, `show listen_addresses`, `ss -ltnp` for its postmaster",
        outcome="listen_addresses = '' (Unix socket only); no TCP listener",
    )


# --- secrets in every artifact of a full nightly run ----------------------------------------

API_KEY = "CG-Secr3tKey-4f9a2b7c1d"
DB_PASSWORD = "Pg-Pw-8e3d1c0b9a-Zq!"
HOOK_PATH = "/services/T0SECRET/B0SECRET/H00kT0ken5ecretXyz"


def _sample_cmdlines(stop: threading.Event, seen: dict[int, str]) -> None:
    own = os.getpid()
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                continue
            if cmd and ("alphadb" in cmd or "dbt" in cmd or "run_elt" in cmd):
                seen.setdefault(int(entry.name), cmd)
        time.sleep(0.02)


def test_secrets_never_leak_from_a_nightly_run(
    pg_admin_uri: str, pg_role: Any, database: Any, simulator: Any, alphadb_env: dict[str, str], tmp_path: Path
) -> None:
    # A role with a distinctive password owns the test database.
    role = "alphadb_secret_role"
    admin = psycopg2.connect(pg_admin_uri)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("select 1 from pg_roles where rolname = %s", (role,))
        verb = "alter" if cur.fetchone() else "create"
        cur.execute(sql.SQL(verb + " role {} login password %s").format(sql.Identifier(role)), (DB_PASSWORD,))
        cur.execute(sql.SQL("alter database {} owner to {}").format(sql.Identifier(database.dbname), sql.Identifier(role)))
    admin.close()
    simulator.configure(demo_keys=[API_KEY])
    with WebhookReceiver() as receiver:
        hook = receiver.url(HOOK_PATH)
        env = cron_env(
            alphadb_env,
            POSTGRES_USER=role,
            POSTGRES_PASSWORD=DB_PASSWORD,
            COINGECKO_PLAN="demo",
            COINGECKO_API_KEY=API_KEY,
            SLACK_WEBHOOK_URL=hook,
            # one pair that fails: the run alerts (exit != 0), the other pairs still go through dbt
            ALPHADB_PAIRS="BTC/USDT=bitcoin:usd,ETH/USDT=ethereum:usd,NOPE/USDT=no-such-coin:usd",
        )
        stop, seen = threading.Event(), {}
        sampler = threading.Thread(target=_sample_cmdlines, args=(stop, seen), daemon=True)
        sampler.start()
        try:
            workdir = tmp_path / "cron-cwd"
            workdir.mkdir()
            result = run_script(RUN_ELT, env, workdir, timeout=600)
        finally:
            stop.set()
            sampler.join()
        alerts = [r.body.decode("utf-8", "replace") for r in receiver.received]
    assert result.returncode not in (0, 75), result.stdout + result.stderr
    assert any("NOPE/USDT" in a for a in alerts), alerts  # the alert was sent
    secrets = {"API key": API_KEY, "DB password": DB_PASSWORD, "webhook URL": HOOK_PATH.strip("/").split("/")[-1]}
    artifacts: dict[str, str] = {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "log file": "\n".join(log_lines(Path(env["ALPHADB_LOG_FILE"]))),
        **{f"alert {i}": a for i, a in enumerate(alerts)},
    }
    files = [p for p in Path(env["ALPHADB_HOME"]).rglob("*") if p.is_file()]
    for extra in (REPO_ROOT / "dbt_alphadb" / "target", REPO_ROOT / "dbt_alphadb" / "logs"):
        if extra.exists():
            files += [p for p in extra.rglob("*") if p.is_file() and p.stat().st_mtime > time.time() - 900]
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".gz":
            import gzip

            try:
                data = gzip.decompress(data)
            except OSError:
                pass
        artifacts[str(path)] = data.decode("utf-8", "replace")
    leaks = [f"{what} in {where}" for where, text in artifacts.items() for what, s in secrets.items() if s in text]
    cmd_leaks = [f"{what} on the command line of {cmd[:80]}" for cmd in seen.values() for what, s in secrets.items() if s in cmd]
    dbt_files = [p for p in files if "/dbt/" in str(p)]
    assert any("dbt" in c for c in seen.values()), seen  # the sampler did see the children
    assert dbt_files and any(p.name == "dbt.log" for p in dbt_files), "dbt left no artifacts to check"
    assert not leaks and not cmd_leaks, "\n".join(leaks + cmd_leaks)
    assert "📊 BTC/USDT window " in artifacts["log file"]
    record(
        "security: secrets in artifacts and command lines",
        "full `run_elt.sh` run (demo key, own DB role/password, Slack webhook to a loopback receiver, one failing pair); "
        "grep stdout/stderr, the log file, alert payloads and every file under ALPHADB_HOME (dlt packages, dbt target/ and logs/); "
        "sample /proc/*/cmdline every 20 ms",
        outcome=f"0 leaks in {len(artifacts)} artifacts ({len(dbt_files)} dbt files) and {len(seen)} sampled command lines; "
        f"exit {result.returncode}, {len(alerts)} alert/ping payloads",
    )
