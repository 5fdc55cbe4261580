"""The criterion type ``certificates``: at least N certificates earned, optionally within the last D days."""

from datetime import datetime, timedelta
from functools import cached_property

from groups_consumer.sdk import CriterionType, DefinitionError, ScopeType, Selection
from pydantic import BaseModel, ConfigDict, Field

from certificate_facts.events import CERTIFICATE_EVENTS
from certificate_facts.snapshot import CertificateSnapshot, Courses
from certificate_facts.source import CertificateFacts


class CertificatesConfig(BaseModel):
    """Config of ``certificates``."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(1, ge=1, le=10_000, description="at least this many earned certificates")
    within_days: int | None = Field(None, ge=0, le=36_500,
                                    description="earned within the last N days (omitted: whenever)")


class Certificates(CriterionType[CertificatesConfig, CertificateFacts, CertificateSnapshot]):
    """``>=`` N: at least N valid certificates of the group's course (course scope), of its org's courses (org
    scope) or of any course (instance scope), earned within the last ``within_days`` days when given.

    With ``within_days`` the answer changes with time alone, exactly ``within_days`` days after a certificate
    was earned: ``flips`` names those users.
    """

    name = "certificates"
    description = "Certificates earned in the group's course, org or platform (optionally in the last N days)"
    Config = CertificatesConfig
    operators = (">=",)
    events = CERTIFICATE_EVENTS
    backend = "certificates"

    @cached_property
    def courses(self) -> Courses:
        """The courses whose certificates count: the group's course, its org's courses, or every course."""
        return Courses.of(self.scope)

    def validate(self) -> None:
        if self.scope.type == ScopeType.COURSE and self.config.count > 1:
            raise DefinitionError("config.count", "a learner has one certificate per course: at most 1 in course scope")

    def select(self, certificates: CertificateFacts, now: datetime) -> Selection:
        return certificates.earned(self.courses, at_least=self.config.count, since=self._since(now))

    def flips(self, certificates: CertificateFacts, after: datetime, upto: datetime) -> Selection | None:
        # A certificate stops counting when now - D passes its earned_at: for those earned in
        # [after - D, upto - D).
        if self.config.within_days is None:
            return None
        days = timedelta(days=self.config.within_days)
        return certificates.earned_between(self.courses, since=after - days, before=upto - days)

    def test(self, learner: CertificateSnapshot, now: datetime) -> bool:
        return len(learner.earned(self.courses, self._since(now))) >= self.config.count

    def observed(self, learner: CertificateSnapshot, now: datetime) -> str:
        earned = learner.earned(self.courses, self._since(now))
        return f"{len(earned)} earned: " + (", ".join(sorted(c.course_key for c in earned)) or "none")

    def _since(self, now: datetime) -> datetime | None:
        """The earliest earning time that counts (None: any)."""
        return None if self.config.within_days is None else now - timedelta(days=self.config.within_days)
