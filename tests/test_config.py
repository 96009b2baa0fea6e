"""Settings (docs/design.md): every variable parsed, `.env` read with the environment winning, and
every bad value stopping with a ConfigError (exit 2) that names the variable, before anything is
written: in-process through `load_settings`, and through the `alphadb` CLI in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postgres_support import user_tables
from process_support import error_lines, output, run_cli

from pipelines.config import (
    DBT_PROJECT_FILE,
    PLAN_BASE_URLS,
    REPO_ROOT,
    Pair,
    check_no_legacy_pairs_file,
    load_settings,
    project_pairs,
)
from pipelines.logfile import default_log_file
from pipelines.errors import EXIT_CONFIG, ConfigError


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment isolated from the repo's .env (which may or may not exist)."""
    env = {"ALPHADB_ENV_FILE": str(tmp_path / "absent.env")}
    env.update(extra)
    return env


# --- every variable ------------------------------------------------------------------------

def test_defaults(tmp_path: Path) -> None:
    s = load_settings(base_env(tmp_path))
    assert s.api_key is None and s.plan == "public"
    assert s.base_url == "https://api.coingecko.com/api/v3"
    assert s.key_header is None
    assert s.rate_limit_per_min == 10
    assert s.postgres_host is None and s.embedded_database
    assert (s.postgres_port, s.postgres_user, s.postgres_password, s.postgres_db) == (5432, "trader", "s3cr3t", "market")
    configured = DBT_PROJECT_FILE.read_text()
    assert [p.name for p in s.pairs] == ["BTC/USDT", "ETH/USDT"] or all(p.name in configured for p in s.pairs)
    assert s.lookback_days == 2
    assert s.home == (REPO_ROOT / ".alphadb").resolve()
    assert s.log_file in (Path("/var/log/alphadb-backfill.log"), REPO_ROOT / "logs" / "alphadb-backfill.log")
    assert s.log_file == default_log_file()
    assert s.slack_webhook_url is None and s.healthcheck_url is None
    assert s.history_days == 365
    assert s.load_lock_wait_s == 3600


def test_every_variable_is_parsed(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        COINGECKO_API_KEY="CG-demo-abcdef",
        COINGECKO_PLAN="Demo",  # case-insensitive
        COINGECKO_BASE_URL="http://127.0.0.1:8765/api/v3/",
        COINGECKO_RATE_LIMIT_PER_MIN="42.5",
        POSTGRES_HOST="db.internal",
        POSTGRES_PORT="6543",
        POSTGRES_USER="alpha_user",
        POSTGRES_PASSWORD="pw with spaces & symbols",
        POSTGRES_DB="market_2",
        ALPHADB_PAIRS="sol/usdt=solana:usd, BTC/EUR=bitcoin:eur",
        ALPHADB_BACKFILL_DAYS="7",
        ALPHADB_HOME=str(tmp_path / "state"),
        ALPHADB_LOG_FILE=str(tmp_path / "logs" / "run.log"),
        SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T000/B000/XXXX",
        ALPHADB_HEALTHCHECK_URL="https://hc-ping.com/abc-123",
        COINGECKO_TIMEOUT_S="12.5",
        COINGECKO_MAX_RETRY_AFTER_S="120",
        COINGECKO_RETRY_BUDGET_S="60",
        ALPHADB_LOAD_LOCK_WAIT_S="0",
    )
    s = load_settings(env)
    assert s.api_key == "CG-demo-abcdef" and s.plan == "demo" and s.key_header == "x-cg-demo-api-key"
    assert s.base_url == "http://127.0.0.1:8765/api/v3"
    assert s.rate_limit_per_min == 42.5
    assert (s.postgres_host, s.postgres_port, s.postgres_user, s.postgres_db) == ("db.internal", 6543, "alpha_user", "market_2")
    assert s.postgres_password == "pw with spaces & symbols"
    assert s.pairs == (Pair("SOL/USDT", "solana", "usd"), Pair("BTC/EUR", "bitcoin", "eur"))
    assert s.pairs[0].slug == "sol_usdt"
    assert s.lookback_days == 7
    assert s.home == (tmp_path / "state").resolve()
    assert s.log_file == tmp_path / "logs" / "run.log"
    assert s.slack_webhook_url == "https://hooks.slack.com/services/T000/B000/XXXX"
    assert s.healthcheck_url == "https://hc-ping.com/abc-123"
    assert (s.request_timeout_s, s.max_retry_after_s, s.retry_budget_s) == (12.5, 120, 60)
    assert s.load_lock_wait_s == 0  # do not wait: fail at once when another load runs
    # Secrets are known (for redaction) and hidden from repr.
    assert set(s.secrets()) == {"CG-demo-abcdef", "pw with spaces & symbols", s.slack_webhook_url}
    assert "pw with spaces" not in repr(s) and "hooks.slack.com" not in repr(s)


