"""Helpers for testing plugins (ours and third parties'): criterion types and fact sources.

- ``evaluate_both_ways``: a criterion's two evaluators must select the same users;
- ``flips_cover_changes``: a time-relative criterion's ``flips`` must name every user whose answer changes
  with time;
- ``lms_message``: an event as the LMS puts it on the event bus (key, value, headers);
- ``decode``, ``dead_letter_reason`` and ``apply_events``: messages through the consumer's own stages (decoding
  and payload rules, then one batch: facts, routing, evaluation, membership changes), as in production.

``lms_message`` uses edx-event-bus-kafka, a dependency of the ``test`` extra; the rest needs only the service.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from groups_consumer.definitions import parse_definition
from groups_consumer.engine.catalog import CompiledGroup, GroupCatalog
from groups_consumer.engine.rules import Leaf
from groups_consumer.errors import DecodeError
from groups_consumer.models import UserFact
from groups_consumer.pipeline.batch import BatchProcessor, BatchResult
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.plugins import registry
from groups_consumer.plugins.events import PlatformEvent
from groups_consumer.shared import EVERYONE

#: A Kafka message as a producer writes it: key, value and headers.
Message: TypeAlias = tuple[bytes, bytes, list[tuple[str, bytes]]]
#: The topic messages are serialized for (it names the schemas' subjects in the registry, nothing else).
_TOPIC = "openedx-events"


def evaluate_both_ways(doc: dict[str, Any], now: datetime) -> set[int]:
    """Members of a group definition by set-based and per-user evaluation; AssertionError if they differ."""
    definition, rule = parse_definition(doc)
    group = CompiledGroup(id=0, name=definition.name, scope=definition.scope.as_criterion_scope(),
                          exclusive_set=None, priority=0, rule=rule)
    by_set = group.members(now).resolve(EVERYONE)
    user_ids = list(UserFact.objects.values_list("user_id", flat=True))
    snapshots = {name: registry.backend(name).snapshots(user_ids) for name in group.backends}
    per_user = {user_id for user_id in user_ids if group.qualifies(snapshots, user_id, now)}
    assert by_set == per_user, f"set-based {sorted(by_set)} != per-user {sorted(per_user)} for {doc['rule']}"
    return by_set


def flips_cover_changes(leaf_doc: dict[str, Any], after: datetime, upto: datetime,
                        scope: dict[str, Any] | None = None) -> set[int]:
    """For a time-relative criterion: every known user whose answer differs between ``after`` and ``upto`` (or
    at any whole minute between) must be among ``flips(after, upto)``; AssertionError names those missing.
    Returns the users ``flips`` named."""
    doc = {"name": "flips-check", "scope": scope or {"type": "instance"}, "rule": leaf_doc}
    _definition, rule = parse_definition(doc)
    if not isinstance(rule, Leaf):
        raise TypeError(f"leaf_doc must be one criterion, not an all / any / not node: {leaf_doc}")
    criterion = rule.criterion
    backend = registry.backend(criterion.backend)
    flipping = criterion.flips(backend, after, upto)
    assert flipping is not None, f"{criterion.name!r} is not time-relative: its flips answered None"
    named = flipping.resolve(EVERYONE)
    user_ids = list(UserFact.objects.values_list("user_id", flat=True))
    snapshots = backend.snapshots(user_ids)
    instants = [after + timedelta(minutes=m) for m in range(int((upto - after).total_seconds() // 60) + 1)] + [upto]
    changed = {uid for uid, learner in snapshots.items()
               if len({criterion.test(learner, instant) for instant in instants}) > 1}
    assert changed <= named, f"flips missed users {sorted(changed - named)} of {leaf_doc} in ({after}, {upto}]"
    return named


def lms_message(signal: Any, time: datetime, key_field: str, **data: Any) -> Message:
    """The message the LMS's event bus (edx-event-bus-kafka's producer) writes when ``signal`` (an
    ``OpenEdxPublicSignal``) sends ``data`` (its data classes, e.g. ``certificate=CertificateData(...)``) at
    ``time``: the key is the field at the dotted path ``key_field`` (as the LMS's ``EVENT_BUS_PRODUCER_CONFIG``
    names it); key and value are Avro behind the Confluent framing, made by its serializers; the headers are its
    CloudEvents headers, with a new ``ce_id`` for each call. Schemas are registered in the registry
    edx-event-bus-kafka is configured with, or in an in-process one when it has none."""
    from confluent_kafka.serialization import MessageField, SerializationContext
    from edx_event_bus_kafka.internal import producer
    from edx_event_bus_kafka.internal.utils import _get_headers_from_metadata
    from openedx_events.data import EventsMetadata

    _ensure_schema_registry(producer)
    headers = _get_headers_from_metadata(event_metadata=EventsMetadata(event_type=signal.event_type, time=time))
    key_serializer, value_serializer = producer.get_serializers(signal, key_field)
    key = key_serializer(producer.extract_event_key(data, key_field),
                         SerializationContext(_TOPIC, MessageField.KEY, headers))
    value = value_serializer(data, SerializationContext(_TOPIC, MessageField.VALUE, headers))
    return key, value, list(headers.items())


def _ensure_schema_registry(producer: Any) -> None:
    """Give edx-event-bus-kafka's serializers confluent-kafka's in-process registry, unless a registry is
    configured (``EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL``) or a test already gave them one."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from django.conf import settings
    from edx_event_bus_kafka.internal import config

    if (producer.get_schema_registry_client is config.get_schema_registry_client
            and getattr(settings, "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", None) is None):
        in_process = SchemaRegistryClient.new_client({"url": "mock://groups-consumer-testing"})
        producer.get_schema_registry_client = lambda: in_process


def decode(message: Message, now: datetime) -> PlatformEvent:
    """The event the consumer decodes from ``message`` at ``now``, checked against the rules of the installed
    fact sources' payload models; DecodeError (its ``reason`` is the dead-letter reason) if it would be
    dead-lettered."""
    _key, value, headers = message
    return EventDecoder(clock=lambda: now).decode(value, headers)


def dead_letter_reason(message: Message, now: datetime) -> str | None:
    """The reason the consumer would dead-letter ``message`` with at ``now`` (``invalid_course_key``, ...), or
    None when it decodes and satisfies the installed fact sources' payload rules."""
    try:
        decode(message, now)
    except DecodeError as exc:
        return exc.reason
    return None


def apply_events(messages: Iterable[Message], now: datetime) -> BatchResult:
    """Decode ``messages`` and apply them as one batch of the consumer at ``now``, against the groups stored now:
    facts through the installed fact sources, then routing, evaluation and membership changes, in one
    transaction. DecodeError for a message the consumer would dead-letter, including one a fact source failed
    on while the others applied it (the batch is then committed, as the consumer commits it)."""
    decoder = EventDecoder(clock=lambda: now)
    events = [decoder.decode(value, headers) for _key, value, headers in messages]
    result = BatchProcessor(GroupCatalog.load()).process(events, now)
    if result.source_failures:
        raise result.source_failures[0].error
    return result
