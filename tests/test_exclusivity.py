"""Mutual exclusivity at assignment time, in code and in the database."""

import pytest
from django.db import IntegrityError, transaction

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.incremental import evaluate_users
from groups_consumer.models import Cause, Group, Membership, MembershipChange, UserFact
from tests.facts import NOW, days_ago, leaf, user

pytestmark = pytest.mark.django_db


def set_member(name, rule, priority=0, exclusive_set="engagement"):
    return {"name": name, "rule": rule, "exclusive_set": exclusive_set, "priority": priority}


def group_of(user_id, exclusive_set="engagement"):
    return list(Membership.objects.filter(user_id=user_id, exclusive_set=exclusive_set)
                .values_list("group__name", flat=True))


def test_highest_priority_wins_and_ties_break_by_name():
    user(1, login=30, country="ES")
    user(2, login=1, country="ES")
    api.apply_definitions([
        set_member("b-inactive", leaf("last_login", ">", days=10), priority=10),
        set_member("a-spain", leaf("country", "in", countries=["ES"]), priority=10),
        set_member("z-everyone", leaf("manual", "in", user_ids=[1, 2]), priority=1),
    ], now=NOW)
    assert group_of(1) == ["a-spain"]  # qualifies for all three; tie at 10 broken by name
    assert group_of(2) == ["a-spain"]


def test_when_the_winner_stops_matching_the_next_group_takes_the_user_in_the_same_transaction():
    user(1, login=30, country="ES")
    api.apply_definitions([
        set_member("inactive", leaf("last_login", ">", days=10), priority=10),
        set_member("spain", leaf("country", "in", countries=["ES"]), priority=5),
    ], now=NOW)
    assert group_of(1) == ["inactive"]

    UserFact.objects.filter(user_id=1).update(last_login=days_ago(0))
    catalog = GroupCatalog.load()
    inactive = next(g for g in catalog.groups.values() if g.name == "inactive")
    with transaction.atomic():
        diff = evaluate_users(catalog, [inactive], [1], cause=Cause.EVENT, cause_id="login-42", now=NOW)
    assert group_of(1) == ["spain"]  # the sibling was re-evaluated though only 'inactive' was affected
    assert len(diff) == 2
    changes = MembershipChange.objects.filter(cause_id="login-42").values_list("group__name", "kind")
    assert sorted(changes) == [("inactive", "left"), ("spain", "joined")]


def test_the_database_refuses_two_groups_of_one_set_for_a_user():
    user(1)
    api.apply_definitions([set_member("a", leaf("manual", "in", user_ids=[])),
                           set_member("b", leaf("manual", "in", user_ids=[]))], now=NOW)
    a, b = Group.objects.order_by("name")
    Membership.objects.create(group=a, user_id=1, exclusive_set="engagement", joined_at=NOW)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(group=b, user_id=1, exclusive_set="engagement", joined_at=NOW)


def test_the_database_lets_a_user_into_any_number_of_groups_outside_exclusive_sets():
    # One unique (user, exclusive set) index without a condition serves both: NULLs are distinct in it.
    user(1)
    api.apply_definitions([set_member(name, leaf("manual", "in", user_ids=[]), exclusive_set=None)
                           for name in ("a", "b", "c")], now=NOW)
    for group in Group.objects.all():
        Membership.objects.create(group=group, user_id=1, exclusive_set=None, joined_at=NOW)
    assert Membership.objects.filter(user_id=1).count() == 3


def test_a_group_that_cannot_be_evaluated_keeps_its_users_out_of_its_siblings():
    user(1)
    api.apply_definitions([set_member("top", leaf("manual", "in", user_ids=[1]), priority=10),
                           set_member("low", leaf("manual", "in", user_ids=[1]), priority=1)], now=NOW)
    assert group_of(1) == ["top"]
    Group.objects.filter(name="top").update(rule=leaf("uninstalled", "=", x=1))
    api.sync_groups(Group.objects.all(), now=NOW)
    assert group_of(1) == ["top"]
    assert "uninstalled" in Group.objects.get(name="top").broken_reason


def test_changing_a_groups_exclusive_set_rederives_its_members():
    user(1)
    api.apply_definitions([set_member("a", leaf("manual", "in", user_ids=[1]), priority=10),
                           set_member("b", leaf("manual", "in", user_ids=[1]), priority=1)], now=NOW)
    assert group_of(1) == ["a"]
    api.apply_definitions(set_member("a", leaf("manual", "in", user_ids=[1]), priority=10, exclusive_set="other"),
                          now=NOW)
    assert group_of(1) == ["b"] and group_of(1, "other") == ["a"]


def test_explain_follows_arbitration_when_a_broken_group_holds_the_user():
    user(1)
    api.apply_definitions([set_member("low", leaf("manual", "in", user_ids=[1]), priority=1)], now=NOW)
    Group.objects.filter(name="low").update(rule=leaf("uninstalled", "=", x=1))
    api.apply_definitions(set_member("top", leaf("manual", "in", user_ids=[1]), priority=10), now=NOW)
    assert group_of(1) == ["low"]  # the broken group keeps its user
    text = "\n".join(api.explain(1, api.find_group("top"), now=NOW).lines)
    assert "decision: user goes to low (instance)" in text
