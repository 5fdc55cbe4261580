"""Incremental evaluation: re-evaluate given users in given groups, per user, from bulk-loaded snapshots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.membership_writer import CauseId, MembershipDiff, differences, write
from groups_consumer.plugins.criterion import UpdateMethod


def evaluate(catalog: GroupCatalog, pairs: Mapping[int, Collection[int]], *, cause: str, cause_id: CauseId,
             now: datetime, known: Mapping[str, Mapping[int, Any]] | None = None) -> MembershipDiff:
    """Bring the memberships of the users of each group in ``pairs`` (group id -> user ids) up to date.

    Only the given users are evaluated in each group, with the users of every group of an exclusive set
    evaluated in all its groups (a set is decided as a whole). Only groups that events update are evaluated
    (not frozen, broken or sync-only ones: their members are held). One snapshot is loaded per user and
    backend, whatever the number of groups (``known`` gives, per backend, snapshots already at hand that cover
    every user); then the differences are written. A pair whose criterion raises keeps its membership (logged
    as ``criterion_failed``); every other pair is decided.
    """
    diff = decide(catalog, pairs, now=now, known=known)
    write(catalog, diff, cause=cause, cause_id=cause_id, now=now)
    return diff


def decide(catalog: GroupCatalog, pairs: Mapping[int, Collection[int]], *, now: datetime,
           known: Mapping[str, Mapping[int, Any]] | None = None) -> MembershipDiff:
    """What ``evaluate`` writes, without writing it: the differences, decided under the users' locks."""
    domains = _with_exclusive_siblings(catalog, pairs)
    if not domains:
        return MembershipDiff()
    targets = {gid: catalog.groups[gid] for gid in domains}
    users = set().union(*domains.values())
    needed = set().union(*(g.backends for g in targets.values()))
    known = known or {}
    snapshots = {name: known[name] if name in known else catalog.readers.get(name).snapshots(users)
                 for name in needed}
    failed: set[tuple[int, int]] = set()
    qualifying = {}
    for gid, group in targets.items():
        failed_users: set[int] = set()
        qualifying[gid] = group.qualifying(snapshots, domains[gid], now, failed=failed_users)
        failed.update((gid, user_id) for user_id in failed_users)
    if failed:
        _hold(catalog, failed, domains, qualifying)
    return differences(catalog, qualifying, domains)


def _hold(catalog: GroupCatalog, failed: set[tuple[int, int]], domains: dict[int, set[int]],
          qualifying: dict[int, set[int]]) -> None:
    """Leave out the (group, user) pairs a criterion failed to evaluate, so their memberships stay as they are;
    in an exclusive set the user's whole set is left out (it is decided as a whole)."""
    for gid, user_id in failed:
        group = catalog.groups[gid]
        for held in catalog.exclusive_set(group.exclusive_set) if group.exclusive_set else [group]:
            domains.get(held.id, set()).discard(user_id)
            qualifying.get(held.id, set()).discard(user_id)


def evaluate_users(catalog: GroupCatalog, groups: Iterable[CompiledGroup], user_ids: Collection[int], *,
                   cause: str, cause_id: CauseId, now: datetime) -> MembershipDiff:
    """``evaluate`` with the same users in every group."""
    users = set(user_ids)
    return evaluate(catalog, {g.id: users for g in groups}, cause=cause, cause_id=cause_id, now=now)


def _with_exclusive_siblings(catalog: GroupCatalog, pairs: Mapping[int, Collection[int]]) -> dict[int, set[int]]:
    """Users per group to evaluate: the pairs, with each exclusive set's users spread over all its groups,
    restricted to the groups events update."""
    domains: dict[int, set[int]] = defaultdict(set)
    by_set: dict[str, set[int]] = defaultdict(set)
    for gid, users in pairs.items():
        if not users:
            continue
        group = catalog.groups[gid]
        if group.exclusive_set:
            by_set[group.exclusive_set].update(users)
        else:
            domains[gid].update(users)
    for name, users in by_set.items():
        for sibling in catalog.exclusive_set(name):
            domains[sibling.id] |= users
    return {gid: users for gid, users in domains.items() if catalog.groups[gid].updated_by(UpdateMethod.EVENTS)}
