"""CoinGecko API facts the loader plans around (docs/design.md lists the plans; tests/fixtures/coingecko/PROVENANCE.md the real responses)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

# `/market_chart/range` returns hourly points for spans up to 90 days, daily points beyond.
MAX_RANGE_WINDOW = timedelta(days=90)
# `market_chart?days=1` (ending now) is the only way to 5-minute points on non-Enterprise plans.
LIVE_WINDOW = timedelta(days=1)
# Hourly history starts here; nothing earlier is worth a request.
HOURLY_HISTORY_START = datetime(2018, 1, 30, tzinfo=timezone.utc)
# Stay a little inside a plan's history limit: the server checks it against its own clock.
HISTORY_LIMIT_MARGIN = timedelta(hours=1)

RESOURCE_NAME = "market_chart_points"
PRIMARY_KEY = ("coin_id", "vs_currency", "ts")

USER_AGENT = "alphadb-elt/0.1 (+https://github.com/alphadb)"
