"""`read_ahead`, the loader's reader thread: one item ahead and no further, the producer's errors
raised in the caller, and the thread stopped and joined however the caller leaves."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import nullcontext
from types import FrameType
from typing import Generator

import pytest

from pipelines.errors import AlphaDBError, UnknownCoin
from pipelines.read_ahead import read_ahead

NAME = "test-reader"


def reader_alive() -> bool:
    return any(thread.name == NAME for thread in threading.enumerate())


def counting(count: int, stop: threading.Event, taken: list[int], ahead: list[int]) -> Generator[int, None, None]:
    """Items 1..count; before making item n, notes how far ahead of the caller it is."""
    for number in range(1, count + 1):
        if stop.is_set():
            return
        ahead.append(number - len(taken))
        yield number


def test_items_arrive_in_order_made_one_ahead_of_the_caller_and_no_further() -> None:
    stop, taken, ahead = threading.Event(), [], []
    with read_ahead(counting(6, stop, taken, ahead), stop, NAME) as items:
        for item in items:
            taken.append(item)
            time.sleep(0.05)  # a slow caller: a producer running further ahead would show it
    assert taken == [1, 2, 3, 4, 5, 6]
    # Item n is made only once the caller took item n-1: one item ahead of it, never two.
    assert ahead == [1, 1, 1, 1, 1, 1]
    assert not reader_alive()


def test_the_next_item_is_made_while_the_caller_works_on_this_one() -> None:
    """The overlap itself, with no timing: the caller holds item 1 until the producer is making item 2."""
    stop = threading.Event()
    making_second = threading.Event()

    def items() -> Generator[int, None, None]:
        yield 1
        making_second.set()
        yield 2

    seen = []
    with read_ahead(items(), stop, NAME) as handed:
        for item in handed:
            if item == 1:
                assert making_second.wait(timeout=30), "the producer did not start item 2 while item 1 was held"
            seen.append(item)
    assert seen == [1, 2] and not reader_alive()


def test_an_error_in_the_producer_is_raised_in_the_caller_with_its_exit_code() -> None:
    stop = threading.Event()

    def items() -> Generator[int, None, None]:
        yield 1
        raise UnknownCoin("coin 'nope' not found")

    seen = []
    with pytest.raises(UnknownCoin, match="nope") as raised:
        with read_ahead(items(), stop, NAME) as handed:
            for item in handed:
                seen.append(item)
    assert seen == [1]  # the items before the error were handed over first
    assert isinstance(raised.value, AlphaDBError) and raised.value.exit_code == UnknownCoin.exit_code == 5
    assert not reader_alive()


def endless(stop: threading.Event, cleaned_up: threading.Event) -> Generator[int, None, None]:
    number = 0
    try:
        while not stop.is_set():
            number += 1
            yield number
    finally:
        cleaned_up.set()


def _ctrl_c(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["error", "break", "interrupt"])
def test_the_producer_stops_and_is_joined_however_the_caller_leaves(how: str) -> None:
    stop, cleaned_up = threading.Event(), threading.Event()
    expected = {"error": pytest.raises(RuntimeError), "break": nullcontext(), "interrupt": pytest.raises(KeyboardInterrupt)}[how]
    previous = signal.signal(signal.SIGALRM, _ctrl_c)
    try:
        with expected:
            with read_ahead(endless(stop, cleaned_up), stop, NAME) as items:
                for item in items:
                    if item == 3 and how == "error":
                        raise RuntimeError("the load failed")
                    if item == 3 and how == "break":
                        break
                    if item == 3 and how == "interrupt":
                        signal.setitimer(signal.ITIMER_REAL, 0.05)  # Ctrl-C while the caller works on item 3
                        time.sleep(5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert stop.is_set() and cleaned_up.is_set()  # the producer saw the stop and ran its clean-up
    assert not reader_alive()

