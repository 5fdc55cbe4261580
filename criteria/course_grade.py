"""``course_grade``: the user's percent grade in the course."""

from datetime import datetime

from pydantic import Field

from criteria.course import CourseConfig, CourseCriterion
from groups_consumer.facts.events import ENROLLMENT_EVENTS, GRADE_CHANGED
from groups_consumer.facts.interface import COMPARISONS, LearnerFacts
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.shared import Selection


class CourseGradeConfig(CourseConfig):
    """Config of ``course_grade``."""

    percent: float = Field(ge=0, le=1, description="grade as a fraction in [0, 1]")


class CourseGrade(CourseCriterion[CourseGradeConfig]):
    """Grade compared to a percent; an enrolled user with no grade yet counts as 0."""

    name = "course_grade"
    description = "Percent grade in the course"
    Config = CourseGradeConfig
    operators = tuple(COMPARISONS)
    events = ENROLLMENT_EVENTS | {GRADE_CHANGED}

    def select(self, facts: LearnerFacts, now: datetime) -> Selection:
        return facts.grade(self.course_key, self.operator, self.config.percent)

    def test(self, learner: LearnerSnapshot, now: datetime) -> bool:
        state = learner.enrollment(self.course_key)
        grade = 0.0 if state is None or state.grade is None else state.grade
        return state is not None and COMPARISONS[self.operator](grade, self.config.percent)

    def observed(self, learner: LearnerSnapshot, now: datetime) -> str:
        state = learner.enrollment(self.course_key)
        return "not enrolled" if state is None else f"grade {state.grade if state.grade is not None else 'none (0)'}"
