"""Event types consumed by groups-consumer, as carried in the ``ce_type`` header.

The openedx-events signals are the single source of truth for their types; the profile-changed event is
defined by this project (see ``schemas/``).
"""

from openedx_events.learning.signals import (
    COURSE_ENROLLMENT_CHANGED,
    COURSE_ENROLLMENT_CREATED,
    COURSE_PASSING_STATUS_UPDATED,
    COURSE_UNENROLLMENT_COMPLETED,
    PERSISTENT_GRADE_SUMMARY_CHANGED,
    SESSION_LOGIN_COMPLETED,
    STUDENT_REGISTRATION_COMPLETED,
)

from groups_consumer.profile_event import USER_PROFILE_CHANGED

LOGIN = SESSION_LOGIN_COMPLETED.event_type
REGISTRATION = STUDENT_REGISTRATION_COMPLETED.event_type
ENROLLMENT_CREATED = COURSE_ENROLLMENT_CREATED.event_type
ENROLLMENT_CHANGED = COURSE_ENROLLMENT_CHANGED.event_type
UNENROLLMENT = COURSE_UNENROLLMENT_COMPLETED.event_type
GRADE_CHANGED = PERSISTENT_GRADE_SUMMARY_CHANGED.event_type
PASSING_STATUS_UPDATED = COURSE_PASSING_STATUS_UPDATED.event_type
PROFILE_CHANGED = USER_PROFILE_CHANGED.event_type

#: The signal of every consumed event type.
SIGNALS = {signal.event_type: signal for signal in (
    SESSION_LOGIN_COMPLETED, STUDENT_REGISTRATION_COMPLETED, COURSE_ENROLLMENT_CREATED, COURSE_ENROLLMENT_CHANGED,
    COURSE_UNENROLLMENT_COMPLETED, PERSISTENT_GRADE_SUMMARY_CHANGED, COURSE_PASSING_STATUS_UPDATED,
    USER_PROFILE_CHANGED)}
#: Events that change who is actively enrolled where, and so every course-scoped answer.
ENROLLMENT_EVENTS = frozenset({ENROLLMENT_CREATED, ENROLLMENT_CHANGED, UNENROLLMENT})
