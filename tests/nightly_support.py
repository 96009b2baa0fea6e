"""Helpers for the nightly-job tests: a loopback webhook receiver, a stand-in `crontab`, and
running the real scripts the way cron does (a bare environment, another working directory)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_ELT = REPO_ROOT / "scripts" / "run_elt.sh"
DAILY_CRON = REPO_ROOT / "scripts" / "daily_backfill_cron.sh"
SETUP_CRON = REPO_ROOT / "scripts" / "setup_cron.sh"
CRON_PATH = "/usr/bin:/bin"
LOG_LINE = re.compile(r"^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] (🕐|✅|📊|🔍|❌|⚠️|🏁) \S")


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POST (Slack webhook and healthcheck pings).

    `status` is the HTTP status it answers with (500 to test an undeliverable alert).
    """

    status: int = 200
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.received.append(Received(self.path, body, dict(self.headers)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST  # noqa: N815 - healthchecks.io accepts GET pings too

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def posts(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


FAKE_CRONTAB = """#!/bin/sh
# Stand-in for crontab(1): the table lives in $FAKE_CRONTAB.
f="${FAKE_CRONTAB:?}"
echo "$*" >> "$f.calls"
case "$1" in
  -l) [ -f "$f" ] || { echo "no crontab for $(id -un)" >&2; exit 1; }; cat "$f" ;;
  -r) [ -f "$f" ] || { echo "no crontab for $(id -un)" >&2; exit 1; }; rm -f "$f" ;;
  -) cat > "$f" ;;
  *) [ -f "$1" ] && cp "$1" "$f" || { echo "usage: crontab [-l|-r|-|file]" >&2; exit 1; } ;;
esac
"""


def install_fake_crontab(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "crontab"
    path.write_text(FAKE_CRONTAB)
    path.chmod(0o755)
    return path


def cron_env(settings_env: Mapping[str, str], **extra: str) -> dict[str, str]:
    """What `env -i PATH=/usr/bin:/bin HOME=... <settings>` gives a process: nothing else."""
    env = {k: v for k, v in settings_env.items() if k not in ("PATH", "HOME")}
    env.update({"PATH": CRON_PATH, "HOME": settings_env.get("HOME", "/tmp")})
    env.update(extra)
    return env


def run_script(
    script: Path, env: Mapping[str, str], cwd: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a script exactly as cron would: only `env` (like `env -i`), from an unrelated cwd.

    The environment is passed directly rather than as `env -i K=V` arguments, so the test
    database password never appears on a command line (`ps`).
    """
    return subprocess.run(
        [str(script), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def started_script(script: Path, env: Mapping[str, str], cwd: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A script running in the background (same bare environment); killed if still running at the end."""
    proc = subprocess.Popen(
        [str(script), *args], env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def log_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def assert_log_format(lines: list[str]) -> None:
    """Every line is `[YYYY-MM-DD HH:MM:SS] <marker> <message>` (docs/design.md)."""
    bad = [line for line in lines if not LOG_LINE.match(line)]
    assert not bad, "log lines not in docs/design.md format:\n" + "\n".join(bad)


def secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s and s in text]

