"""The orchestration API and the command line."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from groups_consumer import api
from groups_consumer.errors import AmbiguousGroup, DefinitionError, UnknownGroup
from groups_consumer.models import Group, MembershipChange
from tests.facts import COURSE, NOW, course, leaf, user

pytestmark = pytest.mark.django_db
EXAMPLE = {"name": "inactive-struggling", "scope": {"type": "course", "key": COURSE},
           "rule": {"all": [leaf("last_login", ">", days=10), leaf("course_grade", "<", percent=0.4)]},
           "exclusive_set": "engagement", "priority": 10, "refresh": "P7D"}


@pytest.fixture
def learners():
    for uid, login, grade in [(1, 20, 0.1), (2, 20, 0.9), (3, 2, 0.1)]:
        user(uid, login=login)
        course(uid, grade=grade)


def test_apply_creates_then_reports_unchanged_then_updates(learners):
    report = api.apply_definitions(EXAMPLE, now=NOW)
    assert report.created == [f"inactive-struggling (course:{COURSE})"]
    group = api.find_group("inactive-struggling")
    assert group.refresh.days == 7 and group.last_full_sync == NOW
    assert list(api.members(group).values_list("user_id", flat=True)) == [1]
    assert api.apply_definitions(EXAMPLE, now=NOW).unchanged == [f"inactive-struggling (course:{COURSE})"]
    assert api.apply_definitions({**EXAMPLE, "priority": 3}, now=NOW).updated


def test_invalid_documents_are_refused_naming_the_field_and_nothing_is_saved():
    with pytest.raises(DefinitionError, match=r"^\[1\]\.scope\.key: Value error, .bad. is not a valid course key"):
        api.apply_definitions([EXAMPLE, {**EXAMPLE, "name": "x", "scope": {"type": "course", "key": "bad"}}])
    with pytest.raises(DefinitionError, match=r"^refresh: "):
        api.validate_definition({**EXAMPLE, "refresh": "weekly"})
    with pytest.raises(DefinitionError, match=r"^\[1\]\.name: 'inactive-struggling' appears twice"):
        api.apply_definitions([EXAMPLE, EXAMPLE])
    with pytest.raises(DefinitionError, match=r"^colour: Extra inputs are not permitted"):
        api.validate_definition({**EXAMPLE, "colour": "red"})
    with pytest.raises(DefinitionError, match=r"^rule: Field required"):
        api.validate_definition({"name": "x"})
    assert not Group.objects.exists()


def test_preview_counts_before_saving(learners):
    assert api.preview_count(EXAMPLE, now=NOW) == 1
    assert api.preview_count({**EXAMPLE, "rule": {"any": [leaf("manual", "in", user_ids=[2, 3, 4]),
                                                           leaf("course_grade", "<", percent=0.4)]}}, now=NOW) == 3
    assert not Group.objects.exists()


def test_user_groups_and_explain(learners):
    api.apply_definitions([EXAMPLE, {"name": "low-grades", "scope": EXAMPLE["scope"], "exclusive_set": "engagement",
                                     "rule": leaf("course_grade", "<", percent=0.5)}], now=NOW)
    assert [g.name for g in api.user_groups(1)] == ["inactive-struggling"]
    assert [g.name for g in api.user_groups(3)] == ["low-grades"]
    explanation = api.explain(3, api.find_group("inactive-struggling"), now=NOW)
    assert not explanation.is_member and not explanation.qualifies
    text = "\n".join(explanation.lines)
    assert "✗ last_login > {\"days\":10}: last seen" in text and "✓ course_grade < {\"percent\":0.4}: grade 0.1" in text
    assert "decision: user goes to low-grades" in text


def test_disabling_a_group_empties_it_with_a_logged_reason(learners):
    api.apply_definitions(EXAMPLE, now=NOW)
    api.apply_definitions({**EXAMPLE, "enabled": False}, now=NOW)
    assert not api.find_group("inactive-struggling").memberships.exists()
    assert MembershipChange.objects.filter(kind="left", cause="manual", cause_id="redefined").count() == 1


def test_group_lookup_errors():
    api.apply_definitions([{"name": "same", "rule": leaf("manual", "in", user_ids=[])},
                           {"name": "same", "scope": {"type": "org", "key": "Demo"},
                            "rule": leaf("manual", "in", user_ids=[])}])
    with pytest.raises(AmbiguousGroup, match="give --scope"):
        api.find_group("same")
    assert api.find_group("same", api.parse_scope("org:Demo")).scope.type == "org"
    with pytest.raises(UnknownGroup):
        api.find_group("other")
    with pytest.raises(DefinitionError, match="use instance, org:KEY or course:KEY"):
        api.parse_scope("galaxy:far")


def test_management_commands(tmp_path, learners, clock_at_now):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps([EXAMPLE]))
    out = StringIO()
    call_command("groups_apply", str(path), stdout=out)
    assert "created    inactive-struggling" in out.getvalue()
    out = StringIO()
    call_command("groups_members", "inactive-struggling", "--json", stdout=out)
    assert [m["user_id"] for m in json.loads(out.getvalue())["members"]] == [1]
    out = StringIO()
    call_command("groups_explain", "--user", "1", "--group", "inactive-struggling", stdout=out)
    assert "member; qualifies" in out.getvalue()
    with pytest.raises(CommandError, match="no group named 'nope'"):
        call_command("groups_members", "nope")
    path.write_text(json.dumps({**EXAMPLE, "priority": "high"}))
    with pytest.raises(CommandError, match="priority: Input should be a valid integer"):
        call_command("groups_apply", str(path))


@pytest.mark.slow
def test_console_script_from_an_empty_database(tmp_path):
    """``migrate``, ``apply``, ``sync`` and ``members --json`` as README describes (SQLite file)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'groups.sqlite3'}", "LOG_FORMAT": "json"}
    command = str(Path(sys.executable).parent / "groups-consumer")

    def run(*args, stdin=None):
        return subprocess.run([command, *args], env=env, input=stdin, capture_output=True, text=True, check=True)

    run("migrate", "--no-input")
    run("apply", "-", stdin=json.dumps({"name": "listed", "rule": leaf("manual", "in", user_ids=[7])}))
    assert json.loads(run("members", "listed", "--json").stdout)["members"] == []  # user 7 not known yet
    assert "synced 1 group(s)" in run("sync").stdout
    assert "apply" in run("--help").stdout
    failed = subprocess.run([command, "apply", "-"], env=env, input='{"name": "x", "rule": {"any": []}}',
                            capture_output=True, text=True)
    assert failed.returncode == 1 and "rule.any: must be a non-empty list of rules" in failed.stderr


def test_replay_refuses_a_number_of_processes_below_one(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    with pytest.raises(CommandError, match="argument --processes: 0 is not a positive number"):
        call_command("groups_replay", "--from-beginning", "--processes", "0")
