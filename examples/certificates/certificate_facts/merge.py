"""How certificate updates merge into the fact table: monotonically by event time, in bulk.

Each row keeps the time of the event it was last set from (``changed_at``); an update replaces the row's
state only if its ``(time, value)`` version is newer (``is_newer``). A redelivered or older event is a no-op
and equal times resolve the same way in any order, so the rows after any sequence of batches do not depend on
the order or number of deliveries. No query per update: one reads the rows of the batch's users, then the new
rows are inserted and the changed ones updated in bulk.
"""

from __future__ import annotations

from collections.abc import Sequence

from groups_consumer.sdk import Applied, ChangedFact, FactUpdate, course_org, is_newer

from certificate_facts.events import DOWNLOADABLE
from certificate_facts.models import CertificateFact

#: The fact name of a certificate update; its value is ``(status, mode)``.
CERTIFICATE = "certificate"
_STATE = ["status", "mode", "earned_at", "changed_at"]


def apply(updates: Sequence[FactUpdate]) -> Applied:
    """Merge the updates into ``CertificateFact``; the changed facts name their course."""
    rows = {(row.user_id, row.course_key): row
            for row in CertificateFact.objects.filter(user_id__in={u.user_id for u in updates})}
    created: set[tuple[int, str]] = set()
    changed: dict[tuple[int, str], ChangedFact] = {}
    for update in updates:
        key = _key(update)
        row = rows.get(key)
        if row is None:
            row = rows[key] = CertificateFact(user_id=key[0], course_key=key[1], org=course_org(key[1]))
            created.add(key)
        if not is_newer(update, row.changed_at, (row.status, row.mode)):
            continue
        (row.status, row.mode), row.changed_at = update.value, update.event.time
        row.earned_at = row.changed_at if row.status == DOWNLOADABLE else None
        changed[key] = ChangedFact(update.user_id, CERTIFICATE, update.course_key, update.event)
    CertificateFact.objects.bulk_create([rows[key] for key in sorted(created)])
    CertificateFact.objects.bulk_update([rows[key] for key in sorted(changed.keys() - created)], _STATE)
    return Applied(list(changed.values()))


def _key(update: FactUpdate) -> tuple[int, str]:
    """The certificate an update is about: its user and course."""
    assert update.course_key is not None, "certificate updates name their course"
    return update.user_id, update.course_key
