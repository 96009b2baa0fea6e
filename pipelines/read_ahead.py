"""Reading ahead: a slow producer (the rate-limited API reads of a load) works on the next item in
a background thread while the caller works on the current one (loading it into PostgreSQL).

    stop = threading.Event()
    with read_ahead(read_steps(..., stop), stop, "coingecko-reader") as steps:
        for step in steps:
            load(step)

The producer works one item ahead, no further: it makes item k+1 while the caller works on item k,
then waits until the caller takes k+1 before it makes k+2, so at most two items are held at once
whoever is slower. An exception in the producer is raised in the caller, at the item it would have
produced. When the caller stops (an exception, KeyboardInterrupt or SIGTERM's exception, or leaving
the loop early), `stop` is set: the producer is expected to watch it between its units of work
(and in its waits) and return; the thread is joined before the `with` block ends, so none
outlives its load.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generator, Iterator, TypeVar

T = TypeVar("T")
# How often a producer waiting for the caller to take its item checks whether the caller stopped.
HANDOVER_POLL_S = 0.1


@dataclass(frozen=True)
class _Raised:
    """What the producer raised, carried to the caller."""

    error: BaseException


_END = object()  # the producer ran out of items


def _until_taken(taken: threading.Semaphore, stop: threading.Event) -> bool:
    """Wait until the caller took the item handed over; False if it stopped instead."""
    while not stop.is_set():
        if taken.acquire(timeout=HANDOVER_POLL_S):
            return True
    return False


def _produce(
    items: Generator[T, None, None], handover: queue.SimpleQueue[object], taken: threading.Semaphore, stop: threading.Event
) -> None:
    try:
        for item in items:
            handover.put(item)
            if not _until_taken(taken, stop):
                return
        handover.put(_END)
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the caller raises it
        handover.put(_Raised(exc))
    finally:
        items.close()  # the producer's own clean-up (its `finally` blocks) runs in its thread


def _taken(handover: queue.SimpleQueue[object], taken: threading.Semaphore) -> Iterator[T]:
    while (item := handover.get()) is not _END:
        if isinstance(item, _Raised):
            raise item.error
        taken.release()  # the producer may start on the next item
        yield item  # type: ignore[misc]


@contextmanager
def read_ahead(items: Generator[T, None, None], stop: threading.Event, name: str) -> Iterator[Iterator[T]]:
    """`items`, produced one ahead in a thread called `name` (see the module's docstring)."""
    handover: queue.SimpleQueue[object] = queue.SimpleQueue()  # never more than one item: see _until_taken
    taken = threading.Semaphore(0)
    thread = threading.Thread(target=_produce, args=(items, handover, taken, stop), name=name, daemon=True)
    thread.start()
    try:
        yield _taken(handover, taken)
    finally:
        stop.set()
        thread.join()