@pytest.mark.parametrize(
    ("extra", "plan", "base_url", "header", "rate", "history"),
    [
        ({}, "public", PLAN_BASE_URLS["public"], None, 10, 365),
        ({"COINGECKO_API_KEY": "k-123"}, "pro", "https://pro-api.coingecko.com/api/v3", "x-cg-pro-api-key", 500, None),
        ({"COINGECKO_API_KEY": "k-123", "COINGECKO_PLAN": "demo"}, "demo", "https://api.coingecko.com/api/v3", "x-cg-demo-api-key", 30, 365),
        ({"COINGECKO_API_KEY": "k-123", "COINGECKO_PLAN": "public"}, "public", PLAN_BASE_URLS["public"], None, 10, 365),
    ],
)
def test_plan_picks_url_header_rate_and_history(tmp_path: Path, extra, plan, base_url, header, rate, history) -> None:  # type: ignore[no-untyped-def]
    s = load_settings(base_env(tmp_path, **extra))
    assert (s.plan, s.base_url, s.key_header, s.rate_limit_per_min, s.history_days) == (plan, base_url, header, rate, history)


def test_pairs_are_the_dbt_project_var_with_comments(tmp_path: Path) -> None:
    project = tmp_path / "dbt_project.yml"
    project.write_text(
        "name: x\nvars:\n  # comment\n  pairs:\n    BTC/USDT: bitcoin:usd  # trailing comment\n\n"
        "    ETH/USDT: ethereum:usd\n  gap_tolerance_1h: 2\n"
    )
    assert project_pairs(project) == (Pair("BTC/USDT", "bitcoin", "usd"), Pair("ETH/USDT", "ethereum", "usd"))
    s = load_settings(base_env(tmp_path))  # without ALPHADB_PAIRS: the repo's dbt_alphadb/dbt_project.yml
    assert s.pairs == project_pairs() and s.pairs
    assert s.pair(s.pairs[0].name.lower()) == s.pairs[0]
    with pytest.raises(ConfigError, match="DOGE/USDT"):
        s.pair("DOGE/USDT")
    # dbt reads the var as written: names in capitals, the series without spaces, no pair twice
    for bad in ("btc/usdt: bitcoin:usd", "BTC/USDT: bitcoin", "BTC/USDT: bit coin:usd",
                "BTC/USDT: bitcoin:usd\n    XBT/USDT: bitcoin:usd"):
        project.write_text(f"vars:\n  pairs:\n    {bad}\n")
        with pytest.raises(ConfigError, match="vars: pairs"):
            project_pairs(project)
    project.write_text("vars:\n  pairs: BTC/USDT=bitcoin:usd\n")
    with pytest.raises(ConfigError, match="one line per pair under vars: pairs:"):
        project_pairs(project)


# --- .env and the environment --------------------------------------------------------------

