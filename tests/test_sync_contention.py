"""A full sync and a consumer batch holding users: the sync holds the users it changes and decides them on the
facts the batch committed, and a range it finds unchanged holds no one (row locks: PostgreSQL only)."""

import threading
import time

import pytest
from django.conf import settings
from django.db import connection

from groups_consumer import api
from groups_consumer.engine import full_sync
from groups_consumer.models import Membership
from tests.batch_contention import other_transaction
from tests.facts import NOW, days_ago, leaf, user

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                                 reason="row locks: PostgreSQL only")]


def away():
    return set(api.find_group("away").memberships.values_list("user_id", flat=True))


def synced_group():
    for uid in (1, 2, 3):
        user(uid, login=30)
    api.apply_definitions({"name": "away", "rule": leaf("last_login", ">", days=10)}, now=NOW)
    assert away() == {1, 2, 3}


def test_a_sync_that_finds_nothing_to_change_holds_no_user():
    synced_group()
    holder = other_transaction()  # a consumer's batch in flight, holding user 2
    holder.execute("SELECT 1 FROM groups_consumer_userfact WHERE user_id = 2 FOR UPDATE")
    try:
        with connection.cursor() as db:
            db.execute("SET lock_timeout = '2s'")  # waiting for user 2 would fail the sync
        report = api.sync_groups([api.find_group("away")], now=NOW)
    finally:
        holder.rollback()
        holder.close()
        connection.close()
    assert len(report.changes) == 0 and report.users_scanned == 3


@pytest.mark.parametrize("lock_first_above", [1, 100])  # the changed user locked alone / the range locked whole
def test_a_sync_decides_a_user_it_changes_once_it_holds_them_on_the_facts_their_batch_committed(
        lock_first_above, monkeypatch):
    monkeypatch.setattr(full_sync, "LOCK_FIRST_ABOVE", lock_first_above)
    synced_group()
    Membership.objects.filter(user_id=1).delete()  # drift: user 1 should be in the group
    holder = other_transaction()  # a batch in flight: user 1 logged in, so stays out of it
    holder.execute("UPDATE groups_consumer_userfact SET last_login = %s WHERE user_id = 1", [days_ago(0)])
    reports = []

    def sync():
        reports.append(api.sync_groups([api.find_group("away")], now=NOW))
        connection.close()

    worker = threading.Thread(target=sync)
    worker.start()
    try:
        time.sleep(1)
        assert worker.is_alive(), "the sync did not wait for the user it changes"
    finally:
        holder.commit()  # (the batch writes no membership here: what the sync writes shows the facts it read)
        holder.close()
    worker.join(timeout=30)
    assert away() == {2, 3} and len(reports[0].changes) == 0
