"""Settings from the environment and `.env` (the environment wins), validated before anything runs.

Every variable of docs/design.md plus a few documented tuning knobs. A bad value raises ConfigError
(exit 2) naming the variable, so a run stops before it writes anything. The pairs are the dbt
project's var `pairs` (dbt_alphadb/dbt_project.yml), which dbt reads too; ALPHADB_PAIRS overrides
them.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

import yaml
from dotenv import dotenv_values

from pipelines.errors import ConfigError
from pipelines import logfile
from pipelines.settings_file import check_settings_file, warn_unknown_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_FILE = REPO_ROOT / "dbt_alphadb" / "dbt_project.yml"
LEGACY_PAIRS_FILE = REPO_ROOT / "pairs.conf"  # read by earlier versions; now an error if present

PLANS = ("public", "demo", "pro")
PLAN_BASE_URLS = {
    "public": "https://api.coingecko.com/api/v3",
    "demo": "https://api.coingecko.com/api/v3",
    "pro": "https://pro-api.coingecko.com/api/v3",
}
PLAN_KEY_HEADERS = {"public": None, "demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
# Client-side budgets under each plan's documented limit (public is IP-shared: stay low).
PLAN_RATE_LIMITS = {"public": 10, "demo": 30, "pro": 500}
# Demo and public keys see only the past 365 days (CoinGecko error 10012); Pro keys see everything.
LIMITED_HISTORY_DAYS = 365
PLAN_HISTORY_DAYS = {"public": LIMITED_HISTORY_DAYS, "demo": LIMITED_HISTORY_DAYS, "pro": None}

MAX_DAYS = 3650  # hourly history starts 2018-01-30: more than ten years is a typo
PAIR_RE = re.compile(r"^[A-Z0-9]{1,15}/[A-Z0-9]{1,15}$")
COIN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
VS_CURRENCY_RE = re.compile(r"^[a-z]{3,5}$")


@dataclass(frozen=True)
class Pair:
    """A configured market: the name users see and the CoinGecko series behind it."""

    name: str  # e.g. "BTC/USDT"
    coin_id: str  # e.g. "bitcoin"
    vs_currency: str  # e.g. "usd"

    @property
    def slug(self) -> str:
        """`btc_usdt`: the suffix of the pair's `ohlcv_*` relations (a safe SQL identifier)."""
        return self.name.replace("/", "_").lower()

    @property
    def series(self) -> str:
        """`bitcoin:usd`: the pair's value in the var `pairs` and in ALPHADB_PAIRS."""
        return f"{self.coin_id}:{self.vs_currency}"


@dataclass(frozen=True)
class Settings:
    api_key: str | None
    plan: str
    base_url: str
    rate_limit_per_min: float
    postgres_host: str | None
    postgres_port: int
    postgres_user: str
    postgres_password: str = field(repr=False)
    postgres_db: str = "market"
    pairs: tuple[Pair, ...] = ()
    # ALPHADB_BACKFILL_DAYS (the original guide's name): how far behind its cursor the nightly load
    # re-reads each pair, so late corrections and late points are picked up.
    lookback_days: int = 2
    home: Path = REPO_ROOT / ".alphadb"
    log_file: Path = REPO_ROOT / "logs" / "alphadb-backfill.log"
    slack_webhook_url: str | None = field(default=None, repr=False)
    healthcheck_url: str | None = field(default=None, repr=False)
    request_timeout_s: float = 30.0
    max_retry_after_s: float = 300.0
    retry_budget_s: float = 900.0
    # How long a load waits for another one (a manual backfill beside the nightly load) to finish.
    load_lock_wait_s: float = 3600.0

    @property
    def embedded_database(self) -> bool:
        return self.postgres_host is None

    @property
    def key_header(self) -> str | None:
        return PLAN_KEY_HEADERS[self.plan] if self.api_key else None

    @property
    def history_days(self) -> int | None:
        """The days of history the plan serves (None: all of it), what planning stays inside."""
        return PLAN_HISTORY_DAYS[self.plan]

    @property
    def history_limit_days(self) -> int:
        """The limit a 10012 answer enforces: the plan's, or the limited plans' when the key turns
        out to be on one whatever COINGECKO_PLAN says."""
        return self.history_days or LIMITED_HISTORY_DAYS

    def secrets(self) -> list[str]:
        """Values that must never appear in logs, alerts or tracebacks."""
        return [s for s in (self.api_key, self.postgres_password, self.slack_webhook_url) if s]

    def pair(self, name: str) -> Pair:
        for pair in self.pairs:
            if pair.name == name.upper():
                return pair
        known = ", ".join(p.name for p in self.pairs)
        raise ConfigError(f"--pair {name!r} is not configured (configured: {known})")


