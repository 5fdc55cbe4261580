"""Stage 4b: a batch that fails is split, never retried forever.

``apply_isolating`` applies a batch; when that raises anything but what ``apply`` retries itself (transient
database errors), it splits the batch in halves and applies each, recursively, until the event that fails
alone is isolated and handed to ``reject`` (the consumer dead-letters it with the exception). Every other event
is applied. Facts are monotonic by event time and memberships are written as differences, so applying halves
one after the other ends where the whole batch would have. When nothing fails this costs one ``try``; a batch
of n events with one poison event costs about 2 log2(n) extra transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)
EventT = TypeVar("EventT")
ResultT = TypeVar("ResultT")


def apply_isolating(apply: Callable[[Sequence[EventT]], ResultT], events: Sequence[EventT],
                    reject: Callable[[EventT, Exception], None]) -> list[ResultT]:
    """The results of the transactions that applied ``events``, with each failing event passed to ``reject``."""
    try:
        return [apply(events)]
    except Exception as exc:  # any failure is isolated to the event that causes it
        if len(events) == 1:
            reject(events[0], exc)
            return []
        log.warning("batch_failed_splitting", events=len(events), error=f"{type(exc).__name__}: {exc}")
        middle = len(events) // 2
        return apply_isolating(apply, events[:middle], reject) + apply_isolating(apply, events[middle:], reject)
