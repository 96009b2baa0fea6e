#!/usr/bin/env bash
# The name the original "Daily Backfill Cron Setup Guide" uses: the same job as scripts/run_elt.sh.
set -Eeuo pipefail
exec "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/run_elt.sh" "$@"
