"""Settings from the environment and `.env` (the environment wins), validated before anything runs.

Every variable of DESIGN.md §2 plus a few documented tuning knobs. A bad value raises ConfigError
(exit 2) naming the variable, so a run stops before it writes anything.
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

from dotenv import dotenv_values

from pipelines.errors import ConfigError
from pipelines.settings_file import check_settings_file, warn_unknown_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
PAIRS_FILE = REPO_ROOT / "pairs.conf"

PLANS = ("public", "demo", "pro")
PLAN_BASE_URLS = {
    "public": "https://api.coingecko.com/api/v3",
    "demo": "https://api.coingecko.com/api/v3",
    "pro": "https://pro-api.coingecko.com/api/v3",
}
PLAN_KEY_HEADERS = {"public": None, "demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
# Client-side budgets under each plan's documented limit (public is IP-shared: stay low).
PLAN_RATE_LIMITS = {"public": 10, "demo": 30, "pro": 500}
# Demo and public keys see only the past 365 days (CoinGecko error 10012).
PLAN_HISTORY_DAYS = {"public": 365, "demo": 365, "pro": None}

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
    backfill_days: int = 2
    home: Path = REPO_ROOT / ".alphadb"
    log_file: Path = REPO_ROOT / "logs" / "alphadb-backfill.log"
    slack_webhook_url: str | None = field(default=None, repr=False)
    healthcheck_url: str | None = field(default=None, repr=False)
    request_timeout_s: float = 30.0
    max_retry_after_s: float = 300.0
    retry_budget_s: float = 900.0

    @property
    def embedded_database(self) -> bool:
        return self.postgres_host is None

    @property
    def key_header(self) -> str | None:
        return PLAN_KEY_HEADERS[self.plan] if self.api_key else None

    @property
    def history_days(self) -> int | None:
        return PLAN_HISTORY_DAYS[self.plan]

    def secrets(self) -> list[str]:
        """Values that must never appear in logs, alerts or tracebacks."""
        return [s for s in (self.api_key, self.postgres_password, self.slack_webhook_url) if s]

    def pair(self, name: str) -> Pair:
        for pair in self.pairs:
            if pair.name == name.upper():
                return pair
        known = ", ".join(p.name for p in self.pairs)
        raise ConfigError(f"--pair {name!r} is not configured (configured: {known})")


def parse_pairs(text: str, source: str) -> tuple[Pair, ...]:
    """Parse `BASE/QUOTE=coin:vs` items separated by commas or newlines (# starts a comment)."""
    pairs: list[Pair] = []
    items = [item.strip() for line in text.splitlines() for item in line.split("#", 1)[0].split(",")]
    for item in items:
        if not item:
            continue
        name, sep, series = item.partition("=")
        coin_id, sep2, vs_currency = series.strip().partition(":")
        name, coin_id, vs_currency = name.strip().upper(), coin_id.strip(), vs_currency.strip()
        if not sep or not sep2 or not PAIR_RE.match(name):
            raise ConfigError(
                f"{source}: malformed pair {item!r}; expected BASE/QUOTE=coin_id:vs_currency, "
                "e.g. BTC/USDT=bitcoin:usd (letters and digits only in BASE and QUOTE)"
            )
        if not COIN_ID_RE.match(coin_id):
            raise ConfigError(f"{source}: invalid CoinGecko coin id {coin_id!r} in {item!r}")
        if not VS_CURRENCY_RE.match(vs_currency):
            raise ConfigError(f"{source}: invalid vs_currency {vs_currency!r} in {item!r}")
        pairs.append(Pair(name, coin_id, vs_currency))
    if not pairs:
        raise ConfigError(f"{source}: no pairs configured")
    for attr, what in (("slug", "pair"), ("coin_id", "coin series")):
        seen: set[str] = set()
        for pair in pairs:
            key = getattr(pair, attr) if attr == "slug" else f"{pair.coin_id}:{pair.vs_currency}"
            if key in seen:
                raise ConfigError(f"{source}: {what} {pair.name} is configured twice")
            seen.add(key)
    return tuple(pairs)


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


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low < value <= high:
        raise ConfigError(f"{name}={value} is out of range: use a number above {low} and at most {high}")
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
    path = Path(environ.get("ALPHADB_ENV_FILE") or env_file or REPO_ROOT / ".env")
    merged = read_env_file(path, strict)
    if strict:
        warn_unknown_settings(merged, path, environ)
    merged.update(environ)
    return merged


def default_log_file(home_default: Path) -> Path:
    system_log = Path("/var/log/alphadb-backfill.log")
    writable = os.access(system_log, os.W_OK) if system_log.exists() else os.access(system_log.parent, os.W_OK)
    return system_log if writable else REPO_ROOT / "logs" / "alphadb-backfill.log"


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad variable."""
    env = merged_environment(environ, env_file, strict=True)

    api_key = env.get("COINGECKO_API_KEY", "").strip() or None
    plan = (env.get("COINGECKO_PLAN", "").strip().lower() or ("pro" if api_key else "public"))
    if plan not in PLANS:
        raise ConfigError(f"COINGECKO_PLAN={plan!r} is unknown: use one of {', '.join(PLANS)}")
    if plan != "public" and not api_key:
        raise ConfigError(f"COINGECKO_PLAN={plan} needs COINGECKO_API_KEY (or set COINGECKO_PLAN=public)")
    base_url = _url(env, "COINGECKO_BASE_URL") or PLAN_BASE_URLS[plan]
    rate = _float(env, "COINGECKO_RATE_LIMIT_PER_MIN", PLAN_RATE_LIMITS[plan], 0, 100_000)

    host = env.get("POSTGRES_HOST", "").strip() or None
    port = _int(env, "POSTGRES_PORT", 5432, 1, 65535)
    user = env.get("POSTGRES_USER", "").strip() or "trader"
    database = env.get("POSTGRES_DB", "").strip() or "market"
    for name, value in (("POSTGRES_USER", user), ("POSTGRES_DB", database)):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", value):
            raise ConfigError(f"{name}={value!r} is not a valid PostgreSQL identifier")

    if env.get("ALPHADB_PAIRS", "").strip():
        pairs = parse_pairs(env["ALPHADB_PAIRS"], "ALPHADB_PAIRS")
    else:
        pairs_file = Path(env.get("ALPHADB_PAIRS_FILE") or PAIRS_FILE)
        try:
            pairs = parse_pairs(pairs_file.read_text(encoding="utf-8"), str(pairs_file))
        except OSError as exc:
            raise ConfigError(f"cannot read the pairs config {pairs_file}: {exc.strerror}") from None

    home = Path(env.get("ALPHADB_HOME", "").strip() or REPO_ROOT / ".alphadb").expanduser().resolve()
    log_raw = env.get("ALPHADB_LOG_FILE", "").strip()
    log_file = Path(log_raw).expanduser() if log_raw else default_log_file(home)

    return Settings(
        api_key=api_key,
        plan=plan,
        base_url=base_url,
        rate_limit_per_min=rate,
        postgres_host=host,
        postgres_port=port,
        postgres_user=user,
        postgres_password=env.get("POSTGRES_PASSWORD", "") or "s3cr3t",
        postgres_db=database,
        pairs=pairs,
        backfill_days=_int(env, "ALPHADB_BACKFILL_DAYS", 2, 0, MAX_DAYS),
        home=home,
        log_file=log_file,
        slack_webhook_url=_url(env, "SLACK_WEBHOOK_URL", secret=True),
        healthcheck_url=_url(env, "ALPHADB_HEALTHCHECK_URL", secret=True),
        request_timeout_s=_float(env, "COINGECKO_TIMEOUT_S", 30.0, 0, 600),
        max_retry_after_s=_float(env, "COINGECKO_MAX_RETRY_AFTER_S", 300.0, 0, 3600),
        retry_budget_s=_float(env, "COINGECKO_RETRY_BUDGET_S", 900.0, 0, 7200),
    )
