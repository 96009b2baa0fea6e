"""Deterministic CoinGecko-like market data.

Every value is a pure function of (coin, timestamp) and every sample timestamp a pure function
of (coin, grid instant), so overlapping requests agree point for point, as real ones do.
Nothing is precomputed globally: a request computes only its own points, in tight loops.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

MS_5MIN = 300_000
MS_HOUR = 3_600_000
MS_DAY = 86_400_000

HOURLY_SINCE_MS = 1_517_270_400_000  # 2018-01-30: CoinGecko has no hourly data before
FIVE_MIN_SINCE_MS = 1_518_134_400_000  # 2018-02-09: likewise for 5-minute data
LIVE_TOLERANCE_MS = 300_000  # "ending now" = within a few minutes of now (CoinGecko caches ~30 s)

VS_FACTORS = {"usd": 1.0, "eur": 0.92}  # eur as a fixed factor: enough to tell the two apart

DEFAULT_COINS = frozenset(
    ["bitcoin", "ethereum", "solana", "cardano", "ripple", "dogecoin", "litecoin"]
    + ["polkadot", "chainlink", "avalanche-2"]
    + [f"coin-{i:02d}" for i in range(1, 41)]
)

# Realistic levels for the well-known coins; others get a level from a hash of their id.
_BASE_PRICES = {
    "bitcoin": 60_000.0, "ethereum": 3_000.0, "solana": 150.0, "cardano": 0.5,
    "ripple": 0.6, "dogecoin": 0.15, "litecoin": 80.0, "polkadot": 7.0,
    "chainlink": 15.0, "avalanche-2": 35.0,
}
_SUPPLIES = {"bitcoin": 19_700_000.0, "ethereum": 120_000_000.0}
_GENESIS_MS = {"bitcoin": 1_367_107_200_000, "ethereum": 1_438_905_600_000}  # 2013-04-28, 2015-08-07
_GENESIS_EARLIEST_MS = 1_388_534_400_000  # 2014-01-01: hashed coins start between here and +6 y

# Log-price = sum of sines: a yearly swing, a monthly trend, a few-day wave, an intraday ripple.
_TAU = 2 * math.pi
_PERIODS_MS = (397 * MS_DAY, 41 * MS_DAY, 79 * MS_HOUR, 463 * 60_000)
_AMPLITUDES = (0.30, 0.12, 0.04, 0.008)
_NOISE = 0.002  # relative, per point: keeps neighbouring samples from lying on a smooth curve
_VOLUME_PERIOD_MS = 3 * MS_DAY

_M64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of an integer (per-point noise/jitter)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


@dataclass(frozen=True)
class Profile:
    """Per-coin constants derived once from the coin id."""

    seed: int
    base: float
    supply: float
    turnover: float  # daily volume as a fraction of market cap
    genesis_ms: int  # first daily point (UTC midnight)
    omegas: tuple[float, ...]
    phases: tuple[float, ...]


@lru_cache(maxsize=4096)
def profile(coin: str) -> Profile:
    digest = hashlib.blake2b(coin.encode(), digest_size=32).digest()
    u = [int.from_bytes(digest[i : i + 4], "big") / 2**32 for i in range(0, 32, 4)]
    genesis = _GENESIS_MS.get(coin, _GENESIS_EARLIEST_MS + int(u[3] * 6 * 365) * MS_DAY)
    return Profile(
        seed=int.from_bytes(digest[:8], "big"),
        base=_BASE_PRICES.get(coin, 10 ** (-2 + 5 * u[0])),
        supply=_SUPPLIES.get(coin, 10 ** (7 + 3 * u[1])),
        turnover=0.02 + 0.06 * u[2],
        genesis_ms=genesis,
        omegas=tuple(_TAU / p for p in _PERIODS_MS) + (_TAU / _VOLUME_PERIOD_MS,),
        phases=tuple(_TAU * x for x in u[4:8]) + (_TAU * u[1],),
    )


def series(
    coin: str, timestamps: list[int], vs_currency: str = "usd", precision: int | None = None
) -> dict[str, list[list[float]]]:
    """The three CoinGecko arrays at the given ms timestamps. Always > 0."""
    p = profile(coin)
    w0, w1, w2, w3, wv = p.omegas
    f0, f1, f2, f3, fv = p.phases
    a0, a1, a2, a3 = _AMPLITUDES
    level = p.base * VS_FACTORS[vs_currency]
    supply, turnover, seed = p.supply, p.turnover, p.seed
    sin, exp = math.sin, math.exp
    prices: list[list[float]] = []
    caps: list[list[float]] = []
    volumes: list[list[float]] = []
    for ts in timestamps:
        h = mix64(seed ^ ts)
        noise = (h >> 11) * (2.0 / 2**53) - 1.0  # uniform in [-1, 1)
        log_p = a0 * sin(w0 * ts + f0) + a1 * sin(w1 * ts + f1) + a2 * sin(w2 * ts + f2)
        price = level * exp(log_p + a3 * sin(w3 * ts + f3)) * (1.0 + _NOISE * noise)
        cap = price * supply
        # A trailing-24h figure: smooth in time, so it never looks like a per-interval amount.
        volume = cap * turnover * exp(0.25 * sin(wv * ts + fv) + 0.05 * noise)
        if precision is not None:
            price, cap, volume = round(price, precision), round(cap, precision), round(volume, precision)
        prices.append([ts, price])
        caps.append([ts, cap])
        volumes.append([ts, volume])
    return {"prices": prices, "market_caps": caps, "total_volumes": volumes}


@dataclass(frozen=True)
class Granularity:
    name: str
    step_ms: int
    jitter_ms: int  # sample lands in [grid, grid + jitter)
    since_ms: int  # no data before (besides the coin's own genesis)
    cache_s: int  # CoinGecko's documented cache time for this kind of range


FIVE_MIN = Granularity("5m", MS_5MIN, 40_000, FIVE_MIN_SINCE_MS, 30)
HOURLY = Granularity("hourly", MS_HOUR, 60_000, HOURLY_SINCE_MS, 1800)
DAILY = Granularity("daily", MS_DAY, 0, 0, 43_200)  # daily points sit exactly on 00:00 UTC


def granularity_for(from_ms: int, to_ms: int, now_ms: int, daily: bool = False) -> Granularity:
    """CoinGecko's automatic granularity: by span, with 5-minute only for a day ending now."""
    span = to_ms - from_ms
    if daily or span > 90 * MS_DAY:
        return DAILY
    if span <= MS_DAY and to_ms >= now_ms - LIVE_TOLERANCE_MS:
        return FIVE_MIN
    return HOURLY


