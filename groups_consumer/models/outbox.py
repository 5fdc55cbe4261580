"""The transactional outbox of membership-change events (``groups_consumer.publishing``)."""

import uuid

from django.db import models


class OutboxMessage(models.Model):
    """One membership-change event to publish, written in the transaction that made the change.

    It carries the event as it was at that moment (the group's name, scope and exclusive set included), so a
    group renamed or deleted before the relay publishes it changes nothing. ``change_id`` is the change-log
    row it stands for (None for a snapshot row: not a change). Every row is still to publish: the relay
    publishes them in id order (the primary key) and deletes each once the broker has acknowledged it. The
    change log is the history; this table is only a queue.
    """

    change_id = models.BigIntegerField(null=True)
    user_id = models.BigIntegerField()
    group_id = models.BigIntegerField()
    group_name = models.CharField(max_length=255)
    scope_type = models.CharField(max_length=16)
    scope_key = models.CharField(max_length=255)
    exclusive_set = models.CharField(max_length=255, null=True)
    kind = models.CharField(max_length=8)
    cause = models.CharField(max_length=8)
    cause_id = models.CharField(max_length=255)
    at = models.DateTimeField()
    recorded_at = models.DateTimeField(help_text="wall-clock time of the write: the outbox's lag is measured from it")

    def __str__(self) -> str:
        return f"user {self.user_id} {self.kind} group {self.group_id} ({self.cause}, #{self.id})"


class EventSource(models.Model):
    """This installation as a source of events (one row): its ``namespace`` derives the ``ce_id`` of every
    published membership change, so that two installations, or a database created again, never publish the
    same id for different changes."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    namespace = models.UUIDField(default=uuid.uuid4)

    def __str__(self) -> str:
        return f"event source {self.namespace}"
