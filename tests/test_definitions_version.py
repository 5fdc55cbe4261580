"""Definition changes and event batches never overlap: a batch evaluated with definitions that changed under it
would write memberships the change had just removed (into a disabled or deleted group, say), for good."""

import threading
import time

import pytest
from django.conf import settings
from django.db import connection

from groups_consumer import api
from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.definitions_version import definitions_version
from groups_consumer.models import Group, Membership
from groups_consumer.pipeline.batch import BatchProcessor
from groups_consumer.pipeline.decode import EventDecoder
from tests import lms
from tests.batch_contention import other_transaction
from tests.facts import NOW, group_doc, leaf, user

DECODER = EventDecoder()
ACTIVE = group_doc(leaf("last_login", "<=", days=7), {"type": "instance"}, name="active")


def login(user_id):
    return [DECODER.decode(*lms.login(user_id, NOW).wire()[1:])]


@pytest.mark.django_db
def test_every_saved_or_deleted_group_is_a_new_version():
    before = definitions_version()
    api.apply_definitions(ACTIVE, now=NOW)
    group = api.find_group("active")
    Group.objects.filter(id=group.id).update(last_full_sync=NOW)  # state, not definition: no new version
    after_apply = definitions_version()
    group.priority = 4
    group.save()  # as the admin does
    assert before < after_apply < definitions_version()
    version = definitions_version()
    api.delete_group(group)
    assert definitions_version() > version


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["disable", "delete"])
def test_a_consumer_with_old_definitions_reloads_them_before_writing(change):
    api.apply_definitions(ACTIVE, now=NOW)
    user(1, login=30)
    processor = BatchProcessor(GroupCatalog.load())  # compiled while "active" was enabled
    group = api.find_group("active")
    if change == "disable":
        api.save_group({**api.definition_document(group), "enabled": False}, group, now=NOW)
    else:
        api.delete_group(group)
    processor.process(login(1), now=NOW)  # user 1 logged in: "active" would take them
    assert not Membership.objects.exists()
    assert processor.catalog.is_current()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="row locks: PostgreSQL only (SQLite serializes every write transaction)")
def test_a_change_waits_for_the_batch_in_flight_and_the_next_batch_waits_for_the_change():
    api.apply_definitions(ACTIVE, now=NOW)
    user(1, login=30)
    group = api.find_group("active")
    batch = other_transaction()  # a batch in flight: it read the version under its share lock
    batch.execute("SELECT version FROM groups_consumer_definitionsversion WHERE id = 1 FOR SHARE")
    done = threading.Event()

    def disable():
        api.save_group({**api.definition_document(group), "enabled": False}, group, now=NOW)
        connection.close()
        done.set()

    changer = threading.Thread(target=disable)
    changer.start()
    try:
        time.sleep(0.5)
        assert not done.is_set(), "the definition change did not wait for the batch in flight"
    finally:
        batch.rollback()
        batch.close()
    changer.join(timeout=30)
    assert done.is_set() and not Group.objects.get(id=group.id).enabled
    processor = BatchProcessor(GroupCatalog.load())
    processor.process(login(1), now=NOW)
    assert not Membership.objects.exists()
