"""The fact source ``certificates``: certificate events to facts, and the questions criteria ask about them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from django.db.models import Count, Q
from groups_consumer.sdk import Applied, FactSource, FactUpdate, LockedUsers, PlatformEvent, Query, Selection, UserRange

from certificate_facts import merge
from certificate_facts.events import CERTIFICATE_EVENT_SPECS, REVOKED, REVOKED_EVENT
from certificate_facts.models import CertificateFact
from certificate_facts.snapshot import Certificate, CertificateSnapshot, Courses


class CertificateFacts(FactSource[CertificateSnapshot]):
    """Each user's certificate in each course (status, mode, when earned), kept from the LMS's certificate
    events; every question is one SQL condition on ``CertificateFact``."""

    name = "certificates"
    description = "Course certificates: status, mode and when each was earned, from the LMS's certificate events"
    events = CERTIFICATE_EVENT_SPECS
    models = (CertificateFact,)

    def updates(self, event: PlatformEvent) -> list[FactUpdate]:
        certificate = event.data["certificate"]
        status = REVOKED if event.event_type == REVOKED_EVENT else certificate["current_status"]
        return [FactUpdate(event, certificate["user"]["id"], merge.CERTIFICATE, (status, certificate["mode"]),
                           certificate["course"]["course_key"])]

    def apply(self, updates: Sequence[FactUpdate], users: LockedUsers) -> Applied:
        return merge.apply(updates)

    def snapshots(self, user_ids: Iterable[int]) -> Mapping[int, CertificateSnapshot]:
        """Every user asked, with their certificates (none for a user with no certificate)."""
        found: dict[int, list[Certificate]] = {user_id: [] for user_id in user_ids}
        rows = CertificateFact.objects.filter(user_id__in=list(found)).values_list(
            "user_id", "course_key", "org", "status", "earned_at")
        for user_id, course_key, org, status, earned_at in rows:
            found[user_id].append(Certificate(course_key, org, status, earned_at))
        return {user_id: CertificateSnapshot(user_id, tuple(certificates)) for user_id, certificates in found.items()}

    def earned(self, courses: Courses, *, at_least: int, since: datetime | None = None) -> Selection:
        """Users with at least ``at_least`` valid certificates of ``courses``, earned at or after ``since`` when
        given."""
        rows = CertificateFact.objects.filter(earned_at__isnull=False, **courses.filters())
        if since is not None:
            rows = rows.filter(earned_at__gte=since)

        def holders(within: UserRange) -> Q:
            counted = rows.filter(within.q()).values("user_id").annotate(earned=Count("id"))
            return Q(user_id__in=counted.filter(earned__gte=at_least).values("user_id"))
        return _ranged(holders)

    def earned_between(self, courses: Courses, *, since: datetime, before: datetime) -> Selection:
        """Users with a valid certificate of ``courses`` earned in ``[since, before)``."""
        rows = CertificateFact.objects.filter(earned_at__gte=since, earned_at__lt=before, **courses.filters())
        return _ranged(lambda within: Q(user_id__in=rows.filter(within.q()).values("user_id")))


def _ranged(condition: Callable[[UserRange], Q]) -> Query:
    """A query whose subquery is built for each user range it is resolved in, so that resolving range after
    range reads each range's certificates, not the whole table every time."""
    return Query(condition(UserRange()), in_range=condition)
