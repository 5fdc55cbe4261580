"""Membership-change events: every writer records its changes in the outbox, the relay publishes them in the
openedx event-bus wire format, edx-event-bus-kafka's consumer turns them into the signal.

The process test (consumers killed mid-stream, two consumers, the relay and edx-event-bus-kafka's consumer in
their own processes) is ``test_membership_events_processes``.
"""

import io
import itertools
import json
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings
from edx_event_bus_kafka.internal import consumer as lms_consumer
from openedx_events.event_bus.avro.schema import schema_from_signal
from structlog.testing import capture_logs

from groups_consumer import api
from groups_consumer.broker import EmbeddedBroker
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.kafka_clients import KafkaClientSettings
from groups_consumer.membership_event import (
    USER_GROUP_MEMBERSHIP_CHANGED,
    UserGroupMembershipChangeData,
)
from groups_consumer.models import MembershipChange, OutboxMessage
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.publishing import outbox
from groups_consumer.publishing.backpressure import OutboxGate
from groups_consumer.publishing.config import PublishingSettings
from groups_consumer.publishing.relay import LEASE, LEASE_TTL, PRODUCER_PROPERTIES, Relay
from groups_consumer.publishing.snapshot import publish_snapshot
from groups_consumer.publishing.wire import MembershipEventWriter, SchemaIds
from groups_consumer.scheduling.leases import Leases
from groups_consumer.scheduling.scheduler import Scheduler
from groups_consumer.status import collect
from tests import lms
from tests.facts import COURSE, NOW, leaf, user

pytestmark = pytest.mark.django_db
STRUGGLING = {"name": "struggling", "scope": {"type": "course", "key": COURSE}, "exclusive_set": "level",
              "priority": 2, "rule": leaf("course_grade", "<", percent=0.4)}
THRIVING = {"name": "thriving", "scope": {"type": "course", "key": COURSE}, "exclusive_set": "level",
            "priority": 1, "rule": leaf("course_grade", ">=", percent=0.8)}


@pytest.fixture
def topic():
    """Publishing on, to a topic of the test's own."""
    name = f"membership-{uuid.uuid4().hex[:8]}"
    with override_settings(GROUPS_CONSUMER_MEMBERSHIP_TOPIC=name):
        yield name


def apply_events(*events, now=NOW):
    decoder = EventDecoder()
    BatchProcessor(GroupCatalog.load()).process([decoder.decode(*event.wire()[1:]) for event in events], now=now)


def assert_outbox_mirrors_the_change_log(deleted_groups=()):
    """One outbox row per change-log row, in the same order, with the same content (the change log of a deleted
    group went with it)."""
    changes = list(MembershipChange.objects.select_related("group__scope").order_by("id"))
    rows = list(OutboxMessage.objects.exclude(group_name__in=deleted_groups).order_by("id"))
    assert [r.change_id for r in rows] == [c.id for c in changes]
    for change, row in zip(changes, rows, strict=True):
        assert (row.user_id, row.group_id, row.kind, row.cause, row.cause_id, row.at) == \
            (change.user_id, change.group_id, change.kind, change.cause, change.cause_id, change.at)
        assert (row.group_name, row.scope_type, row.scope_key, row.exclusive_set) == \
            (change.group.name, change.group.scope.type, change.group.scope.key, change.group.exclusive_set)


def test_the_schema_file_is_the_signal_schema():
    path = Path(__file__).parents[1] / "schemas" / f"{USER_GROUP_MEMBERSHIP_CHANGED.event_type}.avsc"
    assert json.loads(path.read_text()) == schema_from_signal(USER_GROUP_MEMBERSHIP_CHANGED)


