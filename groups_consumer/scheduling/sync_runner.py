"""Every full sync runs through here: under the leases of the groups it decides, and recording drift.

Two syncs never decide one group at once, whether they come from scheduler replicas, the ``sync`` command,
``apply`` or a manual-list update: each takes the lease of every group it decides (all or none), renews it
while it walks the users, and evaluates with the definitions and the time as they are once it holds them.
Definition changes (``apply``) take the same leases, so a sync never writes with a definition that changed
under it, and the scheduler's time-relative passes do too, so time only moves forward for a group.

Drift is what a sync corrects that events should already have made: the differences it writes in groups
that events update, after a first sync. Missed or dead-lettered events, routing gaps and data changed
behind the consumer's back all show up there, counted and with examples, in the log and in ``status``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal, overload

import structlog
from django.utils import timezone

from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.full_sync import SyncReport, full_sync, sync_targets
from groups_consumer.models import Cause, Group
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.scheduling.leases import Leases, LeaseUnavailable
from groups_consumer.scheduling.policy import freshness

log = structlog.get_logger(__name__)
#: Attempts to lease a stable set of groups while definitions keep changing under the sync.
LEASE_ATTEMPTS = 3


def group_leases(group_ids: Iterable[int]) -> Leases:
    """The leases a process holds while it decides memberships of these groups (sync, flips, redefinition)."""
    return Leases(f"sync:group:{group_id}" for group_id in group_ids)


@overload
def run_sync(group_ids: Iterable[int], *, clock: Callable[[], datetime] = ..., method: UpdateMethod | None = ...,
             cause: str = ..., record_drift: bool = ..., wait_s: float = ..., chunk_size: int | None = ...,
             only_if_due: Literal[False] = ...) -> SyncReport: ...
@overload
def run_sync(group_ids: Iterable[int], *, clock: Callable[[], datetime] = ..., method: UpdateMethod | None = ...,
             cause: str = ..., record_drift: bool = ..., wait_s: float = ..., chunk_size: int | None = ...,
             only_if_due: bool) -> SyncReport | None: ...
def run_sync(group_ids: Iterable[int], *, clock: Callable[[], datetime] = timezone.now,
             method: UpdateMethod | None = None, cause: str = Cause.SYNC, record_drift: bool = True,
             wait_s: float = 0.0, chunk_size: int | None = None, only_if_due: bool = False) -> SyncReport | None:
    """Full sync of the groups (and their exclusive siblings) under leases; see ``sync_targets`` for
    ``method`` (``None``: a definition changed, sync whatever is not frozen).

    With ``record_drift`` each event-updated group's drift is stored; after a definition change it is
    cleared, since the differences are the change itself. With ``only_if_due`` (the scheduler) nothing runs
    if, once the leases are held, none of the groups is due any more (another replica synced them).
    Returns None when skipped; raises LeaseUnavailable if another process holds a group for over ``wait_s``.
    """
    requested = set(group_ids)
    for _attempt in range(LEASE_ATTEMPTS):
        leased = _targets(GroupCatalog.load(record_broken=False), requested, method)
        with group_leases(leased).acquire(wait_s) as leases:
            catalog = GroupCatalog.load()  # the definitions as they are, now that no one else can change them
            targets = [catalog.groups[gid] for gid in _targets(catalog, requested, method)]
            if {g.id for g in targets} != leased:
                continue  # a definition changed what this sync decides: lease again
            now = clock()
            last_syncs = dict(Group.objects.filter(id__in=leased).values_list("id", "last_full_sync"))
            if only_if_due and not any(freshness(catalog.groups[gid], last_syncs.get(gid), now).due
                                       for gid in requested if gid in catalog.groups):
                return None
            report = full_sync(catalog, targets, now=now, cause=cause, method=method, heartbeat=leases.renew,
                               **({"chunk_size": chunk_size} if chunk_size else {}))
            _record_drift(targets, report, {gid for gid, at in last_syncs.items() if at} if record_drift else set())
            return report
    raise LeaseUnavailable(f"the definitions of groups {sorted(requested)} kept changing during "
                           f"{LEASE_ATTEMPTS} attempts to sync them")


def _targets(catalog: GroupCatalog, requested: set[int], method: UpdateMethod | None) -> set[int]:
    return {g.id for g in sync_targets(catalog, [catalog.groups[gid] for gid in requested if gid in catalog.groups],
                                       method)}


def _record_drift(targets: list[CompiledGroup], report: SyncReport, previously_synced: set[int]) -> None:
    """Store each target's drift (None where differences are expected: sync-only groups, first syncs); a group
    the sync found broken keeps the drift it had."""
    for group in targets:
        if str(group) in report.broken:
            continue
        drift = None
        if group.id in previously_synced and group.updated_by(UpdateMethod.EVENTS):
            drift = _drift(group, report)
        Group.objects.filter(id=group.id).update(last_sync_drift=drift)


def _drift(group: CompiledGroup, report: SyncReport) -> dict[str, Any]:
    # A user moved by a sibling that events do not update was not missed by events.
    changes = report.changes.of(group.id)
    joined, left = changes.joined - changes.forced_joined, changes.left - changes.forced_left
    drift = {"run_id": report.run_id, "joined": joined, "left": left, "examples": changes.examples}
    if joined or left:
        log.warning("sync_drift", group=str(group), run_id=report.run_id, joined=joined, left=left,
                    examples=changes.examples)
    return drift
