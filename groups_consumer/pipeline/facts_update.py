"""Stage 2: apply the facts events carry, through the fact sources that consume them.

Each fact source says which facts an event asserts (``FactSource.updates``) and merges them into its own
tables (``FactSource.apply``), idempotently and monotonically by event time, so the facts after a batch do not
depend on the order or number of deliveries. What this stage adds, the same for every source, is the users:
concurrent consumers serialize per user. Each batch locks the ``UserFact`` rows of its known users (in user-id
order, so no deadlock), then creates (in user-id order) and locks the rows of users first heard of, before
any source reads or writes their facts, and keeps the locks until its transaction commits. A user first heard
of joins the instance population (the ``BECAME_KNOWN`` pseudo-fact), whichever source's event named them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from groups_consumer import users
from groups_consumer.plugins import registry
from groups_consumer.plugins.events import PlatformEvent
from groups_consumer.plugins.source import ChangedFact, FactSource, FactUpdate, LockedUsers

#: The pseudo-fact of a user first heard of: they join the instance population.
BECAME_KNOWN = "became_known"


class PendingUpdate(NamedTuple):
    """A fact update, with the source that applies it."""

    source: FactSource[Any]
    update: FactUpdate


@dataclass
class AppliedFacts:
    """What a batch's updates did: the facts that changed (each with its last event), the snapshots sources
    returned by source name (each covering every user applied; only those of sources criteria read), and the
    updates left for later because another transaction held their users."""

    changed: list[ChangedFact]
    snapshots: dict[str, Mapping[int, Any]] = field(default_factory=dict)
    held: list[PendingUpdate] = field(default_factory=list)


class FactUpdater:
    """The installed fact sources, by the event types they consume."""

    def __init__(self, sources: Iterable[FactSource[Any]]) -> None:
        self._by_event: dict[str, list[FactSource[Any]]] = defaultdict(list)
        self.scope_events: frozenset[str] = frozenset()
        self._read_through: set[str] = set()
        for source in sources:
            self.scope_events |= source.scope_events
            if registry.reads_through(source):
                self._read_through.add(source.name)
            for spec in source.events:
                self._by_event[spec.event_type].append(source)

    def updates_from(self, event: PlatformEvent) -> list[PendingUpdate]:
        """The facts an event asserts, from every source that consumes its type."""
        return [PendingUpdate(source, update) for source in self._by_event.get(event.event_type, ())
                for update in source.updates(event)]

    def apply(self, pending: Sequence[PendingUpdate], *, wait_for_locks: bool = True) -> AppliedFacts:
        """Apply updates inside the caller's transaction, locking the users' rows until it ends.

        Without ``wait_for_locks``, the updates of users another transaction holds are not applied but returned
        in ``held`` (the caller applies them in a transaction of its own, waiting then).
        """
        by_user: dict[int, list[PendingUpdate]] = defaultdict(list)
        for item in pending:
            by_user[item.update.user_id].append(item)
        if not by_user:
            return AppliedFacts([])
        locked = users.lock(by_user, skip_locked=not wait_for_locks)
        new_users = set(by_user) - locked
        held: list[PendingUpdate] = []
        if new_users and not wait_for_locks:
            busy = users.known(new_users)  # held by another transaction, or created by one since
            new_users -= busy
            held = [item for user_id in sorted(busy) for item in by_user.pop(user_id)]
        if new_users:
            users.create(new_users)
            users.lock(new_users)
        applied = AppliedFacts([ChangedFact(u, BECAME_KNOWN, None, min((i.update for i in by_user[u]),
                                                                        key=lambda x: x.version).event)
                                for u in sorted(new_users)], held=held)
        locked_users = LockedUsers(frozenset(by_user), frozenset(new_users))
        by_source: dict[str, list[FactUpdate]] = defaultdict(list)
        sources: dict[str, FactSource[Any]] = {}
        for items in by_user.values():
            for item in items:
                by_source[item.source.name].append(item.update)
                sources[item.source.name] = item.source
        for name, updates in by_source.items():
            result = sources[name].apply(updates, locked_users)
            applied.changed += result.changed
            if result.snapshots is not None and name in self._read_through:
                applied.snapshots[name] = result.snapshots
        return applied
