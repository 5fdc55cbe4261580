"""Stage 4: one batch of events, applied in one database transaction (two when consumers contend).

Facts are applied (locking the batch's users), the users whose facts changed are re-evaluated in the
groups the router names, and the membership differences are written with the event that caused them.
Either all of it commits or none of it does; the consumer commits offsets only afterwards, so a crash
anywhere replays the batch, and replaying it changes nothing that was already applied.

Consumers of one group share users (the LMS keys course events by course, user events by user), so two
batches in flight nearly always have a user in common. Waiting for that user's lock would serialize the
consumers; the first transaction therefore skips the users another transaction holds, and a second one
applies their events once their locks are free. Facts are monotonic, so applying those events later gives
the same facts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.db import DatabaseError, transaction
from django.utils import timezone

from groups_consumer import bulk_sql
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.definitions_version import DefinitionsChanged, locked_definitions_version
from groups_consumer.engine.incremental import decide
from groups_consumer.engine.membership_writer import MembershipDiff, write
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.models import Cause
from groups_consumer.pipeline.facts_update import (
    TRANSIENT_DB_ERRORS,
    AppliedFacts,
    Asserted,
    FactUpdater,
    PendingUpdate,
    SourceFailed,
    SourceFailure,
)
from groups_consumer.pipeline.route import EventRouter
from groups_consumer.plugins import registry
from groups_consumer.plugins.events import Origin, PlatformEvent

log = structlog.get_logger(__name__)


@dataclass
class BatchResult:
    """What one batch did."""

    events: int = 0
    facts_changed: int = 0
    users_evaluated: int = 0
    diff: MembershipDiff = field(default_factory=MembershipDiff)
    #: The latest event (by event time) applied to each group the batch re-evaluated.
    last_event: dict[int, PlatformEvent] = field(default_factory=dict)
    #: Events one fact source could not take (the others applied them): to dead-letter for that source.
    source_failures: list[SourceFailure] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        """Add what ``other``, another part of the same batch (its events counted here), did."""
        self.facts_changed += other.facts_changed
        self.users_evaluated += other.users_evaluated
        self.diff += other.diff
        for group_id, event in other.last_event.items():
            latest = self.last_event.get(group_id)
            if latest is None or latest.time < event.time:
                self.last_event[group_id] = event
        # An event whose updates span both parts fails for a source in each: dead-lettered once.
        known = {(failure.event.event_id, failure.source) for failure in self.source_failures}
        self.source_failures += [failure for failure in other.source_failures
                                 if (failure.event.event_id, failure.source) not in known]


class BatchProcessor:
    """Applies batches of decoded events to facts and memberships, against one catalog of groups."""

    def __init__(self, catalog: GroupCatalog, updater: FactUpdater | None = None):
        self.catalog = catalog
        self.updater = updater or FactUpdater(registry.fact_sources())
        self.router = EventRouter(catalog, self.updater.scope_events)

    def process(self, events: Sequence[PlatformEvent], now: datetime | None = None,
                asserted: Mapping[Origin, Asserted] | None = None) -> BatchResult:
        """Apply a batch: in one transaction, then, if another consumer held some of its users, theirs in a
        second one (see the module docstring). ``asserted``: the facts of events already found, by where each
        event was read (``FactUpdater.asserted``); the others' are found here."""
        now = now or timezone.now()
        result = BatchResult(events=len(events))
        self.apply(self.pending(events, result, asserted), result, now)
        return result

    def pending(self, events: Sequence[PlatformEvent], result: BatchResult,
                asserted: Mapping[Origin, Asserted] | None = None) -> list[PendingUpdate]:
        """The fact updates ``events`` assert (those in ``asserted`` already found); what a source refused goes
        to ``result.source_failures``."""
        pending: list[PendingUpdate] = []
        for event in events:
            found = asserted.get(event.origin) if asserted and event.origin is not None else None
            if found is None:
                pending += self.updater.updates_from(event, result.source_failures)
            else:
                pending += found.updates
                result.source_failures += found.failures
        return pending

    def apply(self, pending: list[PendingUpdate], result: BatchResult, now: datetime) -> None:
        """Apply fact updates and what they change, into ``result``: in one transaction, then the users another
        transaction held in a second one."""
        held = self._apply_current(pending, result, now, wait_for_locks=False)
        if held:
            self._apply_current(held, result, now, wait_for_locks=True)

    def _apply_current(self, updates: list[PendingUpdate], result: BatchResult, now: datetime, *,
                       wait_for_locks: bool) -> list[PendingUpdate]:
        """``_apply`` with the definitions as they are: reloaded (and the transaction started again) when they
        changed since the catalog was compiled; and again with the fact sources isolated if one of them failed
        (``FactUpdater``)."""
        isolate_sources = False
        while True:
            try:
                return self._apply(updates, result, now, wait_for_locks=wait_for_locks,
                                   isolate_sources=isolate_sources)
            except DefinitionsChanged:
                self.catalog = GroupCatalog.load()
                self.router = EventRouter(self.catalog, self.updater.scope_events)
                log.info("groups_loaded", groups=len(self.catalog.groups), version=self.catalog.version)
            except SourceFailed as failed:
                log.warning("fact_source_failed_isolating", source=str(failed), error=repr(failed.__cause__))
                isolate_sources = True

    def _apply(self, updates: list[PendingUpdate], result: BatchResult, now: datetime, *,
               wait_for_locks: bool, isolate_sources: bool) -> list[PendingUpdate]:
        """One transaction: facts, routing, evaluation; adds to ``result``; returns the updates left held.
        DefinitionsChanged, before anything is written, if the catalog is not the current definitions."""
        with transaction.atomic():
            if locked_definitions_version() != self.catalog.version:
                raise DefinitionsChanged
            bulk_sql.prefer_index_scans()  # every statement of a batch reaches its rows by key
            applied = self.updater.apply(updates, wait_for_locks=wait_for_locks, isolate_sources=isolate_sources,
                                         defer_writes=not isolate_sources)
            result.facts_changed += len(applied.changed)
            result.source_failures += applied.failures
            known = applied.snapshots
            learners = known.get(LearnerFacts.name, {})  # scope narrowing needs the scopes' own facts
            try:
                # The facts' writes run in PostgreSQL while the batch is routed and its users evaluated here.
                with bulk_sql.overlapping():
                    applied.write()
                    pairs, cause_of = self._route(applied, learners, result)
                    # One evaluation round: each changed user in the groups their changes can affect.
                    diff = decide(self.catalog, pairs, now=now, known=known) if pairs else MembershipDiff()
            except DatabaseError as exc:
                if isinstance(exc, TRANSIENT_DB_ERRORS) or not applied.writes:
                    raise
                # A source's write failed where its source could not be told: find it with the sources isolated.
                raise SourceFailed("a deferred write") from exc
            write(self.catalog, diff, cause=Cause.EVENT, cause_id=cause_of, now=now)
            result.users_evaluated += len(cause_of)
            result.diff += diff
        return applied.held

    def _route(self, applied: AppliedFacts, learners: Mapping[int, LearnerSnapshot],
               result: BatchResult) -> tuple[dict[int, set[int]], dict[int, str]]:
        """The users to evaluate per group, the event that caused each user's evaluation, and, in ``result``,
        the latest event of each group. Users are gathered by route first (many share one), then spread over
        the route's groups."""
        users_by_route: dict[int, set[int]] = defaultdict(set)
        latest_by_route: dict[int, PlatformEvent] = {}
        routes: dict[int, tuple[CompiledGroup, ...]] = {}
        cause_of: dict[int, str] = {}
        for change in applied.changed:
            routed = self.router.groups_for(change, learners.get(change.user_id))
            if routed:
                key, event = id(routed), change.event
                routes[key] = routed
                users_by_route[key].add(change.user_id)
                cause_of[change.user_id] = event.event_id
                latest = latest_by_route.get(key)
                if latest is None or latest.time < event.time:
                    latest_by_route[key] = event
        pairs: dict[int, set[int]] = defaultdict(set)
        for key, routed in routes.items():
            users, event = users_by_route[key], latest_by_route[key]
            for group in routed:
                pairs[group.id] |= users
                latest = result.last_event.get(group.id)
                if latest is None or latest.time < event.time:
                    result.last_event[group.id] = event
        return pairs, cause_of
