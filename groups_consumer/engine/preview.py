"""Previews of a definition before it is saved: who would be in the group, and what saving it would change.

A preview computes what ``apply`` followed by its sync would write, with the same pieces the sync uses
(set-based selections resolved range by range, exclusivity, the membership differences), and writes nothing:
it reads the user ranges without locking them, so it never holds back a consumer batch. The catalog it
evaluates is the stored one with the previewed definition in place of the group it edits; the exclusive
siblings the sync would re-decide (those of the group's set, and of the set it leaves) are decided with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from groups_consumer import users as user_locks
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.full_sync import DEFAULT_CHUNK, sync_targets
from groups_consumer.engine.membership_writer import differences
from groups_consumer.models import Membership

#: Users listed per kind of change and per group.
SAMPLE = 10
#: The id a group that does not exist yet has in a preview (stored groups have positive ids).
NEW_GROUP_ID = 0


@dataclass
class ChangeSample:
    """How many users would join and leave one group, with the first few of each (lowest ids first)."""

    joined: int = 0
    left: int = 0
    joined_sample: list[int] = field(default_factory=list)
    left_sample: list[int] = field(default_factory=list)

    def add(self, joined: list[int], left: list[int]) -> None:
        """Count one range's changes, keeping the first ``SAMPLE`` of each kind."""
        self.joined += len(joined)
        self.left += len(left)
        self.joined_sample += sorted(joined)[:SAMPLE - len(self.joined_sample)]
        self.left_sample += sorted(left)[:SAMPLE - len(self.left_sample)]


@dataclass
class Preview:
    """What a definition selects now and what saving it would change (nothing is saved).

    ``qualifying`` counts the users of the scope the rule matches, before exclusivity; ``members_after`` the
    members the group would have once its exclusive set is arbitrated. ``siblings`` are the other groups whose
    members would change, by their names.
    """

    group: str
    members_before: int
    members_after: int
    qualifying: int
    sample: list[int]
    changes: ChangeSample
    siblings: dict[str, ChangeSample]


def preview(catalog: GroupCatalog, proposed: CompiledGroup, *, clears_members: bool, left_set: str | None,
            now: datetime, chunk_size: int = DEFAULT_CHUNK) -> Preview:
    """Preview ``proposed`` in place of the group of the same id (``NEW_GROUP_ID``: a new group).

    ``clears_members``: saving empties the group first (it is disabled or leaves its exclusive set).
    ``left_set``: the exclusive set the group leaves, whose groups are re-decided too.
    """
    edited = GroupCatalog(groups={**catalog.groups, proposed.id: proposed}, readers=catalog.readers)
    decides_itself = proposed.evaluable and not proposed.frozen
    seeds = [proposed, *(edited.exclusive_set(left_set) if left_set else [])]
    deciding = {g.id: g for g in sync_targets(edited, seeds) if g.id != proposed.id}
    selections = {gid: g.members(now) for gid, g in deciding.items()}
    if decides_itself:
        selections[proposed.id] = proposed.members(now)
    empties = not decides_itself and clears_members
    before = Membership.objects.filter(group_id=proposed.id).count()
    result = Preview(group=str(proposed), members_before=before, members_after=before, qualifying=0, sample=[],
                     changes=ChangeSample(), siblings={})
    if not selections and not empties:
        return result
    by_group = {gid: ChangeSample() for gid in [*deciding, proposed.id]}
    for users in user_locks.ranges(chunk_size):
        qualifying = {gid: selection.resolve(users) for gid, selection in selections.items()}
        if empties:
            qualifying[proposed.id] = set()
        mine = qualifying.get(proposed.id, set())
        result.qualifying += len(mine)
        diff = differences(edited, qualifying, users)
        for gid, sample in by_group.items():
            sample.add([uid for g, uid in diff.joined if g == gid], [uid for g, uid in diff.left if g == gid])
        if len(result.sample) < SAMPLE:
            kept = {uid for g, uid in diff.joined if g == proposed.id} | (
                set(Membership.objects.filter(users.q(), group_id=proposed.id).values_list("user_id", flat=True))
                - {uid for g, uid in diff.left if g == proposed.id})
            result.sample += sorted(kept)[:SAMPLE - len(result.sample)]
    result.changes = by_group.pop(proposed.id)
    result.members_after = before + result.changes.joined - result.changes.left
    result.siblings = {str(deciding[gid]): sample for gid, sample in by_group.items() if sample.joined or sample.left}
    return result
