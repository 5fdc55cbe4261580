"""Helpers for testing criterion types (ours and plugins'): both evaluators must select the same users, and
a time-relative criterion's ``flips`` must name every user whose answer changes with time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from groups_consumer.definitions import parse_definition
from groups_consumer.engine.catalog import CompiledGroup
from groups_consumer.engine.rules import Leaf
from groups_consumer.engine.selection import EVERYONE
from groups_consumer.models import UserFact
from groups_consumer.plugins import registry


def evaluate_both_ways(doc: dict[str, Any], now: datetime) -> set[int]:
    """Members of a group definition by set-based and per-user evaluation; AssertionError if they differ."""
    definition, rule = parse_definition(doc)
    group = CompiledGroup(id=0, name=definition.name, scope=definition.scope.as_criterion_scope(),
                          exclusive_set=None, priority=0, rule=rule)
    by_set = group.members(now).resolve(EVERYONE)
    user_ids = list(UserFact.objects.values_list("user_id", flat=True))
    snapshots = {name: registry.backend(name).snapshots(user_ids) for name in group.backends}
    per_user = {user_id for user_id in user_ids if group.qualifies(snapshots, user_id, now)}
    assert by_set == per_user, f"set-based {sorted(by_set)} != per-user {sorted(per_user)} for {doc['rule']}"
    return by_set


def flips_cover_changes(leaf_doc: dict[str, Any], after: datetime, upto: datetime,
                        scope: dict[str, Any] | None = None) -> set[int]:
    """For a time-relative criterion: every known user whose answer differs between ``after`` and ``upto`` (or
    at any whole minute between) must be among ``flips(after, upto)``; AssertionError names those missing.
    Returns the users ``flips`` named."""
    doc = {"name": "flips-check", "scope": scope or {"type": "instance"}, "rule": leaf_doc}
    _definition, rule = parse_definition(doc)
    if not isinstance(rule, Leaf):
        raise TypeError(f"leaf_doc must be one criterion, not an all / any / not node: {leaf_doc}")
    criterion = rule.criterion
    backend = registry.backend(criterion.backend)
    flipping = criterion.flips(backend, after, upto)
    assert flipping is not None, f"{criterion.name!r} is not time-relative: its flips answered None"
    named = flipping.resolve(EVERYONE)
    user_ids = list(UserFact.objects.values_list("user_id", flat=True))
    snapshots = backend.snapshots(user_ids)
    instants = [after + timedelta(minutes=m) for m in range(int((upto - after).total_seconds() // 60) + 1)] + [upto]
    changed = {uid for uid, learner in snapshots.items()
               if len({criterion.test(learner, instant) for instant in instants}) > 1}
    assert changed <= named, f"flips missed users {sorted(changed - named)} of {leaf_doc} in ({after}, {upto}]"
    return named
