"""Writing membership differences: the one place memberships and their change log are written.

``reconcile`` takes the users qualifying for a set of groups over a domain of users (a user-id range for full
syncs, explicit users per group for incremental evaluation), applies exclusivity, compares with the stored memberships
of that domain and writes only the differences (``write``), deletes before inserts (so a user moving between
groups of one exclusive set never trips the database constraint), with one change-log row per difference and,
when publishing is on, one outbox row per difference (``groups_consumer.publishing``): a change is published if
and only if the transaction that made it commits. On PostgreSQL a full sync has the database compare instead
(``engine.range_differences``) and writes what it finds with ``write``. Writing runs in the caller's
transaction when there is one: the caller decides what commits together. Every writer holds the locks of the
users it writes (``UserFact`` rows).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from operator import itemgetter

from django.db import transaction

from groups_consumer import bulk_sql, users
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.exclusivity import arbitrate
from groups_consumer.models import Membership, MembershipChange
from groups_consumer.publishing import outbox
from groups_consumer.publishing.config import PublishingSettings
from groups_consumer.shared import UserRange

#: The users decided: one range for every group (syncs), or the users of each group (incremental evaluation;
#: the groups of one exclusive set must then have the same users).
UserDomain = UserRange | Mapping[int, Collection[int]]
CauseId = str | Mapping[int, str]
_BY_USER = itemgetter(1, 0)  # (group id, user id) pairs by user


@dataclass
class MembershipDiff:
    """Memberships written by one reconciliation, as (group id, user id) pairs."""

    joined: list[tuple[int, int]] = field(default_factory=list)
    left: list[tuple[int, int]] = field(default_factory=list)

    def __iadd__(self, other: MembershipDiff) -> MembershipDiff:
        self.joined += other.joined
        self.left += other.left
        return self

    def __len__(self) -> int:
        return len(self.joined) + len(self.left)

    def users(self) -> set[int]:
        """The users whose memberships change."""
        return {user_id for _, user_id in chain(self.joined, self.left)}

    def without(self, users: Collection[int]) -> MembershipDiff:
        """The differences of the other users."""
        if not users:
            return self
        return MembershipDiff(joined=[pair for pair in self.joined if pair[1] not in users],
                              left=[pair for pair in self.left if pair[1] not in users])


def reconcile(catalog: GroupCatalog, qualifying: Mapping[int, set[int]], users: UserDomain, *,
              cause: str, cause_id: CauseId, now: datetime) -> MembershipDiff:
    """Make the stored memberships of ``users`` in the groups of ``qualifying`` match it (after exclusivity).

    ``cause_id`` is one id for every change (a sync run) or one per user (the event that changed the user).
    """
    diff = differences(catalog, qualifying, users)
    write(catalog, diff, cause=cause, cause_id=cause_id, now=now)
    return diff


def write(catalog: GroupCatalog, diff: MembershipDiff, *, cause: str, cause_id: CauseId, now: datetime) -> None:
    """Write ``diff``, decided under the locks of its users, with its change log (and outbox): in the caller's
    transaction, without a savepoint (its two round trips per event batch bought nothing: a failure here fails
    the whole transaction), or in one of its own."""
    if diff:
        with transaction.atomic(savepoint=False):
            groups = {gid: catalog.groups[gid] for gid, _ in chain(diff.joined, diff.left)}
            _write(diff, groups, cause, cause_id, now)


def differences(catalog: GroupCatalog, qualifying: Mapping[int, set[int]], users: UserDomain) -> MembershipDiff:
    """What ``reconcile`` would write, without writing it (previews of a definition use it alone)."""
    groups = {gid: catalog.groups[gid] for gid in qualifying}
    current: dict[int, set[int]] = defaultdict(set)
    per_group = None if isinstance(users, UserRange) else users
    for group_id, user_id in _memberships(users, list(groups)):
        if per_group is None or user_id in per_group[group_id]:
            current[group_id].add(user_id)
    desired = arbitrate(qualifying, catalog.groups, _held_by_others(catalog, groups.values(), users))
    return MembershipDiff(
        joined=[(gid, uid) for gid, members in desired.items() for uid in sorted(members - current[gid])],
        left=[(gid, uid) for gid, members in current.items() for uid in sorted(members - desired.get(gid, set()))],
    )


def remove_members(group: outbox.DescribedGroup, *, cause: str, cause_id: str, now: datetime) -> MembershipDiff:
    """Every member of ``group`` leaves it (a group cleared or redefined), holding the members' locks like
    every writer."""
    with transaction.atomic(savepoint=False):
        members = Membership.objects.filter(group_id=group.id)
        users.lock(list(members.values_list("user_id", flat=True)))
        diff = MembershipDiff(left=[(group.id, uid) for uid in sorted(members.values_list("user_id", flat=True))])
        if diff:
            _write(diff, {group.id: group}, cause, cause_id, now)
    return diff


def _held_by_others(catalog: GroupCatalog, groups: Collection[CompiledGroup], users: UserDomain) -> dict[str, set[int]]:
    """Per exclusive set, the users held by its groups not being decided now (frozen, broken, or not updated
    by this method): they keep them."""
    deciding = {g.id for g in groups}
    others = {g.id: name for name in {g.exclusive_set for g in groups if g.exclusive_set}
              for g in catalog.exclusive_set(name) if g.id not in deciding}
    held: dict[str, set[int]] = defaultdict(set)
    if others:
        for group_id, user_id in _memberships(users, list(others)):
            held[others[group_id]].add(user_id)
    return held


def _write(diff: MembershipDiff, groups: Mapping[int, outbox.DescribedGroup], cause: str, cause_id: CauseId,
           now: datetime) -> None:
    bulk_sql.delete(Membership, ["user_id", "group_id"], [(uid, gid) for gid, uid in diff.left])
    at = bulk_sql.db_datetime(now)
    # A user's memberships side by side in the table: a batch reads them per user.
    bulk_sql.insert(Membership, ["group_id", "user_id", "exclusive_set", "joined_at"],
                    ((gid, uid, groups[gid].exclusive_set, at) for gid, uid in sorted(diff.joined, key=_BY_USER)))
    # Leaving before joining, as the rows are written: a subscriber never sees a user in two groups of one set.
    kinds = ((MembershipChange.Kind.LEFT.value, diff.left), (MembershipChange.Kind.JOINED.value, diff.joined))
    # A plain str, not a ``Cause`` member: the garbage collector keeps tracking a row holding an enum member,
    # and its full passes over the rows of a million users' first sync took 4.3 s (0.5 s with plain strings).
    cause = str(cause)
    if isinstance(cause_id, str):
        changes = [(gid, uid, kind, at, cause, cause_id) for kind, pairs in kinds for gid, uid in pairs]
    else:
        changes = [(gid, uid, kind, at, cause, cause_id[uid]) for kind, pairs in kinds for gid, uid in pairs]
    columns = ["group_id", "user_id", "kind", "at", "cause", "cause_id"]
    if PublishingSettings.current().enabled:
        outbox.record_changes(bulk_sql.insert_with_ids(MembershipChange, columns, changes), changes, groups)
    else:
        bulk_sql.insert(MembershipChange, columns, changes)


def _memberships(users: UserDomain, group_ids: list[int]) -> list[tuple[int, int]]:
    """(group id, user id) of the stored memberships of the domain's users in the groups."""
    if isinstance(users, UserRange):
        return list(Membership.objects.filter(users.q(), group_id__in=group_ids).values_list("group_id", "user_id"))
    # Every membership of the users, filtered here: a condition on the groups too could lead the planner to the
    # (group, user) index, reading every member of those groups.
    wanted = set(group_ids)
    return [(group_id, user_id) for group_id, user_id in bulk_sql.select_where_in(
        f"SELECT group_id, user_id FROM {bulk_sql.quote(Membership._meta.db_table)} WHERE", "user_id",
        set().union(*users.values())) if group_id in wanted]
