"""Membership-change events end to end, every part a process of its own: the acceptance test of publishing.

An LMS-format stream flows into two ``groups-consumer consume`` processes of one consumer group (one of them is
SIGKILLed mid-stream twice and restarted), which record each membership change in the outbox; two
``groups-consumer relay`` processes run at once, one publishing the outbox, the other waiting as its standby,
until the first is stopped mid-stream and the standby takes over; edx-event-bus-kafka's own
``KafkaEventConsumer``, in another Python process, receives the events as ``USER_GROUP_MEMBERSHIP_CHANGED``
signals. Every change of the change log arrives exactly once, with its ``ce_id``, data and cause, each user's in
the change log's order, and the memberships equal a full recompute. Schemas go through a schema registry server
(``tests.schema_registry_server``) shared by the LMS's producer, the consumers, the relay and the subscriber.
"""

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import edx_event_bus_kafka.internal.producer as lms_producer
import psycopg
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from groups_consumer.publishing.wire import EVENT_TYPE, subjects
from tests import lms, schema_registry_server
from tests.facts import leaf
from tests.test_consumer_processes import (
    COMMAND,
    COURSES,
    GROUPS,
    SteadyStream,
    assert_equals_full_recompute,
    committed_messages,
    database_url,  # noqa: F401 (a fixture: a database of the test's own)
    environment,
    run,
    wait_for_line,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent
#: The groups of the other process tests (an exclusive set among them: users move between its two groups), and
#: one on passing status.
MEMBERSHIP_GROUPS = [*GROUPS, {"name": "passing", "scope": {"type": "course", "key": COURSES[0]},
                               "rule": leaf("course_passing", "=", passing=True)}]
USERS, EVENTS, PER_SECOND, PARTITIONS = 200, 8000, 250, 4

#: The subscriber: edx-event-bus-kafka's consumer, as a service of the platform runs it, with a receiver that
#: writes one JSON line per signal. Its subclass only notes the partition and offset of the message it emits.
SUBSCRIBER = '''
import json
import sys
import threading
import time
from pathlib import Path

import django
from django.conf import settings

topic, group_id, servers, registry_url, output, stop_file = sys.argv[1:]
settings.configure(EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS=servers, EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL=registry_url,
                   EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT=0.2)
django.setup()

from edx_event_bus_kafka.internal.consumer import KafkaEventConsumer  # noqa: E402 (needs the settings)

from groups_consumer.membership_event import USER_GROUP_MEMBERSHIP_CHANGED  # noqa: E402

position = {}


class Subscriber(KafkaEventConsumer):
    def emit_signals_from_message(self, msg, signal):
        position.update(partition=msg.partition(), offset=msg.offset())
        super().emit_signals_from_message(msg, signal)


lines = open(output, "a", buffering=1)


def on_change(membership_change, metadata, **kwargs):
    group = membership_change.group
    lines.write(json.dumps({
        "ce_id": str(metadata.id), "event_type": metadata.event_type, "user_id": membership_change.user_id,
        "group": group.id, "group_name": group.name, "scope": [group.scope_type, group.scope_key],
        "exclusive_set": group.exclusive_set, "change": membership_change.change, "cause": membership_change.cause,
        "cause_id": membership_change.cause_id, "changed_at": membership_change.changed_at.isoformat(),
        **position}) + "\\n")


USER_GROUP_MEMBERSHIP_CHANGED.connect(on_change)
subscriber = Subscriber(topic, group_id)


def stop_when_told():
    while not Path(stop_file).exists():
        time.sleep(0.1)
    subscriber._shut_down()


threading.Thread(target=stop_when_told, daemon=True).start()
subscriber.consume_indefinitely()
lines.close()
'''


@pytest.fixture
def registry_url():
    with schema_registry_server.serve() as url:
        yield url


@pytest.fixture
def lms_on_registry(registry_url, monkeypatch):
    """The LMS's serializers register their schemas with the registry server (the consumers resolve the ids
    there), instead of the suite's in-process registry."""
    client = SchemaRegistryClient({"url": registry_url})
    lms_producer.get_serializers.cache_clear()
    monkeypatch.setattr(lms_producer, "get_schema_registry_client", lambda: client)
    yield client
    lms_producer.get_serializers.cache_clear()


def stream(seed: int) -> list[lms.LmsEvent]:
    """LMS events over ``USERS`` users, half a second apart in the last two hours: every event is newer than the
    facts before it, so grades going down and up, modes, passing statuses and countries changing move users in
    and out of groups again and again."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    makers: dict[Callable[[int, datetime], lms.LmsEvent], int] = {  # maker: weight
        lambda u, t: lms.login(u, t): 1,
        lambda u, t: lms.profile(u, rng.choice(["ES", "FR", None]), t): 2,
        lambda u, t: lms.enrollment(u, rng.choice(COURSES), t, rng.choice(["audit", "verified"]), rng.random() > 0.1,
                                    rng.choice(["created", "changed", "changed", "unenrolled"])): 3,
        lambda u, t: lms.grade(u, COURSES[0], rng.choice([0.2, 0.4, 0.6, 0.8]), t): 3,
        lambda u, t: lms.grade(u, COURSES[1], rng.random(), t): 1,
        lambda u, t: lms.passing(u, COURSES[0], rng.random() > 0.5, t): 2,
    }
    chosen = rng.choices(list(makers), weights=list(makers.values()), k=EVENTS)
    return [make(rng.randint(1, USERS), start + timedelta(seconds=i / 2)) for i, make in enumerate(chosen)]


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one statement on the processes' database (``url``: its DATABASE_URL)."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as db:
            return db.execute(sql).fetchall()
    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(sql).fetchall()


def wait_until(condition: Callable[[], object], state: Callable[[], str], timeout_s: float) -> None:
    """Poll ``condition`` until it holds; fail with ``state()`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s: {state()}"
        time.sleep(0.2)


def read_topic(config, topic: str, quiet_s: float = 2.0) -> list[tuple[int, int]]:
    """(partition, offset) of every message in the topic: read from the start until none comes for
    ``quiet_s`` (the embedded broker's high watermarks lag behind the last batch: they cannot tell the end)."""
    reader = config.new_consumer(f"reader-{uuid.uuid4().hex[:8]}")
    reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    found = []
    try:
        while (message := reader.poll(quiet_s if found else 10.0)) is not None:
            if message.error() is None:
                found.append((message.partition(), message.offset()))
    finally:
        reader.close()
    return found


def utc(value: datetime | str) -> datetime:
    """A time as the database or an event gives it, as an aware UTC datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def create_topics(config, *topics: str) -> None:
    """Create the topics with ``PARTITIONS`` partitions each (two consumers share the input; users spread over
    the membership topic's partitions)."""
    admin = config.kafka.admin()
    for future in admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1)
                                       for t in topics]).values():
        future.result(10)


def test_every_change_reaches_an_edx_event_bus_consumer_once_in_each_users_order(
        config, database_url, registry_url, lms_on_registry, tmp_path):  # noqa: F811 (the imported fixture)
    input_topic, topic = config.topics[0], f"membership-{config.group_id}"
    env = {**environment(config, database_url), "KAFKA_MEMBERSHIP_TOPIC": topic, "SCHEMA_REGISTRY_URL": registry_url}
    run(env, "migrate", "--no-input")
    run(env, "apply", "-", stdin=json.dumps(MEMBERSHIP_GROUPS))
    create_topics(config, input_topic, topic)
    # The subscriber's group starts at the beginning of the topic (edx's consumer would start at its end).
    subscriber_group = f"subscriber-{config.group_id}"
    subscriber_offsets = config.new_consumer(subscriber_group)  # commits and reads its offsets; never joins
    subscriber_offsets.commit(offsets=[TopicPartition(topic, p, 0) for p in range(PARTITIONS)], asynchronous=False)
    consumed = config.new_consumer()  # the consumers' committed offsets
    received, stop_file = tmp_path / "received.jsonl", tmp_path / "stop"
    (tmp_path / "subscriber.py").write_text(SUBSCRIBER)
    processes: dict[str, subprocess.Popen] = {}
    logs = []

    def published_so_far() -> int:  # changes recorded whose outbox rows the relay has deleted
        counts = query(database_url, "SELECT (SELECT COUNT(*) FROM groups_consumer_membershipchange), "
                                     "(SELECT COUNT(*) FROM groups_consumer_outboxmessage)")[0]
        return counts[0] - counts[1]

    def tail(name: str) -> str:
        return f"{name}.log ends with: {(tmp_path / f'{name}.log').read_text()[-2000:]}"

    def start(name: str, *args: str) -> subprocess.Popen:
        logs.append((tmp_path / f"{name}.log").open("w"))
        processes[name] = subprocess.Popen(args, env=env, cwd=ROOT, stdout=logs[-1], stderr=subprocess.STDOUT)
        return processes[name]

    try:
        start("subscriber", sys.executable, str(tmp_path / "subscriber.py"), topic, subscriber_group,
              config.bootstrap_servers, registry_url, str(received), str(stop_file))
        first_relay = start("relay-A", COMMAND, "relay")
        wait_for_line(tmp_path / "relay-A.log", '"relay_active"', timeout_s=60)
        relay = start("relay-B", COMMAND, "relay")  # the standby, running alongside
        feed = SteadyStream(config, stream(seed=21), per_second=PER_SECOND)  # registers the LMS's schemas
        start("consumer-B", COMMAND, "consume")
        victim = start("consumer-A0", COMMAND, "consume")
        feed.start()
        for kill in (1, 2):  # SIGKILL while it applies batches, then start it again
            wait_for_line(tmp_path / f"consumer-A{kill - 1}.log", '"groups_loaded"', timeout_s=60)
            time.sleep(0.5)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            assert committed_messages(consumed, input_topic) < EVENTS, "the kill should land mid-stream"
            victim = start(f"consumer-A{kill}", COMMAND, "consume")
            if kill == 1:  # the active relay stops while changes keep coming: the standby takes over
                wait_until(lambda: published_so_far() > 0, lambda: f"nothing published yet; {tail('relay-A')}", 60)
                first_relay.send_signal(signal.SIGTERM)
                assert first_relay.wait(timeout=60) == 0
                wait_for_line(tmp_path / "relay-B.log", '"relay_active"', timeout_s=30)
        feed.join()
        wait_until(lambda: committed_messages(consumed, input_topic) == EVENTS,
                   lambda: f"{committed_messages(consumed, input_topic)} of {EVENTS} events committed", 90)
        for name in ("consumer-A2", "consumer-B"):
            processes[name].send_signal(signal.SIGTERM)
        assert {name: processes[name].wait(timeout=60) for name in ("consumer-A2", "consumer-B")} == {
            "consumer-A2": 0, "consumer-B": 0}

        table = "groups_consumer_outboxmessage"
        pending = lambda: query(database_url, f"SELECT COUNT(*) FROM {table}")[0][0]  # noqa: E731
        wait_until(lambda: pending() == 0, lambda: f"{pending()} outbox rows unpublished; {tail('relay-B')}", 60)
        relay.send_signal(signal.SIGTERM)  # it has published everything: the topic holds all it ever will
        assert relay.wait(timeout=60) == 0
        changes = query(database_url, "SELECT id, user_id, group_id, kind, cause, cause_id, at "
                                      "FROM groups_consumer_membershipchange ORDER BY id")
        count = lambda: len(received.read_text().splitlines()) if received.exists() else 0  # noqa: E731
        wait_until(lambda: count() >= len(changes) and committed_messages(subscriber_offsets, topic) == len(changes),
                   lambda: f"{count()} of {len(changes)} received, subscriber committed "
                           f"{committed_messages(subscriber_offsets, topic)}; {tail('subscriber')}", 90)
        stop_file.touch()
        assert processes["subscriber"].wait(timeout=30) == 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for log_file in logs:
            log_file.close()
        subscriber_offsets.close()
        consumed.close()

    namespace = uuid.UUID(str(query(database_url, "SELECT namespace FROM groups_consumer_eventsource")[0][0]))
    ce_id = {row[0]: str(uuid.uuid5(namespace, f"change/{row[0]}")) for row in changes}
    events = [json.loads(line) for line in received.read_text().splitlines()]
    # Exactly the change log: each change once, by its ce_id.
    assert Counter(e["ce_id"] for e in events) == Counter(ce_id.values())
    assert sorted((e["partition"], e["offset"]) for e in events) == sorted(read_topic(config, topic)), (
        "the topic holds one message per change, each received once")
    # Each user's changes in the change log's order (one partition per user, in offset order).
    expected_order: dict[int, list[str]] = defaultdict(list)
    for change_id, user_id, *_ in changes:
        expected_order[user_id].append(ce_id[change_id])
    received_order: dict[int, list[str]] = defaultdict(list)
    partitions: dict[int, set[int]] = defaultdict(set)
    for event in events:
        received_order[event["user_id"]].append(event["ce_id"])
        partitions[event["user_id"]].add(event["partition"])
    assert received_order == expected_order
    assert all(len(found) == 1 for found in partitions.values())
    # Each event says what its change-log row says.
    row_of = {ce_id[row[0]]: row for row in changes}
    groups = {g["name"]: g for g in MEMBERSHIP_GROUPS}
    wrong = [(event, row_of[event["ce_id"]]) for event in events
             if (event["user_id"], event["group"], event["change"], event["cause"], event["cause_id"],
                 utc(event["changed_at"])) != (*row_of[event["ce_id"]][1:6], utc(row_of[event["ce_id"]][6]))
             or event["event_type"] != EVENT_TYPE
             or event["exclusive_set"] != groups[event["group_name"]].get("exclusive_set")
             or event["scope"] != list(groups[event["group_name"]].get("scope", {"type": "instance", "key": ""})
                                       .values())]
    assert wrong == []
    # The stream did what this test is about: many changes, users in and out of groups several times, moves
    # between the groups of an exclusive set, all made by events.
    joins = Counter((e["user_id"], e["group"]) for e in events if e["change"] == "joined")
    in_set = Counter((e["user_id"], e["cause_id"], e["change"]) for e in events if e["exclusive_set"])
    moves = [(user, cause) for (user, cause, change) in in_set if change == "left" and in_set[user, cause, "joined"]]
    repeated = sum(1 for n in joins.values() if n >= 3)
    summary = f"{len(changes)} changes, {repeated} (user, group) joined 3+ times, {len(moves)} moves"
    assert len(changes) > 1500 and repeated > 75 and len(moves) > 100, summary
    assert {e["cause"] for e in events} == {"event"}
    # The relay published each row once, under the subjects edx-event-bus-kafka uses; the consumers
    # dead-lettered nothing (they resolved the LMS's schema ids in the registry).
    stopped = [json.loads(line) for name in ("relay-A", "relay-B")
               for line in (tmp_path / f"{name}.log").read_text().splitlines() if '"relay_stopped"' in line]
    published = [entry["published"] for entry in stopped]
    assert len(published) == 2 and min(published) > 0 and sum(published) == len(changes), published
    assert json.loads(run(env, "status", "--json").stdout)["consumer"]["dead_letters"] == 0
    assert set(subjects(topic)) <= set(lms_on_registry.get_subjects())
    # And the memberships are those a full recompute gives.
    assert sum(assert_equals_full_recompute(env).values()) > 0
