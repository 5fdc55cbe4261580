"""Properties of the engine over random facts and random rule trees (hypothesis).

1. Set-based and per-user evaluation select the same users, for any tree in any scope.
2. Incremental evaluation, in any batches and order, with users repeated, ends in exactly the memberships
   a full sync gives; after facts change, re-evaluating only the users whose facts changed is enough.
3. No user is ever in two groups of one exclusive set, and each is in the first group (by precedence)
   they qualify for.
"""

import random
from contextlib import contextmanager
from unittest.mock import patch

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groups_consumer import api
from groups_consumer.engine import full_sync as sync_module
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import full_sync
from groups_consumer.engine.incremental import evaluate_users
from groups_consumer.models import Cause, CourseFact, Membership, UserFact
from groups_consumer.plugins import registry
from groups_consumer.testing import evaluate_both_ways
from tests.facts import NOW, days_ago, leaf

pytestmark = pytest.mark.django_db
settings.register_profile("engine", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("engine")

COURSES = ["course-v1:OrgA+C1+R", "course-v1:OrgA+C2+R", "course-v1:OrgB+C1+R"]
SCOPES = [{"type": "instance"}, {"type": "org", "key": "OrgA"}, {"type": "course", "key": COURSES[0]}]
GRADES = [0.0, 0.2, 0.4, 0.6, 1.0]
MODES = ["audit", "verified", None]
#: Days ago of logins / registrations and the thresholds of rules share values, so boundaries are hit often.
DAYS = [0, 5, 10, 20]
USER_IDS = range(1, 11)

course_state = st.fixed_dictionaries({
    "mode": st.sampled_from(MODES), "active": st.booleans(),
    "grade": st.none() | st.sampled_from(GRADES), "passing": st.none() | st.booleans()})
learner = st.fixed_dictionaries({
    "registered": st.none() | st.sampled_from(DAYS), "login": st.none() | st.sampled_from(DAYS),
    "country": st.sampled_from([None, "ES", "PT", "FR"]),
    "courses": st.dictionaries(st.sampled_from(COURSES), course_state, max_size=3)})
population = st.dictionaries(st.sampled_from(USER_IDS), learner, min_size=3, max_size=len(USER_IDS))


def course_leaves(scope):
    if scope["type"] == "course":
        keys = st.just({})
    else:
        allowed = [c for c in COURSES if scope["type"] == "instance" or c.split(":")[1].startswith(scope["key"] + "+")]
        keys = st.sampled_from(allowed).map(lambda key: {"course_key": key})
    modes = st.lists(st.sampled_from(["audit", "verified", "honor"]), min_size=1, max_size=2, unique=True)
    return st.one_of(
        st.tuples(st.sampled_from(["in", "not_in"]), modes, keys).map(
            lambda t: leaf("enrollment_mode", t[0], modes=t[1], **t[2])),
        st.tuples(st.sampled_from(["<", "<=", ">", ">="]), st.sampled_from(GRADES), keys).map(
            lambda t: leaf("course_grade", t[0], percent=t[1], **t[2])),
        st.tuples(st.booleans(), keys).map(lambda t: leaf("course_passing", "=", passing=t[0], **t[1])))


def leaves(scope):
    return st.one_of(
        st.tuples(st.sampled_from([">", "<="]), st.sampled_from(DAYS)).map(
            lambda t: leaf("last_login", t[0], days=t[1])),
        st.tuples(st.sampled_from(["in", "not_in"]),
                  st.lists(st.sampled_from(["ES", "PT", "FR"]), min_size=1, max_size=2, unique=True)).map(
            lambda t: leaf("country", t[0], countries=t[1])),
        st.lists(st.sampled_from(USER_IDS), max_size=6, unique=True).map(
            lambda ids: leaf("manual", "in", user_ids=ids)),
        course_leaves(scope))


def rules(scope):
    return st.recursive(leaves(scope), lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c})), max_leaves=6)


scoped_rule = st.sampled_from(SCOPES).flatmap(lambda scope: st.tuples(st.just(scope), rules(scope)))


