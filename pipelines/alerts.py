"""Failure alerts (Slack incoming webhook) and dead-man's-switch pings (healthchecks.io style).

Both are best effort: short timeouts, one attempt, and a delivery failure is logged as a warning
and never changes the run's exit code. The webhook URL and the healthcheck URL are secrets (they
authorise posting): they are never logged, and every alert text passes through the run log's
redactor, so no configured secret can leave the machine in an alert.
"""

from __future__ import annotations

import socket
from collections import deque
from pathlib import Path
from typing import Iterable

import requests

from pipelines import runlog
from pipelines.config import Settings

TIMEOUT_S = 10.0
TAIL_LINES = 20
MAX_TEXT_CHARS = 3500  # Slack truncates long messages; keep the tail readable
PING_SUFFIXES = {"start": "/start", "success": "", "fail": "/fail"}


def tail_log(path: Path | None, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines of the run log (empty when there is none), secrets redacted."""
    if path is None:
        return []
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return [runlog.redact(line.rstrip("\n")) for line in deque(handle, maxlen=lines)]
    except OSError:
        return []


def failure_text(
    step: str,
    exit_code: int,
    summary: Iterable[str] = (),
    log_tail: Iterable[str] = (),
    host: str | None = None,
) -> str:
    """The Slack message of a failed run: host, failed step, exit code, details, the log's last lines."""
    host = host or socket.gethostname()
    parts = [f":x: AlphaDB nightly job failed on `{host}`", f"*Failed step:* {step}", f"*Exit code:* {exit_code}"]
    details = [line for line in summary if line]
    if details:
        parts.append("*Details:*\n" + "\n".join(f"• {line}" for line in details))
    tail = list(log_tail)
    if tail:
        body = "\n".join(tail)
        # Keep the end of the log (the error), not its beginning, when the message is too long.
        budget = MAX_TEXT_CHARS - sum(len(p) + 1 for p in parts) - 40
        if len(body) > budget > 0:
            body = "…" + body[-budget:]
        parts.append(f"*Last {len(tail)} log lines:*\n```\n{body}\n```")
    return runlog.redact("\n".join(parts))


def _describe(exc: requests.RequestException) -> str:
    """A reason without the URL (requests puts the full URL, a secret here, into its messages)."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _post(what: str, url: str, timeout: float, **body: object) -> bool:
    """One POST; a failure is a logged warning that names `what`, never the URL (a secret)."""
    try:
        response = requests.post(url, timeout=timeout, **body)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        runlog.line(runlog.WARNING, f"{what} could not be delivered ({_describe(exc)})")
        return False
    if response.status_code >= 300:
        runlog.line(runlog.WARNING, f"{what} could not be delivered (HTTP {response.status_code})")
        return False
    return True


def send_slack(settings: Settings, text: str, timeout: float = TIMEOUT_S) -> bool:
    """POST {"text": ...} to SLACK_WEBHOOK_URL; log the outcome (never the URL); True if delivered."""
    url = settings.slack_webhook_url
    if not url:
        return False
    delivered = _post("Slack alert", url, timeout, json={"text": runlog.redact(text)})
    if delivered:
        runlog.line(runlog.OK, "Slack alert sent")
    return delivered


def ping(settings: Settings, kind: str, body: str = "", timeout: float = TIMEOUT_S) -> bool:
    """Ping ALPHADB_HEALTHCHECK_URL: kind "start" → <url>/start, "success" → <url>, "fail" → <url>/fail.

    healthchecks.io stores a POST body (up to 10 kB) with the ping, so a failure ping carries the
    same redacted summary as the Slack alert.
    """
    base = settings.healthcheck_url
    if not base:
        return False
    if kind not in PING_SUFFIXES:
        raise ValueError(f"unknown ping kind {kind!r}")
    url = base.rstrip("/") + PING_SUFFIXES[kind]
    return _post(f"Healthcheck {kind} ping", url, timeout, data=runlog.redact(body).encode("utf-8"))


def notify_failure(settings: Settings, step: str, exit_code: int, summary: Iterable[str] = ()) -> None:
    """Everything a failed run sends: the Slack alert and the /fail ping, both with the log's tail."""
    if not (settings.slack_webhook_url or settings.healthcheck_url):
        return
    text = failure_text(step, exit_code, summary, tail_log(settings.log_file))
    send_slack(settings, text)
    ping(settings, "fail", text)
