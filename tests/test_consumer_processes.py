"""Consumer processes: SIGKILL mid-stream then restart, two consumers in one group, a replay in two processes, a
consumer beside two scheduler replicas syncing all along, a rolling restart while a rebalance is in progress.

Each ends in exactly the state a full recompute gives: a full sync afterwards finds no difference.
The processes use their own database (a SQLite file, or a fresh PostgreSQL database when the suite runs on
PostgreSQL) and the broker of the other consumer tests.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import TopicPartition
from django.conf import settings

from groups_consumer.broker import EmbeddedBroker
from groups_consumer.kafka_clients import as_environment
from tests import lms
from tests.facts import NOW, leaf

pytestmark = pytest.mark.slow
COMMAND = str(Path(sys.executable).parent / "groups-consumer")
COURSES = ["course-v1:OrgA+C1+R", "course-v1:OrgA+C2+R"]
GROUPS = [
    {"name": "struggling", "scope": {"type": "org", "key": "OrgA"}, "exclusive_set": "s", "priority": 2,
     "rule": leaf("course_grade", "<", percent=0.5, course_key=COURSES[0])},
    {"name": "verified", "scope": {"type": "course", "key": COURSES[1]}, "exclusive_set": "s", "priority": 1,
     "rule": leaf("enrollment_mode", "in", modes=["verified"])},
    {"name": "away", "rule": {"not": leaf("last_login", "<=", days=10)}},
    {"name": "spain", "rule": leaf("country", "in", countries=["ES"])},
]


@pytest.fixture
def database_url(tmp_path):
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        yield f"sqlite:///{tmp_path / 'consumer.sqlite3'}"
        return
    name = f"gc_proc_{uuid.uuid4().hex[:8]}"
    admin = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**admin) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(**admin) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def environment(config, database_url):
    return {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": config.bootstrap_servers,
            "KAFKA_TOPICS": config.topics[0], "KAFKA_GROUP_ID": config.group_id, "KAFKA_DLQ_TOPIC": config.dlq_topic,
            "CONSUMER_BATCH_SIZE": "40", "LOG_FORMAT": "json",
            **as_environment(EmbeddedBroker.CONSUMER_PROPERTIES, "KAFKA_CONSUMER_")}


def run(env, *args, stdin=None):
    return subprocess.run([COMMAND, *args], env=env, input=stdin, capture_output=True, text=True, check=True)


def stream(seed, size=4000):
    rng = random.Random(seed)
    day = lambda: NOW - timedelta(days=rng.randint(0, 30))  # noqa: E731
    makers = [lambda u: lms.login(u, day()), lambda u: lms.profile(u, rng.choice(["ES", "FR", None]), day()),
              lambda u: lms.enrollment(u, rng.choice(COURSES), day(), rng.choice(["audit", "verified"]),
                                       rng.random() > 0.2, rng.choice(["created", "changed", "unenrolled"])),
              lambda u: lms.grade(u, rng.choice(COURSES), rng.choice([0.1, 0.5, 0.9]), day())]
    return [rng.choice(makers)(rng.randint(1, 150)) for _ in range(size)]


def prepared(config, database_url):
    env = environment(config, database_url)
    run(env, "migrate", "--no-input")
    run(env, "apply", "-", stdin=json.dumps(GROUPS))
    lms.send(config.kafka, config.topics[0], *stream(seed=7))
    return env


def assert_equals_full_recompute(env):
    members = {g["name"]: run(env, "members", g["name"], "--json").stdout for g in GROUPS}
    assert "0 joined, 0 left" in run(env, "sync").stdout
    assert members == {g["name"]: run(env, "members", g["name"], "--json").stdout for g in GROUPS}
    return {name: len(json.loads(text)["members"]) for name, text in members.items()}


def test_sigkill_mid_stream_then_restart_ends_in_the_full_recompute_state(config, database_url):
    env = prepared(config, database_url)
    victim = subprocess.Popen([COMMAND, "consume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    for line in victim.stderr:  # the first batch is being applied: kill it a few batches later
        if '"groups_loaded"' in line:
            break
    time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    restart = run(env, "consume", "--exit-when-idle", "5")
    stopped = json.loads(next(line for line in restart.stderr.splitlines() if '"consumer_stopped"' in line))
    assert 0 < stopped["messages"] <= 4000, "the kill should land before the end of the stream"
    sizes = assert_equals_full_recompute(env)
    assert sum(sizes.values()) > 0


def test_two_consumers_in_one_group_agree_with_the_full_recompute(config, database_url):
    env = prepared(config, database_url)
    workers = [subprocess.Popen([COMMAND, "consume", "--exit-when-idle", "5"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [w.wait(timeout=180) for w in workers] == [0, 0]
    assert_equals_full_recompute(env)


def test_a_replay_in_two_processes_reads_each_message_once_and_ends_in_the_full_recompute_state(config,
                                                                                               database_url):
    env = prepared(config, database_url)  # the stream is on the topic, no event applied yet
    replayed = run(env, "replay", "--from-beginning", "--processes", "2", "--idle", "5")
    assert "replayed 4000 messages: 4000 events applied" in replayed.stdout
    sizes = assert_equals_full_recompute(env)
    assert sum(sizes.values()) > 0


def test_schedulers_syncing_while_the_consumer_runs_find_no_drift_and_agree(config, database_url):
    env = prepared(config, database_url)
    run(env, "apply", "-", stdin=json.dumps([{**g, "refresh": "PT1S"} for g in GROUPS]))  # sync all the time
    scheduler_env = {**env, "SCHEDULER_TICK_S": "0.3"}
    schedulers = [subprocess.Popen([COMMAND, "scheduler"], env=scheduler_env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True) for _ in range(2)]
    consumer = subprocess.run([COMMAND, "consume", "--exit-when-idle", "5"], env=env, capture_output=True, text=True)
    assert consumer.returncode == 0, consumer.stderr[-2000:]
    for scheduler in schedulers:
        scheduler.send_signal(signal.SIGTERM)
    logs = [scheduler.communicate(timeout=60)[1] for scheduler in schedulers]
    assert [scheduler.returncode for scheduler in schedulers] == [0, 0]
    entries = [json.loads(line) for text in logs for line in text.splitlines() if line.startswith("{")]
    syncs = [e for e in entries if e["event"] == "sync_finished"]
    assert len(syncs) >= 3, "the schedulers should have synced while the consumer ran"
    # Syncs and event batches lock the same users, so a sync never finds work events had not done.
    assert [e for e in entries if e["event"] == "sync_drift"] == []
    assert not [e for e in entries if e["level"] == "error"]
    assert_equals_full_recompute(env)


class SteadyStream(threading.Thread):
    """LMS-format events produced at a steady rate until ``halt`` (or the events run out)."""

    def __init__(self, config, events, per_second=300):
        super().__init__(daemon=True)
        self.producer, self.topic = config.new_producer(), config.topics[0]
        self.wire = [event.wire(self.topic) for event in events]
        self.per_second, self.sent, self.halt = per_second, 0, threading.Event()

    def run(self):
        started = time.monotonic()
        while not self.halt.is_set() and self.sent < len(self.wire):
            due = min(int((time.monotonic() - started) * self.per_second), len(self.wire))
            for key, value, headers in self.wire[self.sent:due]:
                self.producer.produce(self.topic, key=key, value=value, headers=headers)
            self.sent = due
            self.producer.poll(0)
            time.sleep(0.02)
        assert self.producer.flush(10) == 0


def committed_messages(checker, topic):
    partitions = checker.list_topics(topic, timeout=10).topics[topic].partitions
    committed = checker.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    return sum(max(p.offset, 0) for p in committed)


def wait_for_line(path, text, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"no {text} in {path.name}"
        time.sleep(0.05)


def test_a_rolling_restart_during_a_rebalance_ends_with_every_event_applied(config, database_url, tmp_path):
    """The operator's timeline: C1 applying batches; C2 and C3 start; C1 gets SIGTERM while the rebalance they
    caused is in progress; C4 starts 4 s later and C2 gets SIGTERM 4 s after that. The group goes on and ends
    in the full-recompute state (a member leaving a forming group used to leave it with no leader on the
    embedded broker)."""
    env = environment(config, database_url)
    run(env, "migrate", "--no-input")
    run(env, "apply", "-", stdin=json.dumps(GROUPS))
    feed = SteadyStream(config, stream(seed=11, size=9000))
    checker = config.new_consumer()  # the group's committed offsets (never subscribes, so never joins)
    members, logs = {}, []

    def start(name):
        logs.append((tmp_path / f"{name}.log").open("w"))
        members[name] = subprocess.Popen([COMMAND, "consume"], env=env, stdout=logs[-1], stderr=logs[-1])

    try:
        feed.start()
        start("C1")
        deadline = time.monotonic() + 60
        while committed_messages(checker, config.topics[0]) == 0:
            assert time.monotonic() < deadline, "C1 never committed a batch"
            time.sleep(0.2)
        time.sleep(1)
        start("C2")
        start("C3")
        wait_for_line(tmp_path / "C1.log", '"partitions_revoked"')  # the newcomers' rebalance reached C1
        members["C1"].send_signal(signal.SIGTERM)  # while the group is forming again
        time.sleep(4)
        start("C4")
        time.sleep(4)
        members["C2"].send_signal(signal.SIGTERM)
        time.sleep(2)
        feed.halt.set()
        feed.join()
        deadline = time.monotonic() + 60
        while committed_messages(checker, config.topics[0]) < feed.sent:
            assert time.monotonic() < deadline, (
                f"stalled: {committed_messages(checker, config.topics[0])} of {feed.sent} committed")
            time.sleep(0.5)
    finally:
        for member in members.values():
            member.send_signal(signal.SIGTERM)
        codes = {name: member.wait(timeout=60) for name, member in members.items()}
        checker.close()
        for log_file in logs:
            log_file.close()
    assert codes == dict.fromkeys(members, 0)
    assert sum(assert_equals_full_recompute(env).values()) > 0


def test_bad_events_in_a_stream_are_dead_lettered_by_reason_and_the_consumer_stays_up(config, database_url):
    """Every kind of bad event, mixed into a stream: the consumer process stays up and exits cleanly, each bad
    event is a dead letter counted by its reason, and the groups equal the full recompute."""
    env = prepared(config, database_url)
    garbage = config.new_producer()
    garbage.produce(config.topics[0], value=b"\x00\x00\x00\x00\x07not avro")
    assert garbage.flush(10) == 0
    lms.send(config.kafka, config.topics[0], lms.enrollment(5, "not-a-course-key", NOW), lms.login(-5, NOW),
             lms.grade(6, COURSES[0], 1.5, NOW), lms.profile(7, "ESP", NOW),
             lms.login(8, NOW + timedelta(days=70 * 365)), *stream(seed=12, size=200))
    consumer = subprocess.run([COMMAND, "consume", "--exit-when-idle", "5"], env=env, capture_output=True, text=True,
                              timeout=300)
    assert consumer.returncode == 0, consumer.stderr[-2000:]
    status = json.loads(run(env, "status", "--json").stdout)["consumer"]
    assert status["dead_letters_by_reason"] == {
        "event_from_the_future": 1, "invalid_country": 1, "invalid_course_key": 1, "invalid_grade": 1,
        "invalid_user_id": 1, "missing_header": 1}
    assert status["dead_letters"] == 6
    assert sum(assert_equals_full_recompute(env).values()) > 0
