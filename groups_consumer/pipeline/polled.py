"""Stage 1: a polled batch, decoded message by message, possibly ahead of its turn.

One consumer process alternates with PostgreSQL: while a statement of a batch runs in the server, the process
waits for its answer. The consumer therefore polls the next batch before applying the current one (only what
librdkafka has already fetched: it never waits for it) and decodes it in those waits, a few messages at a
time, until each answer arrives (``bulk_sql.filling_waits``). Decoding has no side effect: what it found for
each message (an event, or the DecodeError that dead-letters it) is kept with the message, and dead-lettering,
accounting and applying happen in the batch's turn, exactly as for a batch decoded then.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, NamedTuple

import structlog
from confluent_kafka import KafkaError

from groups_consumer.errors import DecodeError
from groups_consumer.pipeline.decode import EventDecoder, message_headers
from groups_consumer.plugins.events import Origin, PlatformEvent

if TYPE_CHECKING:
    from confluent_kafka import Message

log = structlog.get_logger(__name__)

#: Messages decoded per step while waiting for PostgreSQL: about a third of a millisecond of work, so an
#: answer that arrives meanwhile waits no longer than that.
STEP = 16


class Decoded(NamedTuple):
    """One received message, where it was read, and what decoding it gave."""

    origin: Origin
    message: Message
    outcome: PlatformEvent | DecodeError


class PolledBatch:
    """The messages of one poll, decoded on demand: ``step`` decodes a few more (from the waits of the batch
    before), ``decoded`` the rest. Kafka errors are logged and left out (but partition ends, left out silently),
    and so, with ``is_before``, are messages older than a replay's start."""

    def __init__(self, messages: list[Message], decoder: EventDecoder,
                 is_before: Callable[[Message], bool] | None = None) -> None:
        self.messages = messages
        self._decoder, self._is_before = decoder, is_before
        self._done: list[Decoded] = []
        self._next = 0
        self._stalled = False

    def step(self) -> bool:
        """Decode up to ``STEP`` more messages; False once every message is decoded. A decoder that raises
        anything but a DecodeError (a bug) stops the steps there: it raises again in this batch's own turn
        (``decoded``), not inside the statement of the batch whose wait this is, which would take it for a
        failure of its own events."""
        if self._stalled:
            return False
        end = min(self._next + STEP, len(self.messages))
        try:
            while self._next < end:
                self._receive(self.messages[self._next])
                self._next += 1
        except Exception:  # left for ``decoded`` to raise
            self._stalled = True
            return False
        return self._next < len(self.messages)

    def decoded(self) -> list[Decoded]:
        """Every received message with what decoding it gave, in poll order."""
        for message in self.messages[self._next:]:
            self._receive(message)
        self._next = len(self.messages)
        return self._done

    def extend(self, messages: list[Message]) -> None:
        """Add messages polled since (to decode in the batch's turn)."""
        self.messages = self.messages + messages

    def drop(self, partitions: Collection[tuple[str, int]]) -> None:
        """Leave out the messages of ``partitions`` (revoked: their new owner reads them again)."""
        self._next = sum(1 for m in self.messages[:self._next] if (m.topic(), m.partition()) not in partitions)
        self.messages = [m for m in self.messages if (m.topic(), m.partition()) not in partitions]
        self._done = [d for d in self._done if (d.origin.topic, d.origin.partition) not in partitions]

    def _receive(self, message: Message) -> None:
        if (kafka_error := message.error()) is not None:
            if kafka_error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka_error", error=str(kafka_error))
            return
        if self._is_before is not None and self._is_before(message):
            return
        origin = Origin.of(message)
        try:
            outcome: PlatformEvent | DecodeError = self._decoder.decode(message.value(), message_headers(message),
                                                                        origin)
        except DecodeError as error:
            outcome = error
        self._done.append(Decoded(origin, message, outcome))
