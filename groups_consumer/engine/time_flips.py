"""Time-relative criteria on time: re-evaluate the users whose answer changed because time passed.

Each group with time-relative leaves keeps a watermark, ``Group.flips_checked_until``: every answer of its
rule is known to be current as of that instant (a full sync sets it to the sync's time). A pass over the
window ``(watermark, now]`` asks each time-relative leaf which users' answers can change in it
(``CriterionType.flips``, one indexed query), re-evaluates only those users, in the group and its exclusive
siblings (chunk by chunk, one transaction each), then moves the watermark to ``now``. The work is
proportional to the users who flip, not to the group's population; a crash before the watermark moves
repeats the pass, and repeating it changes nothing.

Events are not affected: a user whose facts change is re-evaluated at that moment by the consumer, and a
later pass over the same user evaluates the same facts again, harmlessly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.db import transaction

from groups_consumer import users
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.incremental import evaluate
from groups_consumer.engine.membership_writer import MembershipDiff
from groups_consumer.iteration import chunked
from groups_consumer.models import Cause, Group
from groups_consumer.shared import EVERYONE, all_of, any_of

log = structlog.get_logger(__name__)
#: Users re-evaluated per transaction.
FLIP_CHUNK = 5000


@dataclass
class FlipReport:
    """What one pass did: users re-evaluated per group, and the membership changes."""

    until: datetime
    candidates: dict[str, int] = field(default_factory=dict)
    diff: MembershipDiff = field(default_factory=MembershipDiff)

    @property
    def users_evaluated(self) -> int:
        """Re-evaluations made, summed over groups."""
        return sum(self.candidates.values())


def process_flips(catalog: GroupCatalog, now: datetime, groups: Iterable[CompiledGroup] | None = None,
                  heartbeat: Callable[[], None] = lambda: None) -> FlipReport:
    """Re-evaluate, in the groups (default: all) updated by events, the users whose time-relative answers
    changed since each group's watermark, and move the watermarks to ``now``. ``heartbeat`` is called after
    each chunk (lease renewal)."""
    report = FlipReport(until=now)
    groups = [g for g in (catalog.groups.values() if groups is None else groups) if g.time_relative]
    if not groups:
        return report
    watermarks = dict(Group.objects.filter(id__in=[g.id for g in groups]).values_list(
        "id", "flips_checked_until"))
    # A group never synced has no watermark: its first sync evaluates everything and sets one.
    since = {g.id: mark for g in groups if (mark := watermarks.get(g.id)) is not None and mark < now}
    due = {g.id: g for g in groups if g.id in since}
    candidates: dict[int, set[int]] = {gid: flipping_users(group, since[gid], now) for gid, group in due.items()}
    flipping = sorted(set().union(*candidates.values())) if candidates else []
    for chunk in chunked(flipping, FLIP_CHUNK):
        in_chunk = set(chunk)
        with transaction.atomic():
            users.lock(chunk)  # held like the consumer and the sync hold them
            report.diff += evaluate(catalog, {gid: found & in_chunk for gid, found in candidates.items()},
                                    cause=Cause.TIME, cause_id=f"time:{now.isoformat()}", now=now)
        heartbeat()
    Group.objects.filter(id__in=list(due), flips_checked_until__lt=now).update(flips_checked_until=now)
    report.candidates = {str(due[gid]): len(found) for gid, found in candidates.items()}
    if due:
        log.info("time_flips_processed", until=now.isoformat(), groups=len(due), users=len(flipping),
                 joined=len(report.diff.joined), left=len(report.diff.left))
    return report


def flipping_users(group: CompiledGroup, after: datetime, upto: datetime) -> set[int]:
    """Users of the group's scope whose time-relative answers can change in ``(after, upto]``."""
    parts = [part for leaf in group.time_relative
             if (part := leaf.criterion.flips(group.readers.get(leaf.criterion.backend), after, upto)) is not None]
    if not parts:  # time-relative types whose flips answered None ("never by itself") this time
        return set()
    return all_of([group.population(), any_of(parts)]).resolve(EVERYONE)
