"""Snapshots: the current members of groups, as ``joined`` events with cause ``snapshot``, for a new subscriber.

The snapshot goes through the outbox like any change, one user range per transaction holding the range's
user locks (as a sync does). So, for each user, its snapshot rows come after every change its memberships
already reflect and before every later change: a subscriber that starts reading the topic, then asks for a
snapshot, and applies everything in order (``joined`` adds, ``left`` removes) ends with the current members.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.db import transaction
from django.utils import timezone

from groups_consumer import users as user_locks
from groups_consumer.engine.full_sync import DEFAULT_CHUNK
from groups_consumer.errors import GroupsError
from groups_consumer.models import Group, Membership, UserFact
from groups_consumer.progress import Progress
from groups_consumer.publishing import outbox
from groups_consumer.publishing.config import PublishingSettings

log = structlog.get_logger(__name__)


@dataclass
class SnapshotReport:
    """What a snapshot recorded: rows per group, under one run id (their ``cause_id``)."""

    run_id: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def publish_snapshot(groups: Iterable[Group], *, chunk_size: int = DEFAULT_CHUNK,
                     now: datetime | None = None) -> SnapshotReport:
    """Record the current members of ``groups`` in the outbox (the relay publishes them)."""
    if not PublishingSettings.current().enabled:
        raise GroupsError("publishing is off: set KAFKA_MEMBERSHIP_TOPIC")
    by_id = {group.id: group for group in groups}
    report = SnapshotReport(run_id=f"snapshot-{uuid.uuid4().hex[:12]}", rows={str(g): 0 for g in by_id.values()})
    at, started = now or timezone.now(), time.monotonic()
    log.info("snapshot_started", run_id=report.run_id, groups=list(report.rows))
    with Progress("snapshot", UserFact.objects.count(), "users", run_id=report.run_id) as progress:
        for users in user_locks.ranges(chunk_size):
            with transaction.atomic():
                locked = user_locks.lock(users)
                members: dict[int, list[int]] = defaultdict(list)
                for group_id, user_id in Membership.objects.filter(users.q(), group_id__in=list(by_id)).values_list(
                        "group_id", "user_id"):
                    if user_id in locked:  # a user created since is the creating batch's to publish
                        members[group_id].append(user_id)
                for group_id, user_ids in members.items():
                    outbox.record_snapshot(by_id[group_id], user_ids, run_id=report.run_id, at=at)
                    report.rows[str(by_id[group_id])] += len(user_ids)
            progress.advance(len(locked))
    report.seconds = time.monotonic() - started
    log.info("snapshot_recorded", run_id=report.run_id, rows=sum(report.rows.values()),
             seconds=round(report.seconds, 3))
    return report
