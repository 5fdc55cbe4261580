"""The relay: publishes the outbox to Kafka, in id order, one relay at a time (``groups-consumer relay``).

A loop: hold the ``membership-relay`` lease (another relay waits as a standby and takes over when it
expires), read up to ``batch_size`` unpublished rows, produce them (idempotent producer, keyed by user id),
wait for the broker's acknowledgements, mark the acknowledged rows published. A row is marked only after
its acknowledgement, so a relay killed in between publishes it again, with the same ``ce_id``. When the broker
refuses (or the acknowledgements do not come), the rows from the first refused one on stay unpublished and
are retried with exponential backoff (0.5 s to 30 s), each failure logged as ``publish_failed`` and counted;
writers go on recording changes meanwhile (see ``config``: consumers pause past ``max_pending``). Published
rows are pruned after the retention.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import structlog
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from django.db import DatabaseError, connection

from groups_consumer.kafka_clients import KafkaClientSettings
from groups_consumer.pipeline import metrics
from groups_consumer.publishing import outbox
from groups_consumer.publishing.config import PublishingSettings
from groups_consumer.publishing.wire import MembershipEventWriter, register_schemas
from groups_consumer.scheduling.leases import LeaseLost, Leases, LeaseUnavailable

log = structlog.get_logger(__name__)
LEASE = "membership-relay"
#: Longer than a batch can take (its acknowledgements are awaited for the delivery timeout, 30 s, plus 5 s), so
#: the active relay renews it (every third of it) before it can expire.
LEASE_TTL = timedelta(seconds=60)
#: Idempotent (no duplicate or reordered message on the producer's own retries), every replica acknowledging;
#: a few milliseconds of batching.
PRODUCER_PROPERTIES = {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
#: How long a message may wait for its acknowledgement before it counts as refused (librdkafka's default is
#: 300 s); ``KAFKA_PRODUCER_MESSAGE_TIMEOUT_MS`` overrides it.
DELIVERY_TIMEOUT_MS = 30_000


class Relay:
    """Publishes outbox rows with ``producer`` to ``settings.topic``; see the module docstring."""

    def __init__(self, producer_factory: Callable[[], Producer], writer: MembershipEventWriter,
                 settings: PublishingSettings, *, batch_size: int = 5000, idle_s: float = 0.05,
                 ack_timeout_s: float = DELIVERY_TIMEOUT_MS / 1000 + 5, prune_every_s: float = 60.0,
                 stats_every_s: float = 10.0, standby_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        if not settings.topic:
            raise ValueError("publishing is off (KAFKA_MEMBERSHIP_TOPIC is not set)")
        self._new_producer, self._writer, self._settings = producer_factory, writer, settings
        self._topic = settings.topic
        self._producer = producer_factory()
        self._batch_size, self._idle_s, self._ack_timeout_s = batch_size, idle_s, ack_timeout_s
        self._prune_every_s, self._stats_every_s, self._standby_s = prune_every_s, stats_every_s, standby_s
        self._clock = clock
        self._stopping = False
        self._backoff = 0.0
        self.published = 0
        self.failures = 0

    @classmethod
    def connect(cls, kafka: KafkaClientSettings, registry: SchemaRegistryClient, settings: PublishingSettings,
                **options: object) -> Relay:
        """A relay with the service's Kafka settings, its schemas registered with ``registry``."""
        if not settings.topic:
            raise ValueError("publishing is off (KAFKA_MEMBERSHIP_TOPIC is not set)")
        ids = register_schemas(registry, settings.topic)
        writer = MembershipEventWriter(outbox.namespace(), ids)
        properties: dict[str, object] = {**PRODUCER_PROPERTIES}
        timeout_ms = kafka.config("producer").get("message.timeout.ms")
        if timeout_ms is None:
            properties["message.timeout.ms"] = timeout_ms = DELIVERY_TIMEOUT_MS
        options.setdefault("ack_timeout_s", int(timeout_ms) / 1000 + 5)
        return cls(lambda: kafka.producer(**properties), writer, settings, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Stop after the current batch."""
        self._stopping = True

    def run(self, until: Callable[[Relay], bool] = lambda relay: False) -> None:
        """Publish until ``stop()`` or ``until(self)``; waits as a standby while another relay holds the lease."""
        log.info("relay_started", topic=self._topic)
        try:
            while not self._stopping and not until(self):
                lease = Leases([LEASE], ttl=LEASE_TTL)
                try:
                    lease.acquire()
                except LeaseUnavailable as exc:
                    log.info("relay_standby", reason=str(exc))
                    self._sleep(self._standby_s)
                    continue
                with lease:
                    log.info("relay_active", holder=lease.holder)
                    try:
                        self._publish_while_held(lease, until)
                    except LeaseLost:
                        log.warning("relay_lease_lost")
        finally:
            self._producer.flush(self._ack_timeout_s)
            log.info("relay_stopped", published=self.published, failures=self.failures)

    def _publish_while_held(self, lease: Leases, until: Callable[[Relay], bool]) -> None:
        renewed = next_prune = next_stats = self._clock()
        while not self._stopping and not until(self):
            now = self._clock()
            if now - renewed > LEASE_TTL.total_seconds() / 3:
                lease.renew()
                renewed = now
            if now >= next_stats:
                self.report_backlog()
                next_stats = now + self._stats_every_s
            if now >= next_prune:
                outbox.prune(self._settings.retention)
                next_prune = now + self._prune_every_s
            metrics.LAST_POLL.set_to_current_time()
            try:
                sent = self.publish_batch()
            except DatabaseError as exc:  # the database is away: try again, holding the lease
                log.warning("relay_database_error", error=str(exc))
                connection.close()
                self._backoff, sent = min(max(self._backoff * 2, 0.5), 30.0), 0
            if self._backoff:
                self._sleep(self._backoff)
            elif sent < self._batch_size:
                self._sleep(self._idle_s)

    def publish_batch(self) -> int:
        """Publish the next rows; returns how many were acknowledged and marked published."""
        if len(self._producer) and self._producer.flush(self._ack_timeout_s):
            self._failed(0, None)  # messages of a previous batch still unacknowledged: send nothing more yet
            return 0
        rows = outbox.unpublished(self._batch_size)
        if not rows:
            return 0
        errors: dict[int, KafkaError] = {}
        acknowledged: set[int] = set()

        def delivered(index: int) -> Callable[[KafkaError | None, Message], None]:
            def callback(error: KafkaError | None, _message: Message) -> None:
                if error is None:
                    acknowledged.add(index)
                else:
                    errors[index] = error
            return callback

        for index, row in enumerate(rows):
            key, value, headers = self._writer.message(row)
            while True:
                try:
                    self._producer.produce(self._topic, value, key, headers=headers, on_delivery=delivered(index))
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.1)
        self._producer.flush(self._ack_timeout_s)
        # The acknowledged prefix: a row after a refused one waits for it (its user's order).
        done = 0
        while done < len(rows) and done in acknowledged:
            done += 1
        if done:
            outbox.mark_published([row.id for row in rows[:done]])
            self.published += done
            metrics.PUBLISHED.inc(done)
        if done < len(rows):
            self._failed(len(rows) - done, errors.get(done))
        else:
            self._backoff = 0.0
        return done

    def report_backlog(self) -> outbox.Backlog:
        """Measure the outbox's backlog into the metrics and the log."""
        backlog = outbox.backlog()
        metrics.OUTBOX_PENDING.set(backlog.pending)
        metrics.OUTBOX_OLDEST_AGE.set(backlog.oldest_age_s)
        log.info("relay_stats", published=self.published, failures=self.failures, outbox_pending=backlog.pending,
                 outbox_oldest_age_s=round(backlog.oldest_age_s, 1))
        return backlog

    def _failed(self, unpublished: int, error: KafkaError | None) -> None:
        self.failures += 1
        metrics.PUBLISH_FAILURES.inc(unpublished)
        self._backoff = min(max(self._backoff * 2, 0.5), 30.0)
        reason = error.str() if error is not None else "no acknowledgement in time"
        log.warning("publish_failed", unpublished=unpublished, error=reason, retry_in_s=self._backoff)
        if error is not None and error.fatal():  # an idempotent producer that cannot go on: start a new one
            self._producer = self._new_producer()

    def _sleep(self, seconds: float) -> None:
        deadline = self._clock() + seconds
        while not self._stopping and self._clock() < deadline:
            time.sleep(min(0.1, seconds))
