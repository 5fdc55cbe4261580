"""Stage 5: the Kafka consumer loop.

Guarantees:

- A batch is polled, decoded (undecodable messages are dead-lettered), applied in one database transaction,
  then its offsets are committed synchronously. Offsets are never committed before the transaction that
  applied them, so a crash at any point re-delivers the batch, and re-applying it changes nothing
  (facts are monotonic, memberships are diffs): at-least-once delivery, exactly-once effects.
- Decoding ahead (``CONSUMER_DECODE_AHEAD``, on by default, while the host has a CPU to spare: ``spare_cpu``):
  what librdkafka has already fetched beyond a batch is polled before the batch is applied and decoded while
  the batch waits for PostgreSQL, then the facts its events assert are found there too (``polled``); it is
  the next batch, dead-lettered, applied and committed in its turn. Nothing of it is committed or
  dead-lettered before then, so stopping or crashing with a batch polled ahead only delivers it again.
- Applying in halves (``CONSUMER_APPLY_IN_HALVES``, off by default; ``auto``: while the process is busy less
  than 0.65 of the time it applies a batch, waiting for PostgreSQL, and the host has a CPU to spare;
  PostgreSQL only): a batch of at least ``halves_from`` messages is applied as two transactions at once, one
  per half of its users, on two connections (``halves``). Its offsets are committed once both have committed;
  if either fails, the batch is retried, or its events isolated, whole (an isolated event alone, in one
  transaction), and applying again what the other half committed changes nothing.
- Dead letters are acknowledged by the broker before the offsets of their messages are committed.
- Rebalances: partitions are only revoked inside a poll. A batch's offsets are committed before the next
  poll but the one polling ahead, made before the batch is applied: a partition revoked there, or while the
  batch waits for the database, is another member's when the batch commits, and its offsets are left to that
  member, which reads the partition again from the last committed offset and applies those events again
  (changing nothing). The batch polled ahead drops the messages of revoked partitions. Eager or cooperative
  assignor alike. Events of one user may arrive on several partitions (enrollments are keyed by course):
  per-user row locks in the fact stage serialize consumers.
- A static assignment (``partitions``: a replay's share of the topics) is assigned when the loop starts,
  without joining the group: nothing is revoked, and offsets are committed under the group id all the same.
- Transient database errors are retried with backoff, never skipped; retriable offset-commit errors are
  retried, and a commit that still fails only means the applied batch is delivered again (harmlessly).
  Too many dead letters stop the loop.
- While the database is away, the batch waits in the group: polls with its partitions paused keep the member
  alive (no ``max.poll.interval.ms`` expiry, no rebalance), and the offsets committed afterwards are only
  those of partitions it still owns.
- While more membership changes than ``MEMBERSHIP_OUTBOX_MAX_PENDING`` wait to be published, reading pauses
  the same way (``publishing.backpressure``).
- ``stop()`` (SIGTERM / SIGINT) lets the current batch finish and commit, then closes the consumer. A member
  never leaves in the middle of a rebalance: it keeps polling (and applying what it gets) until no rebalance
  has been in progress for a heartbeat interval plus 0.5 s (at least ``QUIET_BEFORE_LEAVING_S``), for at
  most ``LEAVE_AFTER_REBALANCE_S``. A LeaveGroup while the group is forming loses the group's leader for
  good on tansu 0.6 (the embedded broker): its LeaveGroup handler for a forming group removes the member but
  keeps it as ``leader``, so every later JoinGroup names the departed member leader, no one ever assigns
  partitions and the group id stays unusable until the broker restarts. A rebalance that does not complete
  within ``REBALANCE_WARNING_S`` is logged (``rebalance_not_completing``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import structlog
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Message, TopicPartition
from django.db import connection

from groups_consumer import bulk_sql
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.errors import DecodeError
from groups_consumer.pipeline import metrics
from groups_consumer.pipeline.accounting import BatchOutcome, ConsumerLedger, ConsumerStats
from groups_consumer.pipeline.batch import BatchProcessor, BatchResult
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.dead_letter import DeadLetterCounter, DeadLetterQueue
from groups_consumer.pipeline.decode import EventDecoder, registry_writer_schemas
from groups_consumer.pipeline.facts_update import TRANSIENT_DB_ERRORS, Asserted, FactUpdater
from groups_consumer.pipeline.garbage import CollectBetweenBatches
from groups_consumer.pipeline.halves import InHalves, WaitsForDatabase
from groups_consumer.pipeline.isolate import apply_isolating
from groups_consumer.pipeline.polled import Decoded, PolledBatch
from groups_consumer.pipeline.spare_cpu import SpareCpu
from groups_consumer.pipeline.status_report import PartitionPosition, StatusReporter
from groups_consumer.plugins import registry
from groups_consumer.plugins.events import Origin, PlatformEvent
from groups_consumer.publishing import outbox
from groups_consumer.publishing.backpressure import OutboxGate
from groups_consumer.publishing.config import PublishingSettings

log = structlog.get_logger(__name__)
COMMIT_ATTEMPTS = 5
LEAVE_AFTER_REBALANCE_S = 15.0
QUIET_BEFORE_LEAVING_S = 1.5  # at least; one heartbeat interval + 0.5 s (3 intervals of the test broker's 0.5 s)
REBALANCE_WARNING_S = 60.0


@dataclass(frozen=True)
class StartPosition:
    """Where a replay starts in each partition: the beginning, or the first message at or after ``time``.

    Seeking uses the broker's time index; messages older than ``time`` that a broker still returns (some
    answer 0 instead of "none" for a partition with nothing that recent) are skipped by ``is_before``.
    """

    time: datetime | None = None

    def is_before(self, message: Message) -> bool:
        """True for a message older than the start time."""
        _kind, millis = message.timestamp()
        return self.time is not None and millis >= 0 and millis < self.time.timestamp() * 1000

    def positions(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The partitions with their start offsets set: a partition the consumer's group already committed (read
        by another member, before a rebalance gave it to this one) resumes there, any other starts at the
        beginning or at the time."""
        committed = consumer.committed(partitions, timeout=10)
        fresh = [p for p in committed if p.offset < 0]
        return [p for p in committed if p.offset >= 0] + (self._starts(consumer, fresh) if fresh else [])

    def _starts(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
        if self.time is None:
            return [TopicPartition(p.topic, p.partition, OFFSET_BEGINNING) for p in partitions]
        millis = int(self.time.timestamp() * 1000)
        wanted = [TopicPartition(p.topic, p.partition, millis) for p in partitions]
        found = consumer.offsets_for_times(wanted, timeout=10)
        # No message at or after the time: start at the end (offset -1 means "none found").
        return [p if p.offset >= 0 else TopicPartition(p.topic, p.partition, OFFSET_END) for p in found]


def poll_batch(consumer: Consumer, config: ConsumerConfig) -> list[Message]:
    """The next batch: the messages already fetched, up to ``batch_size``, without waiting for more; when there
    are none, the first to arrive within ``batch_timeout_s`` and whatever came with it.

    Batches so grow with the load: under a steady stream a batch holds what arrived while the previous one was
    applied, so an event waits about one batch, never a fixed window (``consume(n, timeout)`` waits the
    whole timeout unless ``n`` messages are there).
    """
    messages = consumer.consume(config.batch_size, 0)
    if not messages:
        messages = consumer.consume(1, config.batch_timeout_s)
        if messages and config.batch_size > 1:
            messages += consumer.consume(config.batch_size - 1, 0)
    return messages


class EventConsumer:
    """Consumes openedx-events into facts and memberships (see the module docstring for guarantees)."""

    def __init__(self, config: ConsumerConfig, decoder: EventDecoder | None = None,
                 clock: Callable[[], float] = time.monotonic, stats_every_s: float = 10.0,
                 start: StartPosition | None = None,
                 accept: Callable[[PlatformEvent], bool] = lambda event: True,
                 on_batch: Callable[[list[Message]], None] = lambda messages: None, report_partitions: bool = True,
                 partitions: Sequence[tuple[str, int]] | None = None):
        self.config = config
        self._start, self._accept, self._on_batch = start, accept, on_batch
        #: A static assignment, (topic, partition) pairs: assigned when the loop starts, without joining the group
        #: (no join to wait for, no rebalance; offsets are still committed under ``group_id``). None: subscribe.
        self._partitions = partitions
        self.decoder = decoder or EventDecoder(
            writer_schema=registry_writer_schemas(config.schema_registry_url) if config.schema_registry_url else None,
            max_clock_skew=timedelta(seconds=config.max_clock_skew_s))
        self._updater = FactUpdater(registry.fact_sources())
        self.stats = ConsumerStats()
        self._status = StatusReporter(config.group_id, report_partitions)
        self._ledger = ConsumerLedger(self.stats, self._status, DeadLetterCounter(config.dead_letter_limit))
        self._clock = clock
        self._stats_every_s = stats_every_s
        self._consumer = config.new_consumer()
        settings = config.kafka.config("consumer")
        self._cooperative = "cooperative" in str(settings.get("partition.assignment.strategy", ""))
        # A rebalance another member starts reaches this one at its next heartbeat (librdkafka default 3 s).
        self._quiet_before_leaving_s = max(QUIET_BEFORE_LEAVING_S,
                                           int(settings.get("heartbeat.interval.ms", 3000)) / 1000 + 0.5)
        self._dead_letters = DeadLetterQueue(config.new_producer(), config.dlq_topic)
        self._stopping = False
        self._rebalancing = True  # until the first assignment; again from a revocation to the next assignment
        self._rebalancing_since = time.monotonic()
        self._processor: BatchProcessor | None = None
        self._halves: InHalves | None = None  # made at the first batch applied in halves
        self._waits_for_database = WaitsForDatabase()  # for ``apply_in_halves="auto"``
        self._ahead: PolledBatch | None = None  # the next batch, polled and decoding while this one is applied
        self._spare_cpu = SpareCpu()  # decoding ahead only pays when a core would otherwise be idle
        self._garbage = CollectBetweenBatches()
        self._outbox_gate = OutboxGate()
        self._next_stats = 0.0

    def stop(self) -> None:
        """Ask the loop to stop after the current batch."""
        self._stopping = True

    def run(self, until: Callable[[ConsumerStats], bool] = lambda stats: False) -> ConsumerStats:
        """Consume until ``stop()`` or ``until(stats)``; commits and closes on the way out."""
        self._rebalancing_since = time.monotonic()
        if self._partitions is None:
            self._consumer.subscribe(list(self.config.topics), on_assign=self._assigned, on_revoke=self._revoked,
                                     on_lost=self._lost)
        else:
            self._assigned(self._consumer, [TopicPartition(topic, number) for topic, number in self._partitions],
                           static=True)
        self._garbage.start()
        log.info("consumer_started", topics=self.config.topics, group_id=self.config.group_id,
                 kafka=self.config.kafka.describe("consumer"))
        try:
            while not self._stopping and not until(self.stats):
                if self._outbox_gate.is_closed():
                    self._wait_in_group(1.0)
                    self._log_stats_when_due()
                    continue
                if self._poll_and_handle():
                    self._garbage.after_batch()
                self._log_stats_when_due()
            self._settle_rebalance()
        finally:
            try:
                self._status.flush(self.partition_positions())
            finally:
                self._garbage.stop()
                try:
                    if self._halves is not None:
                        self._halves.close()
                finally:
                    self._consumer.close()
                self._dead_letters.close()
                log.info("consumer_stopped", **self.stats.log_fields())
        return self.stats

    def _settle_rebalance(self) -> None:
        """Before leaving, keep polling (rebalance callbacks run inside the poll; a rebalance that another member
        just started reaches this one at its next heartbeat) and applying, until no rebalance has been in progress
        for ``_quiet_before_leaving_s``, or ``LEAVE_AFTER_REBALANCE_S`` passed. A consumer that never had an
        assignment, or a static one, leaves at once."""
        if not self.stats.last_assignment or self._partitions is not None:
            return  # never a member with partitions (it may not even reach the broker), or no group: nothing to settle
        started = time.monotonic()
        deadline = started + LEAVE_AFTER_REBALANCE_S
        waiting_logged = False
        while time.monotonic() < deadline:
            quiet_since = max(started, self.stats.last_assignment)
            if not self._rebalancing and time.monotonic() - quiet_since >= self._quiet_before_leaving_s:
                return
            if self._rebalancing and not waiting_logged:
                log.info("waiting_for_rebalance_before_leaving", timeout_s=LEAVE_AFTER_REBALANCE_S)
                waiting_logged = True
            self._poll_and_handle()
        log.warning("leaving_during_rebalance", waited_s=LEAVE_AFTER_REBALANCE_S)

    def _poll_and_handle(self) -> bool:
        """Handle a batch: the one polled during the previous batch (with what has arrived since, up to the batch
        size), else a new poll; True if it held messages.
        With ``decode_ahead``, and while the host has a CPU to spare (``spare_cpu``), what has already been
        fetched beyond it is polled first, to decode while it waits for the database (``polled``)."""
        batch, self._ahead = self._ahead, None
        if batch is None:
            messages = poll_batch(self._consumer, self.config)
            metrics.LAST_POLL.set_to_current_time()
            if not messages:
                return False
            batch = self._polled(messages)
        elif (room := self.config.batch_size - len(batch.messages)) > 0:
            batch.extend(self._consumer.consume(room, 0))  # what arrived since: the batch follows the load
            metrics.LAST_POLL.set_to_current_time()
        spare = (self.config.decode_ahead or self.config.apply_in_halves == "auto") and self._spare_cpu()
        if self.config.decode_ahead and spare:
            ahead = self._consumer.consume(self.config.batch_size, 0)
            metrics.LAST_POLL.set_to_current_time()
            self._ahead = self._polled(ahead) if ahead else None
        mode = self.config.apply_in_halves
        self._handle(batch, in_halves=self._halves_apply_to(len(batch.messages)) and (
            mode == "on" or (mode == "auto" and spare and self._waits_for_database.waiting)))
        return True

    def handle(self, messages: list[Message]) -> list[BatchResult]:
        """Decode, apply and commit one polled batch; the results of the transactions that applied it."""
        return self._handle(self._polled(messages))

    def _polled(self, messages: list[Message]) -> PolledBatch:
        return PolledBatch(messages, self.decoder, self._start.is_before if self._start is not None else None,
                           self._updater.asserted)

    def _handle(self, batch: PolledBatch, *, in_halves: bool = False) -> list[BatchResult]:
        """Decode (what was not decoded ahead), apply (``in_halves``: two halves at once) and commit a batch. It is
        counted (``accounting``), and handed to ``on_batch``, once applied and committed."""
        started = time.monotonic()
        decoded = batch.decoded()
        events = self._events_of(decoded)
        with bulk_sql.filling_waits(self._ahead.step if self._ahead is not None else None):
            results = self._apply(events, {item.origin: item.message for item in decoded}, batch.asserted,
                                  in_halves=in_halves)
        self._acknowledge(batch.messages)
        self._ledger.record_batch(BatchOutcome.of(batch.messages, results, seconds=time.monotonic() - started,
                                                  in_halves=in_halves))
        self._on_batch(batch.messages)
        return results

    def _events_of(self, decoded: list[Decoded]) -> list[PlatformEvent]:
        """The events of ``decoded`` that ``accept`` takes. A message that did not decode is dead-lettered; an
        event ``accept`` leaves out counts as valid against the dead-letter limit (one it takes counts once
        applied: ``_apply``)."""
        events: list[PlatformEvent] = []
        for origin, message, outcome in decoded:
            if isinstance(outcome, DecodeError):
                self._dead_letter(message, origin, outcome)
                if not outcome.poison:  # sound, but its fact source is unavailable: not a bad message
                    self._ledger.record_valid()
            elif self._accept(outcome):
                events.append(outcome)
            else:
                self._ledger.record_valid()
        return events

    def _apply(self, events: list[PlatformEvent], received: dict[Origin, Message],
               asserted: Mapping[Origin, Asserted], *, in_halves: bool = False) -> list[BatchResult]:
        """Apply ``events`` (``asserted``: the facts of those found ahead); one that fails on its own is isolated
        (``isolate``) and dead-lettered. Each counts once against the dead-letter limit, after applying: as a
        dead letter if it failed, as valid otherwise."""
        if not events:
            return []
        failed: list[PlatformEvent] = []
        results = apply_isolating(partial(self._apply_with_retries, asserted=asserted, in_halves=in_halves), events,
                                  partial(self._reject, received, failed))
        self._ledger.record_valid(len(events) - len(failed))
        for failure in (failure for result in results for failure in result.source_failures):
            origin = failure.event.origin
            if origin is None:  # not read from Kafka: nothing to dead-letter
                raise failure.error
            self._dead_letter(received[origin], origin, failure.error)  # counted as valid: it was applied
        return results

    def _acknowledge(self, messages: list[Message]) -> None:
        """Once the batch is applied: wait for the broker to acknowledge its dead letters, then commit its
        offsets."""
        self._dead_letters.flush()
        self._commit(messages)

    def _dead_letter(self, message: Message, origin: Origin, error: DecodeError) -> None:
        """Send one message to the dead-letter topic with why; counted against the dead-letter limit when it is
        poison (see ``DecodeError.poison``)."""
        log.warning("dead_letter", reason=error.reason, detail=error.detail, topic=origin.topic,
                    partition=origin.partition, offset=origin.offset)
        self._dead_letters.send(message, error)
        self._ledger.record_dead_letter(origin, error.reason, poison=error.poison)

    def _reject(self, received: dict[Origin, Message], failed: list[PlatformEvent], event: PlatformEvent,
                exc: Exception) -> None:
        """Dead-letter an event that fails to apply on its own (``apply_failed``, with the exception) and add it
        to ``failed``."""
        if event.origin is None:  # not read from Kafka: nothing to dead-letter
            raise exc
        log.error("event_failed", event_type=event.event_type, event_id=event.event_id,
                  error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        self._dead_letter(received[event.origin], event.origin,
                          DecodeError("apply_failed", f"{type(exc).__name__}: {exc}", type(exc).__name__))
        failed.append(event)

    def _apply_with_retries(self, events: Sequence[PlatformEvent], asserted: Mapping[Origin, Asserted], *,
                            in_halves: bool = False) -> BatchResult:
        delay = 0.2
        while True:
            try:
                large = self._halves_apply_to(len(events))  # an isolated event goes alone
                applier = self._in_halves() if in_halves and large else self._current_processor()
                measured = large and self.config.apply_in_halves == "auto"
                with self._waits_for_database.measuring() if measured else nullcontext():
                    return applier.process(events, asserted=asserted)
            except TRANSIENT_DB_ERRORS as error:
                self.stats.retries += 1
                metrics.DB_RETRIES.inc()
                log.warning("database_error_retrying", error=str(error), retry_in_s=delay)
                connection.close()
                self._wait_in_group(delay)
                delay = min(delay * 2, 30.0)

    def _wait_in_group(self, seconds: float) -> None:
        """Wait while keeping this member in its group: poll with every assigned partition paused, so polls
        return no message, serve rebalances and heartbeats, and ``max.poll.interval.ms`` never passes however
        long the database is away. A message a poll still returns (from a partition assigned during the wait)
        is sought back, so it is delivered again after the wait."""
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                self._consumer.pause(self._consumer.assignment())
                message = self._consumer.poll(min(left, 0.5))
                if message is not None and message.error() is None:
                    origin = Origin.of(message)
                    self._consumer.seek(TopicPartition(origin.topic, origin.partition, origin.offset))
        finally:
            self._consumer.resume(self._consumer.assignment())

    def _commit(self, messages: list[Message]) -> None:
        """Commit the offsets after ``messages`` in the partitions this member still owns (one revoked while the
        batch waited for the database is another member's now: it re-reads and re-applies the batch there)."""
        owned = {(p.topic, p.partition) for p in self._consumer.assignment()}
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                origin = Origin.of(message)
                key = (origin.topic, origin.partition)
                if key in owned:
                    next_offsets[key] = max(next_offsets.get(key, 0), origin.offset + 1)
        if not next_offsets:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        delay = 0.2
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as error:
                kafka_error = error.args[0]
                if not kafka_error.retriable() or attempt == COMMIT_ATTEMPTS:
                    # The batch is applied; without its offsets it will be delivered again (here or to the
                    # member that now owns the partition) and re-applying it changes nothing.
                    log.warning("offset_commit_failed", error=str(kafka_error), attempts=attempt)
                    return
                self.stats.retries += 1
                log.warning("offset_commit_retrying", error=str(kafka_error), retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _current_processor(self) -> BatchProcessor:
        """The batch processor (it reloads the groups itself when their definitions change: see ``batch``)."""
        if self._processor is None:
            self._processor = BatchProcessor(GroupCatalog.load(), self._updater)
            log.info("groups_loaded", groups=len(self._processor.catalog.groups))
        return self._processor

    def _halves_apply_to(self, size: int) -> bool:
        """Whether a batch of ``size`` messages (or events) may go in halves: large enough, on PostgreSQL."""
        return size >= self.config.halves_from and bulk_sql.is_postgres()

    def _in_halves(self) -> InHalves:
        """The batch processor, applying in halves (``halves``)."""
        if self._halves is None:
            self._halves = InHalves(self._current_processor())
        return self._halves

    def partition_positions(self) -> list[PartitionPosition]:
        """Position and lag (messages behind the end, as far as the broker reports it) of each assigned
        partition; None where the consumer has no position yet."""
        positions = []
        assignment = self._consumer.assignment()
        for position in self._consumer.position(assignment) if assignment else []:
            # None when the broker has not reported them yet (confluent-kafka's stub says otherwise).
            _low, high = self._consumer.get_watermark_offsets(position, cached=True) or (0, -1)  # type: ignore[unreachable]
            known = position.offset >= 0 and high >= 0
            positions.append(PartitionPosition(position.topic, position.partition,
                                               position.offset if position.offset >= 0 else None,
                                               max(high - position.offset, 0) if known else None))
        for p in positions:
            if p.lag is not None:
                metrics.LAG.labels(f"{p.topic}[{p.partition}]").set(p.lag)
        return positions

    def _outbox_fields(self) -> dict[str, float]:
        """The outbox's backlog (publishing on), also into the metrics; nothing while the database is away."""
        if not PublishingSettings.current().enabled:
            return {}
        try:
            backlog = outbox.report_backlog()
        except TRANSIENT_DB_ERRORS:
            connection.close()
            return {}
        return {"outbox_pending": backlog.pending, "outbox_oldest_age_s": round(backlog.oldest_age_s, 1),
                "outbox_full": self._outbox_gate.closed}

    def _log_stats_when_due(self) -> None:
        if self._clock() >= self._next_stats:
            self._next_stats = self._clock() + self._stats_every_s
            positions = self.partition_positions()
            log.info("consumer_stats", lag={f"{p.topic}[{p.partition}]": p.lag for p in positions},
                     **self.stats.log_fields(), **self._outbox_fields())
            self._status.flush(positions)
            if self._rebalancing and time.monotonic() - self._rebalancing_since > REBALANCE_WARNING_S:
                log.warning("rebalance_not_completing", seconds=round(time.monotonic() - self._rebalancing_since))

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition], *, static: bool = False) -> None:
        """The end of a rebalance: ``partitions`` is the whole assignment (eager) or what it adds (cooperative);
        or, ``static``, the assignment the loop starts with."""
        self.stats.last_assignment = time.monotonic()
        self._rebalancing = False
        if partitions and (static or self._start is not None):
            positions = self._start.positions(consumer, partitions) if self._start is not None else partitions
            if self._cooperative and not static:
                consumer.incremental_assign(positions)
            else:
                consumer.assign(positions)
        log.info("partitions_assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions], static=static)

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A rebalance revokes ``partitions`` (all of them when eager, those moving when cooperative). Nothing to
        commit: every batch applied before this poll was committed, and the batch polling ahead of its turn
        (if this is that poll) commits only the partitions still owned. The batch polled ahead drops their
        messages. They are resumed: librdkafka keeps a pause across reassignment, and one paused while the
        batch waited for the database must come back fetching."""
        self._rebalancing, self._rebalancing_since = True, time.monotonic()
        _consumer.resume(partitions)
        self._drop_ahead(partitions)
        log.info("partitions_revoked", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The session expired: ``partitions`` may already belong to other members (their uncommitted batches,
        if any, are delivered again there). Resumed, as in ``_revoked``."""
        self._rebalancing, self._rebalancing_since = True, time.monotonic()
        _consumer.resume(partitions)
        self._drop_ahead(partitions)
        log.warning("partitions_lost", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])

    def _drop_ahead(self, partitions: list[TopicPartition]) -> None:
        """Leave the messages of ``partitions`` out of the batch polled ahead: they are not this member's to apply
        any more (their new owner, possibly this member again, reads them from the committed offset)."""
        if self._ahead is not None:
            self._ahead.drop({(p.topic, p.partition) for p in partitions})
