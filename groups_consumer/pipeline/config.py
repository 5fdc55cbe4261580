"""Consumer configuration from the environment (12-factor)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import Consumer, Producer

from groups_consumer.kafka_clients import KafkaClientSettings, KafkaSettingsError
from groups_consumer.pipeline.dead_letter import DeadLetterLimit
from groups_consumer.pipeline.decode import DEFAULT_MAX_CLOCK_SKEW

#: The most messages per batch. Under a steady stream a batch is what arrived during the one before (a few
#: hundred events at 5,000 events/s), so this only bounds the batches of a backlog, where larger ones cost less
#: per event: 5,000 against 2,000 gave 1.07 times the events/s in one process and 1.10 in two, PostgreSQL's CPU
#: per event 10% lower (``bench.compare``, 2026-12-06; docs/event-path.rst).
DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class ConsumerConfig:
    """Where to read, how to batch, where to dead-letter; ``kafka`` connects every client it needs.

    A group with no committed offsets starts from the earliest retained message: facts are built from history.
    """

    kafka: KafkaClientSettings
    topics: tuple[str, ...] = ("openedx-events",)
    group_id: str = "groups-consumer"
    dlq_topic: str = "groups-consumer-dlq"
    schema_registry_url: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_timeout_s: float = 0.2
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW.total_seconds()
    #: Poll the next batch before applying the current one and decode it while waiting for PostgreSQL.
    decode_ahead: bool = True
    #: On PostgreSQL, apply a batch of at least ``halves_from`` messages in two halves at once, split by user, on
    #: two connections (``halves``): ``off``, ``on``, or ``auto``: while the process is busy less than 0.65 of the
    #: time it applies a batch (it waits for PostgreSQL) and the host has a CPU to spare.
    apply_in_halves: Literal["auto", "on", "off"] = "off"
    halves_from: int = 500
    dead_letter_limit: DeadLetterLimit = field(default_factory=DeadLetterLimit)

    def __post_init__(self) -> None:
        if self.dlq_topic in self.topics:
            raise KafkaSettingsError(f"KAFKA_DLQ_TOPIC {self.dlq_topic!r} is one of the topics read (KAFKA_TOPICS): "
                                     "dead letters would be read and dead-lettered again without end; to re-inject "
                                     "dead letters, read that topic with another KAFKA_DLQ_TOPIC")

    @classmethod
    def from_env(cls, bootstrap_servers: str | None = None, env: Mapping[str, str] = os.environ) -> ConsumerConfig:
        """Read ``KAFKA_*``, ``CONSUMER_*`` (``CONSUMER_MAX_CLOCK_SKEW_S``: how far ahead of this clock an event's
        ``ce_time`` may be before it is dead-lettered) and ``SCHEMA_REGISTRY_URL``; ``bootstrap_servers`` overrides the
        environment. KafkaSettingsError names a variable that cannot work."""
        topics = tuple(t.strip() for t in env.get("KAFKA_TOPICS", "openedx-events").split(",") if t.strip())
        return cls(kafka=KafkaClientSettings.from_env(bootstrap_servers, env), topics=topics,
                   group_id=env.get("KAFKA_GROUP_ID", "groups-consumer"),
                   dlq_topic=env.get("KAFKA_DLQ_TOPIC", "groups-consumer-dlq"),
                   schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
                   batch_size=int(env.get("CONSUMER_BATCH_SIZE", DEFAULT_BATCH_SIZE)),
                   batch_timeout_s=float(env.get("CONSUMER_BATCH_TIMEOUT_S", 0.2)),
                   max_clock_skew_s=float(env.get("CONSUMER_MAX_CLOCK_SKEW_S", DEFAULT_MAX_CLOCK_SKEW.total_seconds())),
                   decode_ahead=env.get("CONSUMER_DECODE_AHEAD", "1") != "0",
                   apply_in_halves=_halves_setting(env.get("CONSUMER_APPLY_IN_HALVES", "0")))

    @property
    def bootstrap_servers(self) -> str:
        """The brokers every client connects to."""
        return self.kafka.bootstrap_servers

    def new_consumer(self, group_id: str | None = None) -> Consumer:
        """A consumer of the service's group (or ``group_id``): manual commits after the database transaction,
        earliest start."""
        return self.kafka.consumer(group_id or self.group_id, **{
            "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest"})

    def new_producer(self) -> Producer:
        """An idempotent producer (dead letters; every producer the service adds)."""
        return self.kafka.producer(**{"enable.idempotence": True})


def _halves_setting(value: str) -> Literal["auto", "on", "off"]:
    """``CONSUMER_APPLY_IN_HALVES``: ``auto``, ``1`` (on) or ``0`` (off)."""
    if value == "auto":
        return "auto"
    if value in ("0", "1"):
        return "on" if value == "1" else "off"
    raise KafkaSettingsError(f"CONSUMER_APPLY_IN_HALVES must be auto, 1 or 0, not {value!r}")
