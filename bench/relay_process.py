"""The entry point of the benchmark's relay process (``measures.end_to_end_publishing``).

As in production, where ``groups-consumer relay`` is a process of its own beside the consumers, the relay
runs in a fresh interpreter: publishing is turned on in its environment (``KAFKA_MEMBERSHIP_TOPIC``) before
Django is set up, its schemas go to confluent-kafka's in-process mock registry (nobody decodes the events in
the benchmark), and it publishes until it has published ``target`` rows (set by the benchmark once the
stream is consumed). It reports what it did and where its time went (``RelayRun``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nothing that touches models before django.setup()
    from multiprocessing import Queue
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Event

    from groups_consumer.publishing.outbox import OutboxRow

#: The in-process registry of confluent-kafka: the relay registers its schemas there.
MOCK_REGISTRY = "mock://bench"


@dataclass
class RelayRun:
    """What the relay process did while the benchmark measured: rows published, batches, and time.

    ``last_published_at`` is the wall-clock time (``time.time()``, comparable with the consumer's batch times)
    at which the last row was published (deleted from the outbox); ``read_s`` / ``produce_s`` / ``delete_s``
    split the time inside its batches into reading the outbox, producing and waiting for the broker's
    acknowledgements, and deleting the rows published; ``cpu_s`` is the process's CPU time (librdkafka's
    threads included) from the moment it was ready, ``wall_s`` the wall time over which it was taken.
    """

    published: int = 0
    batches: int = 0
    failures: int = 0
    last_published_at: float | None = None
    read_s: float = 0.0
    produce_s: float = 0.0
    delete_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    error: str | None = None

    @property
    def busy_s(self) -> float:
        """Seconds spent inside batches that published rows."""
        return self.read_s + self.produce_s + self.delete_s


def run(bootstrap_servers: str, topic: str, ready: Event, target: Synchronized[int],
        results: Queue[RelayRun]) -> None:
    """Publish the outbox to ``topic`` until ``target.value`` rows are published; put a ``RelayRun`` on
    ``results`` (with ``error`` set if the relay failed)."""
    os.environ["KAFKA_MEMBERSHIP_TOPIC"] = topic  # publishing on in this process, read by Django's settings
    import django

    django.setup()
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from django.db import connection

    from groups_consumer.kafka_clients import KafkaClientSettings
    from groups_consumer.publishing.config import PublishingSettings
    from groups_consumer.publishing.relay import Relay

    report = RelayRun()
    try:
        relay = Relay.connect(KafkaClientSettings.from_env(bootstrap_servers),
                              SchemaRegistryClient.new_client({"url": MOCK_REGISTRY}), PublishingSettings.current())
        _time_the_outbox(report)
        cpu, wall = time.process_time(), time.monotonic()
        ready.set()
        relay.run(until=lambda r: r.published >= target.value)
        report.cpu_s, report.wall_s = time.process_time() - cpu, time.monotonic() - wall
        report.published, report.failures = relay.published, relay.failures
    except Exception as exc:  # reported to the benchmark, which fails with it
        report.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        ready.set()  # never leave the benchmark waiting
        results.put(report)
        connection.close()


def _time_the_outbox(report: RelayRun) -> None:
    """Time the relay's reads and deletes of the outbox (the module functions ``Relay.publish_batch`` calls):
    what lies between a batch's read and its delete is producing and waiting for the acknowledgements."""
    from groups_consumer.publishing import outbox

    read, delete = outbox.unpublished, outbox.delete_published
    read_end = 0.0

    def unpublished(limit: int) -> list[OutboxRow]:
        nonlocal read_end
        started = time.monotonic()
        rows = read(limit)
        read_end = time.monotonic()
        if rows:
            report.read_s += read_end - started
        return rows

    def delete_published(ids: Sequence[int]) -> None:
        started = time.monotonic()
        report.produce_s += started - read_end
        delete(ids)
        report.delete_s += time.monotonic() - started
        report.last_published_at = time.time()
        report.batches += 1

    outbox.unpublished = unpublished  # this process only: the benchmark's relay
    outbox.delete_published = delete_published