def parse_pair(name: str, series: str, source: str, item: str) -> Pair:
    """One pair, `BASE/QUOTE` and `coin_id:vs_currency`, as written in `item` (dbt reads the var verbatim)."""
    coin_id, sep, vs_currency = series.partition(":")
    if not sep or not PAIR_RE.match(name):
        raise ConfigError(
            f"{source}: malformed pair {item!r}; the pair is BASE/QUOTE in capital letters and digits "
            "(e.g. BTC/USDT), its series coin_id:vs_currency (e.g. bitcoin:usd)"
        )
    if not COIN_ID_RE.match(coin_id):
        raise ConfigError(f"{source}: invalid CoinGecko coin id {coin_id!r} in {item!r}")
    if not VS_CURRENCY_RE.match(vs_currency):
        raise ConfigError(f"{source}: invalid vs_currency {vs_currency!r} in {item!r}")
    return Pair(name, coin_id, vs_currency)


def _distinct(pairs: list[Pair], source: str) -> tuple[Pair, ...]:
    if not pairs:
        raise ConfigError(f"{source}: no pairs configured")
    for attr, what in (("slug", "pair"), ("series", "coin series")):
        seen: set[str] = set()
        for pair in pairs:
            if getattr(pair, attr) in seen:
                raise ConfigError(f"{source}: {what} {pair.name} is configured twice")
            seen.add(getattr(pair, attr))
    return tuple(pairs)


def parse_pairs(text: str, source: str) -> tuple[Pair, ...]:
    """ALPHADB_PAIRS: `base/quote=coin:vs` items separated by commas or newlines (case-insensitive
    pair names, spaces allowed; # starts a comment)."""
    pairs: list[Pair] = []
    items = [item.strip() for line in text.splitlines() for item in line.split("#", 1)[0].split(",")]
    for item in filter(None, items):
        name, sep, series = item.partition("=")
        if not sep:
            raise ConfigError(
                f"{source}: malformed pair {item!r}; expected BASE/QUOTE=coin_id:vs_currency, "
                "e.g. BTC/USDT=bitcoin:usd (letters and digits only in BASE and QUOTE)"
            )
        pairs.append(parse_pair(name.strip().upper(), ":".join(part.strip() for part in series.split(":", 1)), source, item))
    return _distinct(pairs, source)


