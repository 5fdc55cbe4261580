"""The consumer against a real Kafka-protocol broker (tansu, or KAFKA_BOOTSTRAP_SERVERS)."""

import gc
import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, timedelta

import pytest
from confluent_kafka import Message
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from groups_consumer import api
from groups_consumer.kafka_clients import KafkaSettingsError
from groups_consumer.models import MembershipChange
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer, poll_batch
from groups_consumer.pipeline.dead_letter import DeadLetterLimit, DeadLetterLimitExceeded
from groups_consumer.pipeline.facts_update import FactUpdater
from groups_consumer.pipeline.garbage import CollectBetweenBatches
from groups_consumer.pipeline.polled import PolledBatch
from groups_consumer.status import collect
from tests import lms
from tests.facts import COURSE, NOW, leaf

pytestmark = pytest.mark.django_db
T = [NOW - timedelta(days=d) for d in range(40, -1, -1)]


def send_as_lms(config, *events):
    lms.send(config.kafka, config.topics[0], *events)


def consume(config, messages, timeout_s=60, **options):
    consumer = EventConsumer(config, **options)
    deadline = time.monotonic() + timeout_s
    stats = consumer.run(until=lambda stats: stats.messages >= messages or time.monotonic() > deadline)
    assert stats.messages >= messages, f"consumed {stats.messages} of {messages} before the timeout"
    return stats


def read_all(config, topic, expected, timeout_s=30):
    reader = config.new_consumer(f"reader-{uuid.uuid4()}")
    reader.subscribe([topic])
    found, deadline = [], time.monotonic() + timeout_s
    while len(found) < expected and time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is not None and not message.error():
            found.append(message)
    reader.close()
    return found


def test_lms_events_become_memberships_and_poison_goes_to_the_dead_letter_topic(config):
    api.apply_definitions({"name": "struggling", "scope": {"type": "course", "key": COURSE},
                           "rule": leaf("course_grade", "<", percent=0.4)}, now=NOW)
    send_as_lms(config, lms.enrollment(1, COURSE, T[30]), lms.grade(1, COURSE, 0.2, T[31]),
                lms.enrollment(2, COURSE, T[30]), lms.grade(2, COURSE, 0.9, T[31]))
    _key, value, headers = lms.login(3, T[1]).wire()
    poison = config.new_producer()
    poison.produce(config.topics[0], value=b"\x00garbage", headers=headers)
    poison.produce(config.topics[0], value=value, headers=[(k, v) for k, v in headers if k != "ce_type"])
    poison.flush(10)

    stats = consume(config, messages=6)
    assert stats.dead_letters == 2 and stats.events == 4
    assert set(api.find_group("struggling").memberships.values_list("user_id", flat=True)) == {1}
    assert MembershipChange.objects.get().cause == "event"

    letters = read_all(config, config.dlq_topic, expected=2)
    reasons = sorted(dict(m.headers())["dlq_reason"] for m in letters)
    assert reasons == [b"missing_header", b"schema_mismatch"]
    assert all(dict(m.headers())["dlq_topic"] == config.topics[0].encode() for m in letters)
    assert {m.value() for m in letters} == {b"\x00garbage", value}

    # What the consumer reported for `groups-consumer status`: partitions, dead letters, the last event.
    status = collect(timezone.now())
    assert status.dead_letters == 2 and status.partitions
    assert {p.consumer_group for p in status.partitions} == {config.group_id}
    assert sum(p.position or 0 for p in status.partitions) == 6
    struggling = next(g for g in status.groups if g.name == "struggling")
    assert struggling.last_event_at == T[31] and struggling.members == 1


