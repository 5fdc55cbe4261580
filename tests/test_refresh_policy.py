"""Refresh policy rules: update methods, frozen groups, refresh intervals and staleness."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from pydantic import BaseModel

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.errors import DefinitionError
from groups_consumer.facts.events import PROFILE_CHANGED
from groups_consumer.models import Group, Membership, UserFact
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.plugins import registry
from groups_consumer.plugins.criterion import CriterionType, UpdateMethod
from groups_consumer.plugins.registry import Plugin
from groups_consumer.scheduling.policy import freshness
from groups_consumer.scheduling.scheduler import Scheduler
from tests import lms
from tests.facts import COURSE, NOW, course, leaf, user

pytestmark = pytest.mark.django_db
INSTANCE = {"type": "instance"}
IN_COURSE = {"type": "course", "key": COURSE}


class _Countries(BaseModel):
    countries: list[str]


class SyncedCountry(CriterionType):
    """A criterion restricted to scheduled syncs (as for data polled from outside, with no events)."""

    name = "synced_country"
    Config = _Countries
    operators = ("in",)
    events = frozenset({PROFILE_CHANGED})  # even if it listened, events must not touch it
    refresh = timedelta(hours=6)
    update_methods = frozenset({UpdateMethod.SCHEDULE})

    def select(self, facts, now):
        return facts.country(self.config.countries, inside=True)

    def test(self, learner, now):
        return learner.country in self.config.countries


@pytest.fixture
def synced_country():
    registry.criterion_types().add(Plugin("synced_country", SyncedCountry, "tests:SyncedCountry", "tests"))


def members(name):
    return set(api.find_group(name).memberships.values_list("user_id", flat=True))


def process(*events, now=NOW):
    decoder = EventDecoder()
    return BatchProcessor(GroupCatalog.load()).process([decoder.decode(*e.wire()[1:]) for e in events], now=now)


def test_sync_only_criteria_are_not_touched_by_events(synced_country):
    user(1, country="ES")
    api.apply_definitions([
        {"name": "spain-synced", "scope": INSTANCE, "rule": leaf("synced_country", "in", countries=["ES"])},
        {"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"])},
    ], now=NOW)
    assert members("spain-synced") == members("spain") == {1}
    catalog = GroupCatalog.load()
    assert catalog.groups[api.find_group("spain-synced").id].update_methods == {UpdateMethod.SCHEDULE}

    process(lms.profile(1, "PT", NOW + timedelta(minutes=1)))
    assert members("spain") == set() and members("spain-synced") == {1}  # only the event group changed

    later = NOW + timedelta(hours=7)  # its 6-hour refresh is due
    tick = Scheduler(clock=lambda: later).run_once()
    assert members("spain-synced") == set() and len(tick.syncs) == 1
    assert api.find_group("spain-synced").last_sync_drift is None  # expected work, not drift


def test_operator_syncs_leave_frozen_groups_and_groups_without_manual_updates_alone(synced_country):
    user(1, country="ES")
    api.apply_definitions([
        {"name": "spain-synced", "scope": INSTANCE, "rule": leaf("synced_country", "in", countries=["ES"])},
        {"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"]), "frozen": True},
    ], now=NOW)
    UserFact.objects.update(country="PT")
    groups = list(api.groups_matching())
    report = api.sync_groups(groups, now=NOW)
    assert report.groups == [] and members("spain-synced") == {1}
    assert sorted(api.not_synced(groups, report)) == [
        ("spain (instance)", "frozen"), ("spain-synced (instance)", "its criteria exclude manual updates")]


def test_a_failing_sync_backs_off_without_holding_back_other_scopes():
    class Exploding(SyncedCountry):
        name = "exploding"
        update_methods = frozenset(UpdateMethod)

        def select(self, facts, now):
            raise RuntimeError("backend down")

    registry.criterion_types().add(Plugin("exploding", Exploding, "tests:Exploding", "tests"))
    user(1, country="ES")
    course(1)
    api.apply_definitions([
        {"name": "fragile", "scope": INSTANCE, "rule": leaf("exploding", "in", countries=["ES"])},
        {"name": "audit", "scope": IN_COURSE, "rule": leaf("enrollment_mode", "in", modes=["audit"])},
    ], sync=False, now=NOW)
    scheduler = Scheduler(clock=lambda: NOW)
    tick = scheduler.run_once()
    assert tick.failed == ["sync:instance"] and members("audit") == {1}
    assert scheduler.run_once().failed == []  # backing off: not tried again at the next tick


def test_a_group_takes_the_most_restrictive_methods_and_must_keep_one(synced_country):
    rule = {"all": [leaf("synced_country", "in", countries=["ES"]), leaf("last_login", ">", days=3)]}
    api.apply_definitions({"name": "mixed", "scope": INSTANCE, "rule": rule}, now=NOW)
    compiled = GroupCatalog.load().groups[api.find_group("mixed").id]
    assert compiled.update_methods == {UpdateMethod.SCHEDULE}
    assert compiled.refresh_interval == timedelta(hours=6)  # the shortest of its criteria
    assert compiled.time_relative == []  # not updated by events, so not by time either

    class EventsOnly(SyncedCountry):
        name = "events_only"
        update_methods = frozenset({UpdateMethod.EVENTS})

    registry.criterion_types().add(Plugin("events_only", EventsOnly, "tests:EventsOnly", "tests"))
    with pytest.raises(DefinitionError) as error:
        api.validate_definition({"name": "nothing", "scope": INSTANCE, "rule": {"any": [
            leaf("synced_country", "in", countries=["ES"]), leaf("events_only", "in", countries=["PT"])]}})
    assert error.value.field == "rule" and "share no update method" in error.value.message
    assert "rule.any[1] (events_only): events" in error.value.message


def test_frozen_groups_do_not_change_and_keep_their_users_in_their_exclusive_set():
    user(1, country="ES")
    user(2, country="FR")
    definitions = [
        {"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"]),
         "exclusive_set": "region", "priority": 1},
        {"name": "anyone", "scope": INSTANCE, "rule": {"not": leaf("manual", "in", user_ids=[99])},
         "exclusive_set": "region"},
    ]
    api.apply_definitions(definitions, now=NOW)
    assert (members("spain"), members("anyone")) == ({1}, {2})
    api.apply_definitions([{**definitions[0], "frozen": True}], now=NOW)
    assert members("spain") == {1}  # freezing keeps the members

    process(lms.profile(1, "PT", NOW + timedelta(minutes=1)), lms.profile(2, "ES", NOW + timedelta(minutes=1)))
    assert (members("spain"), members("anyone")) == ({1}, {2})  # user 1 stays held by the frozen group
    api.sync_groups(api.groups_matching(), now=NOW + timedelta(days=30))
    Scheduler(clock=lambda: NOW + timedelta(days=60)).run_once()
    assert (members("spain"), members("anyone")) == ({1}, {2})
    explanation = api.explain(1, api.find_group("anyone"), now=NOW)
    assert any("spain (instance): frozen: keeps its members (holds this user)" in line for line in explanation.lines)

    api.apply_definitions([definitions[0]], now=NOW + timedelta(days=61))  # unfrozen: synced at once
    assert (members("spain"), members("anyone")) == ({2}, {1})


def test_a_frozen_manual_group_refuses_list_updates():
    user(1)
    api.apply_definitions({"name": "vip", "scope": INSTANCE, "rule": leaf("manual", "in", user_ids=[1]),
                           "frozen": True}, now=NOW)
    with pytest.raises(DefinitionError, match="frozen"):
        api.update_manual_group(api.find_group("vip"), [["2"]], append=True, now=NOW)


def test_refresh_interval_override_and_staleness_window():
    user(1)
    course(1)
    api.apply_definitions([
        {"name": "graded", "scope": IN_COURSE, "rule": leaf("course_grade", ">=", percent=0.5)},
        {"name": "weekly", "scope": IN_COURSE, "rule": leaf("course_grade", ">=", percent=0.5), "refresh": "P7D"},
        {"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"])},
    ], now=NOW)
    catalog = GroupCatalog.load()
    interval = {g.name: g.refresh_interval for g in catalog.groups.values()}
    assert interval == {"graded": timedelta(days=1), "weekly": timedelta(days=7), "spain": timedelta(days=7)}
    graded = catalog.groups[api.find_group("graded").id]
    within = freshness(graded, NOW, NOW + timedelta(hours=23))
    assert not within.stale and not within.due and within.staleness == timedelta(hours=23)
    assert within.next_due == NOW + timedelta(days=1)
    past = freshness(graded, NOW, NOW + timedelta(days=1, minutes=1))
    assert past.stale and past.due
    never = freshness(graded, None, NOW)
    assert never.stale and never.due and never.staleness is None


def test_the_scheduler_syncs_a_whole_scope_together_and_only_due_scopes():
    user(1, country="ES")
    course(1, grade=0.9)
    api.apply_definitions([
        {"name": "graded", "scope": IN_COURSE, "rule": leaf("course_grade", ">=", percent=0.5)},  # course scope, daily
        {"name": "audit", "scope": IN_COURSE, "rule": leaf("enrollment_mode", "in", modes=["audit"]),
         "refresh": "P30D"},
        {"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"])},  # weekly
    ], now=NOW)
    later = NOW + timedelta(days=1, minutes=1)
    tick = Scheduler(clock=lambda: later).run_once()
    synced = dict(Group.objects.values_list("name", "last_full_sync"))
    assert synced == {"graded": later, "audit": later, "spain": NOW}  # 'audit' was not due, but shares the scope
    assert len(tick.syncs) == 1 and sorted(tick.syncs[0].groups) == [f"audit (course:{COURSE})",
                                                                      f"graded (course:{COURSE})"]


def test_a_restarted_scheduler_does_not_run_everything_again():
    user(1, country="ES")
    api.apply_definitions({"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"])},
                          sync=False, now=NOW)
    assert len(Scheduler(clock=lambda: NOW).run_once().syncs) == 1  # never synced: due at once
    assert Scheduler(clock=lambda: NOW + timedelta(minutes=5)).run_once().syncs == []  # a new process
    assert len(Scheduler(clock=lambda: NOW + timedelta(days=7, seconds=1)).run_once().syncs) == 1


def test_a_sync_reports_differences_events_should_have_made_as_drift(caplog):
    for uid in (1, 2, 3):
        user(uid, country="ES")
    api.apply_definitions({"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"])},
                          now=NOW)
    assert api.find_group("spain").last_sync_drift is None  # the first sync populates: not drift
    UserFact.objects.filter(user_id__in=[2, 3]).update(country="PT")  # changes whose events never came
    Membership.objects.create(group=api.find_group("spain"), user_id=4, joined_at=NOW)  # and a stray row
    user(4, country="FR")
    Scheduler(clock=lambda: NOW + timedelta(days=8)).run_once()
    drift = api.find_group("spain").last_sync_drift
    assert (drift["joined"], drift["left"]) == (0, 3)
    assert [e["user_id"] for e in drift["examples"]] == [2, 3, 4]
    api.sync_groups([api.find_group("spain")], now=NOW + timedelta(days=9))
    assert api.find_group("spain").last_sync_drift["left"] == 0  # nothing to correct any more


def test_the_scheduler_command_runs_one_pass_with_once():
    user(1, country="ES")
    api.apply_definitions({"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"])},
                          sync=False, now=NOW)
    out = StringIO()
    call_command("groups_scheduler", "--once", stdout=out)
    assert out.getvalue().startswith("1 sync(s), 0 time-relative re-evaluation(s)")
    assert members("spain") == {1}
