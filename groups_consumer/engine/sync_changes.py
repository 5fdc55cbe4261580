"""What a full sync changed, per group, in memory bounded by the number of groups (not of changes): counts,
a few example users, and the changes a sibling only syncs update forced (those are not drift)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import chain

from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.membership_writer import MembershipDiff
from groups_consumer.plugins.criterion import UpdateMethod

EXAMPLES = 5


@dataclass
class GroupChanges:
    """One group's joins and leaves in a sync."""

    joined: int = 0
    left: int = 0
    #: Joins / leaves forced by a sibling of the exclusive set that events do not update.
    forced_joined: int = 0
    forced_left: int = 0
    #: Up to ``EXAMPLES`` of the other changes: ``{"user_id": ..., "change": "joined" | "left"}``.
    examples: list[dict[str, int | str]] = field(default_factory=list)


@dataclass
class SyncChanges:
    """Changes of a sync, by group id."""

    groups: dict[int, GroupChanges] = field(default_factory=dict)

    def add(self, diff: MembershipDiff, catalog: GroupCatalog) -> None:
        """Count one range's differences (a range of a first sync brings hundreds of thousands)."""
        by_events = {gid: catalog.groups[gid].updated_by(UpdateMethod.EVENTS)
                     for gid in {gid for gid, _ in chain(diff.joined, diff.left)}}
        by_sync_only = {uid for gid, uid in chain(diff.joined, diff.left) if not by_events[gid]}
        for kind, pairs in (("joined", diff.joined), ("left", diff.left)):
            users_of: dict[int, list[int]] = defaultdict(list)
            for gid, uid in pairs:
                users_of[gid].append(uid)
            for gid, users in users_of.items():
                changes = self.groups.setdefault(gid, GroupChanges())
                setattr(changes, kind, getattr(changes, kind) + len(users))
                forced = by_sync_only if by_events[gid] else set()
                if forced:
                    counter = f"forced_{kind}"
                    setattr(changes, counter, getattr(changes, counter) + len(forced.intersection(users)))
                for uid in users:
                    if len(changes.examples) >= EXAMPLES:
                        break
                    if uid not in forced:
                        changes.examples.append({"user_id": uid, "change": kind})

    @property
    def joined(self) -> int:
        """Joins over every group."""
        return sum(c.joined for c in self.groups.values())

    @property
    def left(self) -> int:
        """Leaves over every group."""
        return sum(c.left for c in self.groups.values())

    def of(self, group_id: int) -> GroupChanges:
        """One group's changes (none if it did not change)."""
        return self.groups.get(group_id, GroupChanges())

    def __len__(self) -> int:
        return self.joined + self.left
