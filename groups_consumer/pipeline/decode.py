"""Stage 1: decode a message in the openedx event-bus wire format.

The body is Avro written with the schema openedx-events derives from the signal, optionally behind the
5-byte Confluent framing (magic byte 0, 4-byte schema id) that edx-event-bus-kafka's serializer writes.
The event type comes from the ``ce_type`` header, never from the topic; ``ce_id`` and ``ce_time`` are
required too. Schemas are compiled once. A schema registry is optional: when given, a framed message is
read with its writer schema (resolved against ours), so producers may evolve schemas compatibly.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import fastavro
from fastavro.types import Schema

from groups_consumer.errors import DecodeError
from groups_consumer.plugins.events import EventSpec, Origin, PlatformEvent
from groups_consumer.plugins.source import FactSource

if TYPE_CHECKING:
    from confluent_kafka import Message

Headers = Sequence[tuple[str, bytes | None]] | None
#: How far ahead of this process's clock an event's ce_time may be (clocks of LMS hosts drift a little).
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)
CONFLUENT_MAGIC = 0
#: ``PlatformEvent.refused_by`` of an event every source consuming it took (shared: never modified).
NOBODY: Mapping[str, DecodeError] = MappingProxyType({})


def message_headers(message: Message) -> Headers:
    """The headers of a consumed message. librdkafka gives (str, bytes | None) pairs; confluent-kafka's type also
    covers the str values and the dict a producer may be given."""
    return cast(Headers, message.headers())


class EventDecoder:
    """Decodes messages of the event types the fact sources declare (default: the installed ones), checking each
    payload against the rules of every source that consumes its type: refused by all, it is a DecodeError;
    refused by some, the others take it (``PlatformEvent.refused_by``). ``writer_schema(id)`` resolves registry
    ids (optional)."""

    def __init__(self, sources: Iterable[FactSource[Any]] | None = None,
                 writer_schema: Callable[[int], dict[str, Any]] | None = None,
                 max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # Imported here: processes unpickle the consumer's configuration, which imports this module, before
        # Django is set up, and the registry imports models.
        from groups_consumer.plugins import registry

        self._max_clock_skew, self._clock = max_clock_skew, clock
        # The sources first: loading them leaves out those that cannot start, whose event types are then listed.
        available = registry.fact_sources() if sources is None else sources
        self._unavailable = registry.unavailable_events() if sources is None else {}
        self._specs: dict[str, list[tuple[str, EventSpec]]] = defaultdict(list)
        for source in available:
            for spec in source.events:
                self._specs[spec.event_type].append((source.name, spec))
        # One schema per type: sources consuming the same type share its signal's.
        self._schemas = {event_type: fastavro.parse_schema(specs_of_type[0][1].schema)
                         for event_type, specs_of_type in self._specs.items()}
        self._writer_schema = writer_schema
        self._writer_schemas: dict[int, Schema] = {}

    @property
    def event_types(self) -> frozenset[str]:
        """The event types this decoder reads."""
        return frozenset(self._schemas)

    def decode(self, value: bytes | None, headers: Headers, origin: Origin | None = None) -> PlatformEvent:
        """Decode one message; DecodeError says why it cannot be."""
        found = _headers(headers)
        event_type = found.get("ce_type")
        if event_type is None:
            raise DecodeError("missing_header", "no ce_type header")
        if event_type not in self._schemas:
            if event_type in self._unavailable:
                raise DecodeError("source_unavailable", f"ce_type {event_type!r}: {self._unavailable[event_type]}",
                                  poison=False)
            raise DecodeError("unknown_event_type", f"ce_type {event_type!r} is not consumed")
        event_id = found.get("ce_id")
        if not event_id:
            raise DecodeError("missing_header", "no ce_id header")
        time = _event_time(found.get("ce_time"))
        if time - self._clock() > self._max_clock_skew:
            raise DecodeError("event_from_the_future", f"ce_time {time.isoformat()} is more than "
                                                       f"{self._max_clock_skew} ahead of this clock")
        if not value:
            raise DecodeError("empty_body", "the message has no value")
        data = self._body(event_type, value)
        specs = self._specs[event_type]
        if len(specs) == 1:  # the common case: one source per event type; its refusal is the message's
            specs[0][1].check(data)
            return PlatformEvent(event_type, event_id, time, data, origin, NOBODY)
        refused_by = {}
        for source, spec in specs:
            try:
                spec.check(data)
            except DecodeError as error:
                refused_by[source] = error
        if len(refused_by) == len(specs):
            raise next(iter(refused_by.values()))
        for refusal in refused_by.values():
            refusal.poison = False  # the event is sound for another source
        return PlatformEvent(event_type, event_id, time, data, origin, refused_by)

    def _body(self, event_type: str, value: bytes) -> Mapping[str, Any]:
        schema = self._schemas[event_type]
        if value[0] == CONFLUENT_MAGIC and len(value) > 5:
            writer = self._registered_schema(int.from_bytes(value[1:5], "big"))
            try:
                return _read_exactly(value[5:], writer or schema, schema if writer else None)
            except DecodeError:
                if writer is not None:
                    raise
        # Unframed, or a body that merely starts with a zero byte.
        return _read_exactly(value, schema, None)

    def _registered_schema(self, schema_id: int) -> Schema | None:
        if self._writer_schema is None:
            return None
        if schema_id not in self._writer_schemas:
            try:
                self._writer_schemas[schema_id] = fastavro.parse_schema(self._writer_schema(schema_id))
            except Exception as exc:  # the registry client raises its own error types
                raise DecodeError("unknown_schema_id", f"schema id {schema_id}: {exc}") from exc
        return self._writer_schemas[schema_id]


def registry_writer_schemas(url: str) -> Callable[[int], dict[str, Any]]:
    """Writer schemas by id from a Confluent-compatible schema registry."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": url})

    def writer_schema(schema_id: int) -> dict[str, Any]:
        text = client.get_schema(schema_id).schema_str
        if text is None:
            raise ValueError(f"the registry has no schema text for id {schema_id}")
        schema: dict[str, Any] = json.loads(text)
        return schema
    return writer_schema


def _read_exactly(body: bytes, writer: Schema, reader: Schema | None) -> Mapping[str, Any]:
    buffer = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buffer, writer, reader)
    except Exception as exc:  # fastavro raises many types on malformed input
        raise DecodeError("schema_mismatch", f"body does not match the schema: {exc!r}") from exc
    if buffer.tell() != len(body):
        raise DecodeError("schema_mismatch", f"{len(body) - buffer.tell()} bytes left after the record")
    if not isinstance(record, dict):  # every signal's schema is a record
        raise DecodeError("schema_mismatch", f"the body is a {type(record).__name__}, not a record")
    return record


def _headers(headers: Headers) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, raw in headers or ():
        if key in ("ce_type", "ce_id", "ce_time"):
            if key in found:
                raise DecodeError("duplicate_header", f"several {key} headers")
            try:
                found[key] = (raw or b"").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError("bad_header", f"{key} is not UTF-8") from exc
    return found


def _event_time(text: str | None) -> datetime:
    if not text:
        raise DecodeError("missing_header", "no ce_time header")
    try:
        time = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DecodeError("bad_header", f"ce_time {text!r} is not ISO 8601") from exc
    return time if time.tzinfo else time.replace(tzinfo=UTC)
