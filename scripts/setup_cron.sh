#!/usr/bin/env bash
# Install, replace or remove the AlphaDB nightly cron job for the current user.
#
#   scripts/setup_cron.sh                         # daily at 02:00 (machine's local time)
#   scripts/setup_cron.sh --schedule "0 */6 * * *"
#   scripts/setup_cron.sh --dry-run               # show what would change, change nothing
#   scripts/setup_cron.sh --mailto ops@example.com  # cron mails ops@ when (only when) the job fails
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
MAIL_WRAPPER="$REPO_ROOT/scripts/mail_on_failure.sh"
ALPHADB="$REPO_ROOT/.venv/bin/alphadb"
CRON_LOG="$REPO_ROOT/logs/cron.log"
TAG="# alphadb-nightly"
DEFAULT_SCHEDULE="0 2 * * *"

trap 'echo "❌ setup_cron.sh failed at line $LINENO: $BASH_COMMAND" >&2; exit 1' ERR

usage() {
  sed -n '2,12s/^# \{0,1\}//p' "$SCRIPT_PATH"
  echo
  echo "Options: --schedule \"MIN HOUR DOM MON DOW\" (or @daily, @hourly...), --mailto ADDRESS, --remove, --dry-run, -h/--help"
}

die() { echo "❌ $*" >&2; exit 1; }

schedule="$DEFAULT_SCHEDULE"
remove=0
dry_run=0
mailto=""
mailto_given=0
while (($#)); do
  case "$1" in
    --schedule) (($# >= 2)) || die "--schedule needs a value, e.g. --schedule \"0 2 * * *\""; schedule="$2"; shift 2 ;;
    --schedule=*) schedule="${1#*=}"; shift ;;
    --mailto) (($# >= 2)) || die "--mailto needs an address, e.g. --mailto ops@example.com"; mailto="$2"; mailto_given=1; shift 2 ;;
    --mailto=*) mailto="${1#*=}"; mailto_given=1; shift ;;
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

# One address or a comma-separated list; nothing a crontab line could misread (spaces, quotes, %).
valid_mailto() {
  [[ "$1" =~ ^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+(,[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+)*$ ]]
}

# The log file the job will write, resolved by the job's own code (.env and defaults included).
job_log_file() {
  [[ -x "$ALPHADB" ]] || return 1
  "$ALPHADB" log-file 2>/dev/null | tail -n 1
}

# A cron daemon started any way: systemd, `service cron start`, or a bare cron/crond process.
cron_daemon_running() {
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    local unit
    for unit in cron crond cronie; do
      systemctl is-active --quiet "$unit" 2>/dev/null && return 0
    done
  fi
  local comm name
  for comm in /proc/[0-9]*/comm; do
    { read -r name <"$comm"; } 2>/dev/null || continue
    case "$name" in cron|crond|cronie) return 0 ;; esac
  done
  return 1
}

if ((!remove)); then
  valid_schedule "$schedule" || die "invalid schedule \"$schedule\": use five cron fields (MIN HOUR DOM MON DOW), e.g. \"0 2 * * *\", or @daily"
  [[ -e "$RUN_SCRIPT" ]] || die "$RUN_SCRIPT not found: run this from a complete AlphaDB checkout"
  [[ -x "$RUN_SCRIPT" ]] || die "$RUN_SCRIPT is not executable: run \`chmod +x $RUN_SCRIPT\` and retry"
  if ((mailto_given)); then
    valid_mailto "$mailto" || die "invalid --mailto \"$mailto\": use an address like ops@example.com (or several, comma-separated)"
    [[ -x "$MAIL_WRAPPER" ]] || die "$MAIL_WRAPPER is not executable: run \`chmod +x $MAIL_WRAPPER\` and retry"
  fi
  if [[ ! -x "$ALPHADB" ]]; then
    echo "⚠️  $REPO_ROOT/.venv is not set up yet: run \`make run\` (or \`make test\`) once, or the job will exit 2"
    log_file="(decided by ALPHADB_LOG_FILE once .venv exists)"
  elif ! log_file="$(job_log_file)" || [[ -z "$log_file" ]]; then
    reason="$("$ALPHADB" log-file 2>&1 >/dev/null | tail -n 1 || true)"
    echo "❌ The job's settings do not load, so every run would exit 2: ${reason:-alphadb log-file failed}" >&2
    echo "   Fix .env (or the environment), check with \`$ALPHADB log-file\`, then run this again." >&2
    exit 2
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

# Every line except ours: tagged, or calling this checkout's job scripts, or the MAILTO line that
# follows our tagged comment (written by --mailto).
kept="$(printf '%s\n' "$current" | awk -v tag="$TAG" -v a="$RUN_SCRIPT" -v b="$ALIAS_SCRIPT" '
  after_tag && /^[[:space:]]*MAILTO[[:space:]]*=/ { after_tag = 0; next }
  { after_tag = 0 }
  index($0, tag) { after_tag = ($0 ~ /^[[:space:]]*#/); next }
  index($0, a) || index($0, b) { next }
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
  if ((mailto_given)); then
    # The wrapper appends all output to the cron log and prints only a failure summary: cron mails
    # what a job prints, so MAILTO gets mail when the job fails and none when it succeeds.
    line="$TAG: cron mails MAILTO only when the job fails"$'\n'"MAILTO=$mailto"$'\n'
    line+="$schedule $(quote "$MAIL_WRAPPER") $(quote "$CRON_LOG") $(quote "$RUN_SCRIPT") $TAG"
  else
    line="$schedule $(quote "$RUN_SCRIPT") >>$(quote "$CRON_LOG") 2>&1 $TAG"
  fi
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
  echo "✅ No AlphaDB job is installed in the crontab of $user: nothing to remove."
  exit 0
fi

echo "Current crontab of $user:"
if ((!has_crontab)); then
  echo "    (no crontab for $user)"
elif [[ -n "$current" ]]; then
  printf '%s\n' "$current" | sed 's/^/    /'
else
  echo "    (empty)"
fi
echo

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
  echo "The job logs to $log_file"
  echo "cron's own output (a copy of stdout, plus anything on stderr) goes to $CRON_LOG."
  if ((mailto_given)); then
    echo "Cron mails $mailto a short summary when a run fails (exit code, failed step), nothing when it succeeds;"
    echo "the machine needs a working sendmail (an MTA such as exim4, postfix or msmtp-mta)."
  fi
  echo "Cron uses the machine's local time zone for the schedule; the log's timestamps are UTC."
  echo "Test it now, as cron would run it:"
  echo "    env -i PATH=/usr/bin:/bin HOME=\"\$HOME\" $(quote "$RUN_SCRIPT")"
  if ! cron_daemon_running; then
    echo
    echo "⚠️  No cron daemon is running: the job is installed, but nothing will run it until cron starts."
    echo "    Start it with one of: sudo systemctl enable --now cron (systemd) · sudo service cron start · sudo cron (a bare daemon, e.g. in a container)"
    echo "    See docs/operations.md, \"Cron without systemd\"."
  fi
fi
