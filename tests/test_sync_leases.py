"""Leases: concurrent schedulers (and operators) never run one group's sync twice."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from groups_consumer import api
from groups_consumer.models import Group, MembershipChange, SyncLease
from groups_consumer.scheduling import sync_runner
from groups_consumer.scheduling.leases import LeaseLost, Leases, LeaseUnavailable
from groups_consumer.scheduling.scheduler import Scheduler
from tests.facts import NOW, leaf, user

SPAIN = {"name": "spain", "scope": {"type": "instance"}, "rule": leaf("country", "in", countries=["ES"])}


@pytest.mark.django_db
def test_a_lease_has_one_holder_until_it_expires():
    first = Leases(["sync:group:1", "sync:group:2"], holder="a").acquire()
    with pytest.raises(LeaseUnavailable, match="sync:group:2 is held by a"):
        Leases(["sync:group:2", "sync:group:3"], holder="b").acquire()
    assert not SyncLease.objects.filter(name="sync:group:3").exists()  # all or nothing
    first.renew()

    SyncLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # holder "a" died
    taken = Leases(["sync:group:2"], holder="b").acquire()
    with pytest.raises(LeaseLost):
        first.renew()
    first.release()  # releases only what it still holds
    assert SyncLease.objects.get(name="sync:group:2").holder == "b"
    taken.release()


@pytest.mark.django_db
def test_an_operator_sync_waits_for_a_running_one_then_gives_up():
    user(1, country="ES")
    api.apply_definitions(SPAIN, now=NOW)
    group = api.find_group("spain")
    with Leases([f"sync:group:{group.id}"], holder="elsewhere").acquire(), \
            pytest.raises(LeaseUnavailable, match="held by elsewhere"):
        api.sync_groups([group], now=NOW, wait_s=0.3)


@pytest.mark.django_db
def test_a_definition_waits_for_its_groups_sync_then_gives_up_without_saving():
    api.apply_definitions(SPAIN, now=NOW)
    group = api.find_group("spain")
    with Leases([f"sync:group:{group.id}"], holder="elsewhere").acquire(), pytest.raises(LeaseUnavailable):
        api.apply_definitions({**SPAIN, "priority": 5}, now=NOW, wait_s=0.3)
    assert api.find_group("spain").priority == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_schedulers_never_run_one_groups_sync_twice(monkeypatch):
    for uid in range(1, 41):
        user(uid, country="ES" if uid % 2 else "PT")
    api.apply_definitions([SPAIN, {**SPAIN, "name": "portugal", "rule": leaf("country", "in", countries=["PT"])}],
                          sync=False, now=NOW)
    full_sync, another_replica_done = sync_runner.full_sync, threading.Event()

    def held_full_sync(*args, **kwargs):
        # The sync, with its leases held, lasts until another replica has come and gone, whatever the load. It
        # waits before its first transaction: on SQLite a writer waiting inside one would hold the database's
        # write lock, and the others would time out on the lock instead of finding the leases taken.
        another_replica_done.wait(30)
        return full_sync(*args, **kwargs)

    monkeypatch.setattr(sync_runner, "full_sync", held_full_sync)
    start, reports, errors = threading.Barrier(3), [], []

    def replica():
        try:
            start.wait()
            reports.append(Scheduler(clock=lambda: NOW).run_once())
            another_replica_done.set()
        except Exception as error:  # any failure, surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    syncs = [sync for report in reports for sync in report.syncs]
    assert len(syncs) == 1 and sorted(syncs[0].groups) == ["portugal (instance)", "spain (instance)"]
    assert sum(len(report.skipped) for report in reports) >= 1  # another replica found the groups busy
    assert MembershipChange.objects.count() == 40  # every user joined once, not once per replica
    assert not SyncLease.objects.filter(name__startswith="sync:").exists()
    assert set(Group.objects.values_list("last_full_sync", flat=True)) == {NOW}
