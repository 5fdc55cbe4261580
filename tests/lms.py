"""Producing test messages exactly as the LMS does.

Event data are openedx-events data classes; bodies and keys come from edx-event-bus-kafka's own serializers
(Avro behind the Confluent framing, schemas registered in an in-process ``mock://`` registry); headers come
from its ``EventsMetadata`` -> CloudEvents header mapping. ``KafkaEventProducer`` sends them to a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Producer
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext
from edx_event_bus_kafka.internal.producer import KafkaEventProducer, get_serializers
from edx_event_bus_kafka.internal.utils import _get_headers_from_metadata
from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey
from openedx_events.data import EventsMetadata
from openedx_events.learning import data as oed
from openedx_events.learning import signals

from groups_consumer.kafka_clients import KafkaClientSettings
from groups_consumer.profile_event import USER_PROFILE_CHANGED, UserProfileData


@dataclass(frozen=True)
class LmsEvent:
    """An event as the LMS emits it: signal, data, metadata, and the field its message is keyed by."""

    signal: object
    data: dict
    metadata: EventsMetadata
    key_field: str

    def wire(self, topic: str = "events") -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Key, value and headers as edx-event-bus-kafka's producer writes them and a consumer reads them."""
        headers = _get_headers_from_metadata(event_metadata=self.metadata)
        key_serializer, value_serializer = get_serializers(self.signal, self.key_field)
        key = key_serializer(_key_of(self.data, self.key_field), SerializationContext(topic, MessageField.KEY, headers))
        value = value_serializer(self.data, SerializationContext(topic, MessageField.VALUE, headers))
        return key, value, [(name, raw if isinstance(raw, bytes) else raw.encode()) for name, raw in headers.items()]


def _key_of(data: dict, field: str):
    value = data
    for part in field.split("."):
        value = getattr(value, part) if not isinstance(value, dict) else value[part]
    return value


def _event(signal, time: datetime, key_field: str, **data) -> LmsEvent:
    return LmsEvent(signal, data, EventsMetadata(event_type=signal.event_type, time=time), key_field)


def user_data(user_id: int, username: str | None = None) -> oed.UserData:
    """The UserData record the LMS puts in events."""
    return oed.UserData(id=user_id, is_active=True, pii=oed.UserPersonalData(
        username=username or f"user{user_id}", email=f"user{user_id}@example.com", name=f"User {user_id}"))


def _course(course_key: str) -> oed.CourseData:
    """The course record; a key that does not parse is sent as written (what no LMS sends, for bad-input tests:
    the serializer writes ``str(key)``)."""
    try:
        key: CourseKey | str = CourseKey.from_string(course_key)
    except InvalidKeyError:
        key = course_key
    return oed.CourseData(course_key=key, display_name="A course")


def login(user_id: int, time: datetime, username: str | None = None) -> LmsEvent:
    return _event(signals.SESSION_LOGIN_COMPLETED, time, "user.pii.username", user=user_data(user_id, username))


def registration(user_id: int, time: datetime) -> LmsEvent:
    return _event(signals.STUDENT_REGISTRATION_COMPLETED, time, "user.pii.username", user=user_data(user_id))


ENROLLMENT_SIGNALS = {"created": signals.COURSE_ENROLLMENT_CREATED, "changed": signals.COURSE_ENROLLMENT_CHANGED,
                      "unenrolled": signals.COURSE_UNENROLLMENT_COMPLETED}


def enrollment(user_id: int, course_key: str, time: datetime, mode: str = "audit", is_active: bool = True,
               kind: str = "created") -> LmsEvent:
    """Enrollment events are keyed by course, as the LMS configures them."""
    return _event(ENROLLMENT_SIGNALS[kind], time, "enrollment.course.course_key", enrollment=oed.CourseEnrollmentData(
        user=user_data(user_id), course=_course(course_key), mode=mode, is_active=is_active, creation_date=time))


def grade(user_id: int, course_key: str, percent: float, time: datetime) -> LmsEvent:
    return _event(signals.PERSISTENT_GRADE_SUMMARY_CHANGED, time, "grade.course.course_key",
                  grade=oed.PersistentCourseGradeData(
                      user_id=user_id, course=_course(course_key), course_edited_timestamp=time, course_version="v1",
                      grading_policy_hash="h", percent_grade=percent, letter_grade="", passed_timestamp=time))


def passing(user_id: int, course_key: str, is_passing: bool, time: datetime) -> LmsEvent:
    return _event(signals.COURSE_PASSING_STATUS_UPDATED, time, "course_passing_status.course.course_key",
                  course_passing_status=oed.CoursePassingStatusData(
                      is_passing=is_passing, course=_course(course_key), user=user_data(user_id)))


def profile(user_id: int, country: str | None, time: datetime) -> LmsEvent:
    return _event(USER_PROFILE_CHANGED, time, "profile.user.id",
                  profile=UserProfileData(user=user_data(user_id), country=country))


def certificate(user_id: int, time: datetime, course_key: str = "course-v1:Demo+C1+2026",
                status: str = "downloadable") -> LmsEvent:
    """A certificate created, as the LMS sends it (no built-in source consumes it)."""
    return _event(signals.CERTIFICATE_CREATED, time, "certificate.course.course_key",
                  certificate=oed.CertificateData(user=user_data(user_id), course=_course(course_key), mode="verified",
                                                  grade="0.9", current_status=status, download_url="", name=""))


def use_mock_schema_registry() -> MockSchemaRegistryClient:
    """edx-event-bus-kafka's serializers (and its consumer) need a schema registry: confluent-kafka's in-process
    one stands in for the server that cannot run here. Returns it (the relay registers its schemas there in
    tests that read what it publishes in the same process)."""
    import edx_event_bus_kafka.internal.consumer as lms_consumer
    import edx_event_bus_kafka.internal.producer as lms_producer

    registry = MockSchemaRegistryClient({"url": "mock://lms-registry"})
    lms_producer.get_schema_registry_client = lambda: registry
    lms_consumer.get_schema_registry_client = lambda: registry
    return registry


def send(kafka: KafkaClientSettings, topic: str, *events: LmsEvent) -> None:
    """Send events with edx-event-bus-kafka's producer, exactly as the LMS does (connected with ``kafka``)."""
    producer = KafkaEventProducer(Producer(kafka.config("producer")))
    for event in events:
        producer.send(signal=event.signal, topic=topic, event_key_field=event.key_field, event_data=event.data,
                      event_metadata=event.metadata)
    assert producer.producer.flush(10) == 0
