#!/usr/bin/env bash
# Install the AlphaDB logrotate config (daily, 30 kept, compressed) as /etc/logrotate.d/alphadb.
#
#   scripts/install_logrotate.sh              # render, install (with sudo when not root), check
#   scripts/install_logrotate.sh --dry-run    # print the rendered config, change nothing
#   scripts/install_logrotate.sh --dest FILE  # install somewhere else
#
# The template is scripts/logrotate/alphadb; @REPO_ROOT@, @USER@ and @GROUP@ are filled in with
# this checkout and the user running this script (the user cron runs the job as).
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
    -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$SCRIPT_PATH"; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done

[[ -r "$TEMPLATE" ]] || die "$TEMPLATE not found"
[[ "$REPO_ROOT" != *[[:space:]]* ]] || die "logrotate paths cannot contain spaces: $REPO_ROOT"
user="${SUDO_USER:-$(id -un)}"
group="$(id -gn "$user")"
rendered="$(sed -e "s#@REPO_ROOT@#$REPO_ROOT#g" -e "s#@USER@#$user#g" -e "s#@GROUP@#$group#g" "$TEMPLATE")"

if ((dry_run)); then
  echo "Dry run: would install as $dest:"
  printf '%s\n' "$rendered"
  exit 0
fi

mkdir -p "$REPO_ROOT/logs"
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
