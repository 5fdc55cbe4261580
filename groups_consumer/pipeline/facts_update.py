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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import structlog
from django.db import InterfaceError, OperationalError, transaction

from groups_consumer import users
from groups_consumer.errors import DecodeError
from groups_consumer.plugins import registry
from groups_consumer.plugins.events import PlatformEvent
from groups_consumer.plugins.source import Applied, ChangedFact, FactSource, FactUpdate, LockedUsers

log = structlog.get_logger(__name__)

#: The pseudo-fact of a user first heard of: they join the instance population.
BECAME_KNOWN = "became_known"
#: Database errors a retry may cure: they abort the whole batch (the consumer retries it), never one source.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class PendingUpdate(NamedTuple):
    """A fact update, with the source that applies it."""

    source: FactSource[Any]
    update: FactUpdate


class SourceFailure(NamedTuple):
    """An event one fact source could not take (its payload rules refused it, or its code raised): the other
    sources applied it; it is dead-lettered for that source (re-injecting it changes nothing for the others,
    whose facts are idempotent)."""

    event: PlatformEvent
    source: str
    error: DecodeError


class Asserted(NamedTuple):
    """The facts one event asserts (``FactUpdater.asserted``), and the sources that could not take it."""

    updates: list[PendingUpdate]
    failures: list[SourceFailure]


@dataclass
class AppliedFacts:
    """What a batch's updates did: the facts that changed (each with its last event), the snapshots sources
    returned by source name (only those of sources criteria read), the updates left for later because another
    transaction held their users, the events a source failed to apply, and the writes left to the caller."""

    changed: list[ChangedFact]
    snapshots: dict[str, Mapping[int, Any]] = field(default_factory=dict)
    held: list[PendingUpdate] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    #: The sources' writes left to the caller (``apply`` with ``defer_writes``), in the order of the sources.
    writes: list[Callable[[], None]] = field(default_factory=list)

    def write(self) -> None:
        """Run the writes left to the caller."""
        _run(self.writes)


class SourceFailed(Exception):
    """A fact source's ``apply`` raised in a transaction applied without savepoints: roll it back and apply the
    batch again with ``isolate_sources``."""


