"""Full sync: recompute groups over their whole population and write only the differences.

The user-id space is walked in ranges of ``chunk_size`` known users; for each range the users' fact rows are
locked, every group's set-based selection is resolved by the database, exclusivity is applied and the
differences are written, in one transaction. Memory is bounded by the range, whatever the number of users; a
crash loses at most the range in progress, and running the sync again converges.

Before the walk, the database compiles each group's queries (on no users): a group it cannot evaluate is
marked broken and left out, and the others are synced. Should a group still fail inside a range, the range is
rolled back, the failing group found (each resolved alone), marked broken and left out, and the range redone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import structlog
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from groups_consumer import users as user_locks
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.evaluability import mark_broken, selection_error
from groups_consumer.engine.membership_writer import reconcile
from groups_consumer.engine.sync_changes import SyncChanges
from groups_consumer.models import Cause, Group, UserFact
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.progress import Progress
from groups_consumer.shared import Selection, UserRange

log = structlog.get_logger(__name__)
DEFAULT_CHUNK = 20_000


@dataclass
class SyncReport:
    """What a full sync did; ``broken`` holds the groups left out because the database could not evaluate
    them, with the reason."""

    run_id: str
    groups: list[str]
    broken: dict[str, str] = field(default_factory=dict)
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
    keep their members, those the database cannot evaluate too (marked broken: ``SyncReport.broken``).
    ``heartbeat`` is called after each range (lease renewal)."""
    now = now or timezone.now()
    report = SyncReport(run_id=f"sync-{uuid.uuid4().hex[:12]}", groups=[])
    selections: dict[int, Selection] = {}
    for group in sync_targets(catalog, groups, method):
        selection = group.members(now)
        if reason := selection_error(selection):
            _leave_out(catalog, group, reason, report)
        else:
            selections[group.id] = selection
            report.groups.append(str(group))
    if not selections:
        return report
    started = time.monotonic()
    log.info("sync_started", run_id=report.run_id, groups=report.groups)
    with Progress("sync", UserFact.objects.count(), "users", run_id=report.run_id) as progress:
        for users in user_locks.ranges(chunk_size):
            locked = _sync_range(catalog, selections, users, report, cause=cause, now=now)
            report.users_scanned += len(locked)
            progress.advance(len(locked))
            heartbeat()
            if not selections:
                break  # every group failed
    Group.objects.filter(id__in=list(selections)).update(last_full_sync=now)
    # Every time-relative answer is now evaluated as of ``now``: later windows start there.
    Group.objects.filter(Q(flips_checked_until__isnull=True) | Q(flips_checked_until__lt=now),
                         id__in=list(selections)).update(flips_checked_until=now)
    report.seconds = time.monotonic() - started
    log.info("sync_finished", run_id=report.run_id, users=report.users_scanned, joined=report.changes.joined,
             left=report.changes.left, seconds=round(report.seconds, 3))
    return report


def _sync_range(catalog: GroupCatalog, selections: dict[int, Selection], users: UserRange, report: SyncReport,
                *, cause: str, now: datetime) -> set[int]:
    """Decide the users of one range in one transaction; returns the users locked. A group whose query fails
    there is found, marked broken and removed from ``selections``, and the range is redone without it."""
    while True:
        try:
            with transaction.atomic():
                # Whoever writes a user's memberships holds the user: a sync never decides on facts a consumer
                # batch is changing, nor overwrites what that batch decided from newer facts. A user a batch
                # created in the range after the lock is left to that batch and to the next sync.
                locked = user_locks.lock(users)
                qualifying = {gid: selection.resolve(users) for gid, selection in selections.items()}
                report.changes.add(reconcile(catalog, qualifying, users, cause=cause, cause_id=report.run_id,
                                             now=now, leave_alone=partial(_created_since, users, locked)), catalog)
            return locked
        except DatabaseError:
            failing = {gid: reason for gid, selection in selections.items()
                       if (reason := selection_error(selection, users))}
            if not failing:
                raise  # not one group's query: a lock, a conflict, the database itself
            for gid, reason in failing.items():
                del selections[gid]
                report.groups.remove(str(catalog.groups[gid]))
                _leave_out(catalog, catalog.groups[gid], reason, report)


def _leave_out(catalog: GroupCatalog, group: CompiledGroup, reason: str, report: SyncReport) -> None:
    """Mark a group the database cannot evaluate broken; the sync goes on without it (it keeps its members)."""
    mark_broken(catalog, group, reason)
    report.broken[str(group)] = reason


def _created_since(users: UserRange, locked: set[int]) -> set[int]:
    """The users of a range that have rows now but were not locked: created since by a consumer batch."""
    return user_locks.known(users) - locked
