"""Leases in the database: at most one process works on a named thing (a group's sync) at a time.

A lease is a ``SyncLease`` row with a holder and an expiry. Taking one is an UPDATE of an expired row or an
INSERT; the database's row locks and primary key make concurrent
attempts resolve to one winner on PostgreSQL and SQLite alike, across any number of replicas and hosts.
A holder renews its leases while it works; one that dies simply lets them expire.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from functools import cache

from django.db import IntegrityError, transaction
from django.utils import timezone

from groups_consumer.errors import GroupsError
from groups_consumer.models import SyncLease

DEFAULT_TTL = timedelta(minutes=5)


class LeaseUnavailable(GroupsError):
    """Another process holds one of the leases."""


class LeaseLost(GroupsError):
    """A lease expired and was taken over while its holder was still working."""


@cache
def process_identity() -> str:
    """This process, as status reports and lease holders name it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leases:
    """Leases held together by this process on several names; use as a context manager to release them."""

    def __init__(self, names: Iterable[str], *, ttl: timedelta = DEFAULT_TTL, holder: str | None = None):
        self.names = sorted(set(names))
        self.ttl = ttl
        self.holder = holder or f"{process_identity()}/{uuid.uuid4().hex[:6]}"

    def acquire(self, wait_s: float = 0.0) -> Leases:
        """Take every lease or none; retries for up to ``wait_s`` seconds, then raises LeaseUnavailable."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._take_all()
                return self
            except LeaseUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(1.0, max(deadline - time.monotonic(), 0.01)))

    def renew(self) -> None:
        """Push the expiry of every lease forward; LeaseLost if one of them is no longer ours."""
        renewed = SyncLease.objects.filter(name__in=self.names, holder=self.holder).update(
            expires_at=timezone.now() + self.ttl)
        if renewed != len(self.names):
            raise LeaseLost(f"a lease of {self.holder} expired and was taken over")

    def release(self) -> None:
        """Give the leases back."""
        SyncLease.objects.filter(name__in=self.names, holder=self.holder).delete()

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _take_all(self) -> None:
        now = timezone.now()
        with transaction.atomic():
            for name in self.names:
                taken = SyncLease.objects.filter(name=name, expires_at__lte=now).update(
                    holder=self.holder, expires_at=now + self.ttl)
                if taken:
                    continue
                try:
                    with transaction.atomic():
                        SyncLease.objects.create(name=name, holder=self.holder, expires_at=now + self.ttl)
                except IntegrityError:
                    other = SyncLease.objects.filter(name=name).first()
                    raise LeaseUnavailable(f"{name} is held by {other.holder if other else 'another process'}") \
                        from None
