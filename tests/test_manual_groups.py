"""Manual groups updated from CSV files: replace and append, ids and usernames, unknown rows reported."""

import pytest
from django.core.management import call_command

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.errors import DefinitionError
from groups_consumer.models import MembershipChange
from tests.facts import NOW, leaf, user

pytestmark = pytest.mark.django_db


@pytest.fixture
def manual_group():
    for uid in (1, 2, 3, 4):
        user(uid)
    api.apply_definitions({"name": "hand-picked", "rule": leaf("manual", "in", user_ids=[1])}, now=NOW)
    return api.find_group("hand-picked")


def members():
    return set(api.find_group("hand-picked").memberships.values_list("user_id", flat=True))


def test_replace_from_ids_and_usernames_reports_unknown_rows(manual_group):
    rows = [["username"], ["user2"], ["3"], [""], ["nobody"], ["user4", "ignored column"]]
    update = api.update_manual_group(manual_group, rows, append=False, now=NOW)
    assert members() == {2, 3, 4}
    assert update.unknown == [(5, "nobody", "no known user has this username")]
    left = MembershipChange.objects.get(kind="left")
    assert (left.user_id, left.cause) == (1, "manual")


def test_append_keeps_the_current_users(manual_group):
    catalog = GroupCatalog.load()
    api.update_manual_group(manual_group, [["user3"]], append=True, now=NOW)
    assert not catalog.is_current()  # running consumers reload the new list
    assert members() == {1, 3}
    assert api.find_group("hand-picked").rule["config"]["user_ids"] == [1, 3]


def test_only_manual_groups_take_a_csv():
    api.apply_definitions({"name": "away", "rule": leaf("last_login", ">", days=3)}, now=NOW)
    with pytest.raises(DefinitionError, match="'away' is not a manual group"):
        api.update_manual_group(api.find_group("away"), [["1"]], append=False)


def test_manual_command(tmp_path, manual_group, capsys):
    path = tmp_path / "users.csv"
    path.write_text("user_id\n2\nghost\n")
    call_command("groups_manual", "hand-picked", "--csv", str(path))
    captured = capsys.readouterr()
    assert "1 user(s) listed; 1 joined, 1 left; 1 row(s) skipped" in captured.out
    assert "line 3: 'ghost' skipped" in captured.err
    assert members() == {2}
