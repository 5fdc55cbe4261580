"""Consumer processes: SIGKILL mid-stream then restart, two consumers in one group, and a consumer beside two
scheduler replicas syncing all along.

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
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
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
    admin = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True)
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
