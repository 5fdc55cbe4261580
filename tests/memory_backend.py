"""A second ``LearnerFacts`` backend, holding snapshots in memory: proves criteria work over any backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from groups_consumer.facts.interface import COMPARISONS, LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.shared import Ids


class InMemoryLearnerFacts(LearnerFacts):
    """Answers every question by scanning ``learners`` (no ORM): set-based answers are ``Ids``."""

    learners: ClassVar[dict[int, LearnerSnapshot]] = {}

    def _where(self, predicate: Callable[[LearnerSnapshot], bool]) -> Ids:
        return Ids(frozenset(uid for uid, learner in self.learners.items() if predicate(learner)))

    def population(self, scope_type, key):
        return self._where(lambda learner: learner.in_scope(scope_type, key))

    def last_seen(self, *, before=None, since=None):
        return self._where(lambda learner: learner.last_seen is not None
                           and (before is None or learner.last_seen < before)
                           and (since is None or learner.last_seen >= since))

    def country(self, countries, *, inside):
        return self._where(lambda learner: (learner.country in countries) == inside)

    def enrolled(self, course_key, *, modes=None, except_modes=None):
        def matches(learner):
            state = learner.enrollment(course_key)
            return (state is not None and (modes is None or state.mode in modes)
                    and (except_modes is None or state.mode not in except_modes))
        return self._where(matches)

    def grade(self, course_key, comparison, percent):
        def matches(learner):
            state = learner.enrollment(course_key)
            return state is not None and COMPARISONS[comparison](state.grade or 0.0, percent)
        return self._where(matches)

    def passing(self, course_key, is_passing):
        def matches(learner):
            state = learner.enrollment(course_key)
            return state is not None and (state.is_passing is True) == is_passing
        return self._where(matches)

    def snapshots(self, user_ids):
        return {uid: self.learners[uid] for uid in user_ids if uid in self.learners}
