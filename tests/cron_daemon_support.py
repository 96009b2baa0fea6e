"""The real cron daemon, for tests: run in a private mount namespace, so it sees only the crontab a
test installs (its own spool, an empty /etc/crontab and /etc/cron.d) and mails through a stand-in
`sendmail` that records each message; the machine's crontabs, MTA and running daemons are untouched.

Needs root, `unshare` and Debian's cron (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from process_support import wait_for

CRON = "/usr/sbin/cron"
REQUIRE_TOOLS = "ALPHADB_REQUIRE_SYSTEM_TOOLS"  # CI sets it: a missing tool fails instead of skipping


def missing_tool(*paths: str) -> str | None:
    """Why a test that needs these system programs (as root) cannot run here, or None."""
    missing = [p for p in paths if not (Path(p).exists() or shutil.which(p))]
    if os.geteuid() != 0:
        return "needs root"
    if missing:
        return f"needs {', '.join(missing)} (Debian: apt-get install cron logrotate)"
    return None


def cron_daemon_running() -> bool:
    """A process named cron/crond, the way setup_cron.sh looks for one."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("cron", "crond", "cronie"):
                return True
        except OSError:
            continue
    return False


# Runs inside `unshare -m`: private spool, pid file, system crontabs and sendmail; then the test's
# setup step (installing the crontab with the real `crontab` command), then cron in the foreground.
NAMESPACE_SCRIPT = r"""
set -Eeuo pipefail
root=$1; shift
mount --make-rprivate /
mount -t tmpfs -o mode=1730 tmpfs /var/spool/cron/crontabs
chgrp crontab /var/spool/cron/crontabs
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /etc/cron.d
: >"$root/empty-crontab"
mount --bind "$root/empty-crontab" /etc/crontab
mount --bind "$root/sendmail" "$(readlink -f /usr/sbin/sendmail)"
"$@" >"$root/setup.out" 2>&1
crontab -l >"$root/installed-crontab" 2>&1 || true
touch "$root/ready"
exec /usr/sbin/cron -f
"""

SENDMAIL = """#!/bin/sh
# Stand-in for sendmail(8): keep what cron would have sent.
out="{root}/mail.$$"
{{ echo "ARGV: $*"; cat; }} >"$out.tmp" && mv "$out.tmp" "$out"
"""


@contextmanager
def private_cron(root: Path, *setup: str) -> Iterator[Path]:
    """A real cron daemon whose crontab is installed by `setup` (a command run in its namespace).

    Yields `root`; mails land in `root/mail.*`, `root/setup.out` holds the setup command's output
    and `root/installed-crontab` the crontab it left.
    """
    root.mkdir(parents=True, exist_ok=True)
    sendmail = root / "sendmail"
    sendmail.write_text(SENDMAIL.format(root=root))
    sendmail.chmod(0o755)
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", NAMESPACE_SCRIPT, "namespace", str(root), *setup],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        if not wait_for(lambda: (root / "ready").exists() or proc.poll() is not None, timeout=60):
            raise AssertionError("the cron namespace did not get ready")
        if proc.poll() is not None:
            raise AssertionError(f"the cron namespace failed: {proc.communicate()[0]}")
        yield root
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


def mails(root: Path) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(root.glob("mail.*")) if not p.name.endswith(".tmp")]
