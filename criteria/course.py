"""Shared part of the criteria about one course."""

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from groups_consumer.errors import DefinitionError
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.models import ScopeType
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.shared import course_org


class CourseConfig(BaseModel):
    """Config fields common to course criteria."""

    model_config = ConfigDict(extra="forbid")
    course_key: str | None = Field(None, description="the course; defaults to the course of a course-scoped group")


CourseConfigT = TypeVar("CourseConfigT", bound=CourseConfig)


class CourseCriterion(CriterionType[CourseConfigT, LearnerFacts, LearnerSnapshot]):
    """A criterion about one course: the group's course, or ``config.course_key`` in org / instance scope.

    Only users actively enrolled in that course can match. Course data changes often (grades, passing
    status), so groups using it fall back to a daily sync.
    """

    refresh = timedelta(days=1)

    def validate(self) -> None:
        key = self.config.course_key
        if self.scope.type == ScopeType.COURSE:
            if key not in (None, self.scope.key):
                raise DefinitionError("config.course_key", "must be omitted or equal the group's course")
            return
        if key is None:
            raise DefinitionError("config.course_key", f"is required in {self.scope.type.value} scope")
        try:
            org = course_org(key)
        except ValueError as exc:
            raise DefinitionError("config.course_key", str(exc)) from exc
        if self.scope.type == ScopeType.ORG and org != self.scope.key:
            raise DefinitionError("config.course_key", f"belongs to org {org!r}, not {self.scope.key!r}")

    @property
    def course_key(self) -> str:
        """The course this criterion is about."""
        return self.config.course_key or self.scope.key
