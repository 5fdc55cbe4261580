"""Per-user snapshots of learner facts, for incremental (per-user) evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import NamedTuple

from groups_consumer.models import ScopeType


class CourseState(NamedTuple):
    """One user's state in one course (a tuple: batches build thousands)."""

    org: str
    mode: str | None = None
    is_active: bool = False
    grade: float | None = None
    is_passing: bool | None = None


@dataclass(frozen=True)
class LearnerSnapshot:
    """Everything the built-in criteria know about one user, loaded in bulk for a batch."""

    user_id: int
    username: str = ""
    registered_at: datetime | None = None
    last_login: datetime | None = None
    country: str | None = None
    courses: Mapping[str, CourseState] = field(default_factory=dict)

    @property
    def last_seen(self) -> datetime | None:
        """Last login, or registration for a user who never logged in."""
        return self.last_login if self.last_login is not None else self.registered_at

    def enrollment(self, course_key: str) -> CourseState | None:
        """The user's state in the course if they are actively enrolled in it."""
        state = self.courses.get(course_key)
        return state if state is not None and state.is_active else None

    def in_scope(self, scope_type: ScopeType, key: str) -> bool:
        """Scope semantics: instance = known; org / course = active enrollment in that org / course."""
        if scope_type == ScopeType.INSTANCE:
            return True
        if scope_type == ScopeType.COURSE:
            return self.enrollment(key) is not None
        return key in self.active_orgs

    @cached_property
    def active_orgs(self) -> frozenset[str]:
        """The orgs of the courses the user is actively enrolled in."""
        return frozenset(state.org for state in self.courses.values() if state.is_active)

    @cached_property
    def active_courses(self) -> frozenset[str]:
        """The courses the user is actively enrolled in."""
        return frozenset(key for key, state in self.courses.items() if state.is_active)
