"""The events fact sources consume: what a source declares per event type, and what it receives.

A fact source declares each event type it consumes as an ``EventSpec``: the openedx-events signal that
defines the event (any signal of openedx-events, or one the plugin's package defines) and, optionally, a
pydantic model of the parts of the payload the source reads, with the rules they must satisfy. Avro (the
schema openedx-events derives from the signal) guarantees types and required fields; it cannot say that a
course key parses, that a user id is positive or that a grade is a percentage. A payload that breaks its
model's rules is a ``DecodeError`` with a reason code, so the message goes to the dead-letter topic like an
undecodable one and the consumer goes on.

What the source then receives is a ``PlatformEvent``: the CloudEvents attributes and the signal's data as Avro
records (dicts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey
from opaque_keys.edx.locator import CourseLocator
from openedx_events.event_bus.avro.schema import schema_from_signal
from openedx_events.tooling import OpenEdxPublicSignal
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from groups_consumer.errors import DecodeError

if TYPE_CHECKING:
    from confluent_kafka import Message

#: The longest strings the built-in facts store: Django's username, the LMS's course-key fields.
MAX_USERNAME, MAX_COURSE_KEY = 150, 255


class Origin(NamedTuple):
    """Where a message was read. A named tuple: one is made for each message, and hashed as a key of the
    batch's messages (half the cost of a frozen dataclass: 412 against 855 ns per message, made, inserted and
    looked up)."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, message: Message) -> Origin:
        """Where a consumed message was read (a consumed message has all three)."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError("not a consumed message: no topic, partition or offset")
        return cls(topic, partition, offset)


@dataclass(frozen=True)
class PlatformEvent:
    """A decoded openedx-event: its CloudEvents attributes and the signal data as Avro records (dicts).
    ``refused_by`` names the fact sources whose payload rules it breaks (the others take it), with why."""

    event_type: str
    event_id: str
    time: datetime
    data: Mapping[str, Any]
    origin: Origin | None = None
    refused_by: Mapping[str, DecodeError] = field(default_factory=dict)


class EventPayload(BaseModel):
    """Base of payload models: the part of a record a source reads; every other field is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@lru_cache(maxsize=8192)
def _course_key(text: str) -> str:
    """``text`` if it is a course key (parsing costs tens of microseconds; a platform has few courses)."""
    try:
        key = CourseKey.from_string(text)
    except InvalidKeyError:
        raise ValueError(f"{text!r} is not a valid course key") from None
    if not isinstance(key, CourseLocator):  # CCXLocator is a CourseLocator; LibraryLocator is not
        raise ValueError(f"{text!r} is not a course key (a {type(key).__name__})")
    return text


#: An LMS user id: positive, and a 64-bit integer (what the fact tables store).
UserId = Annotated[int, Field(gt=0, le=2**63 - 1)]
#: A course key as the LMS sends them: ``course-v1:ORG+COURSE+RUN``, CCX keys ``ccx-v1:ORG+COURSE+RUN+ccx@N`` and
#: the deprecated ``ORG/COURSE/RUN`` form of old courses; not content-library keys (``library-v1:``), which have
#: no enrollments, nor anything opaque-keys cannot parse.
CourseKeyText = Annotated[str, StringConstraints(max_length=MAX_COURSE_KEY), AfterValidator(_course_key)]
#: Reason codes of payload errors by the name of the field that is wrong (others are ``invalid_value``).
FIELD_REASONS = {"id": "invalid_user_id", "user_id": "invalid_user_id", "course_key": "invalid_course_key",
                 "percent_grade": "invalid_grade", "country": "invalid_country", "mode": "invalid_mode"}
_MISSING = frozenset({"missing", "model_type", "model_attributes_type", "none_required"})


@dataclass(frozen=True)
class EventSpec:
    """One event type a fact source consumes: the signal that defines it (and so its Avro schema) and the model
    of the payload parts the source reads (``None``: only the schema is checked)."""

    signal: OpenEdxPublicSignal
    payload: type[EventPayload] | None = None

    @property
    def event_type(self) -> str:
        """The ``ce_type`` of the event."""
        return str(self.signal.event_type)

    @cached_property
    def schema(self) -> dict[str, Any]:
        """The Avro schema openedx-events derives from the signal (what the LMS writes with); raises if the
        signal's data cannot be expressed in Avro (openedx-events then cannot send it on the event bus)."""
        schema: dict[str, Any] = schema_from_signal(self.signal)
        return schema

    def check(self, data: Mapping[str, Any]) -> None:
        """Raise DecodeError (``invalid_user_id``, ``invalid_course_key``, ``invalid_grade``, ``invalid_country``,
        ``invalid_mode``, ``value_too_long``, ``missing_record``, ``invalid_value``) if the payload breaks a rule
        of the model; the detail names the field by its path (``enrollment.course.course_key``)."""
        if self.payload is None:
            return
        try:
            self.payload.model_validate(data)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            path = ".".join(str(part) for part in error["loc"])
            field = next((str(part) for part in reversed(error["loc"]) if isinstance(part, str)), "")
            if error["type"] in _MISSING:
                reason = "missing_record"
            elif error["type"] == "string_too_long":
                reason = "value_too_long"
            else:
                reason = FIELD_REASONS.get(field, "invalid_value")
            raise DecodeError(reason, f"{path}: {error['msg']} (got {error['input']!r:.200})") from None
