"""Leases that keep two processes from syncing one group at the same time."""

from django.db import models


class SyncLease(models.Model):
    """A named lease held by one process until ``expires_at`` (renewed while it works).

    A lease whose holder died expires and can be taken over; see ``groups_consumer.scheduling.leases``.
    """

    name = models.CharField(max_length=255, primary_key=True)
    holder = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
