"""Decoding the openedx event-bus wire format, and refusing what cannot be decoded."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from openedx_events.event_bus.avro.schema import schema_from_signal
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes

from groups_consumer.errors import DecodeError
from groups_consumer.facts import events as event_types
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.profile_event import USER_PROFILE_CHANGED
from tests import lms
from tests.facts import COURSE, NOW

DECODER = EventDecoder()
EVENTS = [lms.login(1, NOW), lms.registration(1, NOW), lms.enrollment(1, COURSE, NOW),
          lms.enrollment(1, COURSE, NOW, kind="changed"), lms.enrollment(1, COURSE, NOW, kind="unenrolled"),
          lms.grade(1, COURSE, 0.25, NOW), lms.passing(1, COURSE, True, NOW), lms.profile(1, "ES", NOW)]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.signal.event_type)
def test_every_consumed_event_decodes_framed_and_unframed(event):
    _key, value, headers = event.wire()
    assert value[0] == 0  # Confluent framing, as edx-event-bus-kafka writes it
    decoded = DECODER.decode(value, headers)
    assert decoded.event_type == event.signal.event_type
    assert decoded.event_id == str(event.metadata.id) and decoded.time == NOW
    unframed = serialize_event_data_to_bytes(event.data, event.signal)
    assert DECODER.decode(unframed, headers).data == decoded.data


def test_consumed_types_are_the_brief_s():
    assert DECODER.event_types == {spec.event_type for spec in event_types.LEARNER_EVENTS}
    assert len(DECODER.event_types) == 8


def test_decoded_fields():
    decoded = DECODER.decode(*lms.grade(7, COURSE, 0.25, NOW).wire()[1:])
    assert decoded.data["grade"]["user_id"] == 7 and decoded.data["grade"]["percent_grade"] == 0.25
    assert decoded.data["grade"]["course"]["course_key"] == COURSE


def test_profile_event_schema_file_is_derived_from_the_signal():
    path = Path(__file__).parents[1] / "schemas" / f"{USER_PROFILE_CHANGED.event_type}.avsc"
    assert json.loads(path.read_text()) == schema_from_signal(USER_PROFILE_CHANGED)
    decoded = DECODER.decode(*lms.profile(3, None, NOW).wire()[1:])
    assert decoded.data["profile"]["country"] is None


def without(headers, name):
    return [(k, v) for k, v in headers if k != name]


def replaced(headers, name, value):
    return [(k, value if k == name else v) for k, v in headers]


_, LOGIN_VALUE, LOGIN_HEADERS = lms.login(1, NOW).wire()


@pytest.mark.parametrize(("value", "headers", "reason"), [
    (LOGIN_VALUE, without(LOGIN_HEADERS, "ce_type"), "missing_header"),
    (LOGIN_VALUE, without(LOGIN_HEADERS, "ce_id"), "missing_header"),
    (LOGIN_VALUE, without(LOGIN_HEADERS, "ce_time"), "missing_header"),
    (LOGIN_VALUE, None, "missing_header"),
    (LOGIN_VALUE, replaced(LOGIN_HEADERS, "ce_type", b"org.openedx.learning.xblock.skill.verified.v1"),
     "unknown_event_type"),
    (LOGIN_VALUE, replaced(LOGIN_HEADERS, "ce_time", b"yesterday"), "bad_header"),
    (LOGIN_VALUE, replaced(LOGIN_HEADERS, "ce_type", b"\xff\xfe"), "bad_header"),
    (LOGIN_VALUE, [*LOGIN_HEADERS, ("ce_type", b"org.openedx.learning.auth.session.login.completed.v1")],
     "duplicate_header"),
    (b"", LOGIN_HEADERS, "empty_body"),
    (None, LOGIN_HEADERS, "empty_body"),
    (b"\x00\x00\x00\x00\x01not avro at all", LOGIN_HEADERS, "schema_mismatch"),
    (LOGIN_VALUE[:-3], LOGIN_HEADERS, "schema_mismatch"),
    (LOGIN_VALUE + b"\x02\x04", LOGIN_HEADERS, "schema_mismatch"),
    (LOGIN_VALUE, replaced(LOGIN_HEADERS, "ce_type", event_types.GRADE_CHANGED.encode()), "schema_mismatch"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_undecodable_messages_say_why(value, headers, reason):
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(value, headers)
    assert caught.value.reason == reason


def test_a_registry_supplies_writer_schemas_when_configured():
    from edx_event_bus_kafka.internal.producer import get_schema_registry_client
    registry = get_schema_registry_client()
    _, value, headers = lms.login(2, NOW).wire()
    decoder = EventDecoder(writer_schema=lambda schema_id: json.loads(registry.get_schema(schema_id).schema_str))
    assert decoder.decode(value, headers).data["user"]["id"] == 2
    with pytest.raises(DecodeError, match="unknown_schema_id"):
        decoder.decode(b"\x00\x00\x00\x7f\x7f" + value[5:], headers)


@pytest.mark.parametrize(("event", "reason", "detail"), [
    (lms.enrollment(1, "not-a-course-key", NOW), "invalid_course_key",
     "enrollment.course.course_key: Value error, 'not-a-course-key' is not a valid course key"),
    (lms.enrollment(1, "library-v1:Demo+Lib", NOW), "invalid_course_key", "is not a course key (a LibraryLocator)"),
    (lms.grade(1, "nope", 0.5, NOW), "invalid_course_key", "grade.course.course_key: "),
    (lms.login(-5, NOW), "invalid_user_id", "user.id: Input should be greater than 0"),
    (lms.grade(0, COURSE, 0.5, NOW), "invalid_user_id", "grade.user_id: "),
    (lms.grade(1, COURSE, 1.5, NOW), "invalid_grade", "grade.percent_grade: Input should be less than or equal to 1"),
    (lms.grade(1, COURSE, float("nan"), NOW), "invalid_grade", "grade.percent_grade: Input should be a finite number"),
    (lms.grade(1, COURSE, float("inf"), NOW), "invalid_grade", "grade.percent_grade: "),
    (lms.grade(1, COURSE, -0.1, NOW), "invalid_grade", "grade.percent_grade: "),
    (lms.profile(1, "ESP", NOW), "invalid_country", "profile.country: String should match pattern"),
    (lms.enrollment(1, COURSE, NOW, mode=""), "invalid_mode", "enrollment.mode: "),
    (lms.login(1, NOW, username="x" * 151), "value_too_long", "user.pii.username: String should have at most 150"),
    (lms.login(1, NOW + timedelta(days=70 * 365)), "event_from_the_future", "is more than 0:05:00 ahead"),
], ids=lambda value: value if isinstance(value, str) and " " not in value else "")
def test_decodable_events_with_values_no_lms_sends_are_refused_with_a_reason(event, reason, detail):
    with time_machine.travel(NOW, tick=False), pytest.raises(DecodeError) as refused:
        DECODER.decode(*event.wire()[1:])
    assert refused.value.reason == reason and detail in refused.value.detail


@pytest.mark.parametrize("course_key", ["ccx-v1:Demo+C1+2026+ccx@3", "Demo/C1/2026", COURSE])
def test_course_keys_the_lms_sends_are_accepted(course_key):
    decoded = DECODER.decode(*lms.enrollment(1, course_key, NOW).wire()[1:])
    assert decoded.data["enrollment"]["course"]["course_key"] == course_key


def test_an_empty_country_is_no_country():
    assert DECODER.decode(*lms.profile(1, "", NOW).wire()[1:]).data["profile"]["country"] == ""


def test_events_a_little_ahead_or_far_in_the_past_are_accepted():
    decoder = EventDecoder(clock=lambda: NOW)
    assert decoder.decode(*lms.login(1, NOW + timedelta(minutes=4)).wire()[1:]).time > NOW
    assert decoder.decode(*lms.login(1, NOW - timedelta(days=20 * 365)).wire()[1:]).time < NOW
    strict = EventDecoder(clock=lambda: NOW, max_clock_skew=timedelta(seconds=1))
    with pytest.raises(DecodeError, match=r"^event_from_the_future: ce_time "):
        strict.decode(*lms.login(1, NOW + timedelta(seconds=2)).wire()[1:])
