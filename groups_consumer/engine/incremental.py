"""Incremental evaluation: re-evaluate given users in given groups, per user, from bulk-loaded snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Collection, Iterable

from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.membership_writer import CauseId, MembershipDiff, reconcile
from groups_consumer.plugins import registry
from groups_consumer.plugins.criterion import UpdateMethod


def evaluate_users(catalog: GroupCatalog, groups: Iterable[CompiledGroup], user_ids: Collection[int], *,
                   cause: str, cause_id: CauseId, now: datetime) -> MembershipDiff:
    """Bring the memberships of ``user_ids`` in ``groups`` (and their exclusive siblings) up to date.

    Only groups that events update are evaluated (not frozen, broken or sync-only ones: their members are
    held). Loads one snapshot per user and backend, whatever the number of groups, then writes the differences.
    """
    targets = [g for g in catalog.with_exclusive_siblings(groups) if g.updated_by(UpdateMethod.EVENTS)]
    if not targets or not user_ids:
        return MembershipDiff()
    needed = set().union(*(g.backends for g in targets))
    snapshots = {name: registry.backend(name).snapshots(user_ids) for name in needed}
    qualifying = {g.id: {u for u in user_ids if g.qualifies(snapshots, u, now)} for g in targets}
    return reconcile(catalog, qualifying, user_ids, cause=cause, cause_id=cause_id, now=now)
