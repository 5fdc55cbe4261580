"""For any event stream (reordered, duplicated, cut into any batches, with consumer crashes) and any passage
of time between batches (with time-relative passes run or skipped, and crashing too), incremental processing
ends in the same facts as processing it in order once, and in the memberships a full sync computes over those
facts at the final time.

A crash is modelled where it matters: inside a batch's transaction (nothing of the batch commits, and the
uncommitted offsets make the restarted consumer receive the batch again), or after the commit but before
the offset commit (the batch is delivered again although applied).

Bad events mixed into any stream (undecodable, values no LMS sends, events that make the fact stage raise)
are each refused, and the rest ends exactly as the stream without them."""

import random
from datetime import timedelta
from functools import partial
from unittest.mock import patch

import pytest
import time_machine
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import full_sync
from groups_consumer.engine.time_flips import process_flips
from groups_consumer.errors import DecodeError
from groups_consumer.models import CourseFact, Membership, UserFact
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.pipeline.isolate import apply_isolating
from tests import lms
from tests.facts import NOW, leaf
from tests.test_properties import rolled_back

pytestmark = pytest.mark.django_db
DECODER = EventDecoder()
COURSES = ["course-v1:OrgA+C1+R", "course-v1:OrgB+C1+R"]
GROUPS = [
    {"name": "struggling", "scope": {"type": "course", "key": COURSES[0]}, "exclusive_set": "s", "priority": 2,
     "rule": {"all": [leaf("course_grade", "<", percent=0.5), leaf("last_login", ">", days=10)]}},
    {"name": "verified", "scope": {"type": "course", "key": COURSES[0]}, "exclusive_set": "s", "priority": 1,
     "rule": leaf("enrollment_mode", "in", modes=["verified"])},
    {"name": "org-passing", "scope": {"type": "org", "key": "OrgB"},
     "rule": leaf("course_passing", "=", passing=True, course_key=COURSES[1])},
    {"name": "iberia-or-new", "rule": {"any": [leaf("country", "in", countries=["ES", "PT"]),
                                               {"not": leaf("last_login", ">", days=3)}]}},
]

times = st.integers(0, 20).map(lambda d: NOW - timedelta(days=d))
users = st.integers(1, 4)
courses = st.sampled_from(COURSES)
event = st.one_of(
    st.builds(lms.login, users, times),
    st.builds(lms.registration, users, times),
    st.builds(lms.enrollment, users, courses, times, st.sampled_from(["audit", "verified"]), st.booleans(),
              st.sampled_from(["created", "changed", "unenrolled"])),
    st.builds(lms.grade, users, courses, st.sampled_from([0.1, 0.5, 0.9]), times),
    st.builds(lms.passing, users, courses, st.booleans(), times),
    st.builds(lms.profile, users, st.sampled_from([None, "ES", "FR"]), times),
)


class ConsumerKilled(Exception):
    """The process dies inside the batch's transaction."""


def crashing(work, *args, **kwargs):
    """Run ``work`` in a transaction, then die inside it: nothing of the work commits."""
    with transaction.atomic():
        work(*args, **kwargs)
        raise ConsumerKilled


def state():
    return (set(UserFact.objects.values_list("user_id", "last_login", "registered_at", "country")),
            set(CourseFact.objects.values_list("user_id", "course_key", "mode", "is_active", "grade", "is_passing")),
            set(Membership.objects.values_list("group__name", "user_id")))


