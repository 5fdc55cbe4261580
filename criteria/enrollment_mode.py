"""``enrollment_mode``: the mode of the user's active enrollment."""

from datetime import datetime

from pydantic import Field

from criteria.course import CourseConfig, CourseCriterion
from groups_consumer.facts.events import ENROLLMENT_EVENTS
from groups_consumer.facts.interface import LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.shared import Selection


class EnrollmentModeConfig(CourseConfig):
    """Config of ``enrollment_mode``."""

    modes: list[str] = Field(min_length=1, description="enrollment modes, e.g. audit, verified")


class EnrollmentMode(CourseCriterion[EnrollmentModeConfig]):
    """Actively enrolled with a mode ``in`` / ``not_in`` the list."""

    name = "enrollment_mode"
    description = "Mode of the active enrollment in the course"
    Config = EnrollmentModeConfig
    operators = ("in", "not_in")
    events = ENROLLMENT_EVENTS

    def select(self, facts: LearnerFacts, now: datetime) -> Selection:
        if self.operator == "in":
            return facts.enrolled(self.course_key, modes=self.config.modes)
        return facts.enrolled(self.course_key, except_modes=self.config.modes)

    def test(self, learner: LearnerSnapshot, now: datetime) -> bool:
        state = learner.enrollment(self.course_key)
        return state is not None and (state.mode in self.config.modes) == (self.operator == "in")

    def observed(self, learner: LearnerSnapshot, now: datetime) -> str:
        state = learner.enrollment(self.course_key)
        return f"mode {state.mode}" if state else "not enrolled"