class FactUpdater:
    """The installed fact sources, by the event types they consume.

    A source's failure is its own: an event its payload rules refuse, or on which its ``updates`` or ``apply``
    raises, is a ``SourceFailure`` for that source only. Sources are applied optimistically, without
    savepoints (two round trips to the database per source and batch); when one raises, ``apply`` raises
    ``SourceFailed`` and the caller applies the batch again with ``isolate_sources``: each source's ``apply``
    in a savepoint, and when it raises, its updates split by event, each half in a savepoint of its own, until
    the failing events are alone.
    """

    def __init__(self, sources: Iterable[FactSource[Any]]) -> None:
        self._sources = list(sources)
        self._by_event: dict[str, list[FactSource[Any]]] = defaultdict(list)
        self.scope_events: frozenset[str] = frozenset()
        self._read_through: set[str] = set()
        for source in self._sources:
            self.scope_events |= source.scope_events
            if registry.reads_through(source):
                self._read_through.add(source.name)
            for spec in source.events:
                self._by_event[spec.event_type].append(source)
        # Applied in every transaction, with or without updates: their snapshots narrow routing to scopes.
        self._scope_sources = [s for s in self._sources if s.scope_events and s.name in self._read_through]
        self._user_columns = tuple(dict.fromkeys(c for source in self._sources for c in source.user_columns))

    def updates_from(self, event: PlatformEvent, failures: list[SourceFailure]) -> list[PendingUpdate]:
        """The facts an event asserts, from every source that consumes its type and took it; adds to
        ``failures`` the sources that refused it or raised."""
        pending = []
        for source in self._by_event.get(event.event_type, ()):
            if (refusal := event.refused_by.get(source.name)) is not None:
                failures.append(SourceFailure(event, source.name, refusal))
                continue
            try:
                pending += [PendingUpdate(source, update) for update in source.updates(event)]
            except Exception as exc:  # a plugin's code may raise anything
                failures.append(_failure(event, source, "updates", exc))
        return pending

    def asserted(self, event: PlatformEvent) -> Asserted:
        """``updates_from`` as a value: found ahead of a batch's turn (``pipeline.polled``), applied in it."""
        failures: list[SourceFailure] = []
        return Asserted(self.updates_from(event, failures), failures)

    def apply(self, pending: Sequence[PendingUpdate], *, wait_for_locks: bool = True,
              isolate_sources: bool = False, defer_writes: bool = False) -> AppliedFacts:
        """Apply updates inside the caller's transaction, locking the users' rows until it ends.

        Without ``wait_for_locks``, the updates of users another transaction holds are not applied but returned
        in ``held`` (the caller applies them in a transaction of its own, waiting then). Without
        ``isolate_sources``, a source that raises raises ``SourceFailed`` (see the class docstring). With
        ``defer_writes`` (and without ``isolate_sources``), the writes sources leave to their caller
        (``Applied.writes``) are returned in ``writes`` for the caller to run; otherwise they run here, as part
        of their source's ``apply``.
        """
        user_ids = {item.update.user_id for item in pending}
        if not user_ids:
            return AppliedFacts([])
        locked = users.lock_reading(user_ids, self._user_columns, skip_locked=not wait_for_locks)
        new_users = user_ids - locked.keys()
        held: list[PendingUpdate] = []
        if new_users and not wait_for_locks:
            busy = users.known(new_users)  # held by another transaction, or created by one since
            if busy:
                new_users -= busy
                user_ids -= busy
                held = [item for item in pending if item.update.user_id in busy]
                pending = [item for item in pending if item.update.user_id not in busy]
        if new_users:
            users.create(new_users)
            locked.update(users.lock_reading(new_users, self._user_columns))
        applied = AppliedFacts(_became_known(pending, new_users), held=held)
        locked_users = LockedUsers(frozenset(user_ids), frozenset(new_users), locked)
        by_source: dict[str, list[FactUpdate]] = {source.name: [] for source in self._scope_sources}
        sources = {source.name: source for source in self._scope_sources}
        for item in pending:
            by_source.setdefault(item.source.name, []).append(item.update)
            sources[item.source.name] = item.source
        for name, updates in by_source.items():
            if isolate_sources:
                result = self._apply_isolating(sources[name], updates, locked_users, applied.failures)
            else:
                result = _apply_optimistically(sources[name], updates, locked_users, run_writes=not defer_writes)
                if defer_writes:
                    applied.writes += result.writes
            applied.changed += result.changed
            if result.snapshots is not None and name in self._read_through:
                applied.snapshots[name] = result.snapshots
        return applied

    def _apply_isolating(self, source: FactSource[Any], updates: list[FactUpdate], locked_users: LockedUsers,
                         failures: list[SourceFailure]) -> Applied:
        """``source.apply`` in a savepoint; if it raises, the updates of each half of its events again, down to
        single events, which become failures."""
        try:
            with transaction.atomic():
                return _written(source.apply(updates, locked_users))
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:  # a plugin's code may raise anything; the savepoint undid what it wrote
            events = list(dict.fromkeys(update.event.event_id for update in updates))
            if len(events) == 1:
                failures.append(_failure(updates[0].event, source, "apply", exc))
                return Applied()
            halves = set(events[:len(events) // 2]), set(events[len(events) // 2:])
            parts = [self._apply_isolating(source, [u for u in updates if u.event.event_id in half], locked_users,
                                           failures) for half in halves]
            return Applied([change for part in parts for change in part.changed])


def _apply_optimistically(source: FactSource[Any], updates: list[FactUpdate], locked_users: LockedUsers, *,
                          run_writes: bool) -> Applied:
    """``source.apply`` without a savepoint, and its writes unless ``run_writes`` is false; SourceFailed if
    either raises (but for what the consumer retries)."""
    try:
        applied = source.apply(updates, locked_users)
        return _written(applied) if run_writes else applied
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception as exc:  # a plugin's code may raise anything
        raise SourceFailed(source.name) from exc


def _written(applied: Applied) -> Applied:
    """``applied`` once the writes it left to its caller have run."""
    _run(applied.writes)
    return applied


def _run(writes: Iterable[Callable[[], None]]) -> None:
    for write in writes:
        write()


def _became_known(pending: Sequence[PendingUpdate], new_users: set[int]) -> list[ChangedFact]:
    """The instance-population change of each user first heard of, with the earliest of their updates' events."""
    first: dict[int, FactUpdate] = {}
    for item in pending:
        user_id = item.update.user_id
        if user_id in new_users and (user_id not in first or item.update.version < first[user_id].version):
            first[user_id] = item.update
    return [ChangedFact(user_id, BECAME_KNOWN, None, first[user_id].event) for user_id in sorted(first)]


def _failure(event: PlatformEvent, source: FactSource[Any], step: str, exc: Exception) -> SourceFailure:
    log.error("fact_source_failed", source=source.name, step=step, event_type=event.event_type,
              event_id=event.event_id, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    return SourceFailure(event, source.name, DecodeError(
        "source_failed", f"fact source {source.name!r} ({step}): {type(exc).__name__}: {exc}", type(exc).__name__,
        poison=False))
