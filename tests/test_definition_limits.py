"""Limits on definitions (untrusted input), definitions the database cannot evaluate, and stored groups that
fail to evaluate: refused with the limit and the field, or marked broken while the other groups go on."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL
from pydantic import BaseModel
from structlog.testing import capture_logs

from groups_consumer import api, definitions
from groups_consumer.definition_limits import DefinitionLimits
from groups_consumer.engine import evaluability
from groups_consumer.engine.catalog import UNEVALUABLE, GroupCatalog
from groups_consumer.errors import DefinitionError
from groups_consumer.models import Group, Membership, Scope
from groups_consumer.plugins import registry
from groups_consumer.plugins.criterion import CriterionType, UpdateMethod
from groups_consumer.plugins.registry import Plugin
from groups_consumer.scheduling.scheduler import Scheduler
from groups_consumer.shared import Query
from groups_consumer.status import collect
from tests.facts import NOW, leaf, user

pytestmark = pytest.mark.django_db
INSTANCE = {"type": "instance"}
SETTING = "GROUPS_CONSUMER_DEFINITION_LIMITS"


def doc(rule, name="g", **extra):
    return {"name": name, "scope": INSTANCE, "rule": rule, **extra}


def nested_not(depth, inner=None):
    """``depth`` nested ``not`` around a leaf, built without recursion."""
    rule = inner or leaf("manual", "in", user_ids=[1])
    for _ in range(depth):
        rule = {"not": rule}
    return rule


def nested_not_text(depth):
    """The JSON text of a document with ``depth`` nested ``not`` (json.dumps would recurse as deep)."""
    return ('{"name": "deep", "scope": {"type": "instance"}, "rule": ' + '{"not": ' * depth
            + json.dumps(leaf("manual", "in", user_ids=[1])) + "}" * depth + "}")


def countries(n):
    return {"any": [leaf("country", "in", countries=["ES"]) for _ in range(n)]}


def limit(name, value):
    return f"the limit is {value} ({SETTING}[{name!r}])"


def refused(document):
    with pytest.raises(DefinitionError) as error:
        api.validate_definition(document)
    return error.value


# Each limit, at its default, naming the limit and the field.

def test_rule_depth_is_limited():
    error = refused(doc(nested_not(32)))
    assert error.field == "rule" + ".not" * 32
    assert error.message == f"rules nested more than 32 deep; {limit('max_depth', 32)}"
    api.validate_definition(doc(nested_not(31)))  # 31 nots around a leaf: 32 deep


def test_config_nesting_is_limited_too():
    deep = [1]
    for _ in range(32):
        deep = [deep]
    error = refused(doc({"all": [leaf("country", "in", countries=["ES"]), leaf("manual", "in", user_ids=deep)]}))
    assert error.field == "rule.all[1].config.user_ids" + "[0]" * 31
    assert error.message == f"objects and lists nested more than 32 deep; {limit('max_depth', 32)}"


def test_criteria_are_limited_per_list_and_per_rule():
    assert str(refused(doc(countries(201)))) == f"rule.any: 201 criteria; {limit('max_leaves', 200)}"
    error = refused(doc({"all": [countries(150), {"not": countries(60)}]}))
    assert str(error) == f"rule: more than 200 criteria; {limit('max_leaves', 200)}"
    api.validate_definition(doc({"all": [countries(150), {"not": countries(50)}]}))


def test_config_lists_are_limited():
    error = refused(doc({"all": [leaf("country", "in", countries=["ES"]),
                                 leaf("manual", "in", user_ids=list(range(100_001)))]}))
    assert str(error) == f"rule.all[1].config.user_ids: 100001 items; {limit('max_list_items', 100000)}"
    error = refused(doc(leaf("enrollment_mode", "in", modes=["audit"] * 100_001, course_key="course-v1:A+B+C")))
    assert str(error) == f"rule.config.modes: 100001 items; {limit('max_list_items', 100000)}"
    api.validate_definition(doc(leaf("manual", "in", user_ids=list(range(1, 100_001)))))


def test_document_size_is_limited():
    big = doc(leaf("country", "in", countries=["ES" * 500] * 5000))  # about 5 MB: refused while walking it
    assert str(refused(big)) == f"(document): more than 2000000 bytes of JSON; {limit('max_document_bytes', 2000000)}"


def test_a_file_holds_a_bounded_number_of_documents(settings):
    settings.GROUPS_CONSUMER_DEFINITION_LIMITS = {"max_documents": 2}
    documents = [doc(leaf("country", "in", countries=["ES"]), name=f"g{i}") for i in range(3)]
    with pytest.raises(DefinitionError, match=r"^\(list\): 3 documents; the limit is 2 "):
        api.apply_definitions(documents)
    with pytest.raises(DefinitionError, match=r"^\(list\): more than 2 documents; the limit is 2 "):
        definitions.decode(json.dumps(documents))
    assert not Group.objects.exists()


# The cases of the issue, by the API and by the command line: no RecursionError, nothing saved.

def test_5000_nested_not_and_5000_criteria_are_refused_cleanly_by_the_api():
    with pytest.raises(DefinitionError, match=r"^rule(\.not){32}: rules nested more than 32 deep; the limit is 32 "):
        api.apply_definitions(doc(nested_not(5000)))
    with pytest.raises(DefinitionError, match=r"^\[1\]\.rule\.any: 5000 criteria; the limit is 200 "):
        api.apply_definitions([doc(leaf("country", "in", countries=["ES"])), doc(countries(5000), name="wide")])
    with pytest.raises(DefinitionError, match=r"^rule\.config\.user_ids: 2000000 items; the limit is 100000 "):
        api.preview_count(doc(leaf("manual", "in", user_ids=list(range(2_000_000)))))
    assert not Group.objects.exists()


def test_the_command_refuses_them_with_a_command_error(tmp_path):
    deep, wide, many = tmp_path / "deep.json", tmp_path / "wide.json", tmp_path / "many.json"
    deep.write_text(nested_not_text(5000))
    wide.write_text(json.dumps([doc(countries(5000), name="wide")]))
    many.write_text(json.dumps(doc(leaf("manual", "in", user_ids=list(range(400_000))))))  # 3.1 MB
    with pytest.raises(CommandError) as error:
        call_command("groups_apply", str(deep))
    assert str(error.value).startswith("rule.not.not.not") and str(error.value).endswith(
        f": nested more than 98 levels of JSON deep; {limit('max_depth', 32)}")
    with pytest.raises(CommandError, match=r"^\[0\]\.rule\.any: 5000 criteria; the limit is 200 "):
        call_command("groups_apply", str(wide))
    with pytest.raises(CommandError, match=r"^\(document\): more than 2000000 bytes of JSON; the limit is 2000000 "):
        call_command("groups_apply", str(many))
    assert not Group.objects.exists()


def test_json_text_is_measured_without_its_blanks(settings):
    settings.GROUPS_CONSUMER_DEFINITION_LIMITS = {"max_document_bytes": 1000}
    small = doc(leaf("manual", "in", user_ids=list(range(100))))
    assert definitions.decode(json.dumps(small, indent=8)) == small  # pretty-printed text over 1000 bytes
    large = doc(leaf("manual", "in", user_ids=list(range(300))))
    with pytest.raises(DefinitionError, match=r"^\[1\]\.\(document\): more than 1000 bytes of JSON"):
        definitions.decode(json.dumps([small, large]))
    with pytest.raises(DefinitionError, match=r"^\(document\): more than 1000 bytes of JSON; the limit is 1000 "):
        api.validate_definition(large)
    accented = doc(leaf("country", "in", countries=["é" * 600]))  # 600 characters, 1200 bytes
    with pytest.raises(DefinitionError, match=r"^\(document\): 1\d{3} bytes of JSON; the limit is 1000 "):
        api.validate_definition(accented)


# Configured limits.

def test_a_configured_higher_limit_accepts(settings):
    settings.GROUPS_CONSUMER_DEFINITION_LIMITS = {"max_depth": 40, "max_leaves": 250}
    user(1)
    user(2)
    api.apply_definitions([doc(nested_not(38), name="deep"),  # an even number of nots: the leaf itself
                           doc({"any": [leaf("manual", "in", user_ids=[i]) for i in range(1, 251)]}, name="wide")],
                          now=NOW)
    assert set(api.find_group("deep").memberships.values_list("user_id", flat=True)) == {1}
    assert set(api.find_group("wide").memberships.values_list("user_id", flat=True)) == {1, 2}
    settings.GROUPS_CONSUMER_DEFINITION_LIMITS = {"max_depth": 40}
    assert "limit is 200" in GroupCatalog.load().groups[api.find_group("wide").id].broken_reason


def test_invalid_limit_settings_are_refused(settings):
    for value, message in [({"max_deepness": 3}, "unknown limit"), ({"max_leaves": 0}, "positive integer"),
                           ({"max_depth": 65}, "at most 64")]:
        settings.GROUPS_CONSUMER_DEFINITION_LIMITS = value
        with pytest.raises(ImproperlyConfigured, match=message):
            DefinitionLimits.configured()


def test_the_standalone_service_reads_limits_from_the_environment():
    script = "from groups_consumer import settings; print(settings.GROUPS_CONSUMER_DEFINITION_LIMITS)"
    read = subprocess.run(
        [sys.executable, "-c", script],
        env={"DEFINITION_MAX_LEAVES": "500", "DEFINITION_MAX_DOCUMENT_BYTES": "4000000", "LOG_FORMAT": "json"},
        capture_output=True, text=True, check=True)
    assert read.stdout.strip() == "{'max_leaves': 500, 'max_document_bytes': 4000000}"


# Definitions the database cannot evaluate.

class _Nothing(BaseModel):
    pass


class Unevaluable(CriterionType):
    """A criterion whose query no database can run (as a rule too large for it would be)."""

    name = "unevaluable"
    Config = _Nothing
    operators = ("=",)

    def select(self, facts, now):
        return Query(Q(user_id__in=RawSQL("SELECT no_such_column FROM groups_consumer_userfact", [])))

    def test(self, learner, now):
        return False


@pytest.fixture
def unevaluable():
    registry.criterion_types().add(Plugin("unevaluable", Unevaluable, "tests:Unevaluable", "tests"))


def test_a_definition_the_database_cannot_evaluate_is_refused_before_it_is_saved(unevaluable):
    rule = {"all": [leaf("country", "in", countries=["ES"]), {"not": leaf("unevaluable", "=")}]}
    with pytest.raises(DefinitionError) as error:
        api.apply_definitions([doc(leaf("country", "in", countries=["ES"])), doc(rule, name="bad")], sync=False)
    assert error.value.field == "[1].rule" and error.value.message.startswith(UNEVALUABLE)
    assert "no_such_column" in error.value.message
    with pytest.raises(DefinitionError, match=r"^rule: the database cannot evaluate the rule: "):
        api.preview_count(doc(rule))
    assert not Group.objects.exists()


def test_a_rule_too_large_for_the_database_is_refused_with_its_message(settings):
    settings.GROUPS_CONSUMER_DEFINITION_LIMITS = {"max_leaves": 5000}
    if connection.vendor == "sqlite":
        with pytest.raises(DefinitionError, match=r"^rule: the database cannot evaluate the rule: Expression tree "
                                                  r"is too large \(maximum depth 1000\)"):
            api.apply_definitions(doc(countries(5000)), now=NOW)
        assert not Group.objects.exists()
    else:  # PostgreSQL evaluates it
        api.apply_definitions(doc(countries(5000)), now=NOW)
        assert api.find_group("g").last_full_sync == NOW


# Stored groups that fail to evaluate: broken, and the others go on.

def stored(name, rule, scope=None):
    """A group saved behind the API's back (as one saved before the limits existed)."""
    scope = scope or Scope.objects.get_or_create(type="instance", key="")[0]
    return Group.objects.create(name=name, scope=scope, rule=rule)