def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "COINGECKO_API_KEY=from-dotenv-key\n"
        "COINGECKO_PLAN=demo\n"
        "ALPHADB_BACKFILL_DAYS=5\n"
        "POSTGRES_DB=from_dotenv\n"
        "ALPHADB_PAIRS=\"BTC/USDT=bitcoin:usd\"\n"
    )
    env_file.chmod(0o600)
    s = load_settings({"ALPHADB_ENV_FILE": str(env_file), "ALPHADB_BACKFILL_DAYS": "9", "POSTGRES_DB": "from_env"})
    assert s.api_key == "from-dotenv-key" and s.plan == "demo"  # from .env
    assert s.pairs == (Pair("BTC/USDT", "bitcoin", "usd"),)
    assert s.lookback_days == 9 and s.postgres_db == "from_env"  # the environment wins
    # The env_file argument works the same when ALPHADB_ENV_FILE is unset.
    assert load_settings({}, env_file=env_file).postgres_db == "from_dotenv"


def test_env_file_readable_by_others_warns(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ALPHADB_BACKFILL_DAYS=3\n")
    env_file.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        assert load_settings({"ALPHADB_ENV_FILE": str(env_file)}).lookback_days == 3


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert load_settings({"ALPHADB_ENV_FILE": str(tmp_path / "nope.env")}).plan == "public"


@pytest.mark.parametrize("kind", ["directory", "not_utf8"])
def test_unreadable_env_file(tmp_path: Path, kind: str) -> None:
    env_file = tmp_path / ".env"
    if kind == "directory":
        env_file.mkdir()
    else:
        env_file.write_bytes(b"COINGECKO_API_KEY=\xff\xfe\x80\n")
        env_file.chmod(0o600)
    with pytest.raises(ConfigError, match=r"cannot read .*\.env") as info:
        load_settings({"ALPHADB_ENV_FILE": str(env_file)})
    assert info.value.exit_code == EXIT_CONFIG


# --- bad values ------------------------------------------------------------------------------

BAD_VALUES = [
    ({"COINGECKO_PLAN": "enterprise"}, "COINGECKO_PLAN"),
    ({"COINGECKO_PLAN": "x;drop table"}, "COINGECKO_PLAN"),
    ({"COINGECKO_PLAN": "demo"}, "COINGECKO_API_KEY"),  # demo without a key
    ({"COINGECKO_PLAN": "pro"}, "COINGECKO_API_KEY"),
    ({"COINGECKO_BASE_URL": "not a url"}, "COINGECKO_BASE_URL"),
    ({"COINGECKO_BASE_URL": "ftp://api.coingecko.com/api/v3"}, "COINGECKO_BASE_URL"),
    ({"COINGECKO_BASE_URL": "http://"}, "COINGECKO_BASE_URL"),
    ({"COINGECKO_RATE_LIMIT_PER_MIN": "fast"}, "COINGECKO_RATE_LIMIT_PER_MIN"),
    ({"COINGECKO_RATE_LIMIT_PER_MIN": "0"}, "COINGECKO_RATE_LIMIT_PER_MIN"),
    ({"COINGECKO_RATE_LIMIT_PER_MIN": "-5"}, "COINGECKO_RATE_LIMIT_PER_MIN"),
    ({"COINGECKO_RATE_LIMIT_PER_MIN": "nan"}, "COINGECKO_RATE_LIMIT_PER_MIN"),
    ({"POSTGRES_PORT": "abc"}, "POSTGRES_PORT"),
    ({"POSTGRES_PORT": "5432.5"}, "POSTGRES_PORT"),
    ({"POSTGRES_PORT": "70000"}, "POSTGRES_PORT"),
    ({"POSTGRES_PORT": "0"}, "POSTGRES_PORT"),
    ({"POSTGRES_USER": "x;drop table"}, "POSTGRES_USER"),
    ({"POSTGRES_DB": "market; drop table users"}, "POSTGRES_DB"),
    ({"ALPHADB_PAIRS": "BTC-USDT"}, "ALPHADB_PAIRS"),
    ({"ALPHADB_PAIRS": "BTC/USDT"}, "ALPHADB_PAIRS"),  # no series
    ({"ALPHADB_PAIRS": "BTC/USDT="}, "ALPHADB_PAIRS"),  # empty series
    ({"ALPHADB_PAIRS": "=bitcoin:usd"}, "ALPHADB_PAIRS"),  # empty name
    ({"ALPHADB_PAIRS": " , ,"}, "ALPHADB_PAIRS"),  # no pairs at all
    ({"ALPHADB_PAIRS": "x;drop table"}, "ALPHADB_PAIRS"),
    ({"ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd;drop table x"}, "ALPHADB_PAIRS"),
    ({"ALPHADB_PAIRS": "BTC/USDT=Bitcoin Cash:usd"}, "ALPHADB_PAIRS"),
    ({"ALPHADB_PAIRS": "BTC/USDT=bitcoin:usdtether"}, "ALPHADB_PAIRS"),
    ({"ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd,BTC/USDT=ethereum:usd"}, "ALPHADB_PAIRS"),  # twice
    ({"ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd,XBT/USDT=bitcoin:usd"}, "ALPHADB_PAIRS"),  # one series twice
    ({"ALPHADB_BACKFILL_DAYS": "-1"}, "ALPHADB_BACKFILL_DAYS"),
    ({"ALPHADB_BACKFILL_DAYS": "999999"}, "ALPHADB_BACKFILL_DAYS"),
    ({"ALPHADB_BACKFILL_DAYS": "two"}, "ALPHADB_BACKFILL_DAYS"),
    ({"ALPHADB_BACKFILL_DAYS": "1.5"}, "ALPHADB_BACKFILL_DAYS"),
    ({"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T/B/X"}, "SLACK_WEBHOOK_URL"),
    ({"ALPHADB_HEALTHCHECK_URL": "javascript:alert(1)"}, "ALPHADB_HEALTHCHECK_URL"),
    ({"COINGECKO_TIMEOUT_S": "0"}, "COINGECKO_TIMEOUT_S"),
    ({"COINGECKO_MAX_RETRY_AFTER_S": "-1"}, "COINGECKO_MAX_RETRY_AFTER_S"),
    ({"COINGECKO_RETRY_BUDGET_S": "forever"}, "COINGECKO_RETRY_BUDGET_S"),
    ({"ALPHADB_LOAD_LOCK_WAIT_S": "-1"}, "ALPHADB_LOAD_LOCK_WAIT_S"),
    ({"ALPHADB_LOAD_LOCK_WAIT_S": "an hour"}, "ALPHADB_LOAD_LOCK_WAIT_S"),
    ({"ALPHADB_LOAD_LOCK_WAIT_S": "999999"}, "ALPHADB_LOAD_LOCK_WAIT_S"),
]


@pytest.mark.parametrize(("extra", "variable"), BAD_VALUES, ids=[f"{k}={v}" for (e, _) in BAD_VALUES for k, v in e.items()])
def test_bad_value_names_the_variable(tmp_path: Path, extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(base_env(tmp_path, **extra))
    message = str(info.value)
    assert variable in message
    assert info.value.exit_code == EXIT_CONFIG
    assert "\n" not in message  # one clear line


def test_secret_urls_are_not_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(base_env(tmp_path, SLACK_WEBHOOK_URL="hooks.slack.com/services/T0/B0/sekrit-token"))
    assert "sekrit-token" not in str(info.value)


def test_unreadable_pairs_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pairs config"):
        project_pairs(tmp_path / "missing.yml")
    (tmp_path / "broken.yml").write_text("vars:\n  pairs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        project_pairs(tmp_path / "broken.yml")


def test_a_leftover_pairs_conf_stops_naming_where_the_pairs_live(tmp_path: Path) -> None:
    check_no_legacy_pairs_file(tmp_path / "pairs.conf")  # none: fine
    (tmp_path / "pairs.conf").write_text("BTC/USDT=bitcoin:usd\n")
    with pytest.raises(ConfigError) as info:
        check_no_legacy_pairs_file(tmp_path / "pairs.conf")
    assert info.value.exit_code == EXIT_CONFIG
    assert "no longer read" in str(info.value) and str(DBT_PROJECT_FILE) in str(info.value)
    assert "vars: pairs:" in str(info.value)


# --- the CLI: exit 2, one clear line, nothing written -----------------------------------------

CLI_BAD = [
    ({"COINGECKO_PLAN": "enterprise"}, "COINGECKO_PLAN"),
    ({"ALPHADB_PAIRS": "BTC-USDT"}, "ALPHADB_PAIRS"),
    ({"ALPHADB_PAIRS": "x;drop table"}, "ALPHADB_PAIRS"),
    ({"ALPHADB_BACKFILL_DAYS": "-3"}, "ALPHADB_BACKFILL_DAYS"),
    ({"POSTGRES_PORT": "not-a-port"}, "POSTGRES_PORT"),
    ({"COINGECKO_BASE_URL": "localhost:8765"}, "COINGECKO_BASE_URL"),
    ({"ALPHADB_ENV_FILE": "<directory>"}, ".env"),
]


def test_cli_config_errors_exit_2_with_one_line_and_write_nothing(alphadb_env: dict[str, str], database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = Path(alphadb_env["ALPHADB_HOME"])
    for extra, variable in CLI_BAD:
        env = {**alphadb_env, **extra}
        if extra.get("ALPHADB_ENV_FILE") == "<directory>":
            (tmp_path / "dir.env").mkdir(exist_ok=True)
            env["ALPHADB_ENV_FILE"] = str(tmp_path / "dir.env")
        for command in (["load"], ["backfill", "--days", "3"]):
            result = run_cli(env, *command)
            assert result.returncode == EXIT_CONFIG, (extra, output(result))
            errors = error_lines(result)
            assert len(errors) == 1 and variable in errors[0], (extra, output(result))
            assert "Traceback" not in output(result)
    assert user_tables(database) == []  # no schema, no table: nothing written
    assert not home.exists()  # not even the dlt working directory
    assert not Path(alphadb_env["ALPHADB_LOG_FILE"]).exists()



def test_log_file_command_answers_from_env_file_and_environment(tmp_path: Path) -> None:
    """`alphadb log-file` (what run_elt.sh and setup_cron.sh ask): the settings' rule, `.env`
    included; exit 2 when `.env` cannot be read. With another setting bad, `alphadb log-file` exits
    2 (an install must not go on), and run_elt.sh's fallback `python -m pipelines.logfile` still
    answers, so the job can log why it stopped."""
    env_file = tmp_path / "settings.env"
    env_file.write_text(f'export ALPHADB_LOG_FILE="{tmp_path / "from env file.log"}"  # the log\n')
    env_file.chmod(0o600)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ALPHADB_ENV_FILE": str(env_file)}
    result = run_cli(base, "log-file")
    assert result.returncode == 0 and result.stdout.strip() == str(tmp_path / "from env file.log"), output(result)
    bad = {**base, "COINGECKO_PLAN": "bogus"}
    assert run_cli(bad, "log-file").returncode == EXIT_CONFIG
    fallback = subprocess.run([sys.executable, "-m", "pipelines.logfile"], env=bad, cwd=REPO_ROOT, capture_output=True, text=True)
    assert fallback.returncode == 0 and fallback.stdout.strip() == str(tmp_path / "from env file.log"), fallback.stderr
    result = run_cli({**base, "ALPHADB_LOG_FILE": str(tmp_path / "env.log")}, "log-file")
    assert result.stdout.strip() == str(tmp_path / "env.log")  # the environment wins
    result = run_cli({**base, "ALPHADB_ENV_FILE": str(tmp_path)}, "log-file")
    assert result.returncode == EXIT_CONFIG and "cannot read" in " ".join(error_lines(result))
