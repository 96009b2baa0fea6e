#!/usr/bin/env bash
# Install the AlphaDB logrotate config (daily, 30 kept, compressed) as /etc/logrotate.d/alphadb.
#
#   scripts/install_logrotate.sh              # render, install (with sudo when not root), check
#   scripts/install_logrotate.sh --dry-run    # print the rendered config, change nothing
#   scripts/install_logrotate.sh --dest FILE  # install somewhere else
#
# The rule covers the job's log file (ALPHADB_LOG_FILE or the default, as `alphadb log-file` says)
# and the repository's logs/cron.log, one block per directory from scripts/logrotate/alphadb, with
# `su USER GROUP` where the directory needs it. USER is the user running this script (under sudo,
# the one who called sudo): the user cron runs the job as.
set -Eeuo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd -P)"
TEMPLATE="$REPO_ROOT/scripts/logrotate/alphadb"
dest="/etc/logrotate.d/alphadb"
dry_run=0

trap 'echo "❌ install_logrotate.sh failed at line $LINENO: $BASH_COMMAND" >&2; exit 1' ERR
die() { echo "❌ $*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --dry-run|-n) dry_run=1; shift ;;
    --dest) (($# >= 2)) || die "--dest needs a file"; dest="$2"; shift 2 ;;
    -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$SCRIPT_PATH"; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done

[[ -r "$TEMPLATE" ]] || die "$TEMPLATE not found"
ALPHADB="$REPO_ROOT/.venv/bin/alphadb"
[[ -x "$ALPHADB" ]] || die "$REPO_ROOT/.venv is not set up yet: run \`make install\` (or \`make run\`) first"
user="${SUDO_USER:-$(id -un)}"
user_group="$(id -gn "$user")"

# The job's log file, resolved by the job's own code (ALPHADB_LOG_FILE from the environment or
# .env, else the default), and cron's output beside the repository.
if ! log_file="$("$ALPHADB" log-file)"; then
  die "the job's settings do not load (see above): fix .env, then run this again"
fi
cron_log="$REPO_ROOT/logs/cron.log"
for path in "$log_file" "$cron_log"; do
  [[ "$path" == /* ]] || die "log paths must be absolute: $path"
  [[ "$path" != *[[:space:]]* ]] || die "logrotate paths cannot contain spaces: $path"
done

# `su USER GROUP` for a directory logrotate would refuse ("parent directory has insecure
# permissions"): writable by everyone, or by a group other than root; and for one owned by another
# user (rotate as that user, never as root in someone else's directory).
su_line() {
  local dir=$1 mode owner group
  if [[ ! -d "$dir" ]]; then  # the job creates it (mode 750, as the cron user) on its first run
    [[ "$user" == root ]] || printf '    su %s %s\n' "$user" "$user_group"
    return 0
  fi
  read -r mode owner group < <(stat -c '%a %U %G' "$dir")
  local perms=$((8#$mode))
  if (( perms & 8#002 )) || { (( perms & 8#020 )) && [[ "$group" != root ]]; }; then
    if (( perms & 8#020 )); then
      printf '    su %s %s\n' "$user" "$group"
    else
      printf '    su %s %s\n' "$user" "$user_group"
    fi
  elif [[ "$owner" != root ]]; then
    printf '    su %s %s\n' "$owner" "$group"
  fi
}

# One block per directory (the default layout keeps both files in logs/: one block).
rendered=""
declare -A files_in=()
dirs=()
for path in "$log_file" "$cron_log"; do
  dir="$(realpath -m "$(dirname "$path")")"
  [[ -n "${files_in[$dir]:-}" ]] || dirs+=("$dir")
  case " ${files_in[$dir]:-} " in *" $dir/$(basename "$path") "*) ;; *) files_in[$dir]+="${files_in[$dir]:+ }$dir/$(basename "$path")" ;; esac
done
for dir in "${dirs[@]}"; do
  block="$(awk -v files="${files_in[$dir]}" -v su="$(su_line "$dir")" '
    /^#/ && !started { next }
    { started = 1 }
    /@FILES@/ { sub(/@FILES@/, files) }
    /^@SU@$/ { if (su != "") print su; next }
    { print }' "$TEMPLATE")"
  rendered+="${rendered:+$'\n\n'}$block"
done
rendered="# AlphaDB logs (rendered by scripts/install_logrotate.sh from scripts/logrotate/alphadb)"$'\n'"$rendered"

if ((dry_run)); then
  echo "Dry run: would install as $dest:"
  printf '%s\n' "$rendered"
  exit 0
fi

sudo_cmd=()
if [[ ! -w "$(dirname "$dest")" ]] && ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || die "$(dirname "$dest") is not writable: run this as root"
  sudo_cmd=(sudo)
fi
printf '%s\n' "$rendered" | "${sudo_cmd[@]}" tee "$dest" >/dev/null
"${sudo_cmd[@]}" chmod 644 "$dest"
echo "✅ Installed $dest (daily, 30 kept, compressed)"
if command -v logrotate >/dev/null 2>&1 || [[ -x /usr/sbin/logrotate ]]; then
  logrotate_bin="$(command -v logrotate || echo /usr/sbin/logrotate)"
  if "${sudo_cmd[@]}" "$logrotate_bin" -d "$dest" >/dev/null 2>&1; then
    echo "✅ logrotate -d $dest: config parses"
  else
    echo "⚠️  logrotate -d $dest reported problems: run \`sudo logrotate -d $dest\` to see them"
  fi
else
  echo "⚠️  logrotate is not installed (Debian/Ubuntu: sudo apt-get install logrotate); the config waits for it"
fi
