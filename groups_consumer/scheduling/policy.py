"""The refresh policy: when a group's fallback sync is due, and when a group is stale.

A group's refresh interval is its ``refresh`` override, else the shortest refresh of its criteria (so its
staleness is the shortest of its criteria's). Its next sync is due one interval after its last sync; it is
stale only once that is past, i.e. while it is overdue. Groups that the scheduler does not update (frozen,
broken, disabled, or whose criteria exclude scheduled syncs) are never due and never stale. Syncs are
triggered by scope: when one group of a scope is due, every scheduled group of that scope is synced with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.shared import CriterionScope


@dataclass(frozen=True)
class Freshness:
    """A group's place in its refresh cycle at ``now``."""

    interval: timedelta | None
    last_sync: datetime | None
    now: datetime

    @property
    def next_due(self) -> datetime | None:
        """When the scheduler should sync the group next (now if it never was); None if it never does."""
        if self.interval is None:
            return None
        return self.now if self.last_sync is None else self.last_sync + self.interval

    @property
    def due(self) -> bool:
        """True when the scheduler should sync the group now."""
        return self.next_due is not None and self.next_due <= self.now

    @property
    def staleness(self) -> timedelta | None:
        """Age of the last sync."""
        return None if self.last_sync is None else self.now - self.last_sync

    @property
    def stale(self) -> bool:
        """True past the expected refresh window (a group within its window is not stale, however old)."""
        return self.interval is not None and (self.last_sync is None or self.now - self.last_sync > self.interval)


def freshness(group: CompiledGroup, last_sync: datetime | None, now: datetime) -> Freshness:
    """Where ``group`` stands, given when it was last synced."""
    return Freshness(group.refresh_interval, last_sync, now)


def due_scopes(catalog: GroupCatalog, last_syncs: Mapping[int, datetime | None],
               now: datetime) -> dict[CriterionScope, list[CompiledGroup]]:
    """Scopes with a group due, most overdue first, each with all its scheduled groups (synced together)."""
    overdue: dict[CriterionScope, datetime] = {}
    for group in catalog.groups.values():
        state = freshness(group, last_syncs.get(group.id), now)
        if state.due and (next_due := state.next_due) is not None:  # due implies a next due time
            overdue[group.scope] = min(overdue.get(group.scope, next_due), next_due)
    return {scope: scheduled_groups(catalog, scope) for scope in sorted(overdue, key=lambda s: (overdue[s], str(s)))}


def scheduled_groups(catalog: GroupCatalog, scope: CriterionScope) -> list[CompiledGroup]:
    """The groups of a scope the scheduler syncs."""
    return sorted((g for g in catalog.groups.values() if g.scope == scope and g.refresh_interval is not None),
                  key=lambda g: g.id)