@pytest.fixture
def spain():
    """A healthy group and its member, in the instance scope."""
    user(1, country="ES")
    user(2, country="PT")
    api.apply_definitions(doc(leaf("country", "in", countries=["ES"]), name="spain"), sync=False, now=NOW)
    return api.find_group("spain")


def members(group):
    return set(Membership.objects.filter(group=group).values_list("user_id", flat=True))


def test_a_stored_group_beyond_the_limits_is_broken_and_the_others_sync(spain):
    wide = stored("wide", countries(5000))
    deep = stored("deep", nested_not(300))
    with capture_logs() as logs:
        report = api.sync_groups(api.groups_matching(), now=NOW)
    assert report.groups == ["spain (instance)"] and members(spain) == {1}
    wide.refresh_from_db()
    deep.refresh_from_db()
    assert wide.broken_reason == f"rule.any: 5000 criteria; {limit('max_leaves', 200)}"
    assert deep.broken_reason == f"rule{'.not' * 32}: rules nested more than 32 deep; {limit('max_depth', 32)}"
    assert {entry["group"] for entry in logs if entry["event"] == "group_broken"} == {"wide", "deep"}
    states = {g.name: (g.state, g.stale) for g in collect(NOW + timedelta(days=30)).groups}
    assert states == {"deep": ("broken", False), "spain": ("enabled", True), "wide": ("broken", False)}