@contextmanager
def rolled_back():
    """Each hypothesis example sees an empty database."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)
    registry.reset()


def store(facts):
    for uid, data in facts.items():
        UserFact.objects.update_or_create(user_id=uid, defaults={
            "registered_at": days_ago(data["registered"]), "last_login": days_ago(data["login"]),
            "country": data["country"]})
        CourseFact.objects.filter(user_id=uid).delete()
        CourseFact.objects.bulk_create(CourseFact(
            user_id=uid, course_key=key, org=key.split(":")[1].split("+")[0], mode=s["mode"], is_active=s["active"],
            grade=s["grade"], is_passing=s["passing"]) for key, s in data["courses"].items())


def memberships():
    return set(Membership.objects.values_list("group__name", "user_id"))


@given(facts=population, scope_and_rule=scoped_rule)
def test_set_based_and_per_user_evaluation_agree(facts, scope_and_rule):
    scope, rule = scope_and_rule
    with rolled_back():
        store(facts)
        evaluate_both_ways({"name": "g", "scope": scope, "rule": rule}, NOW)


group_specs = st.lists(st.tuples(scoped_rule, st.integers(0, 3), st.sampled_from([True, True, False])),
                      min_size=2, max_size=4)


@given(before=population, after=population, specs=group_specs, seed=st.integers(0, 2**32))
def test_incremental_equals_full_sync_and_exclusivity_holds(before, after, specs, seed):
    rng = random.Random(seed)
    definitions = [{"name": f"g{i}", "scope": scope, "rule": rule, "priority": priority,
                    "exclusive_set": "set" if exclusive else None}
                   for i, ((scope, rule), priority, exclusive) in enumerate(specs)]
    with rolled_back():
        api.apply_definitions(definitions, sync=False, now=NOW)
        store(before)
        catalog = GroupCatalog.load()

        # Incremental, from nothing: every user, in random batches, in random order, some twice.
        users = list(before) + rng.sample(list(before), k=len(before) // 2)
        rng.shuffle(users)
        while users:
            size = rng.randint(1, 4)
            batch, users = users[:size], users[size:]
            evaluate_users(catalog, catalog.groups.values(), batch, cause=Cause.EVENT, cause_id="e", now=NOW)
        incremental = memberships()
        full_sync(catalog, catalog.groups.values(), now=NOW)
        assert memberships() == incremental
        assert_exclusive_and_by_precedence(catalog)

        # Memberships drift (lost, or given to users outside the group): a sync in ranges of any size, which
        # decides again only the users it finds changed, or whole ranges, converges back.
        drift(rng, catalog)
        with patch.object(sync_module, "LOCK_FIRST_ABOVE", rng.choice([1, 100])):
            full_sync(catalog, catalog.groups.values(), now=NOW, chunk_size=rng.choice([1, 2, 1000]))
        assert memberships() == incremental

        # Facts change: re-evaluating only the users whose facts changed converges to the full sync.
        store(after)
        changed = [uid for uid in set(before) | set(after) if before.get(uid) != after.get(uid)]
        rng.shuffle(changed)
        for uid in changed:
            evaluate_users(catalog, catalog.groups.values(), [uid], cause=Cause.EVENT, cause_id="e", now=NOW)
        incremental = memberships()
        full_sync(catalog, catalog.groups.values(), now=NOW)
        assert memberships() == incremental
        assert_exclusive_and_by_precedence(catalog)


def drift(rng, catalog):
    """Delete half of the memberships and add some at random (never a user's second of one exclusive set)."""
    stored = list(Membership.objects.all())
    for membership in rng.sample(stored, k=len(stored) // 2):
        membership.delete()
    in_a_set = set(Membership.objects.filter(exclusive_set__isnull=False).values_list("user_id", flat=True))
    for group in catalog.groups.values():
        for uid in rng.sample(USER_IDS, k=2):
            if group.exclusive_set is not None:
                if uid in in_a_set:
                    continue
                in_a_set.add(uid)
            Membership.objects.get_or_create(group_id=group.id, user_id=uid,
                                             defaults={"exclusive_set": group.exclusive_set, "joined_at": NOW})


def assert_exclusive_and_by_precedence(catalog):
    in_set = list(Membership.objects.filter(exclusive_set="set").values_list("user_id", flat=True))
    assert len(in_set) == len(set(in_set)), "a user is in two groups of one exclusive set"
    ordered = catalog.exclusive_set("set")
    user_ids = list(UserFact.objects.values_list("user_id", flat=True))
    snapshots = {"facts": registry.backend("facts").snapshots(user_ids)}
    for uid in user_ids:
        first = next((g.name for g in ordered if g.qualifies(snapshots, uid, NOW)), None)
        actual = Membership.objects.filter(user_id=uid, exclusive_set="set").values_list("group__name", flat=True)
        assert list(actual) == ([first] if first else [])