def test_every_writer_records_exactly_its_changes(topic):
    for uid in (1, 2, 3, 4):
        user(uid, login=1)
    # apply (with its sync), the API's save, a manual list, an event batch, a time pass, a sync, a deletion
    api.apply_definitions([STRUGGLING, THRIVING], now=NOW)
    manual, _ = api.save_group({"name": "picked", "scope": {"type": "instance"},
                                "rule": leaf("manual", "in", user_ids=[1, 2])}, now=NOW)
    api.update_manual_group(manual, [["3"]], append=True, now=NOW)
    api.apply_definitions({"name": "away", "scope": {"type": "instance"}, "rule": leaf("last_login", ">", days=10)},
                          now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW),
                 lms.enrollment(2, COURSE, NOW), lms.grade(2, COURSE, 0.9, NOW))
    apply_events(lms.grade(1, COURSE, 0.95, NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
    later = NOW + timedelta(days=12)
    Scheduler(clock=lambda: later).run_once()  # everyone crosses the 10-day mark
    api.sync_groups([api.find_group("struggling")], now=later)
    api.delete_group(api.find_group("picked"))

    causes = set(OutboxMessage.objects.values_list("cause", flat=True))
    assert causes == {"event", "manual", "sync", "time"}
    moved = OutboxMessage.objects.filter(user_id=1, cause="event").order_by("id")  # within the exclusive set
    assert list(moved.values_list("group_name", "kind")) == [("struggling", "joined"), ("struggling", "left"),
                                                             ("thriving", "joined")]  # left before joined
    assert OutboxMessage.objects.filter(group_name="picked", kind="left", cause_id="deleted").count() == 3
    assert_outbox_mirrors_the_change_log(deleted_groups=["picked"])


def test_a_rolled_back_batch_records_nothing(topic):
    api.apply_definitions(STRUGGLING, now=NOW)

    def batch_that_fails_after_writing():
        with transaction.atomic():
            apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW))
            assert OutboxMessage.objects.count() == 1
            raise RuntimeError("the batch fails after writing")

    with pytest.raises(RuntimeError):
        batch_that_fails_after_writing()
    assert not OutboxMessage.objects.exists() and not MembershipChange.objects.exists()


def test_publishing_off_records_nothing():
    api.apply_definitions(STRUGGLING, now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW))
    assert MembershipChange.objects.count() == 1 and not OutboxMessage.objects.exists()


def relay_for(config, topic, **options):
    return Relay.connect(config.kafka, lms_consumer.get_schema_registry_client(), PublishingSettings.current(),
                         idle_s=0.01, **options)


@pytest.fixture
def edx_consumer_timings(monkeypatch):
    """edx-event-bus-kafka's consumer with the test broker's group timings (it takes no consumer properties;
    with librdkafka's 45 s session timeout, tansu takes over 20 s to let it join)."""
    common = lms_consumer.load_common_settings
    monkeypatch.setattr(lms_consumer, "load_common_settings",
                        lambda: {**common(), **EmbeddedBroker.CONSUMER_PROPERTIES})


def receive_with_edx_event_bus_kafka(config, topic, count, timeout_s=60):
    """Run edx-event-bus-kafka's consumer until it emitted ``count`` signals; returns (data, metadata) pairs."""
    from django.conf import settings as django_settings

    django_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = config.bootstrap_servers
    group = f"edx-{uuid.uuid4().hex[:8]}"
    start = config.new_consumer(group)
    partitions = start.list_topics(topic, timeout=10).topics[topic].partitions
    start.commit(offsets=[TopicPartition(topic, p, 0) for p in partitions], asynchronous=False)
    start.close()
    received = []
    edx = lms_consumer.KafkaEventConsumer(topic, group)

    def receiver(membership_change, metadata, **_kwargs):
        received.append((membership_change, metadata))
        if len(received) >= count:
            edx._shut_down()

    USER_GROUP_MEMBERSHIP_CHANGED.connect(receiver)
    timer = threading.Timer(timeout_s, edx._shut_down)
    timer.start()
    try:
        edx.consume_indefinitely()
    finally:
        timer.cancel()
        USER_GROUP_MEMBERSHIP_CHANGED.disconnect(receiver)
    return received


