#!/usr/bin/env bash
# The nightly job offline: the bundled CoinGecko simulator on a free loopback port, an embedded
# PostgreSQL of its own, then the data-quality report.
#
# The demo never touches production: its state, embedded database (`alphadb_demo`) and run log
# live under ALPHADB_DEMO_HOME (default .alphadb-demo/), whatever .env says, and it sends no
# alert or healthcheck ping. The database records that its points are simulated.
set -Eeuo pipefail
REPO="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || { echo "❌ $REPO/.venv is missing: run 'make demo' (it installs the project first)" >&2; exit 2; }

workdir="$(mktemp -d)"
sim_pid=""
cleanup() {
  local code=$?
  [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  rm -rf "$workdir"
  exit "$code"
}
trap cleanup EXIT
trap 'echo "❌ demo failed at line $LINENO" >&2' ERR
trap 'exit 130' INT TERM

"$PY" -m pipelines.simulator --port 0 >"$workdir/sim.out" 2>"$workdir/sim.err" &
sim_pid=$!
for _ in $(seq 1 50); do
  [[ -s "$workdir/sim.out" ]] && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$workdir/sim.err" >&2; exit 1; }
  sleep 0.1
done
base_url="$(head -n1 "$workdir/sim.out")"
[[ -n "$base_url" ]] || { echo "❌ the simulator did not start" >&2; exit 1; }
echo "CoinGecko simulator at $base_url"

demo_home="${ALPHADB_DEMO_HOME:-$REPO/.alphadb-demo}"
echo "Demo state, database and log under $demo_home (production settings are not used)"
export COINGECKO_BASE_URL="$base_url" COINGECKO_PLAN=public COINGECKO_API_KEY= COINGECKO_RATE_LIMIT_PER_MIN=600
export ALPHADB_HOME="$demo_home" ALPHADB_LOG_FILE="$demo_home/alphadb-demo.log"
export POSTGRES_HOST= POSTGRES_DB=alphadb_demo POSTGRES_USER=trader POSTGRES_PASSWORD=demo-only
export SLACK_WEBHOOK_URL= ALPHADB_HEALTHCHECK_URL=
rc=0
"$REPO/scripts/run_elt.sh" || rc=$?

# The nightly job wrote the data-quality page (its path is in the log above): say where, last.
page="$("$PY" -c 'from pipelines.config import load_settings; from pipelines.html_report import default_path; print(default_path(load_settings()))' 2>/dev/null || true)"
if [[ -n "$page" && -f "$page" ]]; then
  echo "📊 Data-quality page: $page (open file://$page in a browser)"
else
  echo "⚠️ No data-quality page was written (see the log above)"
fi
exit "$rc"