def project_pairs(project_file: Path = DBT_PROJECT_FILE) -> tuple[Pair, ...]:
    """The dbt project's var `pairs`: a mapping `BASE/QUOTE: coin_id:vs_currency`, one line per pair."""
    source = f"{project_file} (vars: pairs)"
    try:
        project = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the pairs config {project_file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{project_file} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    pairs = ((project or {}).get("vars") or {}).get("pairs")
    if not isinstance(pairs, dict):
        raise ConfigError(f"{source}: expected one line per pair under vars: pairs:, e.g. BTC/USDT: bitcoin:usd")
    items = [parse_pair(str(name), str(series), source, f"{name}: {series}") for name, series in pairs.items()]
    return _distinct(items, source)


def check_no_legacy_pairs_file(path: Path = LEGACY_PAIRS_FILE) -> None:
    """Earlier versions read pairs.conf: a stale one must not look like the config that is used."""
    if path.exists():
        raise ConfigError(
            f"{path} is no longer read: the pairs now live in {DBT_PROJECT_FILE} under `vars: pairs:`, "
            "one line per pair (e.g. `BTC/USDT: bitcoin:usd`), where dbt reads them too. "
            f"Move your pairs there, then delete {path.name}"
        )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: use {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float, low_allowed: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not (low <= value if low_allowed else low < value) or value > high:
        floor = f"from {low:g}" if low_allowed else f"above {low:g}"
        raise ConfigError(f"{name}={value} is out of range: use a number {floor} and at most {high:g}")
    return value


def _url(env: Mapping[str, str], name: str, secret: bool = False) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        shown = "(value hidden)" if secret else repr(raw)
        raise ConfigError(f"{name} {shown} is not an http(s) URL")
    return raw.rstrip("/")


def read_env_file(path: Path, strict: bool = False) -> dict[str, str]:
    """The `.env` values; an unreadable file is a configuration error, a missing one is fine.
    `strict`: a line that is not NAME=value, a comment or blank is a configuration error too."""
    if not path.exists():
        return {}
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc.__class__.__name__}: {getattr(exc, 'strerror', '') or exc}") from None
    if strict:
        check_settings_file(path, text)
    values = dotenv_values(stream=io.StringIO(text))
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(f"{path} is readable by other users: run `chmod 600 {path}` (it holds secrets)", stacklevel=2)
    return {k: v for k, v in values.items() if v is not None}


def merged_environment(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None, strict: bool = False
) -> dict[str, str]:
    """`.env` values overlaid by the real environment (the environment wins)."""
    environ = os.environ if environ is None else environ
    path = Path(environ.get("ALPHADB_ENV_FILE") or env_file or logfile.ENV_FILE)
    merged = read_env_file(path, strict)
    if strict:
        warn_unknown_settings(merged, path, environ)
    merged.update(environ)
    return merged


def _plan(env: Mapping[str, str]) -> tuple[str | None, str]:
    """(COINGECKO_API_KEY, COINGECKO_PLAN): a key alone means Pro; a keyed plan needs its key."""
    api_key = env.get("COINGECKO_API_KEY", "").strip() or None
    plan = (env.get("COINGECKO_PLAN", "").strip().lower() or ("pro" if api_key else "public"))
    if plan not in PLANS:
        raise ConfigError(f"COINGECKO_PLAN={plan!r} is unknown: use one of {', '.join(PLANS)}")
    if plan != "public" and not api_key:
        raise ConfigError(f"COINGECKO_PLAN={plan} needs COINGECKO_API_KEY (or set COINGECKO_PLAN=public)")
    return api_key, plan


def _identifier(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", value):
        raise ConfigError(f"{name}={value!r} is not a valid PostgreSQL identifier")
    return value


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad variable."""
    env = merged_environment(environ, env_file, strict=True)
    api_key, plan = _plan(env)

    check_no_legacy_pairs_file()
    if env.get("ALPHADB_PAIRS", "").strip():
        pairs = parse_pairs(env["ALPHADB_PAIRS"], "ALPHADB_PAIRS")
    else:
        pairs = project_pairs()

    return Settings(
        api_key=api_key,
        plan=plan,
        base_url=_url(env, "COINGECKO_BASE_URL") or PLAN_BASE_URLS[plan],
        rate_limit_per_min=_float(env, "COINGECKO_RATE_LIMIT_PER_MIN", PLAN_RATE_LIMITS[plan], 0, 100_000),
        postgres_host=env.get("POSTGRES_HOST", "").strip() or None,
        postgres_port=_int(env, "POSTGRES_PORT", 5432, 1, 65535),
        postgres_user=_identifier(env, "POSTGRES_USER", "trader"),
        postgres_password=env.get("POSTGRES_PASSWORD", "") or "s3cr3t",
        postgres_db=_identifier(env, "POSTGRES_DB", "market"),
        pairs=pairs,
        lookback_days=_int(env, "ALPHADB_BACKFILL_DAYS", 2, 0, MAX_DAYS),
        home=Path(env.get("ALPHADB_HOME", "").strip() or REPO_ROOT / ".alphadb").expanduser().resolve(),
        log_file=logfile.log_file(env),
        slack_webhook_url=_url(env, "SLACK_WEBHOOK_URL", secret=True),
        healthcheck_url=_url(env, "ALPHADB_HEALTHCHECK_URL", secret=True),
        request_timeout_s=_float(env, "COINGECKO_TIMEOUT_S", 30.0, 0, 600),
        max_retry_after_s=_float(env, "COINGECKO_MAX_RETRY_AFTER_S", 300.0, 0, 3600),
        retry_budget_s=_float(env, "COINGECKO_RETRY_BUDGET_S", 900.0, 0, 7200),
        load_lock_wait_s=_float(env, "ALPHADB_LOAD_LOCK_WAIT_S", 3600.0, 0, 86_400, low_allowed=True),
    )
