"""Stage 4, on two connections: one batch applied in two halves at once, split by user.

At a million users, a batch waits for PostgreSQL more than it computes: its rows are spread over more pages
than the server's memory holds, and one backend reads them one after another (docs/event-path.rst). A second
connection, in a second thread, lets a second backend read and write at the same time. Its half of the batch
is the updates of the odd user ids, this thread's the even ones, so the two transactions never touch the
same user's rows (facts, course facts, memberships, change log), and neither waits for the other's locks.

It pays only while the consumer waits for PostgreSQL more than it works; where the process's own CPU is the
bottleneck, the second thread only takes the interpreter's lock from the first (docs/event-path.rst: 1.08
times the events/s at a million users, 0.89 at 100,000, on one 2-core machine). ``WaitsForDatabase`` tells
which, batch after batch, for the consumer's ``auto`` setting.

Nothing else changes: the batch is still applied before its offsets are committed (both halves, or the
error of either is raised, after both ended), and applying again what one half already committed changes
nothing, as for a batch whose users another consumer held (``batch``). Each half has its own
``BatchProcessor``: each transaction checks the definitions' version and reloads its own catalog.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime

import structlog
from django.db import connection
from django.utils import timezone

from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.pipeline.batch import BatchProcessor, BatchResult
from groups_consumer.pipeline.facts_update import TRANSIENT_DB_ERRORS, Asserted, PendingUpdate
from groups_consumer.plugins.events import Origin, PlatformEvent

log = structlog.get_logger(__name__)
#: Halves are taken up when the consumer's process was busy for less than this share of the time it applied a
#: large batch, and left when busier than ``BUSY_OFF``. Whole runs of one process over a backlog keep it busy
#: about 0.54 of their time at a million users in one transaction and 0.58 in halves, at 100,000 users 0.87 and
#: 0.81 (``bench.compare``, 2026-12-07).
BUSY_ON = 0.65
BUSY_OFF = 0.75


class InHalves:
    """Applies batches in two halves at once (see the module docstring): ``process`` as
    ``BatchProcessor.process``. ``close`` ends the second thread and its connection."""

    def __init__(self, processor: BatchProcessor) -> None:
        self.processor = processor
        self._other: BatchProcessor | None = None  # made in the second thread, on its connection
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="apply-odd-users")

    def process(self, events: Sequence[PlatformEvent], now: datetime | None = None,
                asserted: Mapping[Origin, Asserted] | None = None) -> BatchResult:
        """Apply a batch, the odd users' updates in the second thread; raises the error of either half once
        both have ended."""
        now = now or timezone.now()
        result = BatchResult(events=len(events))
        pending = self.processor.pending(events, result, asserted)
        even = [update for update in pending if update.update.user_id % 2 == 0]
        odd = [update for update in pending if update.update.user_id % 2 == 1]
        # An empty context: the second thread must not see this one's context variables (``filling_waits``).
        other = self._thread.submit(contextvars.Context().run, self._apply_other, odd, now)
        try:
            self.processor.apply(even, result, now)
        except BaseException:
            if (other_error := other.exception()) is not None:  # waits for the second half
                log.warning("second_half_failed_too", error=f"{type(other_error).__name__}: {other_error}")
            raise
        if (other_error := other.exception()) is not None:  # waits for the second half
            raise other_error
        result.add(other.result())
        return result

    def _apply_other(self, pending: list[PendingUpdate], now: datetime) -> BatchResult:
        """In the second thread: apply ``pending``; a transient database error closes this thread's connection (as
        the consumer closes its own before retrying), then, as any error, is raised to the batch."""
        result = BatchResult()
        if not pending:
            return result
        try:
            if self._other is None:
                self._other = BatchProcessor(GroupCatalog.load(), self.processor.updater)
            self._other.apply(pending, result, now)
        except TRANSIENT_DB_ERRORS:
            connection.close()
            raise
        return result

    def close(self) -> None:
        """Close the second thread's connection, then end the thread."""
        self._thread.submit(_close_connection).result()
        self._thread.shutdown()


class WaitsForDatabase:
    """Whether the consumer waits for its database a good part of the time: the CPU time of its whole process
    (every thread) over the wall time of each batch application measured, with hysteresis (``BUSY_ON``,
    ``BUSY_OFF``)."""

    def __init__(self, cpu: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cpu, self._clock = cpu, clock
        #: The answer after the last batch measured (False before the first).
        self.waiting = False

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """Measure the batch applied inside and update ``waiting``."""
        cpu, wall = self._cpu(), self._clock()
        yield
        elapsed = self._clock() - wall
        if elapsed <= 0:
            return
        busy = (self._cpu() - cpu) / elapsed
        waiting = busy < (BUSY_OFF if self.waiting else BUSY_ON)
        if waiting != self.waiting:
            log.info("halves_taken_up" if waiting else "halves_left", process_busy=round(busy, 2))
        self.waiting = waiting


def _close_connection() -> None:
    """Close the calling thread's connection (``connection`` resolves per thread when called, not when named)."""
    connection.close()
