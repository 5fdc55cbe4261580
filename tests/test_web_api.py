"""The REST API, endpoint by endpoint, through a staff service's token (authentication and permissions are
tested in test_web_auth, schema conformance in test_openapi_conformance)."""

import json
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from criteria.country import Country
from groups_consumer import api
from groups_consumer.models import Group, Membership, MembershipChange
from groups_consumer.plugins import registry
from groups_consumer.plugins.registry import Plugin
from tests.facts import COURSE, NOW, course, group_doc, leaf, user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock_at_now")]
STRUGGLING = group_doc({"all": [leaf("last_login", ">", days=10), leaf("course_grade", "<", percent=0.4)]},
                       name="inactive-struggling", exclusive_set="engagement", priority=10)


@pytest.fixture
def client():
    staff = User.objects.create_user("ops", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    return client


@pytest.fixture
def learners():
    """Users 1-3 inactive, 4-6 active; grades 0.1, 0.5, 0.9 in turn."""
    for uid in range(1, 7):
        user(uid, login=20 if uid <= 3 else 2)
        course(uid, grade=(0.1, 0.5, 0.9)[(uid - 1) % 3])


def created(client, doc):
    answer = client.post("/api/v1/groups/", doc, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def test_schema_and_docs_for_authenticated_clients_only_health_for_all(client):
    assert client.get("/api/v1/schema/").status_code == 200
    assert client.get("/api/v1/docs/").status_code == 200
    for path in ("/api/v1/schema/", "/api/v1/docs/", "/api/v1/groups/"):
        assert APIClient().get(path).status_code == 401
    assert APIClient().get("/health").json() == {"status": "ok"}


def test_criteria_of_a_scope_with_form_metadata(client):
    listing = {c["name"]: c for c in client.get("/api/v1/criteria/", {"scope": f"course:{COURSE}"}).json()}
    assert {"last_login", "course_grade", "manual", "country", "enrollment_mode", "course_passing"} <= set(listing)
    grade = listing["course_grade"]
    assert grade["available"] and grade["operators"] == ["<", "<=", ">", ">="]
    assert "org.openedx.learning.course.persistent_grade_summary.changed.v1" in grade["events"]
    assert grade["refresh_s"] == 86400 and grade["update_methods"] == ["events", "manual", "schedule"]
    percent = next(e for e in grade["ui_metadata"] if e["name"] == "percent")
    assert percent == {"name": "percent", "label": "Percent", "type": "number", "required": True,
                       "tooltip": "grade as a fraction in [0, 1]", "initial_value": None, "depends_on": None,
                       "max_count": 1, "disabled": None, "options": None}
    assert grade["config_schema"]["properties"]["percent"]["maximum"] == 1
    assert next(e for e in listing["manual"]["ui_metadata"] if e["name"] == "user_ids")["type"] == "list"
    assert client.get("/api/v1/criteria/?scope=galaxy:far").status_code == 400


def test_a_broken_or_ambiguous_criterion_type_is_listed_as_unavailable_with_the_reason(client):
    registry.criterion_types().add(Plugin("visits", Country, "acme.visits:Visits", "acme-visits"),
                                   Plugin("visits", Country, "other.visits:Visits", "other-visits"))
    listing = {c["name"]: c for c in client.get("/api/v1/criteria/").json()}
    assert listing["visits"]["available"] is False
    assert "acme.visits:Visits (package acme-visits) and other.visits:Visits" in listing["visits"]["error"]
    assert listing["country"]["available"] is True


def test_create_read_list_and_filter_groups(client, learners):
    group = created(client, STRUGGLING)
    assert group["state"] == "enabled" and group["scope"] == {"type": "course", "key": COURSE}
    assert list(Membership.objects.filter(group_id=group["id"]).values_list("user_id", flat=True)) == [1]
    created(client, group_doc(leaf("manual", "in", user_ids=[5]), name="picked", frozen=True))
    assert client.get(f"/api/v1/groups/{group['id']}/").json()["rule"] == STRUGGLING["rule"]
    names = lambda query: [g["name"] for g in client.get(f"/api/v1/groups/?{query}").json()["results"]]  # noqa: E731
    assert names("") == ["inactive-struggling", "picked"]
    assert names("frozen=true") == ["picked"]
    assert names("exclusive_set=engagement") == ["inactive-struggling"]
    in_course = f"scope=course:{COURSE.replace('+', '%2B')}"
    assert names(f"{in_course}&enabled=true&broken=false") == ["inactive-struggling", "picked"]
    assert names("scope=instance") == []
    assert client.get("/api/v1/groups/999/").status_code == 404


def test_invalid_documents_name_every_bad_field_and_save_nothing(client):
    bad_rule = {"all": [leaf("last_login", "~", days=-1), {"not": leaf("course_grade", "<", percent=2)},
                        leaf("course_grade", "<", percent=0.4)]}
    answer = client.post("/api/v1/groups/", {**STRUGGLING, "priority": "high", "name": "", "rule": bad_rule},
                         format="json")
    assert answer.status_code == 400
    assert [e["field"] for e in answer.json()["errors"]] == [
        "name", "priority", "rule.all[0].operator", "rule.all[0].config.days", "rule.all[1].not.config.percent"]
    answer = client.post("/api/v1/groups/", {**STRUGGLING, "rule": {"all": [leaf("last_login", ">", days=10),
                                                                           leaf("course_grade", "<", percent=2)]}},
                         format="json")
    assert answer.status_code == 400
    assert answer.json()["errors"] == [{"field": "rule.all[1].config.percent",
                                        "message": "Input should be less than or equal to 1"}]
    assert client.post("/api/v1/groups/", ["not", "an", "object"], format="json").status_code == 400
    assert not Group.objects.exists()
    created(client, STRUGGLING)
    duplicate = client.post("/api/v1/groups/", STRUGGLING, format="json")
    assert duplicate.status_code == 400 and duplicate.json()["errors"][0]["field"] == "name"


def test_replace_patch_disable_and_delete(client, learners):
    group = created(client, STRUGGLING)
    url = f"/api/v1/groups/{group['id']}/"
    replaced = client.put(url, {**STRUGGLING, "name": "low", "rule": leaf("course_grade", "<", percent=0.6)},
                          format="json").json()
    assert replaced["id"] == group["id"] and replaced["name"] == "low"
    assert sorted(Membership.objects.filter(group_id=group["id"]).values_list("user_id", flat=True)) == [1, 2, 4, 5]
    patched = client.patch(url, {"priority": 3}, format="json").json()
    assert patched["priority"] == 3 and patched["rule"] == leaf("course_grade", "<", percent=0.6)
    assert client.patch(url, {"rule": {"any": []}}, format="json").json()["errors"][0]["field"] == "rule.any"
    disabled = client.post(f"{url}disable/").json()
    assert disabled["state"] == "disabled" and not Membership.objects.filter(group_id=group["id"]).exists()
    assert MembershipChange.objects.filter(group_id=group["id"], kind="left", cause_id="redefined").count() == 4
    assert client.delete(url).status_code == 204
    assert not Group.objects.exists() and not MembershipChange.objects.exists()


def test_members_page_by_cursor(client, learners):
    for uid in range(7, 251):
        user(uid)
    group = created(client, group_doc(leaf("manual", "in", user_ids=list(range(1, 251))), scope={"type": "instance"}))
    pages, url = [], f"/api/v1/groups/{group['id']}/members/?page_size=100"
    while url:
        page = client.get(url).json()
        pages.append([row["user_id"] for row in page["results"]])
        url = page["next"]
    assert [len(p) for p in pages] == [100, 100, 50] and [u for p in pages for u in p] == list(range(1, 251))
    assert set(client.get(f"/api/v1/groups/{group['id']}/members/").json()["results"][0]) == {"user_id", "joined_at"}


def test_a_users_groups_and_change_logs(client, learners):
    struggling = created(client, STRUGGLING)
    created(client, group_doc(leaf("course_grade", "<", percent=0.6), name="low", exclusive_set="engagement"))
    assert [g["group"]["name"] for g in client.get("/api/v1/users/1/groups/").json()] == ["inactive-struggling"]
    assert [g["group"]["name"] for g in client.get("/api/v1/users/2/groups/").json()] == ["low"]
    log = client.get("/api/v1/users/1/changes/").json()["results"]
    assert [(c["group"]["name"], c["kind"], c["cause"]) for c in log] == [("inactive-struggling", "joined", "sync")]
    group_log = client.get(f"/api/v1/groups/{struggling['id']}/changes/?cause=sync&kind=joined").json()["results"]
    assert [c["user_id"] for c in group_log] == [1]
    assert client.get(f"/api/v1/groups/{struggling['id']}/changes/?cause=event").json()["results"] == []
    after = (NOW.replace(year=NOW.year + 1)).isoformat()
    assert client.get("/api/v1/users/1/changes/", {"since": after}).json()["results"] == []
    assert client.get("/api/v1/users/1/changes/", {"until": after}).json()["results"]
    assert client.get("/api/v1/users/1/changes/?since=yesterday").status_code == 400


def test_preview_of_a_new_group_and_of_an_edit_with_its_siblings(client, learners):
    preview = client.post("/api/v1/groups/preview/", STRUGGLING, format="json").json()
    assert preview["members_before"] == 0 and preview["members_after"] == preview["qualifying"] == 1
    assert preview["sample"] == [1] and preview["changes"]["joined_sample"] == [1]
    assert not Group.objects.exists()
    low = created(client, group_doc(leaf("course_grade", "<", percent=0.6), name="low", exclusive_set="engagement"))
    struggling = created(client, STRUGGLING)
    # Widening the higher-priority group takes user 2 from its sibling and adds user 3; user 1 stays.
    edit = {**STRUGGLING, "rule": {"all": [leaf("last_login", ">", days=10)]}}
    preview = client.post(f"/api/v1/groups/{struggling['id']}/preview/", edit, format="json").json()
    assert (preview["members_before"], preview["members_after"], preview["qualifying"]) == (1, 3, 3)
    assert preview["changes"] == {"joined": 2, "left": 0, "joined_sample": [2, 3], "left_sample": []}
    assert preview["siblings"] == {f"low (course:{COURSE})": {"joined": 0, "left": 1, "joined_sample": [],
                                                              "left_sample": [2]}}
    assert client.get(f"/api/v1/groups/{struggling['id']}/").json()["rule"] == STRUGGLING["rule"]
    assert Membership.objects.filter(group_id=low["id"]).count() == 3
    bad = client.post(f"/api/v1/groups/{struggling['id']}/preview/", {**edit, "refresh": "weekly"}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "refresh"


def test_explain_sync_manual_lists_and_status(client, learners):
    group = created(client, STRUGGLING)
    explanation = client.get(f"/api/v1/groups/{group['id']}/explain/?user=1").json()
    assert explanation["is_member"] and explanation["qualifies"] and explanation["lines"]
    assert client.get(f"/api/v1/groups/{group['id']}/explain/?user=x").status_code == 400
    sync = client.post(f"/api/v1/groups/{group['id']}/sync/").json()
    assert sync["joined"] == sync["left"] == 0 and sync["not_synced"] == []
    picked = created(client, group_doc(leaf("manual", "in", user_ids=[1]), name="picked"))
    url = f"/api/v1/groups/{picked['id']}/manual/"
    update = client.post(url, {"users": ["user", "2", "user3", "nobody"]}, format="json").json()
    assert update["user_ids"] == 2 and update["skipped"] == [{"line": 4, "value": "nobody",
                                                              "reason": "no known user has this username"}]
    assert update["sync"]["joined"] == 2 and update["sync"]["left"] == 1
    csv_update = client.post(f"{url}?append=true", "user_id\n4\n", content_type="text/csv").json()
    assert csv_update["user_ids"] == 3 and csv_update["sync"]["joined"] == 1
    assert client.post(f"/api/v1/groups/{group['id']}/manual/", {"users": ["1"]}, format="json").status_code == 400
    status = client.get("/api/v1/status/").json()
    assert {g["name"]: g["members"] for g in status["groups"]} == {"inactive-struggling": 1, "picked": 3}


def test_apply_dry_run_prints_the_differences_and_saves_nothing(tmp_path, learners):
    api.apply_definitions(group_doc(leaf("course_grade", "<", percent=0.6), name="low", exclusive_set="engagement"))
    path = tmp_path / "groups.json"
    path.write_text(json.dumps([STRUGGLING]))
    out = StringIO()
    call_command("groups_apply", str(path), "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        f"inactive-struggling (course:{COURSE}): 0 -> 1 member(s) (1 qualify before exclusivity); would join 1 "
        "(e.g. users 1), would leave 0",
        f"  exclusive sibling low (course:{COURSE}): would join 0, would leave 1 (e.g. users 1)"]
    assert Group.objects.count() == 1


def test_definitions_beyond_the_limits_are_refused_naming_the_limit_and_the_field(client):
    nested = '{"not": ' * 5000 + json.dumps(leaf("last_login", ">", days=10)) + "}" * 5000
    body = json.dumps({**STRUGGLING, "rule": None}).replace("null", nested)  # deeper than json can recurse
    answer = client.post("/api/v1/groups/", body, content_type="application/json")
    assert answer.status_code == 400 and "['max_depth']" in answer.json()["detail"]
    assert answer.json()["errors"][0]["field"].startswith("rule.not.not")
    wide = {**STRUGGLING, "rule": {"any": [leaf("last_login", ">", days=d) for d in range(5000)]}}
    answer = client.post("/api/v1/groups/preview/", wide, format="json")
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "rule.any"
    assert "5000 criteria; the limit is 200" in answer.json()["errors"][0]["message"]
    listed = {**STRUGGLING, "rule": leaf("manual", "in", user_ids=list(range(1, 100_002)))}
    answer = client.post("/api/v1/groups/", listed, format="json")
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "rule.config.user_ids"
    assert client.post("/api/v1/groups/", "{not json", content_type="application/json").status_code == 400
    assert not Group.objects.exists()


def test_manual_lists_of_many_or_impossible_usernames(client, learners):
    picked = created(client, group_doc(leaf("manual", "in", user_ids=[1]), name="picked"))
    url = f"/api/v1/groups/{picked['id']}/manual/"
    names = ["user2", "x" * 151, *(f"ghost{i}" for i in range(70_000))]  # looked up in slices
    update = client.post(url, {"users": names}, format="json").json()
    assert update["user_ids"] == 1 and len(update["skipped"]) == 70_001
    csv_update = client.post(url, "user3\nnul\x00name\n", content_type="text/csv").json()  # PostgreSQL refuses NUL
    assert csv_update["user_ids"] == 1 and [row["line"] for row in csv_update["skipped"]] == [2]
    assert list(Membership.objects.filter(group_id=picked["id"]).values_list("user_id", flat=True)) == [3]
