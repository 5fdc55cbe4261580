"""Every full sync runs through here: under the leases of the groups it decides, and recording drift.

Two syncs never decide one group at once, whether they come from scheduler replicas, the ``sync`` command,
``apply`` or a manual-list update: each takes the lease of every group it decides (all or none) and renews
it while it walks the users.

Drift is what a sync corrects that events should already have made: the differences it writes in groups
that events update, after a first sync. Missed or dead-lettered events, routing gaps and data changed
behind the consumer's back all show up there, counted and with examples, in the log and in ``status``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import structlog

from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.full_sync import SyncReport, full_sync, sync_targets
from groups_consumer.models import Cause, Group
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.scheduling.leases import Leases

log = structlog.get_logger(__name__)
DRIFT_EXAMPLES = 5


def run_sync(catalog: GroupCatalog, groups: Iterable[CompiledGroup], *, now: datetime,
             method: UpdateMethod | None = None, cause: str = Cause.SYNC, record_drift: bool = True,
             wait_s: float = 0.0, chunk_size: int | None = None) -> SyncReport:
    """Full sync of ``groups`` under leases (see ``full_sync`` for ``method``).

    With ``record_drift`` (scheduled and operator syncs) each event-updated group's drift is stored; a sync
    after a definition change records none, since its differences are the change itself. Raises
    LeaseUnavailable if another process holds one of the groups for more than ``wait_s`` seconds.
    """
    targets = sync_targets(catalog, groups, method)
    if not targets:
        return full_sync(catalog, [], now=now)
    previously_synced = set(Group.objects.filter(id__in=[g.id for g in targets], last_full_sync__isnull=False)
                            .values_list("id", flat=True))
    options = {"chunk_size": chunk_size} if chunk_size else {}
    with Leases(f"sync:group:{g.id}" for g in targets).acquire(wait_s) as leases:
        report = full_sync(catalog, targets, now=now, cause=cause, method=method, heartbeat=leases.renew,
                           **options)
        for group in targets:
            drift = (_drift(group, report) if record_drift and group.id in previously_synced
                     and group.updated_by(UpdateMethod.EVENTS) else None)
            Group.objects.filter(id=group.id).update(last_sync_drift=drift)
    return report


def _drift(group: CompiledGroup, report: SyncReport) -> dict:
    joined = [uid for gid, uid in report.diff.joined if gid == group.id]
    left = [uid for gid, uid in report.diff.left if gid == group.id]
    examples = ([{"user_id": uid, "change": "joined"} for uid in joined[:DRIFT_EXAMPLES]]
                + [{"user_id": uid, "change": "left"} for uid in left[:DRIFT_EXAMPLES]])[:DRIFT_EXAMPLES]
    drift = {"run_id": report.run_id, "joined": len(joined), "left": len(left), "examples": examples}
    if joined or left:
        log.warning("sync_drift", group=str(group), run_id=report.run_id, joined=len(joined), left=len(left),
                    examples=examples)
    return drift

