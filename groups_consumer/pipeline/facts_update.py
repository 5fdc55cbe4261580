"""Stage 2: apply the facts events carry, idempotently and monotonically by event time.

Every fact keeps the time of the event it came from; an event only overwrites a fact with a strictly newer
``(time, value)`` version. Redelivered events (same ``ce_id``) and older events are therefore no-ops, and equal
times resolve the same way in any order, so the facts after a batch do not depend on the order or number of
deliveries. Concurrent consumers serialize per user: each batch locks the ``UserFact`` rows of its known users
(in user-id order, so no deadlock), then creates (in user-id order) and locks the rows of users first heard of,
before reading or writing any of their facts, and keeps the locks until its transaction commits. The rows read
under those locks are also the batch's snapshots for evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from groups_consumer import event_types as types
from groups_consumer.facts import rows
from groups_consumer.facts.snapshot import LearnerSnapshot
from groups_consumer.pipeline.decode import PlatformEvent

#: The pseudo-fact of a user first heard of: they join the instance population.
BECAME_KNOWN = "became_known"


@dataclass(frozen=True)
class FactUpdate:
    """One fact an event asserts about a user (and a course for course facts), as of ``time``."""

    event: PlatformEvent
    user_id: int
    fact: str
    value: Any
    course_key: str | None = None
    username: str | None = None

    @property
    def version(self) -> tuple[datetime, str]:
        """Order of updates of one fact: event time, then value (deterministic tie-break)."""
        return (self.event.time, repr(self.value))


@dataclass(frozen=True)
class ChangedFact:
    """A fact that changed in this batch, with the last event that changed it."""

    user_id: int
    fact: str
    course_key: str | None
    event: PlatformEvent


def updates_from(event: PlatformEvent) -> list[FactUpdate]:
    """The facts an event asserts."""
    data, kind = event.data, event.event_type
    if kind in (types.LOGIN, types.REGISTRATION):
        user = data["user"]
        fact = "last_login" if kind == types.LOGIN else "registered_at"
        return [FactUpdate(event, user["id"], fact, event.time, username=user["pii"]["username"])]
    if kind in types.ENROLLMENT_EVENTS:
        enrollment = data["enrollment"]
        is_active = enrollment["is_active"] and kind != types.UNENROLLMENT
        return [FactUpdate(event, enrollment["user"]["id"], "enrollment", (enrollment["mode"], is_active),
                           enrollment["course"]["course_key"], enrollment["user"]["pii"]["username"])]
    if kind == types.GRADE_CHANGED:
        grade = data["grade"]
        return [FactUpdate(event, grade["user_id"], "grade", grade["percent_grade"], grade["course"]["course_key"])]
    if kind == types.PASSING_STATUS_UPDATED:
        status = data["course_passing_status"]
        return [FactUpdate(event, status["user"]["id"], "passing", status["is_passing"],
                           status["course"]["course_key"], status["user"]["pii"]["username"])]
    if kind == types.PROFILE_CHANGED:
        profile = data["profile"]
        country = profile["country"].upper() if profile["country"] else None
        return [FactUpdate(event, profile["user"]["id"], "country", country,
                           username=profile["user"]["pii"]["username"])]
    raise ValueError(f"no fact mapping for {kind}")


@dataclass
class AppliedFacts:
    """What a batch's updates did: the facts that changed (each with its last event), a snapshot of every
    user applied as the batch leaves them (read under the batch's locks, so still current), and the updates
    left for later because another transaction held their users."""

    changed: list[ChangedFact]
    snapshots: dict[int, LearnerSnapshot]
    held: list[FactUpdate] = field(default_factory=list)


def apply_updates(updates: Iterable[FactUpdate], *, wait_for_locks: bool = True) -> AppliedFacts:
    """Apply updates inside the caller's transaction, locking the users' rows until it ends.

    Without ``wait_for_locks``, the updates of users another transaction holds are not applied but returned
    in ``held`` (the caller applies them in a transaction of its own, waiting then).
    """
    by_user: dict[int, list[FactUpdate]] = defaultdict(list)
    for update in updates:
        by_user[update.user_id].append(update)
    if not by_user:
        return AppliedFacts([], {})
    users = rows.read_users(by_user, lock=True, skip_locked=not wait_for_locks)
    new_users = set(by_user) - users.keys()
    held: list[FactUpdate] = []
    if new_users and not wait_for_locks:
        busy = rows.known_users(new_users)
        new_users -= busy
        held = [update for user_id in sorted(busy) for update in by_user.pop(user_id)]
    if new_users:
        rows.create_users(new_users)
        users.update(rows.read_users(new_users, lock=True))
    courses = rows.read_courses(users)
    if missing := {(u.user_id, u.course_key) for ups in by_user.values() for u in ups if u.course_key} - courses.keys():
        courses.update(rows.create_courses(missing))
    changed: dict[tuple[int, str, str | None], ChangedFact] = {
        (u, BECAME_KNOWN, None): ChangedFact(u, BECAME_KNOWN, None, min(by_user[u], key=lambda x: x.version).event)
        for u in new_users}
    dirty_users, dirty_courses = set(), set()
    for user_id, user_updates in by_user.items():
        row = users[user_id]
        for update in sorted(user_updates, key=lambda u: u.version):
            if update.username and not row.username:
                row.username = update.username
                dirty_users.add(user_id)
            if (_merge_course(courses[(user_id, update.course_key)], update) if update.course_key
                    else _merge_user(row, update)):
                key = (user_id, update.fact, update.course_key)
                changed[key] = ChangedFact(user_id, update.fact, update.course_key, update.event)
                (dirty_courses.add((user_id, update.course_key)) if update.course_key else dirty_users.add(user_id))
    rows.write_users(users[u] for u in dirty_users)
    rows.write_courses(courses[key] for key in dirty_courses)
    return AppliedFacts(list(changed.values()), rows.snapshots(users, courses.values()), held)


def _merge_user(row: rows.UserRow, update: FactUpdate) -> bool:
    """Apply one user fact update to the user's row if it is newer than what the row holds; True if the row
    changed."""
    time = update.event.time
    if update.fact == "last_login":
        if row.last_login is not None and row.last_login >= time:
            return False
        row.last_login = time
    elif update.fact == "registered_at":
        if row.registered_at is not None and row.registered_at <= time:
            return False  # the first registration counts
        row.registered_at = time
    elif update.fact == "country":
        if not _newer(update, row.country_changed_at, row.country):
            return False
        row.country, row.country_changed_at = update.value, time
    return True


def _merge_course(row: rows.CourseRow, update: FactUpdate) -> bool:
    """Apply one course fact update to its course row if it is newer than what the row holds; True if the row
    changed."""
    time = update.event.time
    if update.fact == "enrollment":
        if not _newer(update, row.enrollment_changed_at, (row.mode, row.is_active)):
            return False
        (row.mode, row.is_active), row.enrollment_changed_at = update.value, time
    elif update.fact == "grade":
        if not _newer(update, row.grade_changed_at, row.grade):
            return False
        row.grade, row.grade_changed_at = update.value, time
    elif update.fact == "passing":
        if not _newer(update, row.passing_changed_at, row.is_passing):
            return False
        row.is_passing, row.passing_changed_at = update.value, time
    return True


def _newer(update: FactUpdate, stored_time: datetime | None, stored_value: Any) -> bool:
    return stored_time is None or update.version > (stored_time, repr(stored_value))
