"""The certificate facts: the latest known state of each user's certificate in each course."""

from django.db import models


class CertificateFact(models.Model):
    """One user's certificate in one course, as of the newest certificate event applied (``changed_at``).

    ``earned_at`` is set exactly when the status is ``downloadable`` (the LMS's valid certificate): it is the time
    of the event that gave the certificate its current state. A certificate the LMS saves again while valid
    (it then sends the created and changed events again) counts from that save: the row keeps the latest state
    only, so that it does not depend on the order events arrive in.
    """

    # No foreign key to the core's UserFact: the core guarantees the row exists and locks it while a batch
    # applies this user's facts; the plugin's table stays independent of the core's schema.
    user_id = models.BigIntegerField()
    course_key = models.CharField(max_length=255)
    org = models.CharField(max_length=255)
    status = models.CharField(max_length=32)
    mode = models.CharField(max_length=32)
    earned_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of the look-ups by user (its first column): a batch's rows, snapshots, user ranges.
            models.UniqueConstraint(fields=["user_id", "course_key"], name="certfact_unique_user_course"),
        ]
        indexes = [
            # Earned certificates (within a window) of one course, of one org, of the instance; and the windows
            # of the time-relative flips.
            models.Index(fields=["course_key", "earned_at"], name="certfact_course_earned"),
            models.Index(fields=["org", "earned_at"], name="certfact_org_earned"),
            models.Index(fields=["earned_at"], name="certfact_earned"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.status} certificate in {self.course_key}"
