"""Full sync writes only differences, in bounded batches, and converges."""

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Q
from structlog.testing import capture_logs

from groups_consumer import api
from groups_consumer.models import Membership, MembershipChange, UserFact
from groups_consumer.shared import EVERYONE, Query, Selection
from groups_consumer.users import ranges as user_ranges
from tests.facts import COURSE, NOW, OTHER_COURSE, course, days_ago, leaf, user

pytestmark = pytest.mark.django_db


def member_ids(name):
    return set(api.find_group(name).memberships.values_list("user_id", flat=True))


def test_sync_writes_only_differences_and_keeps_joined_at():
    for uid in range(1, 21):
        user(uid, login=uid)  # user N last logged in N days ago
    api.apply_definitions({"name": "away", "rule": leaf("last_login", ">", days=10)}, now=NOW)
    assert member_ids("away") == set(range(11, 21))
    joined_before = dict(Membership.objects.values_list("user_id", "joined_at"))

    report = api.sync_groups([api.find_group("away")], now=NOW)
    assert len(report.changes) == 0 and report.users_scanned == 20
    assert MembershipChange.objects.count() == 10

    UserFact.objects.filter(user_id=15).update(last_login=days_ago(0))
    UserFact.objects.filter(user_id=3).update(last_login=days_ago(50))
    report = api.sync_groups([api.find_group("away")], now=NOW)
    away = report.changes.of(api.find_group("away").id)
    assert (away.joined, away.left) == (1, 1)
    assert away.examples == [{"user_id": 3, "change": "joined"}, {"user_id": 15, "change": "left"}]
    assert dict(Membership.objects.filter(user_id=20).values_list("user_id", "joined_at")) == {20: joined_before[20]}
    log = MembershipChange.objects.filter(cause_id=report.run_id).values_list("user_id", "kind", "cause")
    assert sorted(log) == [(3, "joined", "sync"), (15, "left", "sync")]


def test_small_batches_give_the_same_result_as_one_batch():
    for uid in range(1, 31):
        user(uid, login=uid % 7 * 3, country="ES" if uid % 2 else "PT")
        course(uid, grade=uid / 30)
    definitions = [
        {"name": "mixed", "scope": {"type": "course", "key": "course-v1:Demo+C1+2026"},
         "rule": {"all": [leaf("manual", "in", user_ids=list(range(1, 31, 3))),
                          {"not": leaf("country", "in", countries=["PT"])},
                          leaf("course_grade", ">=", percent=0.2)]}},
        {"name": "any", "rule": {"any": [leaf("manual", "in", user_ids=[2, 4]), leaf("last_login", ">", days=10)]}},
        # Course subqueries resolved per range (``Query.in_range``) under any / not, in an org scope.
        {"name": "org-mixed", "scope": {"type": "org", "key": "Demo"},
         "rule": {"any": [{"not": leaf("course_grade", "<", percent=0.5, course_key="course-v1:Demo+C1+2026")},
                          leaf("enrollment_mode", "not_in", modes=["audit"], course_key="course-v1:Demo+C1+2026")]}},
    ]
    api.apply_definitions(definitions, sync=False, now=NOW)
    api.sync_groups(api.groups_matching(), now=NOW, chunk_size=4)
    small = {name: member_ids(name) for name in ("mixed", "any", "org-mixed")}
    Membership.objects.all().delete()
    api.sync_groups(api.groups_matching(), now=NOW, chunk_size=1000)
    assert small == {name: member_ids(name) for name in ("mixed", "any", "org-mixed")}
    assert small["org-mixed"] == set(range(15, 31))  # grades of 0.5 and more
    assert small["mixed"] == {7, 13, 19, 25}


def test_user_ranges_cover_every_id_with_bounded_batches():
    for uid in (5, 9, 12, 40, 41, 1000):
        user(uid)
    ranges = list(user_ranges(2))
    assert [(r.after, r.upto) for r in ranges] == [(None, 9), (9, 40), (40, 1000), (1000, None)]
    assert all(sum(uid in r for r in ranges) == 1 for uid in (-3, 5, 9, 10, 41, 999, 1000, 10**9))


