"""The built-in fact source: learner facts in the project's own tables, kept from LMS events and queried through
the Django ORM."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from django.db.models import FloatField, Q, QuerySet, Value
from django.db.models.functions import Coalesce

from groups_consumer.facts import merge, rows
from groups_consumer.facts.events import ENROLLMENT_EVENTS, LEARNER_EVENTS
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.models import CourseFact, ScopeType, UserFact
from groups_consumer.plugins.events import PlatformEvent
from groups_consumer.plugins.source import Applied, FactSource, FactUpdate, LockedUsers
from groups_consumer.shared import Query, Selection

_LOOKUPS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


class FactTableBackend(LearnerFacts, FactSource[LearnerSnapshot]):
    """``LearnerFacts`` over ``UserFact`` / ``CourseFact``, kept from login, registration, enrollment, grade,
    passing and profile events: every answer is one SQL condition. Enrollments move users into and out of
    org and course scopes, which this source answers (``population``)."""

    description = "Logins, registration, country, enrollments, grades and passing status, from LMS events"
    events = LEARNER_EVENTS
    models = (UserFact, CourseFact)
    scope_events = ENROLLMENT_EVENTS
    user_columns = tuple(rows.USER_FIELDS)

    def updates(self, event: PlatformEvent) -> list[FactUpdate]:
        return merge.updates_from(event)

    def apply(self, updates: Sequence[FactUpdate], users: LockedUsers) -> Applied:
        return merge.apply(updates, users)

    def population(self, scope_type: ScopeType, key: str) -> Selection:
        if scope_type == ScopeType.INSTANCE:
            return Query(Q())
        by = {"course_key": key} if scope_type == ScopeType.COURSE else {"org": key}
        return self._courses(CourseFact.objects.filter(is_active=True, **by))

    def last_seen(self, *, before: datetime | None = None, since: datetime | None = None) -> Selection:
        if before is None and since is None:
            raise ValueError("give before, since or both")
        bounds = {lookup: instant for lookup, instant in (("lt", before), ("gte", since)) if instant is not None}
        return Query(Q(**{f"last_login__{lookup}": instant for lookup, instant in bounds.items()})
                     | Q(last_login__isnull=True,
                         **{f"registered_at__{lookup}": instant for lookup, instant in bounds.items()}))

    def country(self, countries: Collection[str], *, inside: bool) -> Selection:
        q = Q(country__in=list(countries))
        return Query(q if inside else ~q)

    def enrolled(self, course_key: str, *, modes: Collection[str] | None = None,
                 except_modes: Collection[str] | None = None) -> Selection:
        rows = CourseFact.objects.filter(course_key=course_key, is_active=True)
        if modes is not None:
            rows = rows.filter(mode__in=list(modes))
        if except_modes is not None:
            rows = rows.exclude(mode__in=list(except_modes))
        return self._courses(rows)

    def grade(self, course_key: str, comparison: str, percent: float) -> Selection:
        rows = (CourseFact.objects.filter(course_key=course_key, is_active=True)
                .annotate(effective_grade=Coalesce("grade", Value(0.0), output_field=FloatField()))
                .filter(**{f"effective_grade__{_LOOKUPS[comparison]}": percent}))
        return self._courses(rows)

    def passing(self, course_key: str, is_passing: bool) -> Selection:
        rows = CourseFact.objects.filter(course_key=course_key, is_active=True)
        rows = rows.filter(is_passing=True) if is_passing else rows.exclude(is_passing=True)
        return self._courses(rows)

    def snapshots(self, user_ids: Iterable[int]) -> Mapping[int, LearnerSnapshot]:
        ids = list(user_ids)
        return rows.snapshots(rows.read_users(ids), rows.read_courses(ids).values())

    @staticmethod
    def _courses(rows: QuerySet[CourseFact]) -> Selection:
        # Per range, the subquery reads only that range's course rows (index on course, active, user).
        return Query(Q(user_id__in=rows.values("user_id")),
                     in_range=lambda within: Q(user_id__in=rows.filter(within.q()).values("user_id")))
