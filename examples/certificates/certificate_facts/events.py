"""The LMS's certificate events, and the rules their payloads must satisfy.

The LMS sends ``CERTIFICATE_CHANGED`` whenever it saves a certificate, ``CERTIFICATE_CREATED`` too when the
saved status is a passing one, and ``CERTIFICATE_REVOKED`` when it invalidates one. All three carry a
``CertificateData`` record under ``certificate``; Avro (the schema openedx-events derives from the signal)
guarantees its types, the payload model below what a valid record also needs. A record that breaks it is
dead-lettered with the reason (``invalid_user_id``, ``invalid_course_key``, ``value_too_long``, ...).
"""

from typing import Annotated

from groups_consumer.sdk import CourseKeyText, EventPayload, EventSpec, UserId
from openedx_events.learning.signals import CERTIFICATE_CHANGED, CERTIFICATE_CREATED, CERTIFICATE_REVOKED
from pydantic import StringConstraints

#: The LMS's status of a valid certificate (``CertificateStatuses.downloadable``).
DOWNLOADABLE = "downloadable"
#: The status this source records for a revoked certificate, whatever status the LMS revoked it with.
REVOKED = "revoked"
REVOKED_EVENT = CERTIFICATE_REVOKED.event_type
#: The event types that change certificates.
CERTIFICATE_EVENTS = frozenset({CERTIFICATE_CREATED.event_type, CERTIFICATE_CHANGED.event_type, REVOKED_EVENT})

#: The LMS's certificate status and mode columns hold at most 32 characters.
Slug = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class _User(EventPayload):
    id: UserId


class _Course(EventPayload):
    course_key: CourseKeyText


class _Certificate(EventPayload):
    user: _User
    course: _Course
    mode: Slug
    current_status: Slug


class CertificatePayload(EventPayload):
    """The parts of a certificate event this source reads: user, course, mode and status."""

    certificate: _Certificate


CERTIFICATE_EVENT_SPECS = tuple(EventSpec(signal, CertificatePayload)
                                for signal in (CERTIFICATE_CREATED, CERTIFICATE_CHANGED, CERTIFICATE_REVOKED))
