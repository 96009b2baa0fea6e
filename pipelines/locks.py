"""The one lock of AlphaDB: an exclusive flock on a file under ALPHADB_HOME.

The nightly job holds `run.lock` for its whole run (a second run exits 75 at once); every load
holds `load.lock` (dlt's staging tables and state are shared), and waits for it a while, so a
manual backfill queues behind the nightly load instead of failing.

The kernel drops a flock when its process dies, however it dies, so a crash never leaves a stale
lock; the descriptor is not inherited by dbt or other children (PEP 446), so a child that outlives
its parent cannot keep the lock either. The holder writes its PID into the file for the message of
whoever finds it taken.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines import runlog
from pipelines.errors import LockHeld

POLL_S = 0.5


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return False
    return True


def _holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"


def _acquire(fd: int, path: Path, holder: str, wait_s: float) -> None:
    """Take the lock, waiting up to `wait_s` (and saying so once); raise LockHeld after that."""
    deadline = time.monotonic() + wait_s
    announced = False
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            waited = f" and still was after {wait_s:g}s" if wait_s else ""
            raise LockHeld(f"Another {holder} is in progress (PID {_holder(fd)}, lock {path}){waited}; nothing done")
        if not announced:
            runlog.line(
                runlog.WARNING,
                f"another {holder} is running; waiting for it to finish (PID {_holder(fd)}, up to {wait_s:g}s)",
            )
            announced = True
        time.sleep(POLL_S)


@contextmanager
def exclusive_lock(path: Path, holder: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold `path` for the block. `holder` names what holds it ("run", "load") in the messages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, holder, wait_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock
