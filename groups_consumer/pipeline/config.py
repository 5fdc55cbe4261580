"""Consumer configuration from the environment (12-factor)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from groups_consumer.pipeline.dead_letter import DeadLetterLimit


@dataclass(frozen=True)
class ConsumerConfig:
    """Where to read, how to batch, where to dead-letter.

    A group with no committed offsets starts from the earliest retained message: facts are built from history.
    """

    bootstrap_servers: str
    topics: tuple[str, ...] = ("openedx-events",)
    group_id: str = "groups-consumer"
    dlq_topic: str = "groups-consumer-dlq"
    schema_registry_url: str | None = None
    batch_size: int = 2000
    batch_timeout_s: float = 0.2
    dead_letter_limit: DeadLetterLimit = field(default_factory=DeadLetterLimit)
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, bootstrap_servers: str | None = None, env: Mapping[str, str] = os.environ) -> ConsumerConfig:
        """Read ``KAFKA_*`` and ``SCHEMA_REGISTRY_URL``; ``bootstrap_servers`` overrides the environment."""
        servers = bootstrap_servers or env.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
        topics = tuple(t.strip() for t in env.get("KAFKA_TOPICS", "openedx-events").split(",") if t.strip())
        return cls(bootstrap_servers=servers, topics=topics,
                   group_id=env.get("KAFKA_GROUP_ID", "groups-consumer"),
                   dlq_topic=env.get("KAFKA_DLQ_TOPIC", "groups-consumer-dlq"),
                   schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
                   batch_size=int(env.get("CONSUMER_BATCH_SIZE", 2000)),
                   batch_timeout_s=float(env.get("CONSUMER_BATCH_TIMEOUT_S", 0.2)))

    def consumer_settings(self) -> dict:
        """librdkafka settings of the consumer: manual commits, earliest start."""
        return {"bootstrap.servers": self.bootstrap_servers, "group.id": self.group_id,
                "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, **self.extra}
