"""A synthetic Open edX platform: users, courses across orgs, enrollments with modes, grades, passing status,
logins spread over 60 days, countries; and the 50 groups the benchmark keeps current.

Facts are bulk-loaded with PostgreSQL's COPY (as if the history had been consumed already): loading a
million users takes seconds, and only the measured stream goes through the consumer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from groups_consumer.models import (
    CourseFact,
    Group,
    Membership,
    MembershipChange,
    OutboxMessage,
    PartitionStatus,
    Scope,
    UserFact,
)

ORGS = [f"Org{i}" for i in range(8)]
COURSES = [f"course-v1:{org}+C{n}+2026" for org in ORGS for n in range(5)]
MODES = ["audit"] * 12 + ["verified"] * 7 + ["honor"]
COUNTRIES = ["ES", "PT", "FR", "DE", "US", "BR", "MX", "IN", "NG", "CN", "JP", "CO"]


@dataclass(frozen=True)
class Platform:
    """``users`` learners with ids 1..users, generated from ``seed`` relative to ``now``."""

    users: int
    now: datetime
    seed: int = 42

    def load(self) -> None:
        """Empty every table of the service and COPY this platform's facts in."""
        tables = [m._meta.db_table for m in (MembershipChange, Membership, Group, Scope, CourseFact, UserFact,
                                             PartitionStatus, OutboxMessage)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            raw = cursor.cursor
            with raw.copy(f"COPY {UserFact._meta.db_table} (user_id, username, registered_at, last_login, country,"
                          " country_changed_at) FROM STDIN") as copy:
                for row in self._user_rows():
                    copy.write_row(row)
            with raw.copy(f"COPY {CourseFact._meta.db_table} (user_id, course_key, org, mode, is_active,"
                          " enrollment_changed_at, grade, grade_changed_at, is_passing, passing_changed_at)"
                          " FROM STDIN") as copy:
                for row in self._course_rows():
                    copy.write_row(row)
            cursor.execute(f"ANALYZE {UserFact._meta.db_table}, {CourseFact._meta.db_table}")

    def _user_rows(self) -> Iterator[tuple[int, str, datetime, datetime | None, str | None, datetime | None]]:
        rng = random.Random(self.seed)
        for user_id in range(1, self.users + 1):
            last_login = None if rng.random() < 0.05 else self.now - timedelta(seconds=rng.uniform(0, 60 * 86400))
            registered = (last_login or self.now) - timedelta(seconds=rng.uniform(0, 300 * 86400))
            country = None if rng.random() < 0.1 else rng.choice(COUNTRIES)
            yield (user_id, f"user{user_id}", registered, last_login, country, registered if country else None)

    def enrollments(self) -> list[tuple[str, ...]]:
        """The course keys each user has a row for, by user id (index 0 unused): the courses the stream's
        grade and passing events are about."""
        rng = random.Random(self.seed + 1)
        return [(), *(tuple(rng.sample(COURSES, rng.choice([0, 1, 2, 2, 3]))) for _ in range(self.users))]

    def _course_rows(self) -> Iterator[tuple[Any, ...]]:
        rng = random.Random(self.seed + 2)
        for user_id, course_keys in enumerate(self.enrollments()):
            for course_key in course_keys:
                changed = self.now - timedelta(seconds=rng.uniform(0, 90 * 86400))
                grade = None if rng.random() < 0.2 else round(rng.random(), 2)
                passing = None if grade is None else grade >= 0.6
                yield (user_id, course_key, course_key.split(":")[1].split("+")[0], rng.choice(MODES),
                       rng.random() < 0.9, changed, grade, changed if grade is not None else None, passing,
                       changed if passing is not None else None)


def leaf(type_: str, operator: str, **config: Any) -> dict[str, Any]:
    """A criterion leaf of a rule."""
    return {"type": type_, "operator": operator, "config": config}


def group_definitions(count: int = 50) -> list[dict[str, Any]]:
    """``count`` groups (at most 50) mixing every built-in criterion, all three scopes and exclusive sets."""
    instance = {"type": "instance"}
    groups: list[dict[str, Any]] = [
        {"name": "lapsed-30", "scope": instance, "rule": leaf("last_login", ">", days=30),
         "exclusive_set": "engagement", "priority": 3},
        {"name": "lapsed-14", "scope": instance, "rule": leaf("last_login", ">", days=14),
         "exclusive_set": "engagement", "priority": 2},
        {"name": "lapsed-7", "scope": instance, "rule": leaf("last_login", ">", days=7),
         "exclusive_set": "engagement", "priority": 1},
        {"name": "active", "scope": instance, "rule": leaf("last_login", "<=", days=7), "exclusive_set": "engagement"},
        {"name": "iberia", "scope": instance, "rule": leaf("country", "in", countries=["ES", "PT"])},
        {"name": "outside-americas", "scope": instance,
         "rule": leaf("country", "not_in", countries=["US", "BR", "MX", "CO"])},
        {"name": "lapsed-iberia", "scope": instance,
         "rule": {"all": [leaf("country", "in", countries=["ES", "PT"]), leaf("last_login", ">", days=10)]}},
        {"name": "hand-picked", "scope": instance, "rule": leaf("manual", "in", user_ids=list(range(1, 2001, 20)))},
    ]
    for org in ORGS:
        course = f"course-v1:{org}+C0+2026"
        groups.append({"name": f"{org}-struggling", "scope": {"type": "org", "key": org},
                       "rule": {"all": [leaf("course_grade", "<", percent=0.4, course_key=course),
                                        leaf("last_login", ">", days=5)]}})
        groups.append({"name": f"{org}-passing-abroad", "scope": {"type": "org", "key": org},
                       "rule": {"all": [leaf("course_passing", "=", passing=True, course_key=course),
                                        {"not": leaf("country", "in", countries=["US"])}]}})
    for course in COURSES[:13]:
        scope = {"type": "course", "key": course}
        groups.append({"name": "verified-top", "scope": scope, "exclusive_set": f"tier-{course}", "priority": 2,
                       "rule": {"all": [leaf("enrollment_mode", "in", modes=["verified"]),
                                        leaf("course_grade", ">=", percent=0.8)]}})
        groups.append({"name": "at-risk", "scope": scope, "exclusive_set": f"tier-{course}", "priority": 1,
                       "rule": {"any": [leaf("course_grade", "<", percent=0.3),
                                        {"all": [leaf("course_passing", "=", passing=False),
                                                 leaf("last_login", ">", days=14)]}]}})
    return groups[:count]
