"""The progress bar of long loads: on a terminal (a real pseudo-terminal here) a backfill shows a
bar with steps done, rate and ETA; under cron or a pipe it prints the plain log lines."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
from pathlib import Path
from typing import Mapping

from cron_support import REPO_ROOT, assert_log_format, log_lines
from process_support import alphadb_command, output, run_cli


def run_on_terminal(env: Mapping[str, str], *args: str, timeout: float = 240) -> tuple[int, str]:
    """`alphadb <args>` with stdin, stdout and stderr on a pseudo-terminal of 120 columns."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([*alphadb_command(), *args], env=dict(env), cwd=REPO_ROOT,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError as exc:  # EIO: the child closed the terminal
            if exc.errno != errno.EIO:
                raise
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


def test_backfill_on_a_terminal_shows_a_bar_with_rate_and_eta(alphadb_env: dict[str, str]) -> None:
    code, screen = run_on_terminal(alphadb_env, "backfill", "--days", "200")
    assert code == 0, screen
    logged = log_lines(Path(alphadb_env["ALPHADB_LOG_FILE"]))
    assert_log_format(logged)
    steps = [line.split("📊 ")[1] for line in logged if "backfill step" in line]
    n = len(steps)  # 200 days: windows of at most 90 days, the last day apart (5-minute points)
    assert n >= 3 and steps == [f"backfill step {i}/{n}" for i in range(1, n + 1)]
    assert not any("%|" in line for line in logged)  # the log file has no bar...
    # ...the terminal has one, redrawn in place (\r) as each step ends, with rate and ETA.
    frames = [frame for frame in re.split(r"[\r\n]", screen) if frame.startswith("backfill:")]
    assert frames, screen
    assert re.search(rf"backfill: 100%\|.+\| {n}/{n} \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(s/step|step/s)\]", frames[-1]), frames
    assert any(re.search(rf"\| [1-{n - 1}]/{n} \[\d\d:\d\d<\d\d:\d\d", frame) for frame in frames), frames  # ETA mid-way
    assert "backfill step" not in screen  # the bar replaces the step lines on screen...
    assert re.search(r"✅ loaded \d+ points in \d+ request", screen)  # ...the other lines still show


def test_backfill_without_a_terminal_prints_plain_lines(alphadb_env: dict[str, str]) -> None:
    result = run_cli(alphadb_env, "backfill", "--days", "200")
    assert result.returncode == 0, output(result)
    assert "\r" not in result.stdout and "%|" not in result.stdout
    steps = [line.split("📊 ")[1] for line in result.stdout.splitlines() if "backfill step" in line]
    assert len(steps) >= 3 and steps == [f"backfill step {i}/{len(steps)}" for i in range(1, len(steps) + 1)]


def test_heal_gets_a_bar_per_load_and_pipes_get_none() -> None:
    """In process, on a pseudo-terminal: a heal loads once per gap, each load gets its own bar."""
    from contextlib import nullcontext

    from pipelines import progress, runlog

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    terminal = os.fdopen(slave, "w", encoding="utf-8")
    try:
        runlog.setup(None)
        for handler in runlog.logger().handlers:
            handler.setStream(terminal)  # type: ignore[attr-defined]
        with progress.on_terminal("heal", terminal):
            for total in (2, 1):  # two gaps
                for step in range(1, total + 1):
                    runlog.line(runlog.RUNNING, f"backfill step {step}/{total}")
                runlog.line(runlog.OK, f"Re-fetched a gap in {total} window(s)")
        terminal.flush()
        data = b""
        while select.select([master], [], [], 0.5)[0]:
            data += os.read(master, 65536)
        screen = data.decode("utf-8", "replace")
    finally:
        terminal.close()
        os.close(master)
        runlog.setup(None)
    frames = [frame for frame in re.split(r"[\r\n]", screen) if frame.startswith("heal:")]
    assert any(" 2/2 [" in frame for frame in frames) and frames[-1].startswith("heal: 100%") and " 1/1 [" in frames[-1]
    assert screen.count("Re-fetched a gap") == 2 and "backfill step" not in screen
    with open(os.devnull, "w") as pipe_like:
        assert isinstance(progress.on_terminal("heal", pipe_like), nullcontext)
    assert isinstance(progress.on_terminal("load", open(os.devnull)), nullcontext)
