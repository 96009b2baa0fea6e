"""The real CoinGecko responses in tests/fixtures/coingecko/ (copies, so that no test depends on a
folder beside the clone) and what the loader must store for each."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("ALPHADB_COINGECKO_FIXTURES", REPO_ROOT / "tests" / "fixtures" / "coingecko"))


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def load_fixture(path: Path) -> dict[str, list[list[float]]]:
    return json.loads(path.read_text())


def expected_points(body: Mapping[str, list[list[float]]]) -> list[tuple[int, float, float, float]]:
    """What the loader must store for a real response: one row per instant, sorted.

    The only documented exception (the 1-day file): a second-truncated copy of an
    instant (`...54.000` next to `...54.955`) is the same instant and is dropped for the precise one.
    """
    series = {key: {int(t): v for t, v in body[key]} for key in ("prices", "market_caps", "total_volumes")}
    stamps = sorted(set().union(*series.values()))
    precise_seconds = {t // 1000 for t in stamps if t % 1000}
    stamps = [t for t in stamps if t % 1000 or t // 1000 not in precise_seconds]
    return [
        (t, series["prices"].get(t), series["market_caps"].get(t), series["total_volumes"].get(t))
        for t in stamps
    ]