@given(stream=st.lists(event, min_size=1, max_size=25), seed=st.integers(0, 2**32))
def test_any_delivery_of_a_stream_converges_to_the_full_recompute(stream, seed):
    rng = random.Random(seed)
    messages = [DECODER.decode(*e.wire()[1:]) for e in stream]
    with rolled_back():
        api.apply_definitions(GROUPS, now=NOW)
        processor = BatchProcessor(GroupCatalog.load())
        delivered = messages + rng.sample(messages, k=len(messages) // 3)  # redeliveries
        rng.shuffle(delivered)
        clock = NOW
        while delivered:
            clock += timedelta(hours=rng.choice([0, 0, 1, 30, 100]))
            if rng.random() < 0.5:  # the scheduler's time-relative pass, when it happens to run
                if rng.random() < 0.2:
                    with pytest.raises(ConsumerKilled):
                        crashing(process_flips, processor.catalog, clock)
                else:
                    process_flips(processor.catalog, clock)
            size = rng.randint(1, 6)
            batch, delivered = delivered[:size], delivered[size:]
            crash = rng.choice(["none", "none", "before_commit", "before_offsets"])
            if crash == "before_commit":
                with pytest.raises(ConsumerKilled):
                    crashing(processor.process, batch, now=clock)
            else:
                processor.process(batch, now=clock)
            if crash != "none":
                delivered = batch + delivered  # the restarted consumer resumes at the last committed offsets
        clock += timedelta(hours=rng.choice([0, 5, 200]))
        process_flips(processor.catalog, clock)
        incremental = state()
        catalog = GroupCatalog.load()
        full_sync(catalog, catalog.groups.values(), now=clock)
        assert state() == incremental  # memberships equal the full recompute (facts untouched by a sync)

        Membership.objects.all().delete()
        UserFact.objects.all().delete()
        for message in sorted(messages, key=lambda m: m.time):
            processor.process([message], now=clock)
        assert state()[:2] == incremental[:2]  # same facts as one in-order delivery


POISON_USER = 99  # its events reach a bug in the fact stage (see poisoned_fact_stage)
bad_event = st.one_of(
    st.builds(lms.enrollment, users, st.sampled_from(["not-a-course-key", "library-v1:OrgA+L"]), times),
    st.builds(lms.login, st.integers(-5, 0), times),
    st.builds(lms.grade, users, courses, st.sampled_from([1.5, -0.2, float("nan"), float("inf")]), times),
    st.builds(lms.login, users, st.just(NOW + timedelta(days=365))),
    st.builds(lms.login, st.just(POISON_USER), times),
    st.just(None),  # a message that does not decode at all
)


def poisoned_fact_stage():
    """The fact stage with a bug that only events of POISON_USER reach (a plugin's, a constraint, anything)."""
    from groups_consumer.pipeline.facts_update import FactUpdater

    real = FactUpdater.updates_from

    def updates_from(self, event, failures):
        if event.data.get("user", {}).get("id") == POISON_USER:
            raise RuntimeError("a bug only this event reaches")
        return real(self, event, failures)

    return patch.object(FactUpdater, "updates_from", updates_from)


def consume_as_the_consumer(processor, wire, sizes, rejected):
    """What the consumer does with each batch: decode (refusals are dead letters), apply isolating failures."""
    while wire:
        size = sizes.pop() if sizes else len(wire)
        batch, wire = wire[:size], wire[size:]
        events = []
        for value, headers in batch:
            try:
                events.append(DECODER.decode(value, headers))
            except DecodeError as error:
                rejected.append(error.reason)
        apply_isolating(partial(processor.process, now=NOW), events, lambda event, exc: rejected.append("apply"))


@given(good=st.lists(event, min_size=1, max_size=15), bad=st.lists(bad_event, min_size=1, max_size=6),
       seed=st.integers(0, 2**32))
def test_bad_events_mixed_into_a_stream_are_refused_and_the_rest_ends_as_without_them(good, bad, seed):
    rng = random.Random(seed)
    good_wire = [e.wire()[1:] for e in good]
    bad_wire = [e.wire()[1:] if e is not None else (b"\x00\x00\x00\x00\x01garbage", good_wire[0][1]) for e in bad]
    mixed = good_wire + bad_wire
    rng.shuffle(mixed)
    sizes = [rng.randint(1, 8) for _ in mixed]
    with time_machine.travel(NOW, tick=False), poisoned_fact_stage():
        with rolled_back():
            api.apply_definitions(GROUPS, now=NOW)
            rejected: list[str] = []
            consume_as_the_consumer(BatchProcessor(GroupCatalog.load()), mixed, sizes, rejected)  # never raises
            with_bad = state()
        with rolled_back():
            api.apply_definitions(GROUPS, now=NOW)
            consume_as_the_consumer(BatchProcessor(GroupCatalog.load()), good_wire, [], [])
            without_bad = state()
    assert len(rejected) == len(bad)
    assert with_bad == without_bad
