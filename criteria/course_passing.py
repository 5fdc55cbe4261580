"""``course_passing``: whether the user passes the course."""

from datetime import datetime

from pydantic import Field

from criteria.course import CourseConfig, CourseCriterion
from groups_consumer.facts.events import ENROLLMENT_EVENTS, PASSING_STATUS_UPDATED
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.shared import Selection


class CoursePassingConfig(CourseConfig):
    """Config of ``course_passing``."""

    passing: bool = Field(description="true: passing learners; false: not (yet) passing")


class CoursePassing(CourseCriterion[CoursePassingConfig]):
    """Passing status ``=`` true / false; an enrolled user with no status yet is not passing."""

    name = "course_passing"
    description = "Passing status in the course"
    Config = CoursePassingConfig
    operators = ("=",)
    events = ENROLLMENT_EVENTS | {PASSING_STATUS_UPDATED}

    def select(self, facts: LearnerFacts, now: datetime) -> Selection:
        return facts.passing(self.course_key, self.config.passing)

    def test(self, learner: LearnerSnapshot, now: datetime) -> bool:
        state = learner.enrollment(self.course_key)
        return state is not None and (state.is_passing is True) == self.config.passing

    def observed(self, learner: LearnerSnapshot, now: datetime) -> str:
        state = learner.enrollment(self.course_key)
        return "not enrolled" if state is None else f"passing {state.is_passing}"
