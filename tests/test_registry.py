"""Plugin discovery: entry points, duplicates, missing plugins, a third-party package, a second backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from pydantic import BaseModel
from structlog.testing import capture_logs

from criteria.country import Country
from criteria.last_login import LastLogin
from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import full_sync
from groups_consumer.engine.incremental import evaluate_users
from groups_consumer.facts.snapshot import CourseState, LearnerSnapshot
from groups_consumer.models import Cause, Group, Membership, Scope
from groups_consumer.plugins import registry
from groups_consumer.plugins.criterion import CriterionType
from groups_consumer.plugins.registry import Plugin, PluginRegistry
from tests.facts import NOW, days_ago, leaf, user
from tests.memory_backend import InMemoryLearnerFacts

BUILT_INS = {"last_login", "enrollment_mode", "course_grade", "course_passing", "country", "manual"}


def test_built_in_types_come_from_entry_points_with_their_package():
    types = registry.criterion_types()
    assert set(types.plugins) >= BUILT_INS
    assert types.plugins["country"].source == "groups-consumer"
    assert types.plugins["country"].target == "criteria.country:Country"


def test_duplicate_names_are_reported_naming_both_sources_and_refused():
    types = PluginRegistry("groups_consumer.criteria")
    with capture_logs() as logs:
        types.add(Plugin("country", Country, "criteria.country:Country", "groups-consumer"),
                  Plugin("country", Country, "acme.geo:Country", "acme-geo"))
    reason = types.unavailable_reason("country")
    assert "criteria.country:Country (package groups-consumer)" in reason
    assert "acme.geo:Country (package acme-geo)" in reason
    assert logs[0]["event"] == "plugin_name_conflict" and "acme-geo" in logs[0]["sources"]
    with pytest.raises(registry.PluginUnavailable):
        types.get("country")


def test_a_plugin_registered_under_another_name_is_refused():
    types = PluginRegistry("groups_consumer.criteria")
    with capture_logs():
        types.add(Plugin("seen", LastLogin, "criteria.last_login:LastLogin", "groups-consumer"),
                  check=registry._check_criterion_type)
    assert "declares name 'last_login' but is registered as 'seen'" in types.unavailable_reason("seen")


@pytest.mark.django_db
def test_a_missing_plugin_breaks_only_the_groups_using_it():
    user(1, login=30)
    scope = Scope.objects.create(type="instance", key="")
    broken = Group.objects.create(name="needs-plugin", scope=scope, rule=leaf("vanished", "=", x=1))
    healthy = Group.objects.create(name="inactive", scope=scope, rule=leaf("last_login", ">", days=10))
    Membership.objects.create(group=broken, user_id=1, joined_at=NOW)

    with capture_logs() as logs:
        catalog = GroupCatalog.load()
    full_sync(catalog, catalog.groups.values(), now=NOW)

    broken.refresh_from_db()
    assert "'vanished' is not installed (no entry point 'vanished' in groups_consumer.criteria)" in broken.broken_reason
    assert any(entry["event"] == "group_broken" and entry["group"] == "needs-plugin" for entry in logs)
    assert list(Membership.objects.filter(group=broken).values_list("user_id", flat=True)) == [1]  # kept as is
    assert list(Membership.objects.filter(group=healthy).values_list("user_id", flat=True)) == [1]

    # The plugin comes back (installed again): the reason is cleared at the next load.
    registry.criterion_types().add(Plugin("vanished", _AlwaysTrue, "tests:AlwaysTrue", "tests"))
    GroupCatalog.load()
    broken.refresh_from_db()
    assert broken.broken_reason == ""


class _NoConfig(BaseModel):
    x: int


class _AlwaysTrue(CriterionType):
    name = "vanished"
    Config = _NoConfig
    operators = ("=",)

    def select(self, facts, now):
        return facts.population("instance", "")

    def test(self, learner, now):
        return True


@pytest.mark.slow
def test_an_installed_plugin_package_appears_and_a_clash_is_reported(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(Path(__file__).parent / "plugin_package")],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    out = subprocess.run([str(Path(sys.executable).parent / "groups-consumer"), "criteria", "--json"], env=env,
                         check=True, capture_output=True, text=True)
    listing = {entry["name"]: entry for entry in json.loads(out.stdout)["criteria"]}
    assert listing["username_prefix"]["package"] == "demo-criteria-plugin"
    assert listing["username_prefix"]["config_schema"]["required"] == ["prefix"]
    assert "criteria.country:Country (package groups-consumer)" in listing["country"]["error"]
    assert "demo_criteria_plugin:ShadowCountry (package demo-criteria-plugin)" in listing["country"]["error"]
    assert "plugin_name_conflict" in out.stderr
    assert BUILT_INS - {"country"} <= set(listing)


@pytest.mark.django_db
def test_criteria_work_over_a_second_backend(settings):
    settings.GROUPS_CONSUMER_BACKENDS = {"facts": "tests.memory_backend.InMemoryLearnerFacts"}
    registry.reset()
    key = "course-v1:Demo+C1+2026"
    InMemoryLearnerFacts.learners = {
        1: LearnerSnapshot(1, country="ES", last_login=days_ago(20),
                           courses={key: CourseState("Demo", "audit", True, 0.2)}),
        2: LearnerSnapshot(2, country="ES", last_login=days_ago(1),
                           courses={key: CourseState("Demo", "audit", True, 0.9)}),
        3: LearnerSnapshot(3, country="PT", last_login=days_ago(20)),
    }
    api.apply_definitions([
        {"name": "spain-struggling", "scope": {"type": "course", "key": key},
         "rule": {"all": [leaf("country", "in", countries=["ES"]), leaf("course_grade", "<", percent=0.5)]}},
        {"name": "away", "rule": {"not": leaf("last_login", "<=", days=10)}},
    ], now=NOW)
    assert api.find_group("spain-struggling").memberships.get().user_id == 1
    assert set(api.find_group("away").memberships.values_list("user_id", flat=True)) == {1, 3}

    InMemoryLearnerFacts.learners[1] = LearnerSnapshot(1, country="PT", last_login=days_ago(0))
    catalog = GroupCatalog.load()
    diff = evaluate_users(catalog, catalog.groups.values(), [1], cause=Cause.EVENT, cause_id="e1", now=NOW)
    assert sorted(diff.left) == sorted([(api.find_group("spain-struggling").id, 1), (api.find_group("away").id, 1)])
    assert InMemoryLearnerFacts.__name__ == registry.backend("facts").__class__.__name__
    call_command("groups_criteria")  # still lists the types with a replaced backend


class _NoOperators(CriterionType):
    name = "half-done"
    Config = _NoConfig

    def select(self, facts, now):
        return facts.population("instance", "")

    def test(self, learner, now):
        return True


class _NoTest(CriterionType):
    name = "half-done"
    Config = _NoConfig
    operators = ("=",)

    def select(self, facts, now):
        return facts.population("instance", "")


class _ConfigNotAModel(_AlwaysTrue):
    name = "half-done"
    Config = dict


@pytest.mark.parametrize(("plugin", "reason"), [
    (_NoOperators, "misses the class attribute operators"),
    (_NoTest, "does not implement test"),
    (_ConfigNotAModel, "Config is not a pydantic model class"),
])
@pytest.mark.django_db
def test_an_incomplete_criterion_class_is_reported_and_breaks_only_its_groups(plugin, reason):
    user(1, login=30)
    with capture_logs() as logs:
        registry.criterion_types().add(Plugin("half-done", plugin, "acme.half:Done", "acme-half"),
                                       check=registry._check_criterion_type)
    failure = next(entry for entry in logs if entry["event"] == "plugin_load_failed")
    assert failure["name"] == "half-done" and "acme.half:Done (package acme-half)" in failure["reason"]
    assert reason in failure["reason"]
    scope = Scope.objects.create(type="instance", key="")
    broken = Group.objects.create(name="uses-it", scope=scope, rule=leaf("half-done", "=", x=1))
    healthy = Group.objects.create(name="inactive", scope=scope, rule=leaf("last_login", ">", days=10))
    catalog = GroupCatalog.load()
    full_sync(catalog, catalog.groups.values(), now=NOW)
    broken.refresh_from_db()
    assert reason in broken.broken_reason and "acme-half" in broken.broken_reason
    assert list(Membership.objects.filter(group=healthy).values_list("user_id", flat=True)) == [1]
