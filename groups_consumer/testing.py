"""Helpers for testing criterion types (ours and plugins'): both evaluators must select the same users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from groups_consumer.definitions import parse_definition
from groups_consumer.engine.catalog import CompiledGroup
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
