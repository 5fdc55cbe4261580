"""The benchmark's event stream: mostly logins and grade changes, some enrollments, passing-status and
profile changes, a few registrations, serialized exactly as the LMS does (edx-event-bus-kafka's serializers
and CloudEvents headers, Confluent framing) and produced to the broker."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from confluent_kafka import Producer

from bench.platform import COUNTRIES, COURSES, MODES
from groups_consumer.kafka_clients import KafkaClientSettings
from tests import lms

#: Kinds of events and their share of the stream.
MIX = {"login": 45, "grade": 33, "enrollment": 8, "passing": 6, "profile": 6, "registration": 2}


@dataclass(frozen=True)
class WireMessage:
    """One serialized event: key, value and headers."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def build_stream(enrollments: Sequence[Sequence[str]], count: int, start: datetime, seed: int = 7,
                 active: int | None = None) -> list[WireMessage]:
    """``count`` events, one millisecond apart, about the users of a platform (``Platform.enrollments``: user
    ids 1..n and their courses); registrations bring new users.

    The events are about any user, or, with ``active``, about that many users drawn at random from the whole
    population once (the platform's active learners). Grade and passing events are about a course the user
    has a row for, as the LMS grades enrolled learners (their users are drawn among those with a course);
    enrollment events are about any course.
    """
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    messages = []
    users = len(enrollments) - 1
    next_new_user = users + 1
    pool = rng.sample(range(1, users + 1), active) if active is not None and active < users else None

    def any_user() -> int:
        return rng.choice(pool) if pool else rng.randint(1, users)

    for n, kind in enumerate(kinds):
        at = start + timedelta(milliseconds=n)
        user = any_user()
        if kind in ("grade", "passing"):
            while not enrollments[user]:
                user = any_user()
            course = rng.choice(enrollments[user])
        else:
            course = rng.choice(COURSES)
        if kind == "login":
            event = lms.login(user, at)
        elif kind == "grade":
            event = lms.grade(user, course, round(rng.random(), 2), at)
        elif kind == "enrollment":
            event = lms.enrollment(user, course, at, rng.choice(MODES), rng.random() < 0.85,
                                   rng.choice(["created", "changed", "unenrolled"]))
        elif kind == "passing":
            event = lms.passing(user, course, rng.random() < 0.5, at)
        elif kind == "profile":
            event = lms.profile(user, rng.choice([*COUNTRIES, None]), at)
        else:
            event, next_new_user = lms.registration(next_new_user, at), next_new_user + 1
        key, value, headers = event.wire()
        messages.append(WireMessage(key, value, headers))
    return messages


def produce(bootstrap_servers: str, topic: str, messages: list[WireMessage], rate: float | None = None) -> float:
    """Produce the messages (at ``rate`` per second, or as fast as possible); returns the seconds it took."""
    producer = Producer(KafkaClientSettings.from_env(bootstrap_servers).config(
        "producer", {"linger.ms": 5, "queue.buffering.max.messages": 1_000_000}))
    started = time.monotonic()
    for n, message in enumerate(messages):
        if rate:
            ahead = started + n / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                # The producer only reads the list: its invariant ``list`` parameter type is stricter than ours.
                producer.produce(topic, key=message.key, value=message.value,
                                 headers=cast(list[tuple[str, str | bytes | None]], message.headers))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("the broker did not take every message")
    return time.monotonic() - started
