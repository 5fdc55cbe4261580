"""Stage 3: from changed facts to the groups that must be re-evaluated for each user.

The index is built once from the catalog: event type -> groups with a criterion that declared it, plus,
for enrollment events, every org / course group (an enrollment changes who is in their scope). An event
about a course only reaches groups whose scope can contain that course. A user heard of for the first time
joins the instance population, so reaches every instance group (a rule such as ``not country in [ES]`` can
hold without any event its criteria listen to).
"""

from __future__ import annotations

from collections import defaultdict

from groups_consumer.engine import rules
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.event_types import ENROLLMENT_EVENTS
from groups_consumer.models import ScopeType
from groups_consumer.pipeline.facts_update import BECAME_KNOWN, ChangedFact
from groups_consumer.plugins.criterion import UpdateMethod, course_org


class EventRouter:
    """Maps a changed fact to the groups whose membership of that user it can change (among the groups
    events update: frozen, broken and sync-only groups are never routed to)."""

    def __init__(self, catalog: GroupCatalog):
        self._by_event: dict[str, list[CompiledGroup]] = defaultdict(list)
        self._by_course: dict[tuple[str, str], list[CompiledGroup]] = {}  # (event type, course): filled on use
        self._instance_groups: list[CompiledGroup] = []
        for group in catalog.groups.values():
            if not group.updated_by(UpdateMethod.EVENTS):
                continue
            if group.scope.type == ScopeType.INSTANCE:
                self._instance_groups.append(group)
            listened = set().union(*(leaf.criterion.events for leaf in rules.leaves(group.rule)))
            if group.scope.type != ScopeType.INSTANCE:
                listened |= ENROLLMENT_EVENTS
            for event_type in listened:
                self._by_event[event_type].append(group)

    def groups_for(self, change: ChangedFact) -> list[CompiledGroup]:
        """Groups to re-evaluate for ``change.user_id``."""
        if change.fact == BECAME_KNOWN:
            return self._instance_groups
        candidates = self._by_event.get(change.event.event_type, [])
        if change.course_key is None:
            return candidates
        key = (change.event.event_type, change.course_key)
        if (routed := self._by_course.get(key)) is None:
            org = course_org(change.course_key)
            routed = self._by_course[key] = [
                g for g in candidates if g.scope.type == ScopeType.INSTANCE
                or (g.scope.type == ScopeType.ORG and g.scope.key == org)
                or (g.scope.type == ScopeType.COURSE and g.scope.key == change.course_key)]
        return routed

