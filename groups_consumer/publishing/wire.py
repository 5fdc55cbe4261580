"""Membership-change events in the openedx event-bus wire format, as edx-event-bus-kafka's producer writes them.

- value: the Avro record of ``USER_GROUP_MEMBERSHIP_CHANGED``'s schema (``schema_from_signal``), behind the
  Confluent framing (magic byte 0, the schema's 4-byte registry id);
- key: the user id, Avro ``long`` behind the same framing (edx-event-bus-kafka's key schema for the field
  ``membership_change.user_id``);
- headers: CloudEvents (``ce_type``, ``ce_id``, ``ce_source``, ``ce_specversion``, ``ce_time``,
  ``ce_minorversion``, ``sourcehost``, ``sourcelib``, ``content-type``, ``ce_datacontenttype``).

``ce_id`` is derived from the installation's namespace and the change-log id (``change/<id>``; snapshot rows:
``snapshot/<outbox id>``): a row published again carries the same ``ce_id``. The relay writes every message
(1 to 2 per event), so the value is built in parts, each encoded by fastavro: an Avro record is the
concatenation of its fields' encodings (Avro specification, "Binary Encoding"), so the value is the user id's
``long`` (also the key's body), the group's record (encoded once per group as it was, and kept), the change
and the cause (a few pairs, each encoded once), the cause id, and the change's time (one per batch that made
the changes, whose rows the relay mostly reads one after the other: encoded once while it stays the same, as is
the ``ce_time`` header). Encoding a whole record built as a dictionary per message takes several times as
long, and openedx-events' serializer (attrs classes walked per message) longer still (``docs/event-path.rst``
has the measurements). Tests keep the bytes equal to what openedx-events' serializer and edx-event-bus-kafka's
header mapping produce, for any row.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import fastavro
import openedx_events
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from openedx_events.event_bus.avro.schema import schema_from_signal

from groups_consumer.membership_event import USER_GROUP_MEMBERSHIP_CHANGED
from groups_consumer.publishing.outbox import OutboxRow

EVENT_TYPE = USER_GROUP_MEMBERSHIP_CHANGED.event_type
#: The value schema as edx-event-bus-kafka registers it (openedx-events' ``schema_string``).
VALUE_SCHEMA = json.dumps(schema_from_signal(USER_GROUP_MEMBERSHIP_CHANGED), sort_keys=True)
#: The key schema: the Avro type of ``membership_change.user_id``.
KEY_SCHEMA = json.dumps("long")
SOURCE = "openedx/groups-consumer/web"
_FRAME = struct.Struct(">bI")
Message = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]


def ce_id(namespace: uuid.UUID, row: OutboxRow) -> str:
    """The event id of a row: the same for every publication of it (a version-5 UUID in ``namespace``)."""
    return str(uuid.uuid5(namespace, _name(row)))


def _name(row: OutboxRow) -> str:
    return f"change/{row.change_id}" if row.change_id is not None else f"snapshot/{row.id}"


def subjects(topic: str) -> tuple[str, str]:
    """The registry subjects of the key and value schemas: the value's as edx-event-bus-kafka names it
    (``topic_record_subject_name_strategy``: topic and full record name); the key's is ours (that strategy
    gives a primitive schema no subject), as Confluent's default strategy would name it."""
    return f"{topic}-key", f"{topic}-{EVENT_TYPE}.CloudEvent"


@dataclass(frozen=True)
class SchemaIds:
    """The registry ids of the key and value schemas."""

    key: int
    value: int


def register_schemas(registry: SchemaRegistryClient, topic: str) -> SchemaIds:
    """Register the key and value schemas with ``registry``; registering a schema already there gives its id."""
    key_subject, value_subject = subjects(topic)
    return SchemaIds(key=registry.register_schema(key_subject, Schema(KEY_SCHEMA, "AVRO")),
                     value=registry.register_schema(value_subject, Schema(VALUE_SCHEMA, "AVRO")))


