"""Decoding the openedx event-bus wire format, and refusing what cannot be decoded."""

import json
from pathlib import Path

import pytest
from openedx_events.event_bus.avro.schema import schema_from_signal
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes

from groups_consumer import event_types
from groups_consumer.pipeline.decode import DecodeError, EventDecoder
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
    assert DECODER.event_types == set(event_types.SIGNALS) and len(event_types.SIGNALS) == 8


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
