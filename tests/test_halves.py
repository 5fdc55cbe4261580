"""A batch applied in two halves at once, on two connections (PostgreSQL): the outcome of one transaction, an
error of either half raised once both ended, and the consumer applying its batches that way."""

import random
import threading
import time
from dataclasses import replace
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.conf import settings
from django.db import OperationalError, transaction
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import full_sync
from groups_consumer.engine.time_flips import process_flips
from groups_consumer.kafka_clients import KafkaSettingsError
from groups_consumer.models import CourseFact, Group, Membership, MembershipChange, UserFact
from groups_consumer.pipeline import halves as halves_module
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.pipeline.halves import InHalves, WaitsForDatabase
from groups_consumer.pipeline.spare_cpu import SpareCpu
from tests import lms
from tests.facts import COURSE, NOW, leaf


def on_postgres(test):
    """A test of two connections applying at once, on committed data: PostgreSQL only."""
    return pytest.mark.django_db(transaction=True)(pytest.mark.skipif(
        not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
        reason="two connections applying at once: PostgreSQL only")(test))
T = [NOW - timedelta(days=d) for d in range(40, -1, -1)]
GROUPS = [
    {"name": "struggling", "scope": {"type": "course", "key": COURSE}, "exclusive_set": "s", "priority": 2,
     "rule": leaf("course_grade", "<", percent=0.5)},
    {"name": "verified", "scope": {"type": "course", "key": COURSE}, "exclusive_set": "s", "priority": 1,
     "rule": leaf("enrollment_mode", "in", modes=["verified"])},
    {"name": "spain-or-new", "rule": {"any": [leaf("country", "in", countries=["ES"]),
                                              {"not": leaf("last_login", ">", days=3)}]}},
]


def stream(users: range) -> list:
    """Events of every kind about ``users``, both odd and even ids, in the LMS wire format, decoded."""
    events = []
    for n in users:
        events += [lms.registration(n, T[n % 30]), lms.login(n, T[30 + n % 11]),
                   lms.enrollment(n, COURSE, T[n % 20], "verified" if n % 3 == 0 else "audit"),
                   lms.grade(n, COURSE, (n % 10) / 10, T[25 + n % 15]), lms.profile(n, "ES" if n % 4 else "FR", T[n])]
    return [EventDecoder().decode(*event.wire()[1:]) for event in events]


def state():
    return (set(UserFact.objects.values_list("user_id", "last_login", "registered_at", "country")),
            set(CourseFact.objects.values_list("user_id", "course_key", "mode", "is_active", "grade")),
            set(Membership.objects.values_list("group__name", "user_id")),
            sorted(MembershipChange.objects.values_list("group__name", "user_id", "kind")))


def in_halves(events, now=NOW):
    halves = InHalves(BatchProcessor(GroupCatalog.load()))
    try:
        return halves.process(events, now=now)
    finally:
        halves.close()


@on_postgres
def test_two_halves_apply_what_one_transaction_applies_and_agree_with_the_full_recompute(monkeypatch):
    api.apply_definitions(GROUPS, now=NOW)
    events = stream(range(1, 31))
    applied_by: dict[str, set[int]] = {}
    apply = BatchProcessor.apply

    def recording_apply(processor, pending, result, now):
        applied_by.setdefault(threading.current_thread().name, set()).update(p.update.user_id % 2 for p in pending)
        return apply(processor, pending, result, now)

    monkeypatch.setattr(BatchProcessor, "apply", recording_apply)
    result = in_halves(events)
    halved = state()
    assert applied_by.pop(threading.main_thread().name) == {0}
    assert list(applied_by.values()) == [{1}]  # the odd users' half, in the second thread
    catalog = GroupCatalog.load()
    full_sync(catalog, catalog.groups.values(), now=NOW)
    assert state()[:3] == halved[:3]

    for model in (MembershipChange, Membership, CourseFact, UserFact):
        model.objects.all().delete()
    whole = BatchProcessor(GroupCatalog.load()).process(events, now=NOW)
    assert state() == halved
    assert (result.events, result.facts_changed, result.users_evaluated, len(result.diff)) == (
        whole.events, whole.facts_changed, whole.users_evaluated, len(whole.diff))
    assert (result.events, result.users_evaluated, len(result.diff)) == (150, 30, len(halved[3]))
    assert result.last_event == whole.last_event


