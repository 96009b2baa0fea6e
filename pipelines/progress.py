"""A progress bar for loads, backfills and heals on a terminal: steps done, rate and ETA (tqdm).

Driven by the loader's own run-log records (`backfill step k/N`, or `load step k/N` for a nightly
load of more pairs than one step holds, logged as each step's load starts), so the loader knows
nothing about terminals. On a terminal the bar replaces those step lines on screen (the log file
still gets them) and every other line is printed above the bar; anywhere else (cron, a pipe, a
file) nothing changes: plain log lines.
"""

from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager, nullcontext
from typing import IO, Any, ContextManager, Iterator

from pipelines import runlog

STEP = re.compile(r"^(?:backfill|load) step (\d+)/(\d+)$")
COMMANDS = {"backfill": "backfill", "heal": "heal", "load": "load"}


def on_terminal(command: str, stream: IO[str] | None = None) -> ContextManager[Any]:
    """A bar while `command` runs, if it is a long load and `stream` (stdout) is a terminal."""
    stream = stream or sys.stdout
    if command not in COMMANDS or not stream.isatty():
        return nullcontext()
    return bar(COMMANDS[command], stream)


def _is_step(record: logging.LogRecord) -> bool:
    return STEP.match(record.getMessage()) is not None


class _AboveTheBar:
    """A stream for the log's console handler: each line goes above the bar, which is redrawn."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()


class _StepBar(logging.Handler):
    """Turns the step records into one bar per load (a heal loads once per gap)."""

    def __init__(self, description: str, stream: IO[str]) -> None:
        super().__init__(logging.INFO)
        self.description = description
        self.stream = stream
        self.bar: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        match = STEP.match(record.getMessage())
        if match is None:
            return
        from tqdm import tqdm

        step, total = int(match[1]), int(match[2])
        if self.bar is None or step == 1 or self.bar.total != total:
            self.finish()
            self.bar = tqdm(total=total, desc=self.description, unit="step", file=self.stream,
                            dynamic_ncols=True, leave=True, mininterval=0.2)
        self.bar.update(step - 1 - self.bar.n)  # the steps before this one are done

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()
            self.bar = None


@contextmanager
def bar(description: str, stream: IO[str]) -> Iterator[None]:
    log = runlog.logger()
    consoles = [h for h in log.handlers if type(h) is logging.StreamHandler and getattr(h, "stream", None) is stream]
    bar_handler = _StepBar(description, stream)
    quiet_steps = logging.Filter()
    quiet_steps.filter = lambda record: not _is_step(record)  # type: ignore[method-assign]
    for console in consoles:
        console.setStream(_AboveTheBar(stream))  # type: ignore[arg-type]
        console.addFilter(quiet_steps)
    log.addHandler(bar_handler)
    try:
        yield
        bar_handler.finish()
    finally:
        if bar_handler.bar is not None:  # failed or interrupted: leave the bar where it stopped
            bar_handler.bar.close()
        log.removeHandler(bar_handler)
        for console in consoles:
            console.removeFilter(quiet_steps)
            console.setStream(stream)
