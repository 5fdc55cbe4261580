"""The backend interface the built-in criteria are written against."""

from __future__ import annotations

import abc
import operator
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.models import ScopeType
from groups_consumer.plugins.backend import BackendClient
from groups_consumer.shared import Selection

#: Comparison operators of the numeric criteria, shared by both evaluators.
COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class LearnerFacts(BackendClient[LearnerSnapshot]):
    """Learner facts: logins, registration, country, enrollments, grades, passing status.

    Course questions only select users actively enrolled in the course; a missing grade counts as 0 and a
    missing passing status as not passing, as in the LMS before anything is graded.
    """

    name = "facts"

    @abc.abstractmethod
    def population(self, scope_type: ScopeType, key: str) -> Selection:
        """The users of a scope (see ``LearnerSnapshot.in_scope``)."""

    @abc.abstractmethod
    def last_seen(self, *, before: datetime | None = None, since: datetime | None = None) -> Selection:
        """Users last seen (login, else registration) at/after ``since`` and strictly before ``before``; give
        one bound or both."""

    @abc.abstractmethod
    def country(self, countries: Collection[str], *, inside: bool) -> Selection:
        """Users whose profile country is (``inside``) or is not one of ``countries``; unknown is not inside."""

    @abc.abstractmethod
    def enrolled(self, course_key: str, *, modes: Collection[str] | None = None,
                 except_modes: Collection[str] | None = None) -> Selection:
        """Users actively enrolled in the course, optionally in / not in some modes."""

    @abc.abstractmethod
    def grade(self, course_key: str, comparison: str, percent: float) -> Selection:
        """Enrolled users whose course grade compares (one of ``COMPARISONS``) to ``percent``."""

    @abc.abstractmethod
    def passing(self, course_key: str, is_passing: bool) -> Selection:
        """Enrolled users whose passing status is ``is_passing``."""

    @abc.abstractmethod
    def snapshots(self, user_ids: Iterable[int]) -> Mapping[int, LearnerSnapshot]:
        """Snapshots of the known users among ``user_ids``."""

