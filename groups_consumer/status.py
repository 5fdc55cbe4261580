"""The operator's view: each group's state and freshness, and the consumers' partitions (``groups-consumer
status``). Everything is read from the database, where the consumer and the scheduler report, so it works
from any host, with no broker connection."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count

from groups_consumer.engine.catalog import GroupCatalog, compile_group
from groups_consumer.models import DeadLetterTally, Group, Membership, PartitionStatus
from groups_consumer.publishing import outbox
from groups_consumer.publishing.config import PublishingSettings
from groups_consumer.scheduling.policy import freshness


@dataclass(frozen=True)
class GroupStatus:
    """One group as ``status`` shows it."""

    name: str
    scope: str
    state: str  # enabled, disabled, frozen or broken
    broken_reason: str
    members: int
    update_methods: list[str]
    refresh_interval_s: float | None
    last_event_at: datetime | None
    last_event_id: str
    last_sync: datetime | None
    staleness_s: float | None
    stale: bool
    next_sync_due: datetime | None
    drift: dict[str, Any] | None
    time_checked_until: datetime | None  # time-relative groups: answers are current up to this instant


@dataclass(frozen=True)
class PartitionReport:
    """One partition as its consumer last reported it."""

    consumer_group: str
    topic: str
    partition: int
    position: int | None
    lag: int | None
    dead_letters: int
    consumer: str
    reported_at: datetime


@dataclass(frozen=True)
class ServiceStatus:
    """Groups and consumer partitions at ``now``."""

    now: datetime
    groups: list[GroupStatus]
    partitions: list[PartitionReport]
    #: Dead letters by reason (``dlq_reason``), summed over consumer groups.
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    #: Membership-change events: the topic (None: publishing is off) and the outbox's backlog.
    publishing_topic: str | None = None
    outbox_backlog: outbox.Backlog = field(default_factory=lambda: outbox.Backlog(0, 0.0))

    @property
    def total_lag(self) -> int:
        """Messages behind, summed over the partitions that reported a lag."""
        return sum(p.lag or 0 for p in self.partitions)

    @property
    def dead_letters(self) -> int:
        """Messages sent to the dead-letter topic, summed over partitions."""
        return sum(p.dead_letters for p in self.partitions)

    def as_json(self) -> dict[str, Any]:
        """Plain data with ISO 8601 times."""
        return {"now": self.now.isoformat(), "groups": [_plain(asdict(g)) for g in self.groups],
                "consumer": {"total_lag": self.total_lag, "dead_letters": self.dead_letters,
                             "dead_letters_by_reason": self.dead_letter_reasons,
                             "partitions": [_plain(asdict(p)) for p in self.partitions]},
                "publishing": {"topic": self.publishing_topic, "outbox_pending": self.outbox_backlog.pending,
                               "outbox_oldest_age_s": round(self.outbox_backlog.oldest_age_s, 3)}}


def _plain(value: object) -> object:
    """``value`` with its datetimes, at any depth of dicts and lists, in ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def collect(now: datetime) -> ServiceStatus:
    """The status of every group and reported partition."""
    catalog = GroupCatalog.load(record_broken=False)
    counts = dict(Membership.objects.values_list("group_id").annotate(n=Count("id")).values_list("group_id", "n"))
    groups = []
    for row in Group.objects.select_related("scope").order_by("scope__type", "scope__key", "name"):
        compiled = catalog.groups.get(row.id) or compile_group(row)  # created since the catalog was loaded
        state = freshness(compiled, row.last_full_sync, now)
        groups.append(GroupStatus(
            name=row.name, scope=str(compiled.scope), state=group_state(row, compiled.broken_reason),
            broken_reason=compiled.broken_reason, members=counts.get(row.id, 0),
            update_methods=sorted(method.value for method in compiled.update_methods),
            refresh_interval_s=state.interval.total_seconds() if state.interval else None,
            last_event_at=row.last_event_at, last_event_id=row.last_event_id, last_sync=row.last_full_sync,
            staleness_s=state.staleness.total_seconds() if state.staleness is not None else None,
            stale=state.stale, next_sync_due=state.next_due, drift=row.last_sync_drift,
            time_checked_until=row.flips_checked_until if compiled.time_relative else None))
    partitions = [PartitionReport(p.consumer_group, p.topic, p.partition, p.position, p.lag, p.dead_letters,
                                  p.consumer, p.updated_at)
                  for p in PartitionStatus.objects.order_by("consumer_group", "topic", "partition")]
    reasons: dict[str, int] = {}
    for reason, count in DeadLetterTally.objects.values_list("reason", "count"):
        reasons[reason] = reasons.get(reason, 0) + count
    return ServiceStatus(now, groups, partitions, dict(sorted(reasons.items())),
                         publishing_topic=PublishingSettings.current().topic, outbox_backlog=outbox.backlog(now))


def group_state(row: Group, broken_reason: str) -> str:
    """enabled, disabled, frozen or broken (the reason as the catalog compiled it, or as stored)."""
    if not row.enabled:
        return "disabled"
    if broken_reason:
        return "broken"
    return "frozen" if row.frozen else "enabled"
