"""Building learner facts in tests, with times in whole days before a fixed ``NOW``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from groups_consumer.models import CourseFact, UserFact
from groups_consumer.shared import course_org

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COURSE = "course-v1:Demo+C1+2026"
OTHER_COURSE = "course-v1:Demo+C2+2026"
ELSEWHERE = "course-v1:Other+X1+2026"


def days_ago(days: int | None) -> datetime | None:
    """``NOW`` minus whole days, or None."""
    return None if days is None else NOW - timedelta(days=days)


def user(user_id: int, *, registered: int | None = 100, login: int | None = None, country: str | None = None) -> int:
    """A known user; ``registered`` / ``login`` are days ago."""
    UserFact.objects.create(user_id=user_id, username=f"user{user_id}", registered_at=days_ago(registered),
                            last_login=days_ago(login), country=country)
    return user_id


def course(user_id: int, course_key: str = COURSE, *, mode: str | None = "audit", active: bool = True,
           grade: float | None = None, passing: bool | None = None) -> None:
    """The user's state in a course."""
    CourseFact.objects.create(user_id=user_id, course_key=course_key, org=course_org(course_key), mode=mode,
                              is_active=active, grade=grade, is_passing=passing)


def group_doc(rule: dict, scope: dict | None = None, name: str = "g", **extra) -> dict:
    """A group document for a rule, in the course scope by default."""
    return {"name": name, "scope": scope or {"type": "course", "key": COURSE}, "rule": rule, **extra}


def leaf(type_: str, operator: str, **config) -> dict:
    """A criterion leaf."""
    return {"type": type_, "operator": operator, "config": config}
