"""A time limit for one step of the benchmark (``--step-timeout``): a step that hangs fails, saying where.

Free of Django, so that ``python -m bench`` can catch ``StepTimeout`` before setting Django up.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StepTimeout(BaseException):
    """A step ran longer than ``--step-timeout``: raised where it was waiting, so its traceback says where. A
    ``BaseException``, as ``KeyboardInterrupt`` is: the consumer's handlers of a failing batch must not take it
    for one."""


def within(seconds: float | None, title: str, work: Callable[[], T]) -> T:
    """``work()``, interrupted by ``StepTimeout`` after ``seconds`` (a signal in the main thread: the exception
    is raised wherever the step waits; its ``finally`` blocks stop the processes it started)."""
    if seconds is None:
        return work()

    def expired(_signum: int, _frame: object) -> None:
        faulthandler.dump_traceback(sys.stderr, all_threads=True)  # a step may wait on a thread of its own
        raise StepTimeout(f"step {title!r} ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return work()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