def test_edx_event_bus_kafka_turns_published_changes_into_the_signal(config, topic, edx_consumer_timings):
    api.apply_definitions([STRUGGLING, THRIVING], now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW),
                 lms.enrollment(2, COURSE, NOW), lms.grade(2, COURSE, 0.9, NOW))
    apply_events(lms.grade(1, COURSE, 0.85, NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
    relay = relay_for(config, topic)
    assert relay.publish_batch() == 4 and not OutboxMessage.objects.exists()

    received = receive_with_edx_event_bus_kafka(config, topic, 4)
    namespace = uuid.UUID(outbox.namespace())
    changes = {str(uuid.uuid5(namespace, f"change/{c.id}")): c for c in MembershipChange.objects.all()}
    assert sorted(str(metadata.id) for _, metadata in received) == sorted(changes)
    for data, metadata in received:
        change = changes[str(metadata.id)]
        assert isinstance(data, UserGroupMembershipChangeData)
        assert (data.user_id, data.group.id, data.change, data.cause, data.cause_id, data.changed_at) == \
            (change.user_id, change.group_id, change.kind, "event", change.cause_id, change.at)
        assert data.group.scope_key == COURSE and data.group.exclusive_set == "level"
        assert metadata.event_type == USER_GROUP_MEMBERSHIP_CHANGED.event_type and metadata.time == change.at
    user_1 = [(data.group.name, data.change) for data, _ in received if data.user_id == 1]
    assert user_1 == [("struggling", "joined"), ("struggling", "left"), ("thriving", "joined")]


def test_a_relay_that_dies_before_deleting_publishes_again_with_the_same_ids(config, topic, edx_consumer_timings,
                                                                             monkeypatch):
    api.apply_definitions(STRUGGLING, now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW))
    relay = relay_for(config, topic)
    with monkeypatch.context() as patched:
        patched.setattr(outbox, "delete_published", lambda ids: (_ for _ in ()).throw(SystemExit("killed")))
        with pytest.raises(SystemExit):
            relay.publish_batch()
    assert relay_for(config, topic).publish_batch() == 1
    received = receive_with_edx_event_bus_kafka(config, topic, 2)
    assert len({str(metadata.id) for _, metadata in received}) == 1


def test_a_broker_that_refuses_is_retried_with_backoff_and_nothing_is_lost(config, topic):
    api.apply_definitions(STRUGGLING, now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW))
    unreachable = KafkaClientSettings.plain("127.0.0.1:1").with_properties("producer", {"message.timeout.ms": 500})
    relay = Relay.connect(unreachable, lms_consumer.get_schema_registry_client(), PublishingSettings.current(),
                          ack_timeout_s=2)
    assert relay.publish_batch() == 0 and relay.publish_batch() == 0
    assert relay.failures == 2 and relay._backoff == 1.0
    assert outbox.backlog().pending == 1
    assert collect(NOW).as_json()["publishing"]["outbox_pending"] == 1
    shown = io.StringIO()
    call_command("groups_status", stdout=shown)
    assert f"membership events to {topic}: 1 waiting in the outbox, the oldest for" in shown.getvalue()
    assert relay_for(config, topic).publish_batch() == 1 and outbox.backlog().pending == 0


class _StandInProducer:
    """A producer that delivers every message (``per_flush`` of them per ``flush``, or all) but those it is told
    to fail (reported with ``failure``) or to refuse in ``produce`` (``KafkaException``), reporting only what it
    did not deliver, by the message's value and without its headers, as librdkafka does for the relay
    (``delivery.report.only.error``). A real broker cannot be made to refuse one message of a batch for good
    and take the others."""

    def __init__(self, failing=(), failure=KafkaError.MSG_SIZE_TOO_LARGE, refusing=None, per_flush=None):
        self.failing, self.failure, self.refusing, self.per_flush = set(failing), failure, refusing, per_flush
        self.produced, self.queued, self.delivered = 0, [], []

    def produce(self, topic, value, key, headers, on_delivery):
        if self.produced == self.refusing:
            raise KafkaException(KafkaError(KafkaError._FATAL))
        self.queued.append((self.produced, value, dict(headers)["ce_id"], on_delivery))
        self.produced += 1

    def flush(self, timeout):
        settled = self.queued[:self.per_flush]
        for position, value, ce_id, report in settled:
            if position in self.failing:
                report(KafkaError(self.failure), _Reported(value))
            else:
                self.delivered.append(ce_id)
        self.queued = self.queued[len(settled):]
        return len(self.queued)

    def purge(self):
        self.queued = []

    def poll(self, timeout):
        return 0


class _Reported:
    """The message of a delivery report: its value, no headers."""

    def __init__(self, value):
        self._value = value

    def value(self):
        return self._value

    def headers(self):
        return None


def test_librdkafka_reports_an_undelivered_message_by_its_value_without_its_headers():
    """What the relay relies on to find the rows of undelivered messages (and what ``_Reported`` stands for)."""
    reports = []
    producer = KafkaClientSettings.plain("127.0.0.1:1").producer(**PRODUCER_PROPERTIES)
    producer.produce("membership-t", b"the value", b"key", headers=[("ce_id", b"id")],
                     on_delivery=lambda error, message: reports.append((error.code(), message.value(),
                                                                        message.headers())))
    producer.purge()
    assert producer.flush(5) == 0
    assert reports == [(KafkaError._PURGE_QUEUE, b"the value", None)]


