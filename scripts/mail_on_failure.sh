#!/usr/bin/env bash
# The crontab command of `setup_cron.sh --mailto`: cron mails whatever a job prints, so this prints
# nothing when the job succeeds and a short summary when it fails.
#
#   mail_on_failure.sh CRON_LOG JOB [ARGS...]
#
# All of the job's output (stdout and stderr) is appended to CRON_LOG as it comes, like the plain
# crontab line's `>>CRON_LOG 2>&1`. On failure the summary names the host, the exit code and its
# meaning, the failed step and the job's error lines (the job masks secrets in every line it
# writes; nothing else of its output is repeated). Exit 75 (another run holds the lock) is not a
# failure: the running job reports for itself. The job's exit code is passed on.
set -Eeuo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd -P)"
MAX_ERROR_LINES=10

# Anything going wrong here is printed, so cron mails it rather than staying silent.
on_error() {
  echo "AlphaDB: mail_on_failure.sh failed at line $1: $2 (exit $3)"
  exit 1
}
trap 'on_error "$LINENO" "$BASH_COMMAND" "$?"' ERR

if (($# < 2)); then
  echo "usage: mail_on_failure.sh CRON_LOG JOB [ARGS...]" >&2
  exit 2
fi
cron_log=$1
shift

output="$(mktemp "${TMPDIR:-/tmp}/alphadb-cron.XXXXXX")"
trap 'rm -f "$output"' EXIT

mkdir -p "$(dirname "$cron_log")"
# The job failing is this script's normal business, not an error of its own.
trap - ERR
set +e
"$@" 2>&1 | tee -a "$cron_log" >"$output"
statuses=("${PIPESTATUS[@]}")
set -e
trap 'on_error "$LINENO" "$BASH_COMMAND" "$?"' ERR
rc=${statuses[0]}
((statuses[1] == 0)) || echo "AlphaDB: could not append the job's output to $cron_log"

if ((rc == 0 || rc == 75)); then
  exit "$rc"
fi

case "$rc" in
  1) meaning="load, transform or unexpected failure" ;;
  2) meaning="configuration error" ;;
  3) meaning="database not accessible" ;;
  4) meaning="data-quality tests failed (data was loaded)" ;;
  *) meaning="killed or crashed" ;;
esac
# The job's last line names the step: `🏁 Daily backfill cron job failed at <step> (exit n) ...`.
step="$(sed -n -E 's/.*🏁 .* failed at (.+) \(exit [0-9]+\).*/\1/p' "$output" | tail -n 1)"
log_file="$("$REPO_ROOT/.venv/bin/alphadb" log-file 2>/dev/null | tail -n 1 || true)"

echo "AlphaDB nightly job failed on $(hostname 2>/dev/null || uname -n) at $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
echo "Exit code: $rc ($meaning)"
echo "Failed step: ${step:-not reported (the job stopped before its steps; see the errors below)}"
echo "Errors:"
errors="$(grep -E '^\[[0-9 :-]+\] ❌ ' "$output" | tail -n "$MAX_ERROR_LINES" || true)"
if [[ -n "$errors" ]]; then
  printf '%s\n' "$errors" | sed 's/^/    /'
else
  echo "    (no error line: see the logs)"
fi
echo "Run log: ${log_file:-unknown (alphadb log-file failed)}"
echo "Cron output: $cron_log"
exit "$rc"