def test_decodable_events_with_values_no_lms_sends_are_dead_lettered_and_the_rest_applied(config):
    """The operator's report: an enrollment for ``not-a-course-key``, a login 70 years ahead and a login of user
    -5 (valid Avro, correct headers) stopped the consumer; now each is a dead letter and the rest applies."""
    from groups_consumer.models import CourseFact, UserFact

    send_as_lms(config, lms.enrollment(1, "not-a-course-key", T[30]), lms.login(2, T[31]),
                lms.login(3, NOW + timedelta(days=70 * 365)), lms.login(-5, T[31]), lms.enrollment(4, COURSE, T[30]))
    stats = consume(config, messages=5)
    assert stats.dead_letters == 3 and stats.events == 2
    assert sorted(UserFact.objects.values_list("user_id", flat=True)) == [2, 4]
    assert list(CourseFact.objects.values_list("user_id", "course_key")) == [(4, COURSE)]
    letters = read_all(config, config.dlq_topic, expected=3)
    assert sorted(dict(m.headers())["dlq_reason"] for m in letters) == [
        b"event_from_the_future", b"invalid_course_key", b"invalid_user_id"]
    assert collect(timezone.now()).dead_letter_reasons == {
        "event_from_the_future": 1, "invalid_course_key": 1, "invalid_user_id": 1}


def test_an_event_that_fails_to_apply_is_isolated_dead_lettered_and_the_rest_of_its_batch_applied(config,
                                                                                                  monkeypatch):
    """Any failure but a transient database error (here a bug in the fact mapping of one event) splits the
    batch until the failing event is alone: it is dead-lettered with the exception, the others are applied and
    the offsets committed."""
    from groups_consumer.models import UserFact

    real_updates_from = FactUpdater.updates_from

    def buggy_for_user_13(self, event, failures):
        if event.data.get("user", {}).get("id") == 13:
            raise ZeroDivisionError("a bug that only this event reaches")
        return real_updates_from(self, event, failures)

    monkeypatch.setattr(FactUpdater, "updates_from", buggy_for_user_13)
    send_as_lms(config, *(lms.login(user_id, T[30]) for user_id in range(1, 21)))
    stats = consume(config, messages=20)
    assert stats.dead_letters == 1 and stats.events == 19
    assert sorted(UserFact.objects.values_list("user_id", flat=True)) == [n for n in range(1, 21) if n != 13]
    [letter] = read_all(config, config.dlq_topic, expected=1)
    headers = dict(letter.headers())
    assert headers["dlq_reason"] == b"apply_failed" and headers["dlq_exception"] == b"ZeroDivisionError"
    assert b"a bug that only this event reaches" in headers["dlq_error"]
    deadline = time.monotonic() + 60
    again = EventConsumer(config).run(until=lambda s: s.idle_s() > 3 or time.monotonic() > deadline)
    assert again.last_assignment and again.messages == 0  # committed, the dead letter too

    # The bug is fixed: the dead letter is re-injected by replaying the dead-letter topic.
    from groups_consumer.pipeline.replay import replay

    monkeypatch.undo()
    with pytest.raises(KafkaSettingsError, match="is one of the topics read"):
        replace(config, topics=(config.dlq_topic,))
    stats = replay(replace(config, topics=(config.dlq_topic,), dlq_topic=f"{config.dlq_topic}-again"), idle_s=3)
    assert stats.events == 1 and UserFact.objects.filter(user_id=13).exists()


def test_offsets_are_committed_so_a_restart_resumes_after_the_last_batch(config):
    send_as_lms(config, lms.login(1, T[1]), lms.login(2, T[1]))
    consume(config, messages=2)
    send_as_lms(config, lms.login(3, T[2]))
    stats = consume(config, messages=1)
    assert stats.messages == 1  # the first two were not delivered again


def test_too_many_dead_letters_stop_the_consumer_without_committing(config):
    poison = config.new_producer()
    for _ in range(5):
        poison.produce(config.topics[0], value=b"junk")
    poison.flush(10)
    limited = ConsumerConfig(**{**config.__dict__, "dead_letter_limit": DeadLetterLimit(max_consecutive=3)})
    with pytest.raises(DeadLetterLimitExceeded, match="4 undecodable messages in a row"):
        consume(limited, messages=5)


