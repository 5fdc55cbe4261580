"""What a full sync changed, per group, in memory bounded by the number of groups (not of changes): counts,
a few example users, and the changes a sibling only syncs update forced (those are not drift)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    examples: list[dict] = field(default_factory=list)


@dataclass
class SyncChanges:
    """Changes of a sync, by group id."""

    groups: dict[int, GroupChanges] = field(default_factory=dict)

    def add(self, diff: MembershipDiff, catalog: GroupCatalog) -> None:
        """Count one range's differences."""
        by_sync_only = {uid for gid, uid in diff.joined + diff.left
                        if not catalog.groups[gid].updated_by(UpdateMethod.EVENTS)}
        for kind, pairs in (("joined", diff.joined), ("left", diff.left)):
            for gid, uid in pairs:
                changes = self.groups.setdefault(gid, GroupChanges())
                setattr(changes, kind, getattr(changes, kind) + 1)
                if uid in by_sync_only and catalog.groups[gid].updated_by(UpdateMethod.EVENTS):
                    setattr(changes, f"forced_{kind}", getattr(changes, f"forced_{kind}") + 1)
                elif len(changes.examples) < EXAMPLES:
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
