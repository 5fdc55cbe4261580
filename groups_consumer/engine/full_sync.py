"""Full sync: recompute groups over their whole population and write only the differences.

The user-id space is walked in ranges of ``chunk_size`` known users; for each range the users' fact rows are
locked, every group's set-based selection is resolved by the database, exclusivity is applied and the
differences are written, in one transaction. Memory is bounded by the range, whatever the number of users; a
crash loses at most the range in progress, and running the sync again converges.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import structlog
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.membership_writer import reconcile
from groups_consumer.engine.selection import UserRange
from groups_consumer.engine.sync_changes import SyncChanges
from groups_consumer.models import Cause, Group, UserFact
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.progress import Progress

log = structlog.get_logger(__name__)
DEFAULT_CHUNK = 20_000


@dataclass
class SyncReport:
    """What a full sync did."""

    run_id: str
    groups: list[str]
    users_scanned: int = 0
    changes: SyncChanges = field(default_factory=SyncChanges)
    seconds: float = 0.0


def sync_targets(catalog: GroupCatalog, groups: Iterable[CompiledGroup],
                 method: UpdateMethod | None = None) -> list[CompiledGroup]:
    """The groups a sync of ``groups`` decides: they and their exclusive siblings, less those ``method`` may
    not update. ``method`` is what asks for the sync: ``SCHEDULE`` for the scheduler, ``MANUAL`` for an
    operator; ``None`` after a definition changed, which syncs every group not frozen, broken or disabled."""
    return [g for g in catalog.with_exclusive_siblings(groups)
            if (g.evaluable and not g.frozen if method is None else g.updated_by(method))]


def full_sync(catalog: GroupCatalog, groups: Iterable[CompiledGroup], *, now: datetime | None = None,
              chunk_size: int = DEFAULT_CHUNK, cause: str = Cause.SYNC, method: UpdateMethod | None = None,
              heartbeat: Callable[[], None] = lambda: None) -> SyncReport:
    """Sync ``sync_targets(catalog, groups, method)``, logging changes with ``cause``; the groups left out
    keep their members. ``heartbeat`` is called after each range (lease renewal)."""
    now = now or timezone.now()
    targets = sync_targets(catalog, groups, method)
    report = SyncReport(run_id=f"sync-{uuid.uuid4().hex[:12]}", groups=[str(g) for g in targets])
    if not targets:
        return report
    started = time.monotonic()
    selections = {g.id: g.members(now) for g in targets}
    log.info("sync_started", run_id=report.run_id, groups=report.groups)
    with Progress("sync", UserFact.objects.count(), "users", run_id=report.run_id) as progress:
        for users in user_ranges(chunk_size):
            with transaction.atomic():
                locked = lock_users(users)
                qualifying = {gid: selection.resolve(users) for gid, selection in selections.items()}
                report.changes.add(reconcile(catalog, qualifying, users, cause=cause, cause_id=report.run_id,
                                             now=now, leave_alone=partial(unlocked_users, users, locked)), catalog)
            report.users_scanned += len(locked)
            progress.advance(len(locked))
            heartbeat()
    Group.objects.filter(id__in=[g.id for g in targets]).update(last_full_sync=now)
    # Every time-relative answer is now evaluated as of ``now``: later windows start there.
    Group.objects.filter(Q(flips_checked_until__isnull=True) | Q(flips_checked_until__lt=now),
                         id__in=[g.id for g in targets]).update(flips_checked_until=now)
    report.seconds = time.monotonic() - started
    log.info("sync_finished", run_id=report.run_id, users=report.users_scanned, joined=report.changes.joined,
             left=report.changes.left, seconds=round(report.seconds, 3))
    return report


def user_ranges(size: int) -> Iterator[UserRange]:
    """Consecutive ranges of about ``size`` known users covering every user id; the last is open-ended."""
    after = None
    while True:
        ids = UserFact.objects.order_by("user_id").values_list("user_id", flat=True)
        if after is not None:
            ids = ids.filter(user_id__gt=after)
        upto = ids[size - 1:size].first()
        yield UserRange(after, upto)
        if upto is None:
            return
        after = upto


def lock_users(users: UserRange) -> set[int]:
    """Lock the fact rows of a range (in user-id order, like the consumer) until the transaction ends; returns
    the users it holds.

    Whoever writes a user's memberships holds that user's ``UserFact`` row: a sync never decides on facts a
    concurrent consumer batch is changing, and never overwrites what that batch decided from newer facts.
    A user a batch created in the range after the lock (``known_users`` minus the locked) is left to that
    batch and to the next sync.
    """
    return set(UserFact.objects.select_for_update().filter(users.q()).order_by("user_id").values_list(
        "user_id", flat=True))


def known_users(users: UserRange) -> set[int]:
    """The users of a range that have fact rows now."""
    return set(UserFact.objects.filter(users.q()).values_list("user_id", flat=True))


def unlocked_users(users: UserRange, locked: set[int]) -> set[int]:
    """The users of a range that have fact rows now but were not locked: created since by a consumer batch."""
    return known_users(users) - locked