def test_events_that_all_fail_to_apply_reach_the_dead_letter_limit(config, monkeypatch):
    """A bad deploy that makes every event fail (here a bug in the fact stage) stops the consumer at the limit
    instead of draining the topic into the DLQ: each failed event counts once, as a dead letter."""
    from groups_consumer.pipeline.facts_update import FactUpdater

    def always_failing(self, event, failures):
        raise RuntimeError("relation does not exist")

    monkeypatch.setattr(FactUpdater, "updates_from", always_failing)
    send_as_lms(config, *(lms.login(user_id, T[30]) for user_id in range(1, 6)))
    limited = ConsumerConfig(**{**config.__dict__, "dead_letter_limit": DeadLetterLimit(max_consecutive=3)})
    with pytest.raises(DeadLetterLimitExceeded, match="4 undecodable messages in a row"):
        consume(limited, messages=5)


def test_replay_from_the_beginning_rebuilds_and_is_idempotent(config):
    from groups_consumer.models import Membership, UserFact
    from groups_consumer.pipeline.replay import replay

    api.apply_definitions({"name": "spain", "rule": leaf("country", "in", countries=["ES"])}, now=NOW)
    send_as_lms(config, lms.profile(1, "ES", T[1]), lms.profile(2, "ES", T[1]), lms.profile(2, "FR", T[2]))
    consume(config, messages=3)
    live = set(Membership.objects.values_list("group__name", "user_id"))
    assert live == {("spain", 1)}

    reported: list[int] = []
    stats = replay(config, idle_s=3, on_progress=reported.append)  # over the same state: nothing changes
    assert stats.messages == 3 and stats.membership_changes == 0
    assert sum(reported) == 3  # each batch's messages, as the progress log counts them
    Membership.objects.all().delete()
    UserFact.objects.all().delete()
    replay(config, idle_s=3)  # into an empty database: rebuilt
    assert set(Membership.objects.values_list("group__name", "user_id")) == live


def test_a_replay_leaves_out_a_topic_the_broker_does_not_have_and_refuses_to_start_when_it_has_none(
        config, bootstrap_servers, caplog, monkeypatch):
    """A topic no event was ever produced to (or a misspelt one) is skipped with a warning; with none to read,
    the replay says so at once (the command exits with the message) instead of idling out with nothing."""
    from groups_consumer.pipeline.replay import NothingToReplay, replay

    send_as_lms(config, lms.profile(1, "ES", T[1]))
    missing = f"never-produced-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.WARNING):
        stats = replay(replace(config, topics=(*config.topics, missing)), idle_s=2)
    assert stats.messages == 1
    [warning] = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") ==
                 "replay_topic_missing"]
    assert warning["topic"] == missing
    with pytest.raises(NothingToReplay, match=f"none of the topics exists on the broker: {missing}"):
        replay(replace(config, topics=(missing,)), idle_s=2)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap_servers)
    monkeypatch.setenv("KAFKA_TOPICS", missing)
    with pytest.raises(CommandError, match=f"none of the topics exists on the broker: {missing}"):
        call_command("groups_replay", "--from-beginning")


def test_a_replay_deals_the_partitions_to_its_processes_in_turn():
    from groups_consumer.pipeline.replay import dealt

    partitions = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)]
    assert dealt(partitions, 1) == [partitions]
    assert dealt(partitions, 2) == [[("a", 0), ("b", 0), ("b", 2)], [("a", 1), ("b", 1)]]
    assert dealt(partitions[:2], 3) == [[("a", 0)], [("a", 1)]]  # no process without a partition
    assert dealt([], 2) == []


def test_a_consumer_with_a_static_assignment_reads_only_its_partitions_and_commits_them_under_its_group(config):
    from confluent_kafka import TopicPartition

    from groups_consumer.pipeline.consumer import StartPosition

    send_as_lms(config, *(lms.login(uid, T[1]) for uid in range(1, 9)))
    offsets: dict[int, list[int]] = {}
    for message in read_all(config, config.topics[0], expected=8):
        offsets.setdefault(message.partition(), []).append(message.offset())
    partition, read = max(offsets.items(), key=lambda item: len(item[1]))
    assert len(read) < 8, "the logins should spread over several partitions"
    group = replace(config, group_id=f"{config.group_id}-static")
    stats = EventConsumer(group, start=StartPosition(), partitions=[(config.topics[0], partition)]).run(
        until=lambda stats: stats.idle_s() > 2)
    assert stats.messages == len(read)
    probe = config.new_consumer(group.group_id)
    [committed] = probe.committed([TopicPartition(config.topics[0], partition)], timeout=10)
    probe.close()
    assert committed.offset == max(read) + 1  # the next message to read


