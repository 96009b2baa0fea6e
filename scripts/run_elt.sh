#!/usr/bin/env bash
# AlphaDB nightly job: the cron entry point (docs/design.md).
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

# The log file for the few lines this wrapper writes itself, where the job writes: the wrapper asks
# the Python side once (`alphadb log-file`; pipelines/logfile.py holds the rule). Without the
# virtualenv it asks the same module with the system's python3 (`.env` unreadable: the environment
# alone); with no Python at all its lines go to stdout only (cron mails them).
LOG_FILE=""
LOG_FILE_ASKED=""
resolve_log_file() {
  [[ -z "$LOG_FILE_ASKED" ]] || return 0
  LOG_FILE_ASKED=1
  if [[ -x "$ALPHADB" ]] && LOG_FILE="$(cd "$REPO_ROOT" && "$ALPHADB" log-file 2>/dev/null)"; then
    return 0
  fi
  local python="$VENV/bin/python"
  [[ -x "$python" ]] || python="$(command -v python3 || true)"
  if [[ -n "$python" ]]; then
    LOG_FILE="$(cd "$REPO_ROOT" && "$python" -m pipelines.logfile 2>/dev/null)" || LOG_FILE=""
  fi
}

# `[YYYY-MM-DD HH:MM:SS] <marker> <message>` in UTC, to stdout and the log file.
log() {
  local line
  line="[$(date -u '+%Y-%m-%d %H:%M:%S')] $1 $2"
  printf '%s\n' "$line"
  resolve_log_file
  [[ -n "$LOG_FILE" ]] || return 0
  { mkdir -p "$(dirname "$LOG_FILE")" && printf '%s\n' "$line" >>"$LOG_FILE"; } 2>/dev/null ||
    printf '%s\n' "[$(date -u '+%Y-%m-%d %H:%M:%S')] ⚠️ cannot write log file $LOG_FILE" >&2
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
