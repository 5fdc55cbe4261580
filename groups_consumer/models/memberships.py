"""Memberships and their history."""

from django.db import models

from groups_consumer.models.groups import Group


class Membership(models.Model):
    """A user currently in a group.

    ``exclusive_set`` copies the group's set so that the database itself refuses a second group of one set
    for a user. Rows are only inserted or deleted, never rewritten, so ``joined_at`` survives re-evaluations.
    """

    # The unique (group, user) index serves lookups by group. No database foreign key (here and on changes):
    # its deferred per-row check cost as much as the insert itself; the ORM cascades deletions of groups.
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships", db_index=False,
                              db_constraint=False)
    user_id = models.BigIntegerField()
    exclusive_set = models.CharField(max_length=255, null=True, blank=True)
    joined_at = models.DateTimeField()

    # (user, exclusive set) is unique: rows without a set never clash, as NULLs are distinct in a unique index
    # (PostgreSQL's default and SQLite's), so the same index refuses a second group of one set and serves the
    # lookups by user. One index, not a partial one plus one on the user: each membership written at a million
    # users rewrites a leaf page of every index of the table (docs/event-path.rst, "Population size and
    # PostgreSQL's settings").
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "user_id"], name="membership_unique_user_group"),
            models.UniqueConstraint(fields=["user_id", "exclusive_set"], name="membership_one_group_per_exclusive_set"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} in group {self.group_id}"


class Cause(models.TextChoices):
    """What made a membership change."""

    EVENT = "event", "a platform event"
    SYNC = "sync", "a full sync"
    MANUAL = "manual", "an operator or API call"
    TIME = "time", "the passage of time (a time-relative criterion)"


class MembershipChange(models.Model):
    """One user joining or leaving one group, and why: the membership change log."""

    class Kind(models.TextChoices):
        JOINED = "joined"
        LEFT = "left"

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="changes", db_index=False,
                              db_constraint=False)  # the (group, at) index serves lookups by group
    user_id = models.BigIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    at = models.DateTimeField()
    cause = models.CharField(max_length=8, choices=Cause.choices)
    cause_id = models.CharField(max_length=255, blank=True, help_text="event id (ce_id) or sync run id")

    class Meta:
        indexes = [
            models.Index(fields=["group", "at"], name="change_group_at"),
            models.Index(fields=["user_id", "at"], name="change_user_at"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} {self.kind} group {self.group_id} at {self.at:%Y-%m-%d %H:%M:%S} ({self.cause})"