def _relay_over(*producers, **options):
    """A relay whose producers are ``producers``, one after the other, over the rows of three users' joins."""
    api.apply_definitions(STRUGGLING, now=NOW)
    apply_events(*(event for uid in (1, 2, 3) for event in (lms.enrollment(uid, COURSE, NOW),
                                                             lms.grade(uid, COURSE, 0.2, NOW))))
    given = iter(producers)
    writer = MembershipEventWriter(outbox.namespace(), SchemaIds(key=1, value=2))
    ce_ids = [dict(writer.message(row)[2])["ce_id"] for row in outbox.unpublished(10)]
    return Relay(lambda: next(given), writer, PublishingSettings.current(), **options), ce_ids


def test_a_message_that_fails_for_good_stays_and_only_it_is_sent_again(topic):
    first, second = _StandInProducer(failing={1}), _StandInProducer()
    relay, ce_ids = _relay_over(first, second)
    assert relay.publish_batch() == 2 and relay.failures == 1 and outbox.backlog().pending == 1
    assert relay.publish_batch() == 1 and outbox.backlog().pending == 0 and relay.published == 3
    assert (first.delivered, second.delivered) == ([ce_ids[0], ce_ids[2]], [ce_ids[1]])


def test_messages_librdkafka_purged_after_a_fatal_error_are_sent_again(topic):
    first = _StandInProducer(failing={0, 1, 2}, failure=KafkaError._PURGE_QUEUE)
    second = _StandInProducer()
    relay, ce_ids = _relay_over(first, second)
    assert relay.publish_batch() == 0 and relay.failures == 1 and outbox.backlog().pending == 3
    assert relay.publish_batch() == 3 and outbox.backlog().pending == 0
    assert second.delivered == ce_ids


def test_rows_a_failing_producer_did_not_take_are_sent_by_the_next_one(topic):
    first, second = _StandInProducer(refusing=2), _StandInProducer()
    relay, ce_ids = _relay_over(first, second)
    assert relay.publish_batch() == 2 and relay.failures == 1 and outbox.backlog().pending == 1
    assert relay.publish_batch() == 1 and outbox.backlog().pending == 0
    assert (first.delivered, second.delivered) == (ce_ids[:2], ce_ids[2:])


def test_a_row_not_delivered_stays_when_the_relay_hands_its_lease_over(topic):
    first, second = _StandInProducer(failing={1}), _StandInProducer()
    relay, ce_ids = _relay_over(first, second, handover_s=0, standby_s=0.01)
    relay.run(until=lambda relay: relay.handovers == 1)
    assert relay.published == 2 and outbox.backlog().pending == 1
    assert relay.publish_batch() == 1 and second.delivered == [ce_ids[1]]


def test_a_relay_whose_messages_are_acknowledged_a_few_at_a_time_keeps_its_lease(topic):
    ticks = itertools.count(step=0.5)  # the relay's clock: each reading half a second later
    trickling = _StandInProducer(per_flush=1)
    relay, ce_ids = _relay_over(trickling, _StandInProducer(), handover_s=1, clock=lambda: next(ticks))
    relay.run(until=lambda relay: relay.published == 3)
    assert relay.handovers == 0 and trickling.delivered == ce_ids and outbox.backlog().pending == 0


def test_consumers_pause_while_the_outbox_is_over_its_limit(topic):
    api.apply_definitions(STRUGGLING, now=NOW)
    clock = [0.0]
    gate = OutboxGate(check_every_s=1, clock=lambda: clock[0])
    with override_settings(GROUPS_CONSUMER_OUTBOX_MAX_PENDING=2):
        apply_events(*[e for uid in (1, 2, 3) for e in (lms.enrollment(uid, COURSE, NOW),
                                                        lms.grade(uid, COURSE, 0.2, NOW))])
        assert gate.is_closed()
        outbox.delete_published([OutboxMessage.objects.order_by("id").first().id])
        clock[0] = 2
        assert gate.is_closed()  # 2 left: not yet below nine tenths of 2
        outbox.delete_published(list(OutboxMessage.objects.values_list("id", flat=True)))
        assert gate.is_closed()  # counted at most every second
        clock[0] = 4
        assert not gate.is_closed()


