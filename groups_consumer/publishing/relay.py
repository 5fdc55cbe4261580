"""The relay: publishes the outbox to Kafka, in id order, one relay at a time (``groups-consumer relay``).

A loop: hold the ``membership-relay`` lease (another relay waits as a standby and takes over when it
expires), read up to ``batch_size`` rows, produce them keyed by user id, wait for the broker's
acknowledgements, delete the rows acknowledged. A row is deleted only after its acknowledgement, so a relay
killed in between publishes it again, with the same ``ce_id``. The producer reports failed deliveries only
(``delivery.report.only.error``: a report per delivered message cost as much CPU as producing it): once
nothing is left in its queue, every message it took and did not report (a failure, or a message purged, by
the relay or by librdkafka after a fatal error) was acknowledged. A report names its message by the value,
which the relay encodes again from the rows in flight to find the rows that were not delivered.

The producer never gives a message up: it is idempotent with the gapless guarantee and no delivery timeout
(``PRODUCER_PROPERTIES``), so while the broker refuses or cannot be reached librdkafka retries with its own
backoff, and no later message of a partition is written before an earlier one. The relay sends nothing new
while messages wait; each wait of ``ack_timeout_s`` that ends with messages still unacknowledged is logged as
``publish_waiting`` (the broker's own errors as ``kafka_client_error``), counted, and followed by a pause that
doubles from 0.5 s to 30 s. A producer that cannot go on (a fatal error, a message the broker refuses for
good) is replaced after the pause, and the rows it had not delivered are sent again. After ``handover_s``
without an acknowledgement the relay gives the lease back (``relay_handing_over``) and waits as a standby for a
while: another relay, which may reach the broker where this one does not, takes over, or, if none does, this
one takes the lease again. Whatever is sent again comes after the copies already written, in the same order:
a subscriber that keeps the first copy of each ``ce_id`` sees each user's changes in order. Writers go on
recording changes meanwhile (consumers pause past ``MEMBERSHIP_OUTBOX_MAX_PENDING``: ``backpressure``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer
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
#: Renewed every third of it, between batches; a batch takes at most ``ack_timeout_s`` plus its reads and
#: writes. A standby takes over at most this long (plus ``standby_s``) after the active relay died.
LEASE_TTL = timedelta(seconds=60)
#: Idempotent and gapless (the producer's retries neither duplicate, reorder nor skip a message), every replica
#: acknowledging, no delivery timeout (a message is retried until the broker takes it), a few milliseconds of
#: batching. Set by the service: the guarantees depend on them.
#: Only failed deliveries are reported (see the module docstring).
PRODUCER_PROPERTIES = {"enable.idempotence": True, "enable.gapless.guarantee": True, "acks": "all",
                       "message.timeout.ms": 0, "linger.ms": 5, "delivery.report.only.error": True}
MAX_BACKOFF_S = 30.0
#: How long the active relay holds the lease while nothing it sent is acknowledged, by default.
HANDOVER_S = 120.0


class Relay:
    """Publishes outbox rows to ``settings.topic``; see the module docstring."""

    def __init__(self, producer_factory: Callable[[], Producer], writer: MembershipEventWriter,
                 settings: PublishingSettings, *, batch_size: int = 5000, idle_s: float = 0.05,
                 ack_timeout_s: float = 5.0, stats_every_s: float = 10.0, standby_s: float = 5.0,
                 handover_s: float = HANDOVER_S, clock: Callable[[], float] = time.monotonic):
        if not settings.topic:
            raise ValueError("publishing is off (KAFKA_MEMBERSHIP_TOPIC is not set)")
        self._new_producer, self._writer = producer_factory, writer
        self._topic = settings.topic
        self._producer = producer_factory()
        self._batch_size, self._idle_s, self._ack_timeout_s = batch_size, idle_s, ack_timeout_s
        self._stats_every_s, self._standby_s, self._handover_s = stats_every_s, standby_s, handover_s
        self._clock = clock
        self._stopping = False
        self._backoff = 0.0
        #: The rows the producer took whose delivery is not known yet, by id; the values of the messages it
        #: reported as not delivered; how many rows were not (they stay in the outbox for the next producer); a
        #: producer that must be replaced (the error).
        self._in_flight: dict[int, outbox.OutboxRow] = {}
        self._undelivered: list[bytes | None] = []
        self._not_delivered = 0
        self._broken: KafkaError | None = None
        #: Messages left in the producer's queue after the last wait; when the current run of waits without an
        #: acknowledgement began.
        self._left = 0
        self._waiting_since: float | None = None
        self.published = 0
        self.failures = 0
        self.handovers = 0

    @classmethod
    def connect(cls, kafka: KafkaClientSettings, registry: SchemaRegistryClient, settings: PublishingSettings,
                **options: object) -> Relay:
        """A relay with the service's Kafka settings, its schemas registered with ``registry``."""
        ids = register_schemas(registry, settings.topic or "")
        writer = MembershipEventWriter(outbox.namespace(), ids)
        return cls(lambda: kafka.producer(**PRODUCER_PROPERTIES), writer, settings, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Stop after the current batch."""
        self._stopping = True

    def run(self, until: Callable[[Relay], bool] = lambda relay: False) -> None:
        """Publish until ``stop()`` or ``until(self)``; waits as a standby while another relay holds the lease."""
        log.info("relay_started", topic=self._topic)
        while not self._stopping and not until(self):
            metrics.LAST_POLL.set_to_current_time()
            try:
                lease = Leases([LEASE], ttl=LEASE_TTL).acquire()
            except LeaseUnavailable as exc:
                log.info("relay_standby", reason=str(exc))
                self._sleep(self._standby_s)
                continue
            except DatabaseError as exc:
                self._database_error(exc)
                continue
            log.info("relay_active", holder=lease.holder)
            handing_over = False
            try:
                handing_over = self._publish_while_held(lease, until)
            except LeaseLost:
                log.warning("relay_lease_lost")
            finally:
                self._let_go(lease)
            if handing_over:  # long enough for a standby (which tries every standby_s) to take the lease
                self._sleep(2 * self._standby_s)
        log.info("relay_stopped", published=self.published, failures=self.failures)

    def _publish_while_held(self, lease: Leases, until: Callable[[Relay], bool]) -> bool:
        """Publish while holding the lease; True when it is to be handed over (see the module docstring)."""
        renewed = next_stats = self._clock()
        while not self._stopping and not until(self):
            metrics.LAST_POLL.set_to_current_time()
            try:
                now = self._clock()
                if now - renewed > LEASE_TTL.total_seconds() / 3:
                    lease.renew()
                    renewed = now
                if now >= next_stats:
                    self.report_backlog()
                    next_stats = now + self._stats_every_s
                sent = self.publish_batch()
            except DatabaseError as exc:
                self._database_error(exc)
                continue
            waited_s = None if self._waiting_since is None else self._clock() - self._waiting_since
            if waited_s is not None and waited_s >= self._handover_s:
                self._hand_over(waited_s)
                return True
            if self._backoff:
                self._sleep(self._backoff if waited_s is None else min(self._backoff, self._handover_s - waited_s))
            elif sent < self._batch_size:
                self._sleep(self._idle_s)
        return False

    def publish_batch(self) -> int:
        """Publish the next rows (or wait for those in flight); returns how many were published (and deleted)."""
        if self._broken is not None:
            self._replace_producer()
        if not self._in_flight:
            rows = outbox.unpublished(self._batch_size)
            if not rows:
                self._backoff, self._waiting_since = 0.0, None
                return 0
            self._produce(rows)
            self._left = len(self._in_flight)
        left = self._producer.flush(self._ack_timeout_s)
        done = self._delete_delivered() if left == 0 else 0
        if done or (left < self._left and self._broken is None):  # acknowledgements came during the wait
            self._waiting_since, self._backoff = None, 0.0
        self._left = min(left, len(self._in_flight))  # librdkafka's count includes its own pending events
        if self._in_flight or self._broken is not None:
            self._failed()
        else:
            self._backoff = 0.0
        return done

    def report_backlog(self) -> outbox.Backlog:
        """Measure the outbox's backlog into the metrics and the log."""
        backlog = outbox.report_backlog()
        log.info("relay_stats", published=self.published, failures=self.failures, outbox_pending=backlog.pending,
                 outbox_oldest_age_s=round(backlog.oldest_age_s, 1), in_flight=len(self._in_flight))
        return backlog

    def _produce(self, rows: list[outbox.OutboxRow]) -> None:
        for row in rows:
            key, value, headers = self._writer.message(row)
            while self._broken is None:
                try:
                    self._producer.produce(self._topic, value, key, headers=headers, on_delivery=self._failed_delivery)
                    self._in_flight[row.id] = row
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.1)
                except KafkaException as exc:  # the producer cannot go on
                    self._broken = exc.args[0]

    def _failed_delivery(self, error: KafkaError | None, message: Message) -> None:
        """The producer's report of a message it did not deliver: only those are reported, by their value (the
        report carries no headers)."""
        if error is None:
            return
        self._undelivered.append(message.value())
        if self._broken is None:  # purged by librdkafka itself after a fatal error too
            self._broken = error  # with no delivery timeout, only what cannot be retried ends here

    def _delete_delivered(self) -> int:
        """Once the producer's queue is empty: delete the rows in flight but those of messages reported as not
        delivered (any order: one user's rows share a partition, acknowledged in order). Those stay in the outbox,
        untracked: the producer that reported them is replaced before anything is read again."""
        undelivered = set(self._undelivered)
        done = [row_id for row_id, row in self._in_flight.items()
                if not undelivered or self._writer.message(row)[1] not in undelivered]
        self._not_delivered = len(self._in_flight) - len(done)
        self._in_flight, self._undelivered = {}, []
        if done:
            outbox.delete_published(done)
            self.published += len(done)
            metrics.PUBLISHED.inc(len(done))
        return len(done)

    def _failed(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = self._clock()
        self.failures += 1
        metrics.PUBLISH_FAILURES.inc()
        self._backoff = _doubled(self._backoff)
        log.warning("publish_waiting", unacknowledged=len(self._in_flight), not_delivered=self._not_delivered,
                    retry_in_s=self._backoff,
                    error=self._broken.str() if self._broken is not None else "no acknowledgement yet",
                    hint="the broker's errors are logged as kafka_client_error")

    def _hand_over(self, waited_s: float) -> None:
        self.handovers += 1
        metrics.RELAY_HANDOVERS.inc()
        log.error("relay_handing_over", waited_s=round(waited_s, 1), unacknowledged=len(self._in_flight),
                  not_delivered=self._not_delivered, error=self._broken.str() if self._broken else "",
                  hint="no acknowledgement from the broker: another relay may reach it (kafka_client_error lines "
                       "give the broker's errors)")

    def _replace_producer(self) -> None:
        """A new producer; the rows the old one had not delivered are read and sent again."""
        log.warning("producer_replaced", error=self._broken.str() if self._broken else "",
                    resent=len(self._in_flight) + self._not_delivered)
        self._new_producer_for_the_outbox()

    def _let_go(self, lease: Leases) -> None:
        """Before giving the lease back: wait for what is in flight, delete what was delivered, drop the rest (sent
        again by the next relay) with the producer."""
        try:
            if self._producer.flush(self._ack_timeout_s) == 0:
                self._delete_delivered()
            lease.release()
        except DatabaseError as exc:  # the lease expires by itself
            self._database_error(exc)
        # A new producer for the next lease: the purge's reports come later (from librdkafka's threads), and
        # purging a request already sent is fatal to an idempotent producer.
        self._new_producer_for_the_outbox()
        self._waiting_since = None

    def _new_producer_for_the_outbox(self) -> None:
        """Drop the producer and what it holds (its rows stay in the outbox, read again) for a new one."""
        self._producer.purge()
        self._producer = self._new_producer()
        self._in_flight, self._undelivered, self._not_delivered, self._broken, self._left = {}, [], 0, None, 0

    def _database_error(self, exc: DatabaseError) -> None:
        """The database is away: wait (with backoff) and try again."""
        self._backoff = _doubled(self._backoff)
        log.warning("relay_database_error", error=str(exc), retry_in_s=self._backoff)
        connection.close()
        self._sleep(self._backoff)

    def _sleep(self, seconds: float) -> None:
        deadline = self._clock() + seconds
        while not self._stopping and self._clock() < deadline:
            metrics.LAST_POLL.set_to_current_time()
            time.sleep(min(0.1, seconds))


def _doubled(backoff: float) -> float:
    return min(max(backoff * 2, 0.5), MAX_BACKOFF_S)
