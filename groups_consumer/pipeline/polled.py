"""Stage 1: a polled batch, decoded message by message, possibly ahead of its turn.

One consumer process alternates with PostgreSQL: while a statement of a batch runs in the server, the process
waits for its answer. The consumer therefore polls the next batch before applying the current one (only what
librdkafka has already fetched: it never waits for it) and decodes it in those waits, a few messages at a
time, until each answer arrives (``bulk_sql.filling_waits``); once every message is decoded, the waits go on
with the facts each event asserts (``FactUpdater.asserted``: what the fact sources' ``updates`` say, which
needs no database). Neither has a side effect: what decoding found for each message (an event, or the
DecodeError that dead-letters it) is kept with the message, the facts asserted by event, and dead-lettering,
accounting and applying happen in the batch's turn, exactly as for a batch decoded then.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, NamedTuple

import structlog
from confluent_kafka import KafkaError

from groups_consumer.errors import DecodeError
from groups_consumer.pipeline.decode import EventDecoder, message_headers
from groups_consumer.plugins.events import Origin, PlatformEvent

if TYPE_CHECKING:
    from confluent_kafka import Message

    from groups_consumer.pipeline.facts_update import Asserted

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
    before), then, with ``assert_facts``, finds the facts of a few more decoded events (``asserted``);
    ``decoded`` decodes the rest. Kafka errors are logged and left out (but partition ends, left out silently),
    and so, with ``is_before``, are messages older than a replay's start."""

    def __init__(self, messages: list[Message], decoder: EventDecoder,
                 is_before: Callable[[Message], bool] | None = None,
                 assert_facts: Callable[[PlatformEvent], Asserted] | None = None) -> None:
        self.messages = messages
        self._decoder, self._is_before, self._assert_facts = decoder, is_before, assert_facts
        self._done: list[Decoded] = []
        self._next = 0
        self._asserted: dict[Origin, Asserted] = {}
        self._next_asserted = 0  # in ``_done``
        self._stalled = False

    @property
    def asserted(self) -> Mapping[Origin, Asserted]:
        """The facts asserted by the events whose turn came in a step, by where each was read."""
        return self._asserted

    def step(self) -> bool:
        """Decode up to ``STEP`` more messages, or, once every message is decoded, find the facts of up to
        ``STEP`` more events; False once nothing is left. Code that raises anything but a DecodeError (a bug, in
        the decoder or a fact source) stops the steps there: it raises again in this batch's own turn
        (``decoded``, or the batch's own call of the fact sources), not inside the statement of the batch whose
        wait this is, which would take it for a failure of its own events."""
        if self._stalled:
            return False
        try:
            if self._next < len(self.messages):
                end = min(self._next + STEP, len(self.messages))
                while self._next < end:
                    self._receive(self.messages[self._next])
                    self._next += 1
            elif self._assert_facts is not None:
                self._assert_some(self._assert_facts)
        except Exception:  # left for the batch's own turn to raise
            self._stalled = True
            return False
        return self._next < len(self.messages) or (self._assert_facts is not None
                                                   and self._next_asserted < len(self._done))

    def _assert_some(self, assert_facts: Callable[[PlatformEvent], Asserted]) -> None:
        """Find the facts of up to ``STEP`` more decoded events."""
        end = min(self._next_asserted + STEP, len(self._done))
        while self._next_asserted < end:
            origin, _message, outcome = self._done[self._next_asserted]
            if isinstance(outcome, PlatformEvent):
                self._asserted[origin] = assert_facts(outcome)
            self._next_asserted += 1

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
        self._next_asserted = sum(1 for d in self._done[:self._next_asserted]
                                  if (d.origin.topic, d.origin.partition) not in partitions)
        self._done = [d for d in self._done if (d.origin.topic, d.origin.partition) not in partitions]
        self._asserted = {origin: facts for origin, facts in self._asserted.items()
                          if (origin.topic, origin.partition) not in partitions}

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
