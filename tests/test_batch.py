"""Facts from events (monotonic, idempotent), routing, and batches applied in one transaction."""

import logging
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from pydantic import BaseModel

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.facts.snapshot import CourseState, LearnerSnapshot
from groups_consumer.models import CourseFact, MembershipChange, UserFact
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.plugins import registry
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.plugins.registry import Plugin
from groups_consumer.plugins.source import ChangedFact
from tests import lms
from tests.facts import COURSE, NOW, OTHER_COURSE, leaf

pytestmark = pytest.mark.django_db
DECODER = EventDecoder()
T = [NOW - timedelta(days=d) for d in range(40, -1, -1)]  # T[40] is NOW; larger index = later


def decoded(*events):
    return [DECODER.decode(*event.wire()[1:]) for event in events]


def process(*events, now=NOW):
    return BatchProcessor(GroupCatalog.load()).process(decoded(*events), now=now)


def members(name):
    return set(api.find_group(name).memberships.values_list("user_id", flat=True))


def test_facts_are_monotonic_by_event_time_and_duplicates_are_no_ops():
    newer, older = lms.grade(1, COURSE, 0.8, T[30]), lms.grade(1, COURSE, 0.2, T[10])
    assert process(newer, older).facts_changed == 2  # user 1 became known; the grade changed once
    assert CourseFact.objects.get(user_id=1).grade == 0.8
    assert process(newer).facts_changed == 0  # redelivered
    process(lms.login(1, T[20]), lms.login(1, T[5]))
    assert UserFact.objects.get(user_id=1).last_login == T[20]
    process(lms.registration(1, T[3]), lms.registration(1, T[2]))
    assert UserFact.objects.get(user_id=1).registered_at == T[2]
    assert UserFact.objects.get(user_id=1).username == "user1"


def test_equal_event_times_resolve_the_same_in_any_order():
    a, b = lms.profile(1, "ES", T[5]), lms.profile(1, "PT", T[5])
    process(a, b)
    first = UserFact.objects.get(user_id=1).country
    UserFact.objects.all().delete()
    process(b)
    process(a)
    assert UserFact.objects.get(user_id=1).country == first


def test_enrollment_lifecycle_and_unenrollment():
    process(lms.enrollment(1, COURSE, T[1], mode="audit"))
    process(lms.enrollment(1, COURSE, T[2], mode="verified", kind="changed"))
    row = CourseFact.objects.get(user_id=1)
    assert (row.mode, row.is_active, row.org) == ("verified", True, "Demo")
    process(lms.enrollment(1, COURSE, T[3], mode="verified", kind="unenrolled"))
    assert not CourseFact.objects.get(user_id=1).is_active


def test_events_become_memberships_with_the_event_as_cause():
    api.apply_definitions([
        {"name": "struggling", "scope": {"type": "course", "key": COURSE},
         "rule": {"all": [leaf("course_grade", "<", percent=0.4), leaf("last_login", ">", days=10)]}},
        {"name": "spain", "rule": leaf("country", "in", countries=["ES"])},
    ], now=NOW)
    logged_in, enrolled, graded = lms.login(1, T[5]), lms.enrollment(1, COURSE, T[0]), lms.grade(1, COURSE, 0.3, T[1])
    result = process(logged_in, enrolled, graded, lms.profile(2, "es", T[1]))
    assert members("struggling") == {1} and members("spain") == {2}
    assert len(result.diff.joined) == 2
    change = MembershipChange.objects.get(group__name="struggling")
    assert change.cause == "event" and change.cause_id == str(logged_in.metadata.id)  # the user's latest event

    process(lms.login(1, T[39]))  # logs in today: leaves at once
    assert members("struggling") == set()
    process(lms.grade(1, COURSE, 0.1, T[39]), lms.login(1, T[20]))  # an older login changes nothing
    assert members("struggling") == set()


def test_a_batch_takes_no_savepoint_unless_a_fact_source_fails():
    # Each savepoint is two round trips per batch (SAVEPOINT, RELEASE): the facts and the memberships are
    # written in the batch's transaction, which is applied again with the sources isolated if one fails.
    api.apply_definitions({"name": "spain", "rule": leaf("country", "in", countries=["ES"])}, now=NOW)

    def savepoints(apply):
        with CaptureQueriesContext(connection) as queries:
            apply()
        return sum(query["sql"].startswith("SAVEPOINT") for query in queries.captured_queries)

    def empty_transaction():
        with transaction.atomic():
            pass

    own = savepoints(empty_transaction)  # one inside the test's transaction, none outside
    assert savepoints(lambda: process(lms.profile(1, "ES", T[1]), lms.registration(2, T[1]))) == own
    assert members("spain") == {1}