def test_a_consumer_with_a_start_position_resumes_a_partition_where_its_group_committed(config):
    """A consumer of a group with a start position (as a replay's) that is given a partition in a rebalance
    resumes at the offset the group committed, not at the start (its messages would be applied again)."""
    from groups_consumer.pipeline.consumer import StartPosition

    send_as_lms(config, *(lms.login(uid, T[1]) for uid in range(1, 9)))
    replay_group = replace(config, group_id=f"{config.group_id}-replay")
    first = consume(replay_group, messages=1, start=StartPosition())
    rest = EventConsumer(replay_group, start=StartPosition()).run(until=lambda stats: stats.idle_s() > 3)
    assert first.messages + rest.messages == 8


def test_replay_from_a_time_and_up_to_a_time(config):
    from datetime import datetime

    from groups_consumer.models import UserFact
    from groups_consumer.pipeline.replay import replay

    send_as_lms(config, lms.profile(1, "ES", T[1]))
    [first] = read_all(config, config.topics[0], expected=1)
    # The start instant in the broker's time (message timestamps), not this process's clock.
    since = datetime.fromtimestamp(first.timestamp()[1] / 1000 + 1, UTC)
    time.sleep(2)
    send_as_lms(config, lms.profile(2, "ES", T[1]), lms.profile(3, "PT", T[10]))
    stats = replay(config, since=since, until=T[5], idle_s=3)
    assert stats.events == 1  # the message before `since` is not applied; user 3's event is after T[5]
    assert list(UserFact.objects.values_list("user_id", "country")) == [(2, "ES")]  # user 3's event is after T[5]


