"""For any event stream (reordered, duplicated, cut into any batches, with consumer crashes) and any passage
of time between batches (with time-relative passes run or skipped, and crashing too), incremental processing
ends in the same facts as processing it in order once, and in the memberships a full sync computes over those
facts at the final time.

A crash is modelled where it matters: inside a batch's transaction (nothing of the batch commits, and the
uncommitted offsets make the restarted consumer receive the batch again), or after the commit but before
the offset commit (the batch is delivered again although applied)."""

import random
from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import full_sync
from groups_consumer.engine.time_flips import process_flips
from groups_consumer.models import CourseFact, Membership, UserFact
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
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
