"""Batches of two consumers sharing users: a batch applies the users no one else holds at once, and the
held ones in a second transaction once their locks are free (row locks: PostgreSQL only)."""

import threading
import time

import pytest
from django.conf import settings
from django.db import connection

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.models import UserFact
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from tests import lms
from tests.batch_contention import other_transaction
from tests.facts import NOW, group_doc, leaf, user

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                                 reason="row locks: PostgreSQL only")]


def last_login(user_id: int):
    return UserFact.objects.get(user_id=user_id).last_login


def test_a_batch_applies_free_users_at_once_and_held_users_once_released():
    api.apply_definitions([group_doc(leaf("last_login", "<=", days=7), {"type": "instance"}, name="active")], now=NOW)
    user(1, login=30)
    user(2, login=30)
    holder = other_transaction()  # another consumer's batch in flight, holding user 1
    holder.execute("SELECT 1 FROM groups_consumer_userfact WHERE user_id = 1 FOR UPDATE")
    events = [EventDecoder().decode(*event.wire()[1:]) for event in (lms.login(1, NOW), lms.login(2, NOW))]
    results = []

    def consume():
        results.append(BatchProcessor(GroupCatalog.load()).process(events, now=NOW))
        connection.close()

    worker = threading.Thread(target=consume)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while last_login(2) != NOW:  # committed while user 1 is still held
            assert time.monotonic() < deadline, "the free user waited for the held one"
            time.sleep(0.05)
        assert last_login(1) != NOW and worker.is_alive()
        assert set(api.find_group("active").memberships.values_list("user_id", flat=True)) == {2}
    finally:
        holder.rollback()
        holder.close()
    worker.join(timeout=30)
    assert last_login(1) == NOW
    assert set(api.find_group("active").memberships.values_list("user_id", flat=True)) == {1, 2}
    result = results[0]
    assert (result.events, result.facts_changed, result.users_evaluated, len(result.diff)) == (2, 2, 2, 2)