def sample_times(coin: str, from_ms: int, to_ms: int, gran: Granularity) -> list[int]:
    """Jittered sample timestamps in [from_ms, to_ms]; jitter is a hash of (coin, grid instant)."""
    step, jitter = gran.step_ms, gran.jitter_ms
    start = max(from_ms - jitter, gran.since_ms, profile(coin).genesis_ms)
    first = -(-start // step) * step  # first grid instant >= start
    seed = profile(coin).seed ^ step
    out: list[int] = []
    for grid in range(first, to_ms + 1, step):
        ts = grid + mix64(seed ^ grid) % jitter if jitter else grid
        if from_ms <= ts <= to_ms:
            out.append(ts)
    return out


def chart(
    coin: str, vs_currency: str, from_ms: int, to_ms: int, now_ms: int,
    gran: Granularity, precision: int | None = None,
) -> dict[str, list[list[float]]]:
    """A market_chart body for [from_ms, to_ms] as seen at now_ms.

    Nothing after now exists; a window reaching now ends with a live point at now truncated to
    whole seconds, like the real API. A grid sample in the last second can therefore sit a few
    ms after the live point: real data shows the same non-monotonic tail.
    """
    end = min(to_ms, now_ms)
    times = sample_times(coin, from_ms, end, gran)
    if to_ms >= now_ms - LIVE_TOLERANCE_MS:
        live = end - end % 1000
        if live >= max(from_ms, profile(coin).genesis_ms) and (not times or times[-1] != live):
            times.append(live)
    return series(coin, times, vs_currency, precision)
