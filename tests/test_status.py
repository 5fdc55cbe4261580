"""``groups-consumer status``: what an operator sees, as text and JSON."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from groups_consumer import api
from groups_consumer.models import Group, PartitionStatus, Scope
from groups_consumer.status import collect
from tests.facts import NOW, leaf, user

pytestmark = pytest.mark.django_db
INSTANCE = {"type": "instance"}


@pytest.fixture
def groups():
    user(1, country="ES")
    user(2, country="PT")
    api.apply_definitions([
        {"name": "spain", "scope": INSTANCE, "rule": leaf("country", "in", countries=["ES"])},
        {"name": "frozen", "scope": INSTANCE, "rule": leaf("country", "in", countries=["PT"]), "frozen": True},
        {"name": "off", "scope": INSTANCE, "rule": leaf("country", "in", countries=["PT"]), "enabled": False},
        {"name": "later", "scope": INSTANCE, "rule": leaf("country", "in", countries=["FR"]), "refresh": "PT1H"},
    ], now=NOW)
    Group.objects.filter(name="later").update(last_full_sync=None)
    Group.objects.filter(name="spain").update(last_event_at=NOW - timedelta(minutes=3), last_event_id="ev-1",
                                              last_sync_drift={"run_id": "sync-x", "joined": 2, "left": 1,
                                                               "examples": [{"user_id": 7, "change": "joined"}]})
    Group.objects.create(name="needs-plugin", scope=Scope.objects.get(type="instance"),
                         rule=leaf("vanished", "=", x=1))
    PartitionStatus.objects.create(consumer_group="groups-consumer", topic="openedx-events", partition=0,
                                   position=120, lag=30, dead_letters=2, consumer="host:1", updated_at=NOW)
    PartitionStatus.objects.create(consumer_group="groups-consumer", topic="openedx-events", partition=1,
                                   position=None, lag=None, dead_letters=1, consumer="host:1", updated_at=NOW)


def test_collect_gives_each_groups_state_freshness_and_drift(groups):
    status = collect(NOW + timedelta(days=2))
    by_name = {g.name: g for g in status.groups}
    spain = by_name["spain"]
    assert (spain.state, spain.members, spain.last_event_id, spain.last_sync) == ("enabled", 1, "ev-1", NOW)
    assert spain.staleness_s == 2 * 86400 and not spain.stale and spain.next_sync_due == NOW + timedelta(days=7)
    assert spain.drift["joined"] == 2 and spain.update_methods == ["events", "manual", "schedule"]
    assert (by_name["frozen"].state, by_name["frozen"].members, by_name["frozen"].next_sync_due) == ("frozen", 0, None)
    assert by_name["off"].state == "disabled" and by_name["off"].update_methods == []
    assert by_name["later"].stale and by_name["later"].next_sync_due == NOW + timedelta(days=2)
    assert by_name["needs-plugin"].state == "broken" and "'vanished' is not installed" in by_name[
        "needs-plugin"].broken_reason
    assert (status.total_lag, status.dead_letters) == (30, 3)


def test_the_command_prints_tables_or_json(groups):
    out = StringIO()
    call_command("groups_status", stdout=out)
    text = out.getvalue()
    assert "GROUP" in text and "LAST EVENT" in text and "NEXT SYNC" in text and "DRIFT" in text
    assert "+2 -1" in text and "frozen" in text and "not scheduled" in text and "never synced STALE" in text
    assert "needs-plugin (instance): rule.type: 'vanished' is not installed" in text
    assert "openedx-events[0]" in text and "total lag 30, dead letters 3" in text

    out = StringIO()
    call_command("groups_status", "--json", stdout=out)
    document = json.loads(out.getvalue())
    assert {"name", "scope", "state", "broken_reason", "members", "last_event_at", "last_sync", "staleness_s",
            "stale", "next_sync_due", "drift"} <= set(document["groups"][0])
    assert document["consumer"]["dead_letters"] == 3
    assert document["consumer"]["partitions"][0] == {
        "consumer_group": "groups-consumer", "topic": "openedx-events", "partition": 0, "position": 120, "lag": 30,
        "dead_letters": 2, "consumer": "host:1", "reported_at": NOW.isoformat()}