def test_sync_reports_progress_in_logs(caplog):
    for uid in range(1, 6):
        user(uid)
    api.apply_definitions({"name": "all", "rule": leaf("manual", "in", user_ids=[1, 2])}, sync=False)
    with capture_logs() as logs:
        api.sync_groups(api.groups_matching(), chunk_size=2)
    events = [entry["event"] for entry in logs]
    assert events[0] == "sync_started" and events[-1] == "sync_finished"
    assert logs[-1]["users"] == 5 and logs[-1]["joined"] == 2


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="selections as SQL: PostgreSQL only")
def test_a_condition_joined_to_a_related_table_selects_each_user_once_in_sql():
    user(1)
    course(1)
    course(1, OTHER_COURSE)
    sql, params = Query(Q(courses__is_active=True)).sql(EVERYONE)  # a plugin's condition may join
    with connection.cursor() as db:
        db.execute(sql, params)
        assert db.fetchall() == [(1,)]


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="selections as SQL: PostgreSQL only")
def test_the_range_statement_built_once_per_shape_is_the_one_built_for_each_range():
    from groups_consumer.engine.catalog import GroupCatalog
    from groups_consumer.engine.range_differences import RangeComparison
    from groups_consumer.shared import UserRange

    for uid in range(1, 13):
        user(uid, login=uid, country="ES" if uid % 2 else "FR")
        course(uid, grade=uid / 12)
    api.apply_definitions([
        {"name": "away", "rule": leaf("last_login", ">", days=6)},
        {"name": "spain", "rule": leaf("country", "in", countries=["ES"]), "exclusive_set": "s", "priority": 1},
        {"name": "passing", "rule": {"all": [leaf("course_grade", ">=", percent=0.5, course_key=COURSE),
                                             {"not": leaf("country", "in", countries=["PT"])}]},
         "exclusive_set": "s", "priority": 2},
        {"name": "picked", "rule": leaf("manual", "in", user_ids=[2, 7])},
    ], now=NOW)
    catalog = GroupCatalog.load()
    selections = {group.id: group.members(NOW) for group in catalog.groups.values()}
    resolved_here = api.find_group("picked").id  # as a plugin's selection resolved in Python would be
    selections[resolved_here] = ResolvedHere(selections[resolved_here])
    for chosen in (selections, {gid: s for gid, s in selections.items() if gid != resolved_here}):
        comparison = RangeComparison(catalog, chosen)
        for users in (UserRange(None, 4), UserRange(4, 8), UserRange(8, 10), UserRange(10, None), UserRange(None, 6),
                      UserRange(6, 9)):
            for only in (None, [5, 9]):
                assert comparison._statement(users, only) == RangeComparison(catalog, chosen)._build(users, only)
        # User ids resolved per range: no template then; one per shape of range otherwise.
        templates = list(comparison._templates.values())
        assert templates == [] if chosen is selections else (len(templates) == 6 and None not in templates)


class ResolvedHere(Selection):
    """A selection resolved in Python (the default ``Selection.sql``)."""

    def __init__(self, inner):
        self.inner = inner

    def resolve(self, within):
        return self.inner.resolve(within)


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="PostgreSQL's planner statistics")
def test_a_sync_that_rewrites_much_of_the_memberships_refreshes_their_planner_statistics():
    def counted(model):
        with connection.cursor() as db:
            db.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
            return db.fetchone()[0]

    for uid in range(1, 41):
        user(uid, login=uid)
    with capture_logs() as logs:
        api.apply_definitions({"name": "away", "rule": leaf("last_login", ">", days=10)}, now=NOW)
    [finished] = [entry for entry in logs if entry["event"] == "sync_finished"]
    assert finished["analyzed"] == ["Membership", "MembershipChange"]
    assert counted(Membership) == counted(MembershipChange) == 30  # what the event path is now planned from

    UserFact.objects.filter(user_id=15).update(last_login=days_ago(0))  # 1 change against 30 rows: not stale
    with capture_logs() as logs:
        api.sync_groups([api.find_group("away")], now=NOW)
    [finished] = [entry for entry in logs if entry["event"] == "sync_finished"]
    assert finished["analyzed"] == []
