"""Where the run log goes: the one rule, read by the settings, by `alphadb run` when its settings do
not load, and by scripts/run_elt.sh for the few lines it writes itself.

ALPHADB_LOG_FILE (the environment first, then `.env`), else the original guide's
/var/log/alphadb-backfill.log when this user may write it, else logs/alphadb-backfill.log in the
repository.

`alphadb log-file` prints the path (exit 2 when `.env` cannot be read). This module needs only the
standard library, because run_elt.sh also asks it (`python3 -m pipelines.logfile`) when the
virtualenv is missing, to log exactly that, with the system's python3, which has no python-dotenv.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = REPO_ROOT / ".env"
SYSTEM_LOG = Path("/var/log/alphadb-backfill.log")
REPO_LOG = REPO_ROOT / "logs" / "alphadb-backfill.log"


def default_log_file() -> Path:
    """The guide's /var/log path when this user may write it, else logs/ in the repository."""
    writable = os.access(SYSTEM_LOG, os.W_OK) if SYSTEM_LOG.exists() else os.access(SYSTEM_LOG.parent, os.W_OK)
    return SYSTEM_LOG if writable else REPO_LOG


def log_file(env: Mapping[str, str]) -> Path:
    """The run log for these settings (`env`: the environment overlaid on `.env`)."""
    raw = env.get("ALPHADB_LOG_FILE", "").strip()
    return Path(raw).expanduser() if raw else default_log_file()


def _log_file_line(path: Path) -> dict[str, str]:
    """ALPHADB_LOG_FILE from `.env` without python-dotenv (only ever needed without the virtualenv):
    the shell-like `[export] NAME=value  # comment` lines a .env holds, split by shlex."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, str] = {}
    for line in lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote: not this line's business
            continue
        for word in words[1:] if words[:1] == ["export"] else words[:1]:
            name, sep, value = word.partition("=")
            if sep and name == "ALPHADB_LOG_FILE":
                found[name] = value
    return found


def configured(environ: Mapping[str, str] | None = None) -> Path:
    """The run log of these settings, `.env` read as the settings read it (ConfigError when it
    cannot be read)."""
    from pipelines.config import merged_environment

    return log_file(merged_environment(environ))


def resolve(environ: Mapping[str, str] | None = None) -> Path:
    """The run log as far as it can be known: `configured` when the project is installed, else
    with the fallback above; an unreadable `.env` counts as absent."""
    environ = os.environ if environ is None else environ
    try:
        from pipelines.errors import ConfigError

        return configured(environ)
    except ImportError:  # the system python3, no virtualenv
        return log_file({**_log_file_line(Path(environ.get("ALPHADB_ENV_FILE") or ENV_FILE)), **environ})
    except ConfigError:
        return log_file(environ)


if __name__ == "__main__":
    print(resolve())
    sys.exit(0)