def test_a_snapshot_publishes_the_members_in_order_with_live_changes(config, topic, edx_consumer_timings):
    api.apply_definitions([STRUGGLING, THRIVING], now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW),
                 lms.enrollment(2, COURSE, NOW), lms.grade(2, COURSE, 0.9, NOW))
    relay = relay_for(config, topic)
    relay.publish_batch()  # the changes so far, published before the subscriber arrives
    report = publish_snapshot([api.find_group("struggling"), api.find_group("thriving")], now=NOW)
    apply_events(lms.grade(1, COURSE, 0.85, NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
    assert report.rows == {f"struggling (course:{COURSE})": 1, f"thriving (course:{COURSE})": 1}
    assert relay.publish_batch() == 4

    received = receive_with_edx_event_bus_kafka(config, topic, 6)
    # A subscriber that starts from the snapshot and follows the changes ends with the current members.
    after_snapshot = False
    members: dict[str, set[int]] = {"struggling": set(), "thriving": set()}
    for data, _ in received:
        after_snapshot = after_snapshot or data.cause == "snapshot"
        if after_snapshot:
            (members[data.group.name].add if data.change == "joined" else members[data.group.name].discard)(
                data.user_id)
    assert members == {"struggling": set(), "thriving": {1, 2}}
    snapshot = [d for d, _ in received if d.cause == "snapshot"]
    assert {(d.group.name, d.user_id, d.change, d.cause_id) for d in snapshot} == \
        {("struggling", 1, "joined", report.run_id), ("thriving", 2, "joined", report.run_id)}


def test_the_relay_waits_as_a_standby_while_another_publishes(config, topic):
    api.apply_definitions(STRUGGLING, now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW))
    with Leases([LEASE], ttl=LEASE_TTL).acquire():
        standby = relay_for(config, topic, standby_s=0.1)
        deadline = time.monotonic() + 1
        standby.run(until=lambda relay: time.monotonic() > deadline)
        assert standby.published == 0 and outbox.backlog().pending == 1
    active = relay_for(config, topic)
    active.run(until=lambda relay: relay.published >= 1)
    assert outbox.backlog().pending == 0


def test_a_relay_the_broker_does_not_acknowledge_gives_its_lease_to_a_standby(config, topic):
    api.apply_definitions(STRUGGLING, now=NOW)
    apply_events(lms.enrollment(1, COURSE, NOW), lms.grade(1, COURSE, 0.2, NOW))
    cut_off = Relay.connect(KafkaClientSettings.plain("127.0.0.1:1"), lms_consumer.get_schema_registry_client(),
                            PublishingSettings.current(), ack_timeout_s=0.2, handover_s=0.5, standby_s=0.1)
    with capture_logs() as logs:
        cut_off.run(until=lambda relay: relay.handovers == 1)
    handing_over = [line for line in logs if line["event"] == "relay_handing_over"]
    assert len(handing_over) == 1 and handing_over[0]["unacknowledged"] == 1 and handing_over[0]["waited_s"] >= 0.5
    assert cut_off.published == 0 and outbox.backlog().pending == 1  # nothing lost
    Leases([LEASE], ttl=LEASE_TTL).acquire().release()  # given back
    standby = relay_for(config, topic)
    standby.run(until=lambda relay: relay.published >= 1)
    assert outbox.backlog().pending == 0


def test_the_relay_command_refuses_a_handover_delay_that_is_not_seconds(monkeypatch, topic):
    monkeypatch.setenv("MEMBERSHIP_RELAY_HANDOVER_S", "soon")
    with pytest.raises(CommandError, match="MEMBERSHIP_RELAY_HANDOVER_S must be a number of seconds > 0"):
        call_command("groups_relay")


def test_the_rest_api_writes_are_recorded_too(topic, clock_at_now):
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    for uid in (1, 2, 3):
        user(uid)
    client = APIClient()
    staff = User.objects.create_user("ops", is_staff=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    doc = {"name": "picked", "scope": {"type": "instance"}, "rule": leaf("manual", "in", user_ids=[1, 2])}
    group = client.post("/api/v1/groups/", doc, format="json").json()
    url = f"/api/v1/groups/{group['id']}/"
    assert client.put(url, {**doc, "rule": leaf("manual", "in", user_ids=[2, 3])}, format="json").status_code == 200
    assert client.post(f"{url}disable/").status_code == 200
    assert client.delete(url).status_code == 204
    rows = list(OutboxMessage.objects.order_by("id").values_list("user_id", "kind"))
    assert rows == [(1, "joined"), (2, "joined"), (1, "left"), (3, "joined"), (2, "left"), (3, "left")]
    # The deleted group's change log went with it; its events stay, each with its own change id.
    assert not MembershipChange.objects.exists()
    assert len(set(OutboxMessage.objects.values_list("change_id", flat=True))) == 6
