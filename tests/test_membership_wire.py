"""Membership-change messages are byte for byte what openedx-events' serializer and edx-event-bus-kafka's header
mapping make of the same change, for any row (the writer encodes the value in parts and keeps groups' parts)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from confluent_kafka.serialization import MessageField, SerializationContext
from edx_event_bus_kafka.internal.producer import get_serializers
from edx_event_bus_kafka.internal.utils import _get_headers_from_metadata
from hypothesis import given, settings
from hypothesis import strategies as st
from openedx_events.data import EventsMetadata

from groups_consumer.membership_event import (
    EVENT_KEY_FIELD,
    USER_GROUP_MEMBERSHIP_CHANGED,
    UserGroupData,
    UserGroupMembershipChangeData,
)
from groups_consumer.publishing.outbox import OutboxRow
from groups_consumer.publishing.wire import SOURCE, MembershipEventWriter, SchemaIds, ce_id
from tests.facts import COURSE, NOW

KEY_SERIALIZER, VALUE_SERIALIZER = get_serializers(USER_GROUP_MEMBERSHIP_CHANGED, EVENT_KEY_FIELD)
NAMESPACE = uuid.uuid4()


def _their_message(row: OutboxRow) -> tuple[bytes, bytes]:
    """The key and value openedx-events' serializers make of the row's change."""
    data = UserGroupMembershipChangeData(
        user_id=row.user_id, group=UserGroupData(id=row.group_id, name=row.group_name, scope_type=row.scope_type,
                                                 scope_key=row.scope_key, exclusive_set=row.exclusive_set),
        change=row.kind, cause=row.cause, cause_id=row.cause_id, changed_at=row.at)
    return (KEY_SERIALIZER(row.user_id, SerializationContext("t", MessageField.KEY)),
            VALUE_SERIALIZER({"membership_change": data}, SerializationContext("t", MessageField.VALUE)))


def _writer() -> MembershipEventWriter:
    """A writer with the schema ids the serializers registered."""
    key, value = _their_message(OutboxRow(1, 1, 1, 1, "g", "instance", "", None, "joined", "sync", "r", NOW))
    return MembershipEventWriter(NAMESPACE, SchemaIds(key=int.from_bytes(key[1:5], "big"),
                                                      value=int.from_bytes(value[1:5], "big")), sourcehost="host-1")


#: One writer for every example: groups met earlier are encoded from what it kept.
WRITER = _writer()
texts = st.text(max_size=40)
ids = st.integers(min_value=1, max_value=2**63 - 1)
rows = st.builds(
    OutboxRow, id=ids, change_id=st.none() | ids, user_id=ids,
    group_id=st.integers(min_value=1, max_value=5),
    group_name=st.sampled_from(["struggling", "thriving", "ünï"]) | texts,
    scope_type=st.sampled_from(["instance", "org", "course"]), scope_key=st.sampled_from(["", "edX", COURSE]) | texts,
    exclusive_set=st.none() | st.sampled_from(["level"]) | texts, kind=st.sampled_from(["joined", "left"]),
    cause=st.sampled_from(["event", "sync", "manual", "time", "snapshot"]), cause_id=st.just(str(uuid.uuid4())) | texts,
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda t: t.replace(tzinfo=UTC))
    | st.just(NOW - timedelta(microseconds=1)))


@settings(max_examples=300, deadline=None)
@given(rows)
def test_messages_are_byte_for_byte_what_edx_event_bus_kafka_writes(row):
    key, value, headers = WRITER.message(row)
    assert (key, value) == _their_message(row)
    metadata = EventsMetadata(event_type=USER_GROUP_MEMBERSHIP_CHANGED.event_type, id=uuid.UUID(ce_id(NAMESPACE, row)),
                              source=SOURCE, sourcehost="host-1", time=row.at)
    assert dict(headers) == _get_headers_from_metadata(metadata)
    name = f"change/{row.change_id}" if row.change_id is not None else f"snapshot/{row.id}"
    assert ce_id(NAMESPACE, row) == str(uuid.uuid5(NAMESPACE, name))


def test_a_renamed_group_is_encoded_with_its_new_name():
    row = OutboxRow(7, 41, 123456789, 3, "struggling", "course", COURSE, "level", "joined", "event", "c", NOW)
    renamed = OutboxRow(8, 42, 123456789, 3, "at risk", "course", COURSE, None, "left", "event", "c", NOW)
    assert [WRITER.message(r)[1] for r in (row, renamed)] == [_their_message(r)[1] for r in (row, renamed)]


def test_one_instant_in_two_offsets_is_written_as_each_row_has_it():
    """Rows of one batch share their time, encoded once; an equal instant in another offset is written anew, and
    in another time zone of the same offset, as the same text."""
    in_utc = OutboxRow(9, 43, 5, 3, "struggling", "course", COURSE, None, "joined", "event", "c", NOW)
    elsewhere = OutboxRow(10, 44, 5, 3, "struggling", "course", COURSE, None, "left", "event", "c",
                          NOW.astimezone(timezone(timedelta(hours=2))))
    in_london = NOW.astimezone(ZoneInfo("Europe/London"))  # the same instant and offset, another tzinfo
    assert in_london.utcoffset() == timedelta(0)
    same_offset = OutboxRow(11, 45, 5, 3, "struggling", "course", COURSE, None, "joined", "event", "c", in_london)
    for row in (in_utc, in_utc, elsewhere, in_utc, same_offset, in_utc):
        key, value, headers = WRITER.message(row)
        assert (key, value) == _their_message(row)
        assert dict(headers)["ce_time"] == row.at.isoformat().encode()