@on_postgres
def test_an_error_of_the_second_half_is_raised_once_both_ended_and_applying_again_completes_the_batch(monkeypatch):
    api.apply_definitions(GROUPS, now=NOW)
    events = stream(range(1, 11))
    apply, failures = BatchProcessor.apply, iter([OperationalError("server closed the connection")])

    def failing_in_the_second_thread(processor, pending, result, now):
        if threading.current_thread() is not threading.main_thread():
            for failure in failures:
                raise failure
        return apply(processor, pending, result, now)

    monkeypatch.setattr(BatchProcessor, "apply", failing_in_the_second_thread)
    halves = InHalves(BatchProcessor(GroupCatalog.load()))
    try:
        with pytest.raises(OperationalError):
            halves.process(events, now=NOW)
        assert set(UserFact.objects.values_list("user_id", flat=True)) == {2, 4, 6, 8, 10}
        halves.process(events, now=NOW)  # the consumer's retry: the second thread opens a new connection
    finally:
        halves.close()
    halved = state()
    catalog = GroupCatalog.load()
    full_sync(catalog, catalog.groups.values(), now=NOW)
    assert state()[:3] == halved[:3] and len(halved[0]) == 10


times = st.integers(0, 20).map(lambda d: NOW - timedelta(days=d))
users = st.integers(1, 6)
event = st.one_of(
    st.builds(lms.login, users, times),
    st.builds(lms.enrollment, users, st.just(COURSE), times, st.sampled_from(["audit", "verified"]), st.booleans(),
              st.sampled_from(["created", "changed", "unenrolled"])),
    st.builds(lms.grade, users, st.just(COURSE), st.sampled_from([0.1, 0.5, 0.9]), times),
    st.builds(lms.profile, users, st.sampled_from([None, "ES", "FR"]), times),
)


class SecondHalfKilled(Exception):
    """The second half dies, before or after its commit; the first half's has committed."""


