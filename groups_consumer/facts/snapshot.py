"""Per-user snapshots of learner facts, for incremental (per-user) evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from groups_consumer.models import ScopeType

#: The active courses and orgs of a user with none.
_NONE: frozenset[str] = frozenset()


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
    #: The courses the user is actively enrolled in, and their orgs (from ``courses``). Made with the snapshot:
    #: routing reads both of nearly every snapshot, and Python 3.11's ``cached_property`` (it takes a lock)
    #: cost more than computing them.
    active_courses: frozenset[str] = field(init=False, repr=False, compare=False)
    active_orgs: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One plain loop, and the shared empty set for a user with no active enrollment: one snapshot per user
        # of a batch, and comprehensions over generators cost twice as much here.
        keys, orgs = [], []
        for key, state in self.courses.items():
            if state.is_active:
                keys.append(key)
                orgs.append(state.org)
        object.__setattr__(self, "active_courses", frozenset(keys) if keys else _NONE)
        object.__setattr__(self, "active_orgs", frozenset(orgs) if orgs else _NONE)

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
            return key in self.active_courses
        return key in self.active_orgs
