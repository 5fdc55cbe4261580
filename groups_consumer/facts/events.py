"""The events the built-in learner facts come from, and the rules their payloads must satisfy.

The openedx-events signals are the single source of truth for their types and schemas; the profile-changed
event is defined by this project (``groups_consumer.profile_event``). The payload models declare the parts of
each record the learner facts read (see ``EventSpec``): other fields are ignored.
"""

from typing import Annotated

from openedx_events.learning.signals import (
    COURSE_ENROLLMENT_CHANGED,
    COURSE_ENROLLMENT_CREATED,
    COURSE_PASSING_STATUS_UPDATED,
    COURSE_UNENROLLMENT_COMPLETED,
    PERSISTENT_GRADE_SUMMARY_CHANGED,
    SESSION_LOGIN_COMPLETED,
    STUDENT_REGISTRATION_COMPLETED,
)
from pydantic import Field, StringConstraints

from groups_consumer.plugins.events import MAX_USERNAME, CourseKeyText, EventPayload, EventSpec, UserId
from groups_consumer.profile_event import USER_PROFILE_CHANGED

#: The longest course-mode slug the LMS stores.
MAX_MODE = 100

LOGIN = SESSION_LOGIN_COMPLETED.event_type
REGISTRATION = STUDENT_REGISTRATION_COMPLETED.event_type
ENROLLMENT_CREATED = COURSE_ENROLLMENT_CREATED.event_type
ENROLLMENT_CHANGED = COURSE_ENROLLMENT_CHANGED.event_type
UNENROLLMENT = COURSE_UNENROLLMENT_COMPLETED.event_type
GRADE_CHANGED = PERSISTENT_GRADE_SUMMARY_CHANGED.event_type
PASSING_STATUS_UPDATED = COURSE_PASSING_STATUS_UPDATED.event_type
PROFILE_CHANGED = USER_PROFILE_CHANGED.event_type
#: Events that change who is actively enrolled where, and so every course-scoped answer.
ENROLLMENT_EVENTS = frozenset({ENROLLMENT_CREATED, ENROLLMENT_CHANGED, UNENROLLMENT})


class _Pii(EventPayload):
    username: Annotated[str, StringConstraints(max_length=MAX_USERNAME)]


class _User(EventPayload):
    id: UserId
    pii: _Pii


class _Course(EventPayload):
    course_key: CourseKeyText


class UserEvent(EventPayload):
    """Login and registration: the user."""

    user: _User


class _Enrollment(EventPayload):
    user: _User
    course: _Course
    mode: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MODE)]
    is_active: bool


class EnrollmentEvent(EventPayload):
    """Enrollment created, changed, unenrolled: user, course, mode, active."""

    enrollment: _Enrollment


class _Grade(EventPayload):
    user_id: UserId
    course: _Course
    percent_grade: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class GradeEvent(EventPayload):
    """Persistent grade summary changed: a percentage in [0, 1]."""

    grade: _Grade


class _PassingStatus(EventPayload):
    user: _User
    course: _Course
    is_passing: bool


class PassingEvent(EventPayload):
    """Course passing status updated."""

    course_passing_status: _PassingStatus


class _Profile(EventPayload):
    user: _User
    country: Annotated[str, StringConstraints(pattern=r"^([A-Za-z]{2})?$")] | None  # "": no country, as None


class ProfileEvent(EventPayload):
    """Profile changed: an ISO 3166-1 alpha-2 country, empty or None."""

    profile: _Profile


LEARNER_EVENTS = (
    EventSpec(SESSION_LOGIN_COMPLETED, UserEvent),
    EventSpec(STUDENT_REGISTRATION_COMPLETED, UserEvent),
    EventSpec(COURSE_ENROLLMENT_CREATED, EnrollmentEvent),
    EventSpec(COURSE_ENROLLMENT_CHANGED, EnrollmentEvent),
    EventSpec(COURSE_UNENROLLMENT_COMPLETED, EnrollmentEvent),
    EventSpec(PERSISTENT_GRADE_SUMMARY_CHANGED, GradeEvent),
    EventSpec(COURSE_PASSING_STATUS_UPDATED, PassingEvent),
    EventSpec(USER_PROFILE_CHANGED, ProfileEvent),
)
