#!/usr/bin/env bash
# AlphaDB nightly job: the cron entry point (DESIGN.md §4).
#
# Works under cron's bare environment (PATH=/usr/bin:/bin, HOME only, any working directory):
# it finds the repository from its own path and runs `.venv/bin/alphadb run`, which loads `.env`,
# takes the run lock and does every step (see pipelines/nightly.py). This wrapper only checks
# that the virtualenv exists, forwards SIGTERM/SIGINT to the job, and passes its exit code on:
#   0 ok · 1 load/transform/unexpected · 2 configuration · 3 database · 4 data quality · 5 unknown coin · 75 locked
set -Eeuo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd -P)"
VENV="$REPO_ROOT/.venv"
ALPHADB="$VENV/bin/alphadb"

# Cron gives a minimal environment: make it predictable.
export PATH="$VENV/bin:${PATH:-/usr/bin:/bin}"
export PYTHONUTF8=1 PYTHONIOENCODING=utf-8 PYTHONUNBUFFERED=1
if [[ -z "${HOME:-}" ]]; then
  HOME="$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6 || true)"
  export HOME="${HOME:-/tmp}"
fi
umask 027

# The log file for the few lines this wrapper writes itself (the job resolves it the same way:
# ALPHADB_LOG_FILE from the environment, else from .env, else /var/log if writable, else logs/).
log_file() {
  local value="${ALPHADB_LOG_FILE:-}"
  if [[ -z "$value" && -r "$REPO_ROOT/.env" ]]; then
    value="$(sed -n -E 's/^[[:space:]]*(export[[:space:]]+)?ALPHADB_LOG_FILE[[:space:]]*=[[:space:]]*["'\'']?([^"'\''#]*)["'\'']?.*$/\2/p' "$REPO_ROOT/.env" | tail -n 1)"
    value="${value%"${value##*[![:space:]]}"}"
  fi
  if [[ -n "$value" ]]; then
    printf '%s\n' "${value/#\~/$HOME}"
  elif { [[ -e /var/log/alphadb-backfill.log && -w /var/log/alphadb-backfill.log ]] ||
         [[ ! -e /var/log/alphadb-backfill.log && -w /var/log ]]; }; then
    printf '%s\n' /var/log/alphadb-backfill.log
  else
    printf '%s\n' "$REPO_ROOT/logs/alphadb-backfill.log"
  fi
}

# `[YYYY-MM-DD HH:MM:SS] <marker> <message>` in UTC, to stdout and the log file.
log() {
  local line file
  line="[$(date -u '+%Y-%m-%d %H:%M:%S')] $1 $2"
  printf '%s\n' "$line"
  file="$(log_file)"
  { mkdir -p "$(dirname "$file")" && printf '%s\n' "$line" >>"$file"; } 2>/dev/null ||
    printf '%s\n' "[$(date -u '+%Y-%m-%d %H:%M:%S')] ⚠️ cannot write log file $file" >&2
}

CHILD=""
on_error() {
  local rc=$? line=$1 cmd=$2
  trap - ERR
  log "❌" "run_elt.sh failed at line $line: $cmd (exit $rc)"
  exit 1
}
SIGNALLED=""
on_signal() {
  local sig=$1
  SIGNALLED=$sig
  if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then
    # The job logs, alerts and exits 1 on SIGTERM (a backgrounded child ignores SIGINT).
    kill -TERM "$CHILD" 2>/dev/null || true
  else
    log "❌" "Interrupted by SIG$sig before the job started"
    exit 1
  fi
}
on_exit() {
  local rc=$?
  if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM "$CHILD" 2>/dev/null || true
  fi
  exit "$rc"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap on_exit EXIT

if [[ ! -x "$VENV/bin/python" || ! -x "$ALPHADB" ]]; then
  log "🕐" "Starting daily backfill cron job"
  log "❌" "Virtualenv not ready: $ALPHADB is missing. Run \`make run\` (or \`make test\`) once in $REPO_ROOT to create it, then retry."
  exit 2
fi

cd "$REPO_ROOT"
rc=0
"$ALPHADB" run "$@" &
CHILD=$!
# `wait` returns early (status > 128) when a trapped signal arrives: wait again for the job's own
# exit code (bash remembers it even when the job ended in between).
while true; do
  rc=0
  wait "$CHILD" || rc=$?
  if (( rc > 128 )) && [[ -n "$SIGNALLED" ]]; then
    SIGNALLED=""
    continue
  fi
  break
done
CHILD=""
if (( rc > 128 )); then
  # The job handles SIGTERM itself (logs, alerts, exit 1): this is a death it could not report.
  log "❌" "alphadb run was killed by signal $((rc - 128)); see the lines above"
  exit 1
fi
exit "$rc"