def test_a_stored_group_the_database_cannot_evaluate_is_broken_and_the_others_sync(spain, unevaluable):
    bad = stored("bad", {"any": [leaf("country", "in", countries=["PT"]), leaf("unevaluable", "=")]})
    Membership.objects.create(group=bad, user_id=2, joined_at=NOW)
    with capture_logs() as logs:
        report = api.sync_groups(api.groups_matching(), now=NOW)
    assert report.groups == ["spain (instance)"] and members(spain) == {1}
    assert list(report.broken) == ["bad (instance)"] and report.broken["bad (instance)"].startswith(UNEVALUABLE)
    bad.refresh_from_db()
    assert bad.broken_reason.startswith(UNEVALUABLE) and "no_such_column" in bad.broken_reason
    assert bad.last_full_sync is None and members(bad) == {2}  # held as it is
    assert [entry["group"] for entry in logs if entry["event"] == "group_broken"] == ["bad"]
    # The reason stays (compiling the group cannot tell the database would now accept it): held everywhere.
    compiled = GroupCatalog.load().groups[bad.id]
    assert compiled.broken_reason == bad.broken_reason and not compiled.updated_by(UpdateMethod.EVENTS)
    assert {g.name: g.state for g in collect(NOW).groups}["bad"] == "broken"
    assert ("bad (instance)", f"broken: {bad.broken_reason}") in api.not_synced([bad], report)

    # Fixed by apply: repaired and synced.
    api.apply_definitions(doc(leaf("country", "in", countries=["PT"]), name="bad"), now=NOW)
    bad.refresh_from_db()
    assert bad.broken_reason == "" and bad.last_full_sync == NOW and members(bad) == {2}


