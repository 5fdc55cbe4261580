"""What a consumer tells ``groups-consumer status``: its partitions' positions, lag and dead letters, its
dead letters by reason, and the last event applied to each group. Kept in memory between reports and written
every few seconds, outside the batch transactions, so reporting never slows or blocks event processing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import structlog
from django.db import DatabaseError
from django.db.models import F, Q
from django.utils import timezone

from groups_consumer.models import DeadLetterTally, Group, PartitionStatus
from groups_consumer.pipeline.batch import BatchResult
from groups_consumer.scheduling.leases import process_identity

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PartitionPosition:
    """Where a consumer is in one assigned partition."""

    topic: str
    partition: int
    position: int | None
    lag: int | None


class StatusReporter:
    """Accumulates a consumer's reportable state and writes it with ``flush``. Without ``report_partitions``
    (one-off replays under a throwaway consumer group) only the groups' last events are reported."""

    def __init__(self, consumer_group: str, report_partitions: bool = True):
        self.consumer_group = consumer_group
        self.report_partitions = report_partitions
        self._last_event: dict[int, tuple[datetime, str]] = {}
        self._dead_letters: Counter[tuple[str, int]] = Counter()
        self._reasons: Counter[str] = Counter()

    def record_batch(self, result: BatchResult) -> None:
        """Remember the latest event applied to each group."""
        for group_id, event in result.last_event.items():
            known = self._last_event.get(group_id)
            if known is None or known[0] < event.time:
                self._last_event[group_id] = (event.time, event.event_id)

    def record_dead_letter(self, topic: str, partition: int, reason: str) -> None:
        """Count one message of a partition sent to the dead-letter topic, and its reason."""
        if self.report_partitions:
            self._dead_letters[(topic, partition)] += 1
            self._reasons[reason] += 1

    def flush(self, positions: list[PartitionPosition]) -> None:
        """Write partition reports and groups' last events; a database error is logged and retried next time."""
        try:
            self._write(positions)
        except DatabaseError as error:
            log.warning("status_report_failed", error=str(error))

    def _write(self, positions: list[PartitionPosition]) -> None:
        now = timezone.now()
        reported = {(p.topic, p.partition): p for p in positions} if self.report_partitions else {}
        for key in set(reported) | set(self._dead_letters):
            topic, partition = key
            where = {"consumer_group": self.consumer_group, "topic": topic, "partition": partition}
            row, _created = PartitionStatus.objects.get_or_create(
                **where, defaults={"consumer": process_identity(), "updated_at": now})
            added = self._dead_letters[key]
            values = {"consumer": process_identity(), "updated_at": now, "dead_letters": F("dead_letters") + added}
            if key in reported:
                values.update(position=reported[key].position, lag=reported[key].lag)
            PartitionStatus.objects.filter(pk=row.pk).update(**values)
            self._dead_letters[key] -= added
        for group_id, (time, event_id) in list(self._last_event.items()):
            Group.objects.filter(Q(last_event_at__isnull=True) | Q(last_event_at__lt=time), id=group_id).update(
                last_event_at=time, last_event_id=event_id)
            del self._last_event[group_id]
        self._dead_letters = +self._dead_letters  # drop the zeros
        for reason, added in list(self._reasons.items()):
            tally, _created = DeadLetterTally.objects.get_or_create(
                consumer_group=self.consumer_group, reason=reason, defaults={"last_at": now})
            DeadLetterTally.objects.filter(pk=tally.pk).update(count=F("count") + added, last_at=now)
            del self._reasons[reason]