class MembershipEventWriter:
    """Turns outbox rows into Kafka messages (key, value, headers). It keeps encodings between calls: one
    relay thread uses it."""

    #: Groups whose encoding is kept (as they were: a renamed group is another entry); past it, start again.
    MAX_GROUPS_KEPT = 10_000

    def __init__(self, namespace: uuid.UUID | str, schema_ids: SchemaIds, sourcehost: str | None = None):
        # ``uuid5`` hashes the namespace again for every id: start each hash from a copy of it instead.
        self._namespace_hash = hashlib.sha1(uuid.UUID(str(namespace)).bytes, usedforsecurity=False)
        self._key_frame = _FRAME.pack(0, schema_ids.key)
        self._value_frame = _FRAME.pack(0, schema_ids.value)
        change_fields = json.loads(VALUE_SCHEMA)["fields"][0]["type"]["fields"]
        user_id, group, *rest = change_fields
        layout = (user_id["name"], group["name"], tuple(f["name"] for f in group["type"]["fields"]),
                  tuple((f["name"], f["type"]) for f in rest))
        if layout != ("user_id", "group", GROUP_FIELDS, tuple((name, "string") for name in AFTER_GROUP)):
            raise ValueError(f"unexpected membership change schema: {change_fields}")  # what ``message`` joins
        self._group_schema = fastavro.parse_schema(group["type"])
        self._groups: dict[tuple[int, str, str, str, str | None], bytes] = {}
        self._changes_and_causes: dict[tuple[str, str], bytes] = {}
        #: The last row's time (and offset), its encoding in the value and its ``ce_time`` header.
        self._time: tuple[tuple[datetime, timedelta | None] | None, bytes, bytes] = (None, b"", b"")
        self._fixed_headers: list[tuple[str, str | bytes | None]] = [
            ("ce_specversion", b"1.0"), ("content-type", b"application/avro"),
            ("ce_datacontenttype", b"application/avro"), ("ce_type", EVENT_TYPE.encode()),
            ("ce_source", SOURCE.encode()), ("ce_minorversion", b"0"),
            ("sourcehost", (sourcehost or socket.gethostname()).encode()),
            ("sourcelib", openedx_events.__version__.encode())]

    def message(self, row: OutboxRow) -> Message:
        """The message of one row."""
        user_id = _encoded("long", row.user_id)
        when = (row.at, row.at.utcoffset())  # equal instants in other offsets are written differently
        if when != self._time[0]:
            at = row.at.isoformat()
            self._time = (when, _encoded("string", at), at.encode())
        _, changed_at, ce_time = self._time
        value = b"".join((self._value_frame, user_id, self._group(row), self._change_and_cause(row),
                          _encoded("string", row.cause_id), changed_at))
        headers = [*self._fixed_headers, ("ce_id", self._ce_id(row)), ("ce_time", ce_time)]
        return self._key_frame + user_id, value, headers

    def _change_and_cause(self, row: OutboxRow) -> bytes:
        """The encoding of the row's change and cause (two strings): a few pairs, kept."""
        encoded = self._changes_and_causes.get((row.kind, row.cause))
        if encoded is None:
            encoded = self._changes_and_causes[(row.kind, row.cause)] = (_encoded("string", row.kind)
                                                                         + _encoded("string", row.cause))
        return encoded

    def _group(self, row: OutboxRow) -> bytes:
        """The encoding of the row's group record (``UserGroupData``)."""
        group = (row.group_id, row.group_name, row.scope_type, row.scope_key, row.exclusive_set)
        encoded = self._groups.get(group)
        if encoded is None:
            if len(self._groups) >= self.MAX_GROUPS_KEPT:
                self._groups.clear()
            encoded = self._groups[group] = _encoded(self._group_schema, dict(zip(GROUP_FIELDS, group, strict=True)))
        return encoded

    def _ce_id(self, row: OutboxRow) -> bytes:
        """``ce_id(namespace, row)``, encoded: hashing only the name, and setting the version and variant bits of
        the name-based UUID (RFC 4122, 4.3) without building a ``uuid.UUID``."""
        digest = self._namespace_hash.copy()
        digest.update(_name(row).encode())
        uid = bytearray(digest.digest()[:16])
        uid[6] = (uid[6] & 0x0F) | 0x50  # version 5
        uid[8] = (uid[8] & 0x3F) | 0x80  # variant RFC 4122
        hexed = uid.hex()
        return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}".encode()


#: The fields of the group record, in the schema's order (the order of the row's group attributes).
GROUP_FIELDS = ("id", "name", "scope_type", "scope_key", "exclusive_set")
#: The fields after the group, strings, in the schema's order (what ``message`` concatenates).
AFTER_GROUP = ("change", "cause", "cause_id", "changed_at")


def _encoded(schema: Any, datum: object) -> bytes:
    """``datum`` in Avro's binary encoding, without framing."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, datum)
    return out.getvalue()