def test_metrics_and_health_endpoint(config):
    import urllib.error
    import urllib.request

    from groups_consumer.broker import _free_port
    from groups_consumer.pipeline import metrics

    port = _free_port()
    server = metrics.serve(port, stale_after_s=30)
    try:
        before = metrics.EVENTS._value.get()
        send_as_lms(config, lms.login(1, T[1]), lms.login(2, T[1]))
        consume(config, messages=2)
        assert metrics.EVENTS._value.get() - before == 2
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert "groups_consumer_events_total" in body and "groups_consumer_batch_seconds_bucket" in body
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health").read().startswith(b"ok")
        metrics.LAST_POLL.set(0)
        with pytest.raises(urllib.error.HTTPError, match="503"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health")
    finally:
        server.shutdown()


def test_transient_database_errors_are_retried_without_skipping(config, monkeypatch):
    from django.db import OperationalError

    from groups_consumer.models import UserFact
    from groups_consumer.pipeline.batch import BatchProcessor

    real_process, failures = BatchProcessor.process, iter([OperationalError("server closed the connection")])

    def flaky(self, events, now=None, asserted=None):
        for failure in failures:
            raise failure
        return real_process(self, events, now, asserted)

    monkeypatch.setattr(BatchProcessor, "process", flaky)
    monkeypatch.setattr("groups_consumer.pipeline.consumer.connection.close", lambda: None)  # keep the test's DB
    send_as_lms(config, lms.login(1, T[1]))
    stats = consume(config, messages=1)
    assert stats.retries == 1 and UserFact.objects.filter(user_id=1).exists()


def test_a_database_outage_longer_than_max_poll_interval_keeps_the_consumer_in_its_group(config, monkeypatch,
                                                                                         caplog):
    """The batch waits for the database with its partitions paused and polled: no rebalance, and the offsets
    committed afterwards hold (a consumer that stopped polling would have been dropped from the group after
    ``max.poll.interval.ms`` and its commit refused)."""
    from django.db import OperationalError

    from groups_consumer.models import UserFact
    from groups_consumer.pipeline.batch import BatchProcessor

    real_process, back_at = BatchProcessor.process, time.monotonic() + 10

    def database_away_for_10_s(self, events, now=None, asserted=None):
        if time.monotonic() < back_at:
            raise OperationalError("could not connect to server")
        return real_process(self, events, now, asserted)

    monkeypatch.setattr(BatchProcessor, "process", database_away_for_10_s)
    monkeypatch.setattr("groups_consumer.pipeline.consumer.connection.close", lambda: None)  # keep the test's DB
    impatient = ConsumerConfig(**{**config.__dict__, "kafka": config.kafka.with_properties(
        "consumer", {"max.poll.interval.ms": 7000})})
    send_as_lms(config, lms.login(1, T[1]))
    with caplog.at_level(logging.INFO):
        stats = consume(impatient, messages=1)
    events = [r.msg.get("event") for r in caplog.records if isinstance(r.msg, dict)]
    assert stats.retries >= 5 and UserFact.objects.filter(user_id=1).exists()
    assert events.count("partitions_assigned") == 1 and "partitions_lost" not in events
    assert "offset_commit_failed" not in events
    deadline = time.monotonic() + 60
    again = EventConsumer(config).run(until=lambda s: s.idle_s() > 3 or time.monotonic() > deadline)
    assert again.last_assignment and again.messages == 0  # committed: nothing delivered again


def test_offset_commits_are_retried_on_retriable_broker_errors(config):
    from confluent_kafka import KafkaError, KafkaException

    send_as_lms(config, lms.login(1, T[1]))
    consumer = EventConsumer(config)
    real_commit, calls = consumer._consumer.commit, []

    class FlakyCommits:
        def __getattr__(self, name):
            return getattr(consumer_client, name)

        def commit(self, **kwargs):
            calls.append(kwargs)
            if len(calls) == 1:
                raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT, "timed out", retriable=True))
            return real_commit(**kwargs)

    consumer_client = consumer._consumer
    consumer._consumer = FlakyCommits()
    deadline = time.monotonic() + 60
    stats = consumer.run(until=lambda s: s.messages >= 1 or time.monotonic() > deadline)
    assert stats.messages == 1 and stats.retries == 1 and len(calls) == 2
    deadline = time.monotonic() + 60
    again = EventConsumer(config).run(until=lambda s: s.idle_s() > 3 or time.monotonic() > deadline)
    assert again.last_assignment and again.messages == 0  # the retried commit held: nothing delivered again


def test_dead_letter_ratio_over_the_window():
    from groups_consumer.pipeline.dead_letter import DeadLetterCounter

    counter = DeadLetterCounter(DeadLetterLimit(max_consecutive=100, max_ratio=0.5, window=10))
    for valid in [True, False] * 5:  # exactly half: allowed
        counter.record(valid)
    with pytest.raises(DeadLetterLimitExceeded, match="6 of the last 10"):
        counter.record(False)


def test_a_batch_takes_what_has_arrived_without_waiting_to_fill(config):
    config = ConsumerConfig(**{**config.__dict__, "batch_size": 20, "batch_timeout_s": 2.0})
    lms.send(config.kafka, config.topics[0],
             *(lms.login(n, NOW + timedelta(seconds=n)) for n in range(1, 51)))
    consumer = config.new_consumer()
    consumer.subscribe(list(config.topics))
    try:
        sizes = []
        while sum(sizes) < 50:
            sizes.append(len(poll_batch(consumer, config)))
        assert max(sizes) <= 20
        started = time.monotonic()
        assert poll_batch(consumer, config) == []  # nothing more: one wait of the timeout for a first message
        assert time.monotonic() - started >= 1.9
        lms.send(config.kafka, config.topics[0], lms.login(99, NOW))
        started = time.monotonic()
        assert len(poll_batch(consumer, config)) == 1  # a lone message does not wait for 19 more
        assert time.monotonic() - started < 1.9
    finally:
        consumer.close()


