"""Backpressure from the outbox to the consumers: reading pauses while too many changes wait to be published.

While the broker refuses publishing, writers go on recording changes and the outbox grows; past
``MEMBERSHIP_OUTBOX_MAX_PENDING`` rows waiting, consumers stop reading events (their partitions paused, their
group membership kept) until the relay brings it below nine tenths of that. Nothing is lost: unread events
wait in Kafka (up to the topic's retention), recorded changes wait in the outbox. Syncs, time passes and
operators' changes still write (they are bounded by the number of users and groups).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.db import DatabaseError, connection

from groups_consumer.publishing import outbox
from groups_consumer.publishing.config import PublishingSettings

log = structlog.get_logger(__name__)


class OutboxGate:
    """Open while the outbox is under its limit; closes above ``max_pending`` and opens again below nine tenths.
    The outbox is counted at most every ``check_every_s`` seconds."""

    def __init__(self, check_every_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._check_every_s, self._clock = check_every_s, clock
        self._next_check = 0.0
        #: The last decision (``is_closed`` decides again when due).
        self.closed = False

    def is_closed(self) -> bool:
        """True while consumers should not read events; as last decided while the database is away."""
        if self._clock() < self._next_check:
            return self.closed
        self._next_check = self._clock() + self._check_every_s
        try:
            self._decide(PublishingSettings.current())
        except DatabaseError as exc:  # the batch's own retries report and wait for the database
            log.warning("outbox_not_counted", error=str(exc))
            connection.close()
        return self.closed

    def _decide(self, settings: PublishingSettings) -> None:
        if not settings.enabled:
            self.closed = False
        elif self.closed:
            if not outbox.over_limit(int(settings.max_pending * 0.9)):
                self.closed = False
                log.info("outbox_below_limit_resuming", max_pending=settings.max_pending)
        elif outbox.over_limit(settings.max_pending):
            self.closed = True
            log.warning("outbox_full_pausing", max_pending=settings.max_pending,
                        hint="the relay is not publishing: see publish_waiting in its log")
