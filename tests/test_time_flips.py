"""Time-relative criteria flip on time, with no event and no sync, at a cost that follows the flips.

The clock is controlled: every step passes the instant it runs at.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.time_flips import process_flips
from groups_consumer.models import Group, MembershipChange, UserFact
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from groups_consumer.scheduling.scheduler import Scheduler
from groups_consumer.testing import flips_cover_changes
from tests import lms
from tests.facts import NOW, leaf, user

pytestmark = pytest.mark.django_db
AWAY = {"name": "away", "scope": {"type": "instance"}, "rule": leaf("last_login", ">", days=10)}
MINUTE = timedelta(minutes=1)


def members(name="away"):
    return set(api.find_group(name).memberships.values_list("user_id", flat=True))


def test_a_user_enters_on_time_without_event_or_sync_and_a_login_takes_them_out_at_once():
    user(1, login=5)  # crosses the 10-day mark at NOW + 5 days
    api.apply_definitions({**AWAY, "refresh": "P30D"}, now=NOW)
    synced_at = Group.objects.get().last_full_sync
    mark = NOW + timedelta(days=5)
    clock = [NOW]
    scheduler = Scheduler(clock=lambda: clock[0])

    clock[0] = mark - MINUTE
    assert scheduler.run_once().syncs == [] and members() == set()
    clock[0] = mark + timedelta(seconds=15)  # the next tick after the mark
    tick = scheduler.run_once()
    assert members() == {1}
    assert tick.syncs == [] and Group.objects.get().last_full_sync == synced_at  # no sync ran
    change = MembershipChange.objects.get(kind="joined")
    assert change.cause == "time" and change.at == mark + timedelta(seconds=15)

    login_at = mark + 2 * MINUTE
    event = EventDecoder().decode(*lms.login(1, login_at).wire()[1:])
    BatchProcessor(GroupCatalog.load()).process([event], now=login_at)
    assert members() == set()
    assert MembershipChange.objects.filter(kind="left").get().cause == "event"


def test_a_user_leaves_on_time_too():
    user(1, login=3)
    api.apply_definitions({**AWAY, "name": "active", "rule": leaf("last_login", "<=", days=7)}, now=NOW)
    assert members("active") == {1}
    process_flips(GroupCatalog.load(), NOW + timedelta(days=4) - MINUTE)
    assert members("active") == {1}
    process_flips(GroupCatalog.load(), NOW + timedelta(days=4) + MINUTE)
    assert members("active") == set()


def test_work_is_proportional_to_the_users_who_flip_not_to_the_population():
    def run(population):
        UserFact.objects.all().delete()
        Group.objects.all().delete()
        # Spread over 60 days but away from the 10-day mark of the coming hour: half well past it, half not near.
        UserFact.objects.bulk_create(UserFact(user_id=uid, last_login=NOW - timedelta(days=11 + uid % 49, minutes=uid)
                                              if uid % 2 else NOW - timedelta(days=uid % 9, minutes=uid))
                                     for uid in range(1, population + 1))
        flipping = {1_000_001, 1_000_002, 1_000_003}
        for uid in flipping:  # their 10-day mark falls in the next hour
            user(uid, registered=None)
            UserFact.objects.filter(user_id=uid).update(last_login=NOW - timedelta(days=10) + uid % 7 * MINUTE)
        api.apply_definitions(AWAY, now=NOW)
        before = members()
        catalog = GroupCatalog.load()
        with CaptureQueriesContext(connection) as queries:
            report = process_flips(catalog, NOW + timedelta(hours=1))
        assert members() - before == flipping
        return report.users_evaluated, len(queries)

    small, large = run(100), run(2000)
    assert small[0] == large[0] == 3  # only the flipping users were evaluated
    assert small[1] == large[1]  # and with the same queries, whatever the population


def test_groups_never_synced_have_no_window_yet_and_frozen_groups_do_not_flip():
    user(1, login=5)
    api.apply_definitions([{**AWAY, "name": "unsynced"}], sync=False, now=NOW)
    api.apply_definitions([{**AWAY, "name": "frozen"}], now=NOW)
    api.apply_definitions([{**AWAY, "name": "frozen", "frozen": True}], now=NOW)
    report = process_flips(GroupCatalog.load(), NOW + timedelta(days=6))
    assert report.users_evaluated == 0 and members("unsynced") == members("frozen") == set()


def test_a_sync_moves_the_window_so_flips_are_not_evaluated_twice():
    user(1, login=5)
    api.apply_definitions(AWAY, now=NOW)
    api.sync_groups([api.find_group("away")], now=NOW + timedelta(days=6))
    assert members() == {1}
    assert process_flips(GroupCatalog.load(), NOW + timedelta(days=6, minutes=1)).users_evaluated == 0


def test_flips_reach_exclusive_siblings():
    user(1, login=5)
    api.apply_definitions([
        {**AWAY, "name": "lapsed", "rule": leaf("last_login", ">", days=10), "exclusive_set": "e", "priority": 2},
        {**AWAY, "name": "everyone", "rule": {"not": leaf("manual", "in", user_ids=[99])}, "exclusive_set": "e"},
    ], now=NOW)
    assert members("everyone") == {1}
    process_flips(GroupCatalog.load(), NOW + timedelta(days=5, minutes=1))
    assert (members("lapsed"), members("everyone")) == ({1}, set())


@settings(max_examples=100, deadline=None)
@given(marks=st.lists(st.integers(min_value=-180, max_value=50 * 60), min_size=1, max_size=12),
       days=st.integers(min_value=0, max_value=30), start=st.integers(min_value=-20 * 24 * 60, max_value=20 * 24 * 60),
       length=st.integers(min_value=0, max_value=48 * 60), operator=st.sampled_from([">", "<="]))
def test_last_login_flips_cover_every_change(marks, days, start, length, operator):
    """For any window, every user whose answer changes in it is among ``flips``. Users are placed so that their
    N-day mark falls ``marks`` minutes after the window opens: around and on its bounds."""
    UserFact.objects.all().delete()
    after = NOW + timedelta(minutes=start)
    for uid, mark in enumerate(marks, start=1):
        UserFact.objects.create(user_id=uid, last_login=after - timedelta(days=days) + timedelta(minutes=mark))
    flips_cover_changes(leaf("last_login", operator, days=days), after, after + timedelta(minutes=length))
