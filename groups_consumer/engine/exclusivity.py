"""Mutual exclusivity at assignment time.

Within an exclusive set, a user goes to the first group in precedence order (highest priority, then name,
then id) whose rule they match, so the outcome depends only on the facts, never on the order of events.
A group of the set that is not being decided (frozen, broken, disabled, or not updated by the method at
work, e.g. a sync-only group during event processing) keeps the users it holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from groups_consumer.engine.catalog import CompiledGroup


def arbitrate(qualifying: Mapping[int, set[int]], groups: Mapping[int, CompiledGroup],
              held: Mapping[str, set[int]]) -> dict[int, set[int]]:
    """Desired members per group from the users qualifying for each.

    ``qualifying`` covers the groups being decided; ``held`` gives, per exclusive set, the users held by the
    set's other groups.
    """
    desired: dict[int, set[int]] = {}
    by_set: dict[str, list[CompiledGroup]] = defaultdict(list)
    for group_id, users in qualifying.items():
        group = groups[group_id]
        if group.exclusive_set is None:
            desired[group_id] = set(users)
        else:
            by_set[group.exclusive_set].append(group)
    for set_name, members in by_set.items():
        taken = set(held.get(set_name, ()))
        for group in sorted(members, key=lambda g: g.precedence):
            desired[group.id] = qualifying[group.id] - taken
            taken |= desired[group.id]
    return desired
