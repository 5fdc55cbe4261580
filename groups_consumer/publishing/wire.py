"""Membership-change events in the openedx event-bus wire format, as edx-event-bus-kafka's producer writes them.

- value: the Avro record of ``USER_GROUP_MEMBERSHIP_CHANGED``'s schema (``schema_from_signal``), behind the
  Confluent framing (magic byte 0, the schema's 4-byte registry id);
- key: the user id, Avro ``long`` behind the same framing (edx-event-bus-kafka's key schema for the field
  ``membership_change.user_id``);
- headers: CloudEvents (``ce_type``, ``ce_id``, ``ce_source``, ``ce_specversion``, ``ce_time``,
  ``ce_minorversion``, ``sourcehost``, ``sourcelib``, ``content-type``, ``ce_datacontenttype``).

``ce_id`` is derived from the installation's namespace and the change-log id (``change/<id>``; snapshot rows:
``snapshot/<outbox id>``): a row published again carries the same ``ce_id``. Records are built as plain
dictionaries (openedx-events' serializer walks attrs classes per message: several times slower); a test keeps
the bytes equal to what openedx-events' serializer and edx-event-bus-kafka's header mapping produce.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import uuid
from dataclasses import dataclass
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
    """Turns outbox rows into Kafka messages (key, value, headers)."""

    def __init__(self, namespace: uuid.UUID | str, schema_ids: SchemaIds, sourcehost: str | None = None):
        # ``uuid5`` hashes the namespace again for every id: start each hash from a copy of it instead.
        self._namespace_hash = hashlib.sha1(uuid.UUID(str(namespace)).bytes, usedforsecurity=False)
        self._key_frame = _FRAME.pack(0, schema_ids.key)
        self._value_frame = _FRAME.pack(0, schema_ids.value)
        self._schema = fastavro.parse_schema(json.loads(VALUE_SCHEMA))
        self._fixed_headers: list[tuple[str, str | bytes | None]] = [
            ("ce_specversion", b"1.0"), ("content-type", b"application/avro"),
            ("ce_datacontenttype", b"application/avro"), ("ce_type", EVENT_TYPE.encode()),
            ("ce_source", SOURCE.encode()), ("ce_minorversion", b"0"),
            ("sourcehost", (sourcehost or socket.gethostname()).encode()),
            ("sourcelib", openedx_events.__version__.encode())]

    def message(self, row: OutboxRow) -> Message:
        """The message of one row."""
        key = io.BytesIO(self._key_frame)
        key.seek(0, io.SEEK_END)
        fastavro.schemaless_writer(key, "long", row.user_id)
        value = io.BytesIO(self._value_frame)
        value.seek(0, io.SEEK_END)
        fastavro.schemaless_writer(value, self._schema, record(row))
        headers = [*self._fixed_headers, ("ce_id", self._ce_id(row).encode()),
                   ("ce_time", row.at.isoformat().encode())]
        return key.getvalue(), value.getvalue(), headers

    def _ce_id(self, row: OutboxRow) -> str:
        """``ce_id(namespace, row)``, hashing only the name."""
        digest = self._namespace_hash.copy()
        digest.update(_name(row).encode())
        return str(uuid.UUID(bytes=digest.digest()[:16], version=5))


def record(row: OutboxRow) -> dict[str, Any]:
    """The Avro record of a row (what openedx-events' serializer makes of the signal data)."""
    return {"membership_change": {
        "user_id": row.user_id,
        "group": {"id": row.group_id, "name": row.group_name, "scope_type": row.scope_type,
                  "scope_key": row.scope_key, "exclusive_set": row.exclusive_set},
        "change": row.kind, "cause": row.cause, "cause_id": row.cause_id, "changed_at": row.at.isoformat()}}
