"""The LMS's messages these tests need: certificate events, and the enrollments that put learners in courses.

Built from openedx-events' data classes and serialized by ``groups_consumer.testing.lms_message``, exactly as
the LMS's event bus writes them (certificate events are keyed by course, as the LMS's producer config does).
"""

from datetime import UTC, datetime

from groups_consumer.testing import Message, lms_message
from opaque_keys.edx.keys import CourseKey
from openedx_events.learning.data import CertificateData, CourseData, CourseEnrollmentData, UserData, UserPersonalData
from openedx_events.learning.signals import (
    CERTIFICATE_CHANGED,
    CERTIFICATE_CREATED,
    CERTIFICATE_REVOKED,
    COURSE_ENROLLMENT_CREATED,
)

#: The instant the tests happen at (they never read the clock).
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ORG_A_1, ORG_A_2, ORG_B_1 = "course-v1:OrgA+C1+2026", "course-v1:OrgA+C2+2026", "course-v1:OrgB+C1+2026"
COURSES = (ORG_A_1, ORG_A_2, ORG_B_1)
SIGNALS = {"created": CERTIFICATE_CREATED, "changed": CERTIFICATE_CHANGED, "revoked": CERTIFICATE_REVOKED}


def _user(user_id: int) -> UserData:
    return UserData(id=user_id, is_active=True, pii=UserPersonalData(
        username=f"user{user_id}", email=f"user{user_id}@example.com", name=f"User {user_id}"))


def certificate(user_id: int, course_key: str, status: str, time: datetime, *, kind: str = "changed",
                mode: str = "verified") -> Message:
    """A certificate event (``kind``: created, changed or revoked) with the certificate's status after it."""
    return lms_message(SIGNALS[kind], time, "certificate.course.course_key", certificate=CertificateData(
        user=_user(user_id), course=CourseData(course_key=CourseKey.from_string(course_key)), mode=mode,
        grade="0.85", download_url="", name=f"User {user_id}", current_status=status))


def enrollment(user_id: int, course_key: str, time: datetime, mode: str = "verified") -> Message:
    """An active enrollment: it puts the learner in the course's and its org's group scopes."""
    return lms_message(COURSE_ENROLLMENT_CREATED, time, "enrollment.course.course_key",
                       enrollment=CourseEnrollmentData(
                           user=_user(user_id), course=CourseData(course_key=CourseKey.from_string(course_key)),
                           mode=mode, is_active=True, creation_date=time))