def test_a_message_sent_to_an_idle_consumer_is_fetched_without_waiting_out_the_default_fetch_wait(config):
    """The embedded broker answers a fetch only when its maximum wait is over, however many messages arrived
    meanwhile. Sent 50 ms after the previous one arrived, a message took 200 ms (every time) at librdkafka's
    500 ms default, and 27 ms with the embedded profile's 100 ms."""
    consumer = config.new_consumer()
    consumer.subscribe(list(config.topics))
    try:
        lms.send(config.kafka, config.topics[0], *(lms.login(n, NOW) for n in range(1, 9)))  # every partition
        received = 0
        while received < 8:
            received += len(poll_batch(consumer, config))
        waits = []
        for n in range(9, 14):
            time.sleep(0.05)
            sent = time.monotonic()
            lms.send(config.kafka, config.topics[0], lms.login(n, NOW))
            while not poll_batch(consumer, config):
                assert time.monotonic() - sent < 10, "the message never arrived"
            waits.append(time.monotonic() - sent)
        assert sorted(waits)[len(waits) // 2] < 0.12, waits
    finally:
        consumer.close()


def test_the_applied_batch_s_messages_are_gone_when_the_collector_runs_between_batches(config, monkeypatch):
    """Left referenced, a batch's messages (and their headers) are objects every collection scans, alive. Only
    the batch polled ahead (at most one batch) is alive then."""
    alive_at_collection = []

    def after_batch(collector):
        alive_at_collection.append(sum(isinstance(thing, Message) for thing in gc.get_objects()))
    monkeypatch.setattr(CollectBetweenBatches, "after_batch", after_batch)
    send_as_lms(config, *(lms.login(n, T[1]) for n in range(1, 21)))
    consume(replace(config, batch_size=5), messages=20)
    assert alive_at_collection and max(alive_at_collection) <= 5


@pytest.mark.parametrize("decode_ahead", [True, False])
def test_a_backlog_is_decoded_a_batch_ahead_in_the_database_s_waits_with_the_same_outcome(config, monkeypatch,
                                                                                           decode_ahead):
    """With ``decode_ahead`` (the default), the next batch is polled before the current one is applied and, on
    PostgreSQL, decoded while its statements run, then the facts of its events are found there too (each event's
    once, ahead or in its turn); dead letters and memberships are the same either way."""
    api.apply_definitions({"name": "spain", "rule": leaf("country", "in", countries=["ES"])}, now=NOW)
    decoded_in_waits, found_ahead, found = [], [], []
    step, asserted, updates_from = PolledBatch.step, FactUpdater.asserted, FactUpdater.updates_from

    def counting_step(batch):
        decoded_in_waits.append(1)
        return step(batch)

    def counting_asserted(updater, event):
        found_ahead.append(event.event_id)
        return asserted(updater, event)

    def counting_updates_from(updater, event, failures):
        found.append(event.event_id)
        return updates_from(updater, event, failures)
    monkeypatch.setattr(PolledBatch, "step", counting_step)
    monkeypatch.setattr(FactUpdater, "asserted", counting_asserted)
    monkeypatch.setattr(FactUpdater, "updates_from", counting_updates_from)
    send_as_lms(config, *(lms.profile(n, "ES" if n % 2 else "FR", T[39]) for n in range(1, 41)))
    junk = config.new_producer()
    junk.produce(config.topics[0], value=b"junk")
    junk.flush(10)
    send_as_lms(config, *(lms.profile(n, "ES" if n % 2 else "FR", T[39]) for n in range(41, 61)))
    stats = consume(replace(config, batch_size=10, decode_ahead=decode_ahead), messages=61)
    assert stats.dead_letters == 1 and len(read_all(config, config.dlq_topic, 1)) == 1
    assert sorted(api.find_group("spain").memberships.values_list("user_id", flat=True)) == list(range(1, 61, 2))
    assert bool(decoded_in_waits) == bool(found_ahead) == (decode_ahead and connection.vendor == "postgresql")
    assert len(found) == len(set(found)) == 60
