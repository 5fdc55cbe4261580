"""What the consumer counts, in one place: each batch and each dead letter is entered once, by
``ConsumerLedger``, into the consumer's statistics (``ConsumerStats``, logged as ``consumer_stats``), its status
report (``groups-consumer status``), the Prometheus metrics and the dead-letter limit, so that they count the
same things."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Message

from groups_consumer.pipeline import metrics
from groups_consumer.pipeline.batch import BatchResult
from groups_consumer.pipeline.dead_letter import DeadLetterCounter
from groups_consumer.pipeline.status_report import StatusReporter
from groups_consumer.plugins.events import Origin


@dataclass
class ConsumerStats:
    """Counters of a consumer process, logged periodically as ``consumer_stats``."""

    messages: int = 0
    events: int = 0
    batches: int = 0
    batches_in_halves: int = 0
    dead_letters: int = 0
    retries: int = 0
    membership_changes: int = 0
    last_batch_ms: float = 0.0
    started: float = field(default_factory=time.monotonic)
    last_message: float = 0.0
    last_assignment: float = 0.0

    @classmethod
    def added_up(cls, parts: Sequence[ConsumerStats]) -> ConsumerStats:
        """The counters of several consumers (a replay's processes) as one: counts added, the earliest start,
        the latest message and assignment, the longest last batch."""
        counts = ("messages", "events", "batches", "batches_in_halves", "dead_letters", "retries",
                  "membership_changes")
        return cls(**{name: sum(getattr(part, name) for part in parts) for name in counts},
                   last_batch_ms=max(part.last_batch_ms for part in parts),
                   started=min(part.started for part in parts),
                   last_message=max(part.last_message for part in parts),
                   last_assignment=max(part.last_assignment for part in parts))

    def idle_s(self) -> float:
        """Seconds since the last message or partition assignment; 0 until partitions were first assigned
        (a consumer waiting for a dead member's session to expire is not idle)."""
        if not self.last_assignment:
            return 0.0
        return time.monotonic() - max(self.last_message, self.last_assignment)

    def events_per_s(self) -> float:
        """Mean decoded events per second since start."""
        return self.events / max(time.monotonic() - self.started, 1e-9)

    def log_fields(self) -> dict[str, float]:
        """The counters as the fields of the ``consumer_stats`` and ``consumer_stopped`` log lines."""
        return {"messages": self.messages, "events": self.events, "batches": self.batches,
                "batches_in_halves": self.batches_in_halves,
                "dead_letters": self.dead_letters, "retries": self.retries,
                "membership_changes": self.membership_changes, "events_per_s": round(self.events_per_s(), 1),
                "last_batch_ms": round(self.last_batch_ms, 1)}


@dataclass(frozen=True)
class BatchOutcome:
    """What one polled batch did, once applied and its offsets committed."""

    #: Everything the poll returned, Kafka errors (such as partition ends) included.
    polled: int
    #: The messages among them, those a replay skips (older than its start) included.
    messages: int
    #: The results of the transactions that applied the batch's events.
    results: Sequence[BatchResult]
    #: From the poll's return to the commit.
    seconds: float
    #: Applied in two halves at once (``halves``).
    in_halves: bool = False

    @classmethod
    def of(cls, polled: Sequence[Message], results: Sequence[BatchResult], seconds: float, *,
           in_halves: bool = False) -> BatchOutcome:
        """The outcome of the batch ``polled``, applied by the transactions of ``results``."""
        return cls(len(polled), sum(1 for message in polled if not message.error()), results, seconds, in_halves)

    @property
    def events(self) -> int:
        """The events applied (an event that failed to apply is a dead letter, not counted here)."""
        return sum(result.events for result in self.results)

    @property
    def membership_changes(self) -> int:
        """Memberships joined or left."""
        return sum(len(result.diff) for result in self.results)


class ConsumerLedger:
    """Enters what a consumer does into its ``ConsumerStats``, its ``StatusReporter``, the Prometheus metrics
    and its ``DeadLetterCounter``. Every message counts once against the dead-letter limit: as a dead letter
    (``record_dead_letter``) or as valid (``record_valid``); ``record_dead_letter`` and ``record_valid`` raise
    ``DeadLetterLimitExceeded`` when the limit is passed."""

    def __init__(self, stats: ConsumerStats, status: StatusReporter, limit: DeadLetterCounter) -> None:
        self._stats = stats
        self._status = status
        self._limit = limit

    def record_batch(self, outcome: BatchOutcome) -> None:
        """Count a batch that is applied and committed."""
        self._stats.messages += outcome.messages
        self._stats.last_message = time.monotonic()
        self._stats.events += outcome.events
        self._stats.batches += 1
        if outcome.in_halves:
            self._stats.batches_in_halves += 1
            metrics.BATCHES_IN_HALVES.inc()
        self._stats.membership_changes += outcome.membership_changes
        self._stats.last_batch_ms = outcome.seconds * 1000
        for result in outcome.results:
            self._status.record_batch(result)
        metrics.MESSAGES.inc(outcome.polled)
        metrics.EVENTS.inc(outcome.events)
        metrics.MEMBERSHIP_CHANGES.inc(outcome.membership_changes)
        metrics.BATCH_SECONDS.observe(outcome.seconds)

    def record_dead_letter(self, origin: Origin, reason: str, *, poison: bool = True) -> None:
        """Count the message read at ``origin``, sent to the dead-letter topic for ``reason``; a ``poison``
        message counts against the dead-letter limit (one only one plugin could not take is counted by the
        caller, as valid)."""
        metrics.DEAD_LETTERS.labels(reason).inc()
        self._status.record_dead_letter(origin.topic, origin.partition, reason)
        self._stats.dead_letters += 1
        if poison:
            self._limit.record(valid=False)

    def record_valid(self, count: int = 1) -> None:
        """Count ``count`` messages that are not dead letters against the dead-letter limit."""
        for _ in range(count):
            self._limit.record(valid=True)
