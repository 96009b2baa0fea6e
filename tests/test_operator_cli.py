"""What an operator sees from `alphadb`: where each data command logs (and that load and backfill
write the run log too), help that reaches dbt and psql, and portable generated docs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cron_support import REPO_ROOT, assert_log_format, log_lines
from process_support import output, run_cli

sys.path.insert(0, str(REPO_ROOT / "scripts"))  # the page generator is a script, not a package module
from render_reliability import portable, render_table  # noqa: E402


def announced_log_files(stdout: str) -> list[str]:
    return re.findall(r"^\[[0-9: -]+\] 📊 Log file: (.+)$", stdout, flags=re.M)


def test_load_and_backfill_say_where_they_log_and_log_there(alphadb_env: dict[str, str]) -> None:
    log_file = Path(alphadb_env["ALPHADB_LOG_FILE"])
    load = run_cli(alphadb_env, "load")
    assert load.returncode == 0, output(load)
    stdout = load.stdout.splitlines()
    assert announced_log_files(load.stdout) == [str(log_file)] and "Log file:" in stdout[0]
    logged = log_lines(log_file)
    assert_log_format(logged)
    assert logged == stdout[1:]  # every line the command printed, in the run log's format
    assert any("loaded" in line and "points" in line for line in logged)

    backfill = run_cli(alphadb_env, "backfill", "--days", "3")
    assert backfill.returncode == 0, output(backfill)
    assert announced_log_files(backfill.stdout) == [str(log_file)]
    appended = log_lines(log_file)[len(logged):]
    assert appended == backfill.stdout.splitlines()[1:] and any("backfill" in line for line in appended)
    assert_log_format(log_lines(log_file))


def test_dbt_and_psql_help_is_theirs(alphadb_env: dict[str, str]) -> None:
    psql = run_cli(alphadb_env, "psql", "--help")
    assert psql.returncode == 0, output(psql)
    assert "psql is the PostgreSQL interactive terminal" in psql.stdout
    dbt = run_cli(alphadb_env, "dbt", "--help")
    assert dbt.returncode == 0, output(dbt)
    assert "An ELT tool for managing your SQL transformations" in dbt.stdout and "alphadb" not in dbt.stdout.lower()
    dbt_run = run_cli(alphadb_env, "dbt", "run", "-h")
    assert dbt_run.returncode == 0 and "--full-refresh" in dbt_run.stdout


def test_docs_options_are_explained(alphadb_env: dict[str, str]) -> None:
    shown = run_cli(alphadb_env, "docs", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "--serve then serve them on http://127.0.0.1:PORT/ until Ctrl-C" in text
    assert "--port PORT the port for --serve (default 8080)" in text


def test_log_file_answers_like_the_job(alphadb_env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(alphadb_env, "log-file").stdout == f"{alphadb_env['ALPHADB_LOG_FILE']}\n"
    env_file = tmp_path / "job.env"
    env_file.write_text(f"ALPHADB_LOG_FILE={tmp_path}/from-env-file.log\n")
    env_file.chmod(0o600)
    without = {k: v for k, v in alphadb_env.items() if k != "ALPHADB_LOG_FILE"}
    assert run_cli({**without, "ALPHADB_ENV_FILE": str(env_file)}, "log-file").stdout == f"{tmp_path}/from-env-file.log\n"
    bad = run_cli({**alphadb_env, "ALPHADB_BACKFILL_DAYS": "many"}, "log-file")
    assert bad.returncode == 2 and "ALPHADB_BACKFILL_DAYS" in bad.stderr and not bad.stdout


def test_reliability_page_prints_no_machine_paths() -> None:
    measured = {"bad input: unreadable .env": {
        "injection": "`alphadb load` with ALPHADB_ENV_FILE='/tmp/pytest-of-ci/pytest-7/test_bad_input_clear_message_e0/envs/x.env'",
        "exit_code": 2, "message": "cannot read /var/tmp/rel/final/test_bad_input_clear_message_e12/envs/x.env: IsADirectoryError",
        "written": "nothing"}}
    page = render_table(measured)
    assert "ALPHADB_ENV_FILE='<tmp>/envs/x.env'" in page and "cannot read <tmp>/envs/x.env" in page
    assert "/tmp/" not in page
    assert portable("/usr/bin/psql and /srv/alphadb/logs") == "/usr/bin/psql and /srv/alphadb/logs"
    committed = (REPO_ROOT / "docs" / "reliability.md").read_text()
    assert "/tmp/" not in committed and "/work/" not in committed
