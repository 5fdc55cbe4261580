"""Learner facts kept by the default backend, from platform events.

Each fact carries the event time it was last set from, so that an older or repeated event never overwrites
newer state (updates are monotonic by event time).
"""

from django.db import models


class UserFact(models.Model):
    """What is known about one LMS user. Every user any event mentioned has a row (the instance scope)."""

    user_id = models.BigIntegerField(primary_key=True)
    username = models.CharField(max_length=150, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    last_login = models.DateTimeField(null=True, blank=True)
    country = models.CharField(max_length=2, null=True, blank=True)
    country_changed_at = models.DateTimeField(null=True, blank=True)

    # Every login rewrites the row, and each index of the table costs an entry per rewrite: only the indexes
    # of the time-relative window queries are kept. Syncs read the table range by range (primary key), and
    # usernames are looked up only by operators (manual CSVs).
    class Meta:
        indexes = [
            models.Index(fields=["last_login"], name="userfact_last_login"),
            # last_seen of users who never logged in: the time-relative window queries of last_login.
            models.Index(fields=["registered_at"], condition=models.Q(last_login__isnull=True),
                         name="userfact_registered_no_login"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id}" + (f" ({self.username})" if self.username else "")


class CourseFact(models.Model):
    """One user's state in one course: enrollment, grade and passing status, each with its event time."""

    # The unique (user, course) index serves lookups by user. No database foreign key: its deferred per-row
    # check is paid by every new course row of the event path; the ORM cascades deletions of users.
    user = models.ForeignKey(UserFact, on_delete=models.CASCADE, related_name="courses", db_index=False,
                             db_constraint=False)
    course_key = models.CharField(max_length=255)
    org = models.CharField(max_length=255)
    mode = models.CharField(max_length=100, null=True, blank=True)
    is_active = models.BooleanField(default=False, help_text="actively enrolled")
    enrollment_changed_at = models.DateTimeField(null=True, blank=True)
    grade = models.FloatField(null=True, blank=True, help_text="percent grade in [0, 1]")
    grade_changed_at = models.DateTimeField(null=True, blank=True)
    is_passing = models.BooleanField(null=True, blank=True)
    passing_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "course_key"], name="coursefact_unique_user_course")]
        indexes = [
            models.Index(fields=["course_key", "is_active", "user"], name="coursefact_course_active_user"),
            models.Index(fields=["org", "is_active"], name="coursefact_org_active"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} in {self.course_key}"
