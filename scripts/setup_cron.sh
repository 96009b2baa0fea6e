#!/usr/bin/env bash
# Install, replace or remove the AlphaDB nightly cron job for the current user.
#
#   scripts/setup_cron.sh                         # daily at 02:00 (machine's local time)
#   scripts/setup_cron.sh --schedule "0 */6 * * *"
#   scripts/setup_cron.sh --dry-run               # show what would change, change nothing
#   scripts/setup_cron.sh --remove                # remove the job
#
# The job's line is tagged "# alphadb-nightly": re-running replaces it (never a second line).
# Lines that call this repository's run_elt.sh or daily_backfill_cron.sh without the tag (added by
# hand from the guide) are replaced too, so the job never runs twice.
set -Eeuo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd -P)"
RUN_SCRIPT="$REPO_ROOT/scripts/run_elt.sh"
ALIAS_SCRIPT="$REPO_ROOT/scripts/daily_backfill_cron.sh"
CRON_LOG="$REPO_ROOT/logs/cron.log"
TAG="# alphadb-nightly"
DEFAULT_SCHEDULE="0 2 * * *"

trap 'echo "❌ setup_cron.sh failed at line $LINENO: $BASH_COMMAND" >&2; exit 1' ERR

usage() {
  sed -n '2,11s/^# \{0,1\}//p' "$SCRIPT_PATH"
  echo
  echo "Options: --schedule \"MIN HOUR DOM MON DOW\" (or @daily, @hourly...), --remove, --dry-run, -h/--help"
}

die() { echo "❌ $*" >&2; exit 1; }

schedule="$DEFAULT_SCHEDULE"
remove=0
dry_run=0
while (($#)); do
  case "$1" in
    --schedule) (($# >= 2)) || die "--schedule needs a value, e.g. --schedule \"0 2 * * *\""; schedule="$2"; shift 2 ;;
    --schedule=*) schedule="${1#*=}"; shift ;;
    --remove) remove=1; shift ;;
    --dry-run|-n) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

valid_schedule() {
  local s="$1"
  case "$s" in
    @yearly|@annually|@monthly|@weekly|@daily|@midnight|@hourly) return 0 ;;
    @*) return 1 ;;
  esac
  local -a fields
  read -r -a fields <<<"$s"
  ((${#fields[@]} == 5)) || return 1
  local f
  for f in "${fields[@]}"; do
    [[ "$f" =~ ^[0-9A-Za-z*/,-]+$ ]] || return 1
  done
}

if ((!remove)); then
  valid_schedule "$schedule" || die "invalid schedule \"$schedule\": use five cron fields (MIN HOUR DOM MON DOW), e.g. \"0 2 * * *\", or @daily"
  [[ -e "$RUN_SCRIPT" ]] || die "$RUN_SCRIPT not found: run this from a complete AlphaDB checkout"
  [[ -x "$RUN_SCRIPT" ]] || die "$RUN_SCRIPT is not executable: run \`chmod +x $RUN_SCRIPT\` and retry"
  if [[ ! -x "$REPO_ROOT/.venv/bin/alphadb" ]]; then
    echo "⚠️  $REPO_ROOT/.venv is not set up yet: run \`make run\` (or \`make test\`) once, or the job will exit 2"
  fi
fi
command -v crontab >/dev/null 2>&1 || die "crontab not found: install cron (Debian/Ubuntu: sudo apt-get install cron)"

user="$(id -un 2>/dev/null || echo "${USER:-you}")"
current=""
if current="$(crontab -l 2>/dev/null)"; then
  has_crontab=1
else
  current=""
  has_crontab=0
fi

echo "Current crontab of $user:"
if ((has_crontab)) && [[ -n "$current" ]]; then
  printf '%s\n' "$current" | sed 's/^/    /'
else
  echo "    (no crontab for $user)"
fi
echo

# Every line except ours (tagged, or calling this checkout's job scripts).
kept="$(printf '%s\n' "$current" | awk -v tag="$TAG" -v a="$RUN_SCRIPT" -v b="$ALIAS_SCRIPT" '
  index($0, tag) || index($0, a) || index($0, b) { next }
  { print }')"
# Drop trailing blank lines left over by earlier edits.
kept="$(printf '%s\n' "$kept" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}')"
ours_before="$(printf '%s\n' "$current" | awk -v tag="$TAG" -v a="$RUN_SCRIPT" -v b="$ALIAS_SCRIPT" 'index($0, tag) || index($0, a) || index($0, b)' | wc -l | tr -d ' ')"

quote() {
  # Single-quote for /bin/sh; cron treats an unescaped % as a newline.
  local s=${1//\'/\'\\\'\'}
  s=${s//%/\\%}
  printf "'%s'" "$s"
}

if ((remove)); then
  new="$kept"
  action="remove the AlphaDB job ($ours_before line(s))"
else
  line="$schedule $(quote "$RUN_SCRIPT") >>$(quote "$CRON_LOG") 2>&1 $TAG"
  if [[ -n "$kept" ]]; then
    new="$kept"$'\n'"$line"
  else
    new="$line"
  fi
  if ((ours_before)); then
    action="replace the AlphaDB job ($ours_before existing line(s)) with: $line"
  else
    action="add: $line"
  fi
fi

if ((remove)) && ((ours_before == 0)); then
  echo "✅ No AlphaDB job in the crontab of $user: nothing to remove."
  exit 0
fi

if ((dry_run)); then
  echo "Dry run: would $action"
  echo "The crontab would become:"
  if [[ -n "$new" ]]; then printf '%s\n' "$new" | sed 's/^/    /'; else echo "    (empty)"; fi
  exit 0
fi

if ((!remove)); then
  mkdir -p "$(dirname "$CRON_LOG")"
fi
if [[ -n "$new" ]]; then
  printf '%s\n' "$new" | crontab -
else
  printf '' | crontab -
fi

echo "✅ Done: $action"
echo
echo "Crontab of $user now:"
after="$(crontab -l 2>/dev/null || true)"
if [[ -n "$after" ]]; then printf '%s\n' "$after" | sed 's/^/    /'; else echo "    (empty)"; fi
if ((!remove)); then
  echo
  echo "The job logs to ALPHADB_LOG_FILE (default /var/log/alphadb-backfill.log if writable, else $REPO_ROOT/logs/alphadb-backfill.log);"
  echo "cron's own output (a copy of stdout, plus anything on stderr) goes to $CRON_LOG."
  echo "Cron uses the machine's local time zone for the schedule; the log's timestamps are UTC."
  echo "Test it now, as cron would run it:"
  echo "    env -i PATH=/usr/bin:/bin HOME=\"\$HOME\" $(quote "$RUN_SCRIPT")"
fi