@on_postgres
@hypothesis_settings(max_examples=20, deadline=None)
@given(stream=st.lists(event, min_size=1, max_size=30), seed=st.integers(0, 2**32))
def test_any_delivery_in_halves_converges_to_the_full_recompute_with_exclusivity_at_every_commit(stream, seed):
    """Reordered, redelivered, and with the second half dying after the first committed (the batch is then
    delivered again): the memberships are the full recompute's, and no user is ever in both groups of the
    exclusive set."""
    for model in (MembershipChange, Membership, CourseFact, UserFact, Group):  # committed by the example before
        model.objects.all().delete()
    api.apply_definitions(GROUPS, now=NOW)  # new groups: no time pass has run for them yet
    rng = random.Random(seed)
    messages = [EventDecoder().decode(*e.wire()[1:]) for e in stream]
    delivered = messages + rng.sample(messages, k=len(messages) // 3)
    rng.shuffle(delivered)
    apply_one, dying = BatchProcessor._apply, []

    def second_half_may_die(processor, updates, result, now, **options):
        if not dying or threading.current_thread() is threading.main_thread():
            return apply_one(processor, updates, result, now, **options)
        if dying[0] == "after_commit":  # committed, but the batch's offsets never are
            apply_one(processor, updates, result, now, **options)
            raise SecondHalfKilled
        with transaction.atomic():  # before its commit: nothing of the second half commits
            apply_one(processor, updates, result, now, **options)
            raise SecondHalfKilled

    halves = InHalves(BatchProcessor(GroupCatalog.load()))
    clock = NOW
    try:
        with patch.object(BatchProcessor, "_apply", second_half_may_die):
            while delivered:
                clock += timedelta(hours=rng.choice([0, 1, 30]))
                size = rng.randint(1, 8)
                batch, delivered = delivered[:size], delivered[size:]
                dying[:] = [rng.choice(["before_commit", "after_commit"])] if rng.random() < 0.3 else []
                try:
                    halves.process(batch, now=clock)
                except SecondHalfKilled:
                    delivered = batch + delivered
                exclusive = Membership.objects.filter(group__name__in=["struggling", "verified"])
                assert exclusive.count() == len(set(exclusive.values_list("user_id", flat=True)))
    finally:
        halves.close()
    process_flips(GroupCatalog.load(), clock)  # the scheduler's time-relative pass ("not logged in for 3 days")
    incremental = state()[:3]
    catalog = GroupCatalog.load()
    full_sync(catalog, catalog.groups.values(), now=clock)
    assert state()[:3] == incremental


def consume_in_halves(config, monkeypatch, **options):
    """Send 60 profile events, consume them in batches of up to 20 with ``options``: the sizes of the batches
    applied in halves, and of every batch."""
    api.apply_definitions({"name": "spain", "rule": leaf("country", "in", countries=["ES"])}, now=NOW)
    batches: list[int] = []
    process = InHalves.process

    def counting(halves, events, now=None, asserted=None):
        batches.append(len(events))
        return process(halves, events, now, asserted)

    monkeypatch.setattr(InHalves, "process", counting)
    lms.send(config.kafka, config.topics[0], *(lms.profile(n, "ES" if n % 2 else "FR", T[39]) for n in range(1, 61)))
    sizes: list[int] = []
    consumer = EventConsumer(replace(config, halves_from=10, batch_size=20, **options),
                             on_batch=lambda messages: sizes.append(len(messages)))
    deadline = time.monotonic() + 60
    stats = consumer.run(until=lambda stats: stats.messages >= 60 or time.monotonic() > deadline)
    assert stats.messages == 60 and stats.batches_in_halves == len(batches)
    assert sorted(api.find_group("spain").memberships.values_list("user_id", flat=True)) == list(range(1, 61, 2))
    return batches, sizes


@on_postgres
def test_the_consumer_turned_to_halves_applies_its_large_batches_in_halves(config, monkeypatch):
    batches, _sizes = consume_in_halves(config, monkeypatch, apply_in_halves="on")
    assert batches and min(batches) >= 10  # smaller batches: in one transaction


@on_postgres
@pytest.mark.parametrize("waits", [True, False])
def test_auto_applies_in_halves_only_after_a_batch_that_waited_for_the_database_with_a_cpu_to_spare(
        config, monkeypatch, waits):
    monkeypatch.setattr(halves_module, "BUSY_ON", 2.0 if waits else 0.0)  # any batch counts as waiting, or none
    monkeypatch.setattr(SpareCpu, "__call__", lambda self: True)
    batches, sizes = consume_in_halves(config, monkeypatch, apply_in_halves="auto", decode_ahead=False)
    large = sum(1 for size in sizes if size >= 10)
    # The first large batch is measured in one transaction; halves come after it, or never.
    assert len(batches) == (large - 1 if waits else 0) and (large > 1 or not waits)


def test_waiting_for_the_database_is_told_by_the_process_s_cpu_share_with_hysteresis():
    cpu, wall = [0.0], [0.0]
    gate = WaitsForDatabase(cpu=lambda: cpu[0], clock=lambda: wall[0])

    def batch(busy_share: float) -> bool:
        with gate.measuring():
            cpu[0] += busy_share
            wall[0] += 1.0
        return gate.waiting

    assert not gate.waiting
    assert [batch(share) for share in (0.87, 0.70, 0.54, 0.70, 0.74, 0.80, 0.70, 0.60)] == [
        False, False, True, True, True, False, False, True]


def test_the_halves_setting_is_0_by_default_auto_or_1():
    settings_of = {value: ConsumerConfig.from_env("127.0.0.1:1", env={"CONSUMER_APPLY_IN_HALVES": value})
                   for value in ("auto", "1", "0")}
    assert {value: config.apply_in_halves for value, config in settings_of.items()} == {
        "auto": "auto", "1": "on", "0": "off"}
    assert ConsumerConfig.from_env("127.0.0.1:1", env={}).apply_in_halves == "off"
    with pytest.raises(KafkaSettingsError, match="CONSUMER_APPLY_IN_HALVES"):
        ConsumerConfig.from_env("127.0.0.1:1", env={"CONSUMER_APPLY_IN_HALVES": "yes"})
