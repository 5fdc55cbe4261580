"""Dead letters: messages that cannot be decoded go to a topic, with why and where they came from.

The original key, value and headers are kept; ``dlq_*`` headers are added. ``DeadLetterLimit`` stops the
consumer when too much is going to the dead-letter topic (a bad deploy should stop consumption, not drain
a topic into the DLQ).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from groups_consumer.errors import DecodeError
from groups_consumer.pipeline.decode import message_headers
from groups_consumer.plugins.events import Origin


class DeadLetterLimitExceeded(RuntimeError):
    """Too many undecodable messages: the consumer stops without committing the batch."""


@dataclass(frozen=True)
class DeadLetterLimit:
    """The policy: stop after ``max_consecutive`` invalid messages in a row, or when over ``max_ratio`` of
    the last ``window`` messages were invalid."""

    max_consecutive: int = 1000
    max_ratio: float = 0.5
    window: int = 10_000


@dataclass
class DeadLetterCounter:
    """The state of one consumer against a ``DeadLetterLimit``."""

    limit: DeadLetterLimit
    consecutive: int = 0
    recent: deque[bool] = field(default_factory=deque)
    invalid: int = 0

    def record(self, valid: bool) -> None:
        """Count a message; raise DeadLetterLimitExceeded when a limit is passed."""
        self.consecutive = 0 if valid else self.consecutive + 1
        self.recent.append(valid)
        self.invalid += not valid
        if len(self.recent) > self.limit.window:
            self.invalid -= not self.recent.popleft()
        if self.consecutive > self.limit.max_consecutive:
            raise DeadLetterLimitExceeded(f"{self.consecutive} undecodable messages in a row")
        if len(self.recent) >= self.limit.window and self.invalid / len(self.recent) > self.limit.max_ratio:
            raise DeadLetterLimitExceeded(f"{self.invalid} of the last {len(self.recent)} messages were undecodable")


class DeadLetterQueue:
    """Produces dead letters; ``flush`` before committing the offsets of the messages they replace."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer: Producer | None = producer  # None once closed
        self.topic = topic
        self.sent = 0
        self._failures: list[str] = []

    def send(self, message: Message, error: DecodeError) -> None:
        """Dead-letter one message."""
        origin = Origin.of(message)
        headers: list[tuple[str, str | bytes | None]] = [
            *(message_headers(message) or []),
            ("dlq_reason", error.reason.encode()), ("dlq_error", error.detail[:1000].encode()),
            ("dlq_topic", origin.topic.encode()), ("dlq_partition", str(origin.partition).encode()),
            ("dlq_offset", str(origin.offset).encode())]
        if error.exception:
            headers.append(("dlq_exception", error.exception.encode()))
        producer = self._open_producer()
        producer.produce(self.topic, key=message.key(), value=message.value(), headers=headers,
                         on_delivery=self._delivered)
        producer.poll(0)
        self.sent += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged; raise if some are not."""
        remaining = self._open_producer().flush(timeout_s)
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise RuntimeError(f"dead letters not delivered: {remaining} pending, failures {failures[:3]}")

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is pending (best effort) and release the producer."""
        self._open_producer().flush(timeout_s)
        self.producer = None

    def _open_producer(self) -> Producer:
        if self.producer is None:
            raise RuntimeError("the dead-letter queue is closed")
        return self.producer

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(str(error))