def test_events_reach_only_groups_they_can_affect():
    api.apply_definitions([
        {"name": "c1", "scope": {"type": "course", "key": COURSE}, "rule": leaf("course_grade", ">", percent=0.5)},
        {"name": "c2", "scope": {"type": "course", "key": OTHER_COURSE},
         "rule": leaf("course_grade", ">", percent=0.5)},
        {"name": "away", "rule": leaf("last_login", ">", days=10)},
    ], now=NOW)
    assert process(lms.registration(1, T[0])).users_evaluated == 1  # a new user: every instance group
    assert process(lms.profile(1, "FR", T[1])).users_evaluated == 0  # no group reads the country
    processor = BatchProcessor(GroupCatalog.load())
    [event] = decoded(lms.grade(1, COURSE, 0.9, T[1]))
    routed = processor.router.groups_for(ChangedFact(1, "grade", COURSE, event))
    assert [g.name for g in routed] == ["c1"]
    process(lms.enrollment(1, COURSE, T[1]), lms.grade(1, COURSE, 0.9, T[2]))
    assert members("c1") == {1} and members("c2") == set()


def test_changes_other_than_enrollments_reach_only_the_scopes_that_hold_the_user():
    api.apply_definitions([
        {"name": "c1", "scope": {"type": "course", "key": COURSE}, "rule": leaf("last_login", ">", days=10)},
        {"name": "c2", "scope": {"type": "course", "key": OTHER_COURSE}, "rule": leaf("last_login", ">", days=10)},
        {"name": "org", "scope": {"type": "org", "key": "Demo"}, "rule": leaf("last_login", ">", days=10)},
        {"name": "away", "rule": leaf("last_login", ">", days=10)},
    ], now=NOW)
    router = BatchProcessor(GroupCatalog.load()).router
    enrolled_in_c1 = LearnerSnapshot(1, courses={COURSE: CourseState("Demo", "audit", True)})
    [login] = decoded(lms.login(1, T[1]))
    [enrollment] = decoded(lms.enrollment(1, OTHER_COURSE, T[1]))

    def names(change, learner):
        return sorted(g.name for g in router.groups_for(change, learner))

    assert names(ChangedFact(1, "last_login", None, login), enrolled_in_c1) == ["away", "c1", "org"]
    assert names(ChangedFact(1, "last_login", None, login), LearnerSnapshot(1)) == ["away"]
    assert names(ChangedFact(1, "last_login", None, login), None) == ["away", "c1", "c2", "org"]  # no snapshot
    # An enrollment changes who is in the scope: it reaches the course's groups whoever the user is.
    assert names(ChangedFact(1, "enrollment", OTHER_COURSE, enrollment), LearnerSnapshot(1)) == ["c2", "org"]
    # Applied end to end: the lapsed user joins the groups of the scopes holding them.
    process(lms.enrollment(1, COURSE, T[0]), lms.login(1, T[5]))
    assert (members("away"), members("org"), members("c1"), members("c2")) == ({1}, {1}, {1}, set())


class _FlakyConfig(BaseModel):
    x: int


class _FlakyForUser13(CriterionType):
    """A plugin with a bug: it raises for one user."""

    name = "flaky"
    Config = _FlakyConfig
    operators = ("=",)
    events = frozenset({"org.openedx.learning.auth.session.login.completed.v1"})

    def select(self, facts, now):
        return facts.population("instance", "")

    def test(self, learner, now):
        if learner.user_id == 13:
            raise KeyError("a field this plugin did not expect")
        return True


def test_a_criterion_that_raises_for_one_user_holds_only_that_user_in_that_group(caplog):
    registry.criterion_types().add(Plugin("flaky", _FlakyForUser13, "tests:FlakyForUser13", "tests"))
    api.apply_definitions([{"name": "flaky-group", "rule": leaf("flaky", "=", x=1)},
                           {"name": "spain", "rule": leaf("country", "in", countries=["ES"])}], sync=False)
    with caplog.at_level(logging.ERROR):
        process(lms.login(12, T[1]), lms.login(13, T[1]), lms.login(14, T[1]), lms.profile(13, "ES", T[1]))
    assert members("flaky-group") == {12, 14} and members("spain") == {13}
    failures = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == "criterion_failed"]
    assert [(f["group"], f["user_id"]) for f in failures] == [("flaky-group (instance)", 13)]
    assert "KeyError" in failures[0]["error"]
    assert not GroupCatalog.load().groups[api.find_group("flaky-group").id].broken_reason
