"""The run log of docs/design.md: `[YYYY-MM-DD HH:MM:SS] <marker> <message>` in UTC, to stdout and the log file.

Every line passes through a redactor that replaces configured secrets, so no code path can leak
the API key, the database password or the webhook URL into the log.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from pipelines.errors import AlphaDBError

START = "🕐"
OK = "✅"
RUNNING = "📊"
CHECK = "🔍"
ERROR = "❌"
WARNING = "⚠️"
FINISHED = "🏁"

LOGGER_NAME = "alphadb"
_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values to mask in every log line from now on (short values would mask ordinary words)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime  # UTC, whatever TZ the machine or cron has

    def format(self, record: logging.LogRecord) -> str:
        marker = getattr(record, "marker", None) or {logging.ERROR: ERROR, logging.WARNING: WARNING}.get(
            record.levelno, RUNNING
        )
        stamp = self.formatTime(record, "%Y-%m-%d %H:%M:%S")
        message = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR and logger().isEnabledFor(logging.DEBUG):
            message += "\n" + self.formatException(record.exc_info)
        return redact(f"[{stamp}] {marker} {message}")


def logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup(log_file: Path | None, stream: bool = True) -> logging.Logger:
    """Configure the alphadb logger once per process: stdout plus the append-only log file."""
    log = logger()
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(logging.INFO)
    log.propagate = False
    formatter = _UtcFormatter()
    handlers: list[logging.Handler] = []
    if stream:
        handlers.append(logging.StreamHandler(sys.stdout))
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as exc:
            # Not fatal: the run still logs to stdout, which cron mails or redirects.
            print(f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}] {WARNING} cannot write log file {log_file}: {exc.strerror}")
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    return log


def line(marker: str, message: str) -> None:
    level = logging.ERROR if marker == ERROR else logging.WARNING if marker == WARNING else logging.INFO
    logger().log(level, message, extra={"marker": marker})


def error_lines(message: str) -> None:
    """A multi-line message (dbt's output tail) as several log lines, each in the log format.

    Each line is stripped on both sides: psycopg2's messages indent their continuation lines with
    spaces and tabs, and `<marker> <message>` must be followed by the message itself.
    """
    for text in message.strip().splitlines():
        if text.strip():
            line(ERROR, text.strip())


@contextmanager
def step(name: str, running: str | None = None) -> Iterator[dict[str, object]]:
    """Log a step: `running` (if any) when it starts, then `<name> passed in Ns, <details>` with the
    details the caller added, or the error's message and `<name> failed after Ns` (re-raised)."""
    details: dict[str, object] = {}
    if running:
        line(RUNNING, running)
    started = time.monotonic()
    try:
        yield details
    except BaseException as exc:
        if isinstance(exc, AlphaDBError):
            error_lines(str(exc))
        line(ERROR, f"{name} failed after {time.monotonic() - started:.1f}s")
        raise
    extra = "".join(f", {key} {value}" for key, value in details.items())
    line(OK, f"{name} passed in {time.monotonic() - started:.1f}s{extra}")
