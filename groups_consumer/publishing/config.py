"""Publishing settings, from Django settings (themselves from the environment: ``groups_consumer.settings``).

- ``KAFKA_MEMBERSHIP_TOPIC``: the topic membership changes are published to; unset or empty, publishing is off
  (no outbox row is written; the relay has nothing to do).
- ``MEMBERSHIP_OUTBOX_MAX_PENDING``: consumers pause reading events while more rows than this wait to be
  published (default 1,000,000); they resume below nine tenths of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class PublishingSettings:
    """Where membership changes are published, and how far the outbox may grow."""

    topic: str | None
    max_pending: int = 1_000_000

    @property
    def enabled(self) -> bool:
        """True when changes are recorded in the outbox and published."""
        return bool(self.topic)

    @classmethod
    def current(cls) -> PublishingSettings:
        """The settings in effect (read on every call: tests and operators change them)."""
        return cls(topic=settings.GROUPS_CONSUMER_MEMBERSHIP_TOPIC or None,
                   max_pending=settings.GROUPS_CONSUMER_OUTBOX_MAX_PENDING)

