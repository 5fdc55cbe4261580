"""The staff group editor in a real browser (Debian's chromium driven by Playwright) against a live server.

The server previews and saves with the wall clock, so the learners' facts here are relative to the real clock
(``NOW`` shifted to today), not to ``NOW`` itself.
"""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from groups_consumer import api
from groups_consumer.models import Group, Membership, MembershipChange, Scope
from tests.facts import COURSE, NOW, course, leaf, user

pytestmark = pytest.mark.django_db(transaction=True)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 10_000


@pytest.fixture
def learners():
    """Users 1 and 4 last logged in long ago and have low grades: they match the rule built below."""
    today = (timezone.now() - NOW).days  # NOW + today days is today: "N days before today" is NOW - (N - today)
    for uid, login, grade in [(1, 20, 0.1), (2, 20, 0.9), (3, 2, 0.1), (4, 30, 0.2)]:
        user(uid, login=login - today)
        course(uid, grade=grade)


@pytest.fixture
def staff(django_user_model):
    """A staff user allowed to see and edit groups and see memberships (not a superuser)."""
    account = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    account.user_permissions.set(Permission.objects.filter(
        content_type__app_label="groups_consumer",
        codename__in=["view_group", "add_group", "change_group", "view_membership"]))
    return account


@pytest.fixture
def page(live_server, staff, monkeypatch):
    """A browser page logged in to the admin as ``staff``.

    Playwright's sync API runs an event loop in the test's thread, which Django takes for an async context:
    the test's own ORM calls are synchronous all the same (and get a connection of their own, as Playwright
    runs them in a greenlet with its own context)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.goto(f"{live_server.url}/admin/login/?next=/admin/groups_consumer/group/")
        page.fill("#id_username", "staff")
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        expect(page).to_have_url(re.compile(r"/admin/groups_consumer/group/$"))
        yield page
        browser.close()
        connections.close_all()  # the test's ORM calls under Playwright had a connection of their own


def choose_criterion(page: Page, row: int, criterion: str, operator: str, field: str, value: str) -> None:
    """Turn condition ``row`` of the top-level ``all`` into a leaf of ``criterion`` and fill it."""
    switcher = page.locator(f'[id="root[all][{row}]switcher"]')
    switcher.select_option(switcher.locator("option", has_text=f"{criterion}:").get_attribute("value"))
    page.locator(f'select[name="root[all][{row}][operator]"]').select_option(operator)
    page.locator(f'input[name="root[all][{row}][config][{field}]"]').fill(value)


@pytest.mark.slow  # the suite's convention for tests that run subprocesses: here chromium
def test_staff_build_preview_save_and_see_errors_on_their_field(page, live_server, learners):
    page.click("text=Add group")
    expect(page).to_have_url(re.compile(r"/admin/groups_consumer/group/editor/$"))
    page.fill("#id_name", "inactive-struggling")
    page.select_option("#id_scope_type", "course")
    page.fill("#id_scope_key", COURSE)
    page.press("#id_scope_key", "Tab")  # the scope changed: the criteria of the course are fetched again
    expect(page.locator("#criteria-status")).to_contain_text(f"Criteria of course:{COURSE}")

    add = page.locator('[data-schemapath="root.all"] > .je-indented-panel > span > .json-editor-btn-add')
    add.click()
    add.click()
    choose_criterion(page, 0, "last_login", ">", "days", "10")
    choose_criterion(page, 1, "course_grade", "<", "percent", "0.4")
    page.click("#preview-button")
    expect(page.locator(".preview-count")).to_have_text("Members after saving: 2")
    expect(page.locator(".preview-sample")).to_have_text("Members (lowest ids): 1, 4")
    assert not Group.objects.exists()

    page.click("#save-button")
    expect(page).to_have_url(re.compile(r"/admin/groups_consumer/group/\d+/editor/\?saved=1$"))
    expect(page.locator("#editor-banner")).to_have_text("Saved.")
    expect(page.locator("#members-rows tr td:first-child")).to_have_text(["1", "4"])
    group = Group.objects.get(name="inactive-struggling")
    assert group.rule == {"all": [{"type": "last_login", "operator": ">", "config": {"days": 10}},
                                  {"type": "course_grade", "operator": "<", "config": {"percent": 0.4}}]}

    # An edit: the preview shows the difference; a bad value is refused and shown on its own field.
    page.locator('input[name="root[all][1][config][percent]"]').fill("0.15")
    page.click("#preview-button")
    expect(page.locator(".preview-count")).to_have_text("Members after saving: 1 (now 2)")
    expect(page.locator(".preview-left")).to_have_text("Would leave: 1 (4)")
    expect(page.locator(".preview-stale")).to_be_hidden()
    page.locator('input[name="root[all][1][config][percent]"]').fill("2")
    page.locator('input[name="root[all][1][config][percent]"]').dispatch_event("change")
    expect(page.locator(".preview-stale")).to_be_visible()  # the preview no longer says what saving would do
    page.click("#save-button")
    percent = page.locator('[data-schemapath="root.all.1.config.percent"]')
    expect(percent.locator(".errmsg")).to_contain_text("Input should be less than or equal to 1")
    # json-editor validates again a frame after any change event: the server's message stays until an edit
    page.locator('input[name="root[all][1][config][percent]"]').dispatch_event("change")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    expect(percent.locator(".errmsg")).to_contain_text("Input should be less than or equal to 1")
    expect(page.locator('[data-schemapath="root.all.0.config.days"] .errmsg:visible')).to_have_count(0)
    expect(page.locator("#editor-banner")).to_contain_text("rule.all[1].config.percent")
    page.fill("#id_scope_key", "not a course key")
    page.click("#save-button")
    expect(page.locator('.form-row[data-field="scope.key"] .field-error')).to_contain_text("not a valid course key")
    group.refresh_from_db()
    assert group.rule["all"][1]["config"] == {"percent": 0.4}


def test_group_admin_add_and_change_lead_to_the_editor(client, staff):
    group = Group.objects.create(name="g", scope=Scope.objects.create(type="instance"), rule={"all": []})
    client.force_login(staff)
    assert client.get("/admin/groups_consumer/group/add/")["Location"] == "/admin/groups_consumer/group/editor/"
    change = client.get(f"/admin/groups_consumer/group/{group.pk}/change/")
    assert change["Location"] == f"/admin/groups_consumer/group/{group.pk}/editor/"
    page = client.get(change["Location"])
    assert page.status_code == 200 and page.context["editor_config"]["document"]["name"] == "g"
    assert client.get("/admin/groups_consumer/group/999/editor/").status_code == 404
    assert client.get(f"/admin/groups_consumer/group/{group.pk}/delete/").status_code == 403  # the editor's


def test_memberships_and_change_log_are_read_only_lists_with_search_and_filters(client, django_user_model):
    scope = Scope.objects.create(type="instance")
    first, second = (Group.objects.create(name=name, scope=scope, rule={"all": []}) for name in ("alpha", "beta"))
    Membership.objects.create(group=first, user_id=7, joined_at=NOW)
    Membership.objects.create(group=second, user_id=8, joined_at=NOW)
    MembershipChange.objects.create(group=first, user_id=7, kind="joined", at=NOW, cause="event", cause_id="e1")
    MembershipChange.objects.create(group=second, user_id=8, kind="left", at=NOW, cause="sync", cause_id="s1")
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    for model in ("membership", "membershipchange"):
        listing = f"/admin/groups_consumer/{model}/"
        assert client.get(f"{listing}add/").status_code == 403
        row = (Membership if model == "membership" else MembershipChange).objects.get(user_id=7)
        detail = client.get(f"{listing}{row.pk}/change/")
        assert detail.status_code == 200 and b'name="_save"' not in detail.content  # a read-only view
        assert client.get(f"{listing}{row.pk}/delete/").status_code == 403
        assert _listed(client, f"{listing}?q=7") == [7]
        assert _listed(client, f"{listing}?q=beta") == [8]
        assert _listed(client, f"{listing}?q=nobody") == []
        assert _listed(client, f"{listing}?group__id__exact={first.pk}") == [7]
    assert _listed(client, "/admin/groups_consumer/membershipchange/?cause__exact=sync") == [8]
    assert _listed(client, "/admin/groups_consumer/membershipchange/?kind__exact=joined") == [7]


def _listed(client, url):
    """The user ids of an admin change list."""
    response = client.get(url)
    assert response.status_code == 200, url
    return sorted(row.user_id for row in response.context["cl"].result_list)


@pytest.mark.slow
def test_staff_edit_shows_siblings_in_preview_and_errors_deep_in_the_rule_tree(page, live_server, learners):
    scope = {"type": "course", "key": COURSE}
    low = leaf("course_grade", "<", percent=0.3)
    group, _ = api.save_group({"name": "struggling", "scope": scope, "exclusive_set": "engagement", "priority": 10,
                               "rule": {"all": [leaf("last_login", ">", days=10),
                                                {"any": [low, {"not": leaf("course_grade", ">=", percent=0.15)}]}]}})
    api.save_group({"name": "fallback", "scope": scope, "exclusive_set": "engagement", "priority": 0,
                    "rule": leaf("course_grade", "<", percent=0.5)})
    assert list(api.members(group).values_list("user_id", flat=True)) == [1, 4]
    page.goto(f"{live_server.url}/admin/groups_consumer/group/{group.pk}/change/")
    expect(page).to_have_url(re.compile(rf"/group/{group.pk}/editor/$"))
    nested = 'input[name="root[all][1][any][0][config][percent]"]'
    negated = 'input[name="root[all][1][any][1][not][config][percent]"]'
    expect(page.locator(nested)).to_have_value("0.3")

    page.locator(nested).fill("0.15")
    page.click("#preview-button")
    expect(page.locator(".preview-count")).to_have_text("Members after saving: 1 (now 2)")
    expect(page.locator(".preview-siblings")).to_have_text(f"fallback (course:{COURSE}): 1 (4) join, 0 leave")

    page.locator(nested).fill("2")
    page.locator(negated).fill("-1")
    page.click("#save-button")  # the server names every bad leaf at once, each on its own field
    expect(page.locator('[data-schemapath="root.all.1.any.0.config.percent"] .errmsg')).to_contain_text(
        "Input should be less than or equal to 1")
    expect(page.locator('[data-schemapath="root.all.1.any.1.not.config.percent"] .errmsg')).to_contain_text(
        "Input should be greater than or equal to 0")
    page.locator(nested).fill("0.3")
    page.locator(negated).fill("-2")
    page.click("#save-button")
    expect(page.locator('[data-schemapath="root.all.1.any.1.not.config.percent"] .errmsg')).to_contain_text(
        "Input should be greater than or equal to 0")
    expect(page.locator('[data-schemapath="root.all.1.any.0.config.percent"] .errmsg:visible')).to_have_count(0)
    group.refresh_from_db()
    assert group.rule["all"][1]["any"][0] == low

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-button")  # through the API: the exclusive set is decided again without the group
    expect(page).to_have_url(re.compile(r"/admin/groups_consumer/group/$"))
    assert not Group.objects.filter(pk=group.pk).exists()
    assert list(api.members(api.find_group("fallback")).values_list("user_id", flat=True)) == [1, 3, 4]