def test_a_group_failing_inside_the_walk_is_left_out_and_the_range_redone(spain, unevaluable, monkeypatch):
    bad = stored("bad", leaf("unevaluable", "="))
    monkeypatch.setattr(evaluability, "probe", lambda selection: None)  # as if the pre-flight had passed
    report = api.sync_groups(api.groups_matching(), now=NOW)
    assert report.groups == ["spain (instance)"] and members(spain) == {1}
    bad.refresh_from_db()
    assert bad.broken_reason.startswith(UNEVALUABLE) and bad.last_full_sync is None


def test_a_scheduler_tick_marks_the_group_broken_and_syncs_the_rest_of_its_scope(spain, unevaluable):
    bad = stored("bad", leaf("unevaluable", "="))
    wide = stored("wide", countries(5000))
    tick = Scheduler(clock=lambda: NOW).run_once()
    assert tick.failed == [] and [s.groups for s in tick.syncs] == [["spain (instance)"]]
    assert members(spain) == {1} and api.find_group("spain").last_full_sync == NOW
    bad.refresh_from_db()
    wide.refresh_from_db()
    assert bad.broken_reason.startswith(UNEVALUABLE) and "max_leaves" in wide.broken_reason
    assert Scheduler(clock=lambda: NOW + timedelta(days=8)).run_once().failed == []
