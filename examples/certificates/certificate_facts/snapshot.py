"""What per-user evaluation reads: a user's certificates, and which of them a criterion counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from groups_consumer.sdk import CriterionScope, ScopeType


class Certificate(NamedTuple):
    """One certificate of a user; ``earned_at`` is set when it is valid (see ``CertificateFact``)."""

    course_key: str
    org: str
    status: str
    earned_at: datetime | None


@dataclass(frozen=True)
class Courses:
    """The courses whose certificates count: one course, one org's courses, or every course (neither set)."""

    course_key: str | None = None
    org: str | None = None

    @classmethod
    def of(cls, scope: CriterionScope) -> Courses:
        """The courses of a group's scope."""
        if scope.type == ScopeType.COURSE:
            return cls(course_key=scope.key)
        return cls(org=scope.key) if scope.type == ScopeType.ORG else cls()

    def filters(self) -> dict[str, str]:
        """The condition as field values, the same on ``Certificate`` and on the ``CertificateFact`` model."""
        return {name: value for name, value in (("course_key", self.course_key), ("org", self.org))
                if value is not None}

    def __contains__(self, certificate: Certificate) -> bool:
        return all(getattr(certificate, name) == value for name, value in self.filters().items())


@dataclass(frozen=True)
class CertificateSnapshot:
    """A user's certificates, loaded in bulk for a batch of users."""

    user_id: int
    certificates: tuple[Certificate, ...] = ()

    def earned(self, courses: Courses, since: datetime | None = None) -> list[Certificate]:
        """The valid certificates of ``courses``, earned at or after ``since`` when given."""
        return [c for c in self.certificates
                if c.earned_at is not None and c in courses and (since is None or c.earned_at >= since)]
