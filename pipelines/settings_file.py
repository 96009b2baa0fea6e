"""Strict reading of the settings file and the names AlphaDB reads.

python-dotenv skips a line it cannot parse with a warning and carries on: with a typo such as
`COINGECKO_BASE_URL http://...` a run would silently use the default host. Here every line must
be a comment, blank, or `NAME=value` (optionally `export NAME=value`, values quoted as
python-dotenv accepts them); anything else is a configuration error naming the file and the line
number, never the line itself (it may hold a secret).

A name that looks like ours but that no code reads (`COINGECKO_APIKEY`) is a warning that names
the closest known setting.
"""

from __future__ import annotations

import difflib
import io
import re
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

from dotenv.parser import parse_stream

from pipelines.errors import ConfigError

# Every setting the code reads: the one list the unknown-name check (and its test) relies on.
KNOWN_SETTINGS = (
    # CoinGecko
    "COINGECKO_API_KEY",
    "COINGECKO_PLAN",
    "COINGECKO_BASE_URL",
    "COINGECKO_RATE_LIMIT_PER_MIN",
    "COINGECKO_TIMEOUT_S",
    "COINGECKO_MAX_RETRY_AFTER_S",
    "COINGECKO_RETRY_BUDGET_S",
    # PostgreSQL
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    # What to load, where things go, alerts
    "ALPHADB_PAIRS",
    "ALPHADB_BACKFILL_DAYS",
    "ALPHADB_HOME",
    "ALPHADB_LOG_FILE",
    "ALPHADB_ENV_FILE",
    "ALPHADB_HEALTHCHECK_URL",
    "SLACK_WEBHOOK_URL",
    "ALPHADB_DEMO_HOME",  # where `make demo` keeps its own state, database and log
    # Tuning and troubleshooting
    "ALPHADB_LOAD_LOCK_WAIT_S",
    "ALPHADB_DEBUG",
    # Read by the test suite, CI (`.ci/run`) and `make reliability` only
    "ALPHADB_COINGECKO_FIXTURES",
    "ALPHADB_RELIABILITY_JSON",
    "ALPHADB_REQUIRE_SYSTEM_TOOLS",
)
OUR_PREFIXES = ("ALPHADB_", "COINGECKO_", "POSTGRES_")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def malformed_lines(text: str) -> list[int]:
    """Line numbers (1-based) of statements that are not a comment, blank or NAME=value.

    Uses python-dotenv's own parser, so exactly the quoting it accepts is accepted here.
    """
    bad: list[int] = []
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        # A statement's text starts with the blank lines before it: count them to the real line.
        line = binding.original.line + original[: len(original) - len(original.lstrip())].count("\n")
        if binding.error:
            bad.append(line)
        elif binding.key is not None and (binding.value is None or not _NAME.match(binding.key)):
            bad.append(line)  # `NAME` without `=`, or a name with spaces, dots, quotes...
    return bad


def check_settings_file(path: Path, text: str) -> None:
    """Raise ConfigError (exit 2) for the first malformed line of the settings file at `path`."""
    bad = malformed_lines(text)
    if bad:
        more = f" (and {len(bad) - 1} more: line {', '.join(map(str, bad[1:]))})" if len(bad) > 1 else ""
        raise ConfigError(
            f"{path} line {bad[0]}{more} is not a setting: every line must be NAME=value, a # comment or "
            "blank (e.g. COINGECKO_BASE_URL=https://api.coingecko.com/api/v3); nothing was run"
        )


def closest_setting(name: str) -> str | None:
    match = difflib.get_close_matches(name.upper(), KNOWN_SETTINGS, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_settings(names: Iterable[str], source: str) -> list[str]:
    """A warning for each ALPHADB_*/COINGECKO_*/POSTGRES_* name no code reads."""
    messages = []
    for name in sorted(set(names)):
        if name.upper().startswith(OUR_PREFIXES) and name not in KNOWN_SETTINGS:
            guess = closest_setting(name)
            hint = f": did you mean {guess}?" if guess else f" (known: {', '.join(KNOWN_SETTINGS)})"
            messages.append(f"{source} sets {name}, which AlphaDB does not read{hint}")
    return messages


def warn_unknown_settings(file_names: Iterable[str], path: Path, environ: Mapping[str, str]) -> None:
    """Print the unknown-name warnings (stderr, in the run log's format: before logging is set up)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    for message in unknown_settings(file_names, str(path)) + unknown_settings(environ, "the environment"):
        print(f"[{stamp}] ⚠️ {message}", file=sys.stderr)
