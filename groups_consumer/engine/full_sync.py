"""Full sync: recompute groups over their whole population and write only the differences.

The user-id space is walked in ranges of ``chunk_size`` known users; for each range, in one transaction, every
group's set-based selection is resolved, exclusivity is applied, the result is compared with the stored
memberships and, holding the fact rows of the users they change (``_decide``), the differences are written.
On PostgreSQL the database does all of it but the writing in one statement, which returns the differences only
(``engine.range_differences``); elsewhere the selections are resolved into Python sets and compared there.
Memory is bounded by the range, whatever the number of users; a crash loses at most the range in progress,
and running the sync again converges.

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

from groups_consumer import bulk_sql
from groups_consumer import users as user_locks
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.evaluability import mark_broken, selection_error
from groups_consumer.engine.membership_writer import MembershipDiff, differences, write
from groups_consumer.engine.range_differences import RangeComparison
from groups_consumer.engine.sync_changes import SyncChanges
from groups_consumer.models import Cause, Group, Membership, MembershipChange, UserFact
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.progress import Progress
from groups_consumer.shared import Selection, UserRange

log = structlog.get_logger(__name__)
#: Known users per range. Each range adds a fixed ~35 ms (its statement built and planned): measured on a
#: million users' re-sync, 6.1 to 7.9 s of CPU in ranges of 50,000 against 7.8 to 8.6 s in ranges of 20,000;
#: ranges of 100,000 saved no more, and a first sync then peaked at 158 MB, not 119 MB. A first sync's range
#: holds its users for about 1.5 s.
DEFAULT_CHUNK = 50_000
#: The differences of a range's users, of those of a set among them when given (``_comparison``).
Compare = Callable[[UserRange, set[int] | None], MembershipDiff]
#: A range where more than 1 user in this many changes is locked whole and computed under the locks
#: (``_decide``), and so is the next one before any computation (a first sync): deciding 1,000 changed users of
#: 50,000 again once they are locked took twice as long as locking the whole range (about 100 against 50 ms,
#: measured), and all 50,000 users 2 to 5 s.
LOCK_FIRST_ABOVE = 100


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
    compare = _comparison(catalog, selections)
    with Progress("sync", UserFact.objects.count(), "users", run_id=report.run_id) as progress:
        lock_first = False
        for users in user_locks.ranges(chunk_size):
            decided, changed = _sync_range(catalog, selections, compare, users, report, cause=cause, now=now,
                                           lock_first=lock_first)
            lock_first = changed * LOCK_FIRST_ABOVE > decided
            report.users_scanned += decided
            progress.advance(decided)
            heartbeat()
            if not selections:
                break  # every group failed
    Group.objects.filter(id__in=list(selections)).update(last_full_sync=now)
    # Every time-relative answer is now evaluated as of ``now``: later windows start there.
    Group.objects.filter(Q(flips_checked_until__isnull=True) | Q(flips_checked_until__lt=now),
                         id__in=list(selections)).update(flips_checked_until=now)
    # What the event path's statements are planned from, after a sync that rewrote much of it (a first sync).
    analyzed = [model.__name__ for model in (Membership, MembershipChange)
                if bulk_sql.refresh_statistics(model, len(report.changes))]
    report.seconds = time.monotonic() - started
    log.info("sync_finished", run_id=report.run_id, users=report.users_scanned, joined=report.changes.joined,
             left=report.changes.left, seconds=round(report.seconds, 3), analyzed=analyzed)
    return report


def _sync_range(catalog: GroupCatalog, selections: dict[int, Selection], compare: Compare, users: UserRange,
                report: SyncReport, *, cause: str, now: datetime, lock_first: bool) -> tuple[int, int]:
    """Decide the users of one range in one transaction (``_decide``); returns how many users it has and how
    many changed. A group whose query fails there is found, marked broken and removed from ``selections``, and
    the range is redone without it."""
    while True:
        try:
            with transaction.atomic():
                decided, diff = _decide(compare, users, lock_first=lock_first)
                write(catalog, diff, cause=cause, cause_id=report.run_id, now=now)
                report.changes.add(diff, catalog)
            return decided, len(diff.users())
        except DatabaseError:
            failing = {gid: reason for gid, selection in selections.items()
                       if (reason := selection_error(selection, users))}
            if not failing:
                raise  # not one group's query: a lock, a conflict, the database itself
            for gid, reason in failing.items():
                del selections[gid]
                report.groups.remove(str(catalog.groups[gid]))
                _leave_out(catalog, catalog.groups[gid], reason, report)


def _decide(compare: Compare, users: UserRange, *, lock_first: bool) -> tuple[int, MembershipDiff]:
    """How many users a range has, and the differences to write, computed once the users they change are held.

    Whoever writes a user's memberships holds the user, so a sync never decides on facts a consumer batch is
    changing, nor overwrites what that batch decided from newer facts. Unless ``lock_first``, the differences
    are first computed without locks: when they change few users, only those are locked and decided again,
    and a range without any holds no one (locking a range writes every row of its users: 1.5 s and 100 to
    190 MB of write-ahead log for a million users, measured). A range that changes many users (a first sync)
    is locked whole and computed under the locks; a user a batch created in it after the lock is left to that
    batch and to the next sync, as a user created after the first computation is in the other case.
    """
    if not lock_first:
        decided = user_locks.count(users)
        found = compare(users, None)
        if len(found.users()) * LOCK_FIRST_ABOVE <= decided:
            return decided, _decided_again(compare, users, found.users())
    locked = user_locks.lock(users)
    diff = compare(users, None)
    return len(locked), diff.without(user_locks.known(diff.users() - locked))  # created since the lock


def _decided_again(compare: Compare, users: UserRange, changing: set[int]) -> MembershipDiff:
    """The differences of the users ``changing`` of a range, computed again once they are held."""
    if not changing:
        return MembershipDiff()
    user_locks.lock(changing)
    return compare(users, changing)


def _leave_out(catalog: GroupCatalog, group: CompiledGroup, reason: str, report: SyncReport) -> None:
    """Mark a group the database cannot evaluate broken; the sync goes on without it (it keeps its members)."""
    mark_broken(catalog, group, reason)
    report.broken[str(group)] = reason


def _comparison(catalog: GroupCatalog, selections: dict[int, Selection]) -> Compare:
    """How the differences of a range's users (of those of a set among them, when given) are found: by the
    database on PostgreSQL (``RangeComparison``: only they come back), from the selections resolved into Python
    sets elsewhere. Both read ``selections`` at each call (a group left out of it is left out)."""
    if bulk_sql.is_postgres():
        return RangeComparison(catalog, selections).differences
    return partial(_compared_in_python, catalog, selections)


def _compared_in_python(catalog: GroupCatalog, selections: dict[int, Selection], users: UserRange,
                        only: set[int] | None) -> MembershipDiff:
    qualifying = {gid: selection.resolve(users) for gid, selection in selections.items()}
    if only is None:
        return differences(catalog, qualifying, users)
    return differences(catalog, {gid: members & only for gid, members in qualifying.items()},
                       dict.fromkeys(selections, only))
