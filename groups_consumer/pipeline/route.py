"""Stage 3: from changed facts to the groups that must be re-evaluated for each user.

The index is built once from the catalog: event type -> groups with a criterion that declared it, plus,
for the scope events (enrollments: they change who is in an org or course scope), every org / course group. An event
about a course only reaches groups whose scope can contain that course, and any change but an enrollment
only reaches the org and course groups whose scope holds the user (by the batch's snapshot of them). A user
heard of for the first time joins the instance population, so reaches every instance group (a rule such as
``not country in [ES]`` can hold without any event its criteria listen to).
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

from groups_consumer.engine import rules
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.models import ScopeType
from groups_consumer.pipeline.facts_update import BECAME_KNOWN
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.plugins.source import ChangedFact
from groups_consumer.shared import course_org


class EventRouter:
    """Maps a changed fact to the groups whose membership of that user it can change (among the groups
    events update: frozen, broken and sync-only groups are never routed to)."""

    def __init__(self, catalog: GroupCatalog, scope_events: frozenset[str]):
        self._scope_events = scope_events
        self._by_event: dict[str, _ScopedGroups] = defaultdict(_ScopedGroups)
        self._instance_groups: tuple[CompiledGroup, ...] = ()
        for group in catalog.groups.values():
            if not group.updated_by(UpdateMethod.EVENTS):
                continue
            if group.scope.type == ScopeType.INSTANCE:
                self._instance_groups += (group,)
            listened = set().union(*(leaf.criterion.events for leaf in rules.leaves(group.evaluable_rule)))
            if group.scope.type != ScopeType.INSTANCE:
                listened |= scope_events
            for event_type in listened:
                self._by_event[event_type].add(group)

    def groups_for(self, change: ChangedFact, learner: LearnerSnapshot | None = None) -> tuple[CompiledGroup, ...]:
        """Groups to re-evaluate for ``change.user_id``.

        ``learner``, the user's snapshot after the batch, narrows org and course groups to the scopes that hold
        the user, for every change but a scope event (an enrollment): a change that cannot move the user into
        or out of a scope finds them outside it before as after, so in none of its groups. Equal routes are the same
        tuple (routes are cached), so callers may group users by route.
        """
        if change.fact == BECAME_KNOWN:
            return self._instance_groups
        scoped = self._by_event.get(change.event.event_type)
        if scoped is None:
            return ()
        if learner is None or change.event.event_type in self._scope_events:
            return scoped.all if change.course_key is None else scoped.for_course(change.course_key)
        if change.course_key is None:
            return scoped.holding(learner.active_orgs, learner.active_courses)
        return scoped.in_course(change.course_key, course_org(change.course_key) in learner.active_orgs,
                                change.course_key in learner.active_courses)


#: The routes kept per event type: distinct sets of orgs and courses users are enrolled in.
ROUTE_CACHE_SIZE = 10_000


class _ScopedGroups:
    """The groups one event type reaches, indexed by scope."""

    def __init__(self) -> None:
        self.all: tuple[CompiledGroup, ...] = ()
        self._instance: list[CompiledGroup] = []
        self._by_org: dict[str, list[CompiledGroup]] = defaultdict(list)
        self._by_course: dict[str, list[CompiledGroup]] = defaultdict(list)
        self.holding = lru_cache(maxsize=ROUTE_CACHE_SIZE)(self._holding)
        self.in_course = lru_cache(maxsize=ROUTE_CACHE_SIZE)(self._in_course)

    def add(self, group: CompiledGroup) -> None:
        self.all += (group,)
        if group.scope.type == ScopeType.INSTANCE:
            self._instance.append(group)
        else:
            (self._by_org if group.scope.type == ScopeType.ORG else self._by_course)[group.scope.key].append(group)

    def for_course(self, course_key: str) -> tuple[CompiledGroup, ...]:
        """The groups whose scope can contain the course: instance, its org's, its own."""
        return self.in_course(course_key, True, True)

    def _in_course(self, course_key: str, org_held: bool, course_held: bool) -> tuple[CompiledGroup, ...]:
        """Instance groups, and the groups of the course's org / of the course when the user is in them."""
        return self.holding(frozenset([course_org(course_key)] if org_held else []),
                            frozenset([course_key] if course_held else []))

    def _holding(self, orgs: frozenset[str], courses: frozenset[str]) -> tuple[CompiledGroup, ...]:
        """Instance groups and the groups of these orgs and courses."""
        return (*self._instance, *(g for org in orgs for g in self._by_org.get(org, ())),
                *(g for course in courses for g in self._by_course.get(course, ())))
