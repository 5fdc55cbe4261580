"""Stage 2: apply the facts events carry, idempotently and monotonically by event time.

Every fact keeps the time of the event it came from; an event only overwrites a fact with a strictly newer
``(time, value)`` version. Redelivered events (same ``ce_id``) and older events are therefore no-ops, and equal
times resolve the same way in any order, so the facts after a batch do not depend on the order or number of
deliveries. Concurrent consumers serialize per user: each batch locks the ``UserFact`` rows of its users
(in user-id order, so no deadlock) before reading or writing any of that user's facts, and keeps the locks
until its transaction commits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from groups_consumer import bulk_sql
from groups_consumer import event_types as types
from groups_consumer.models import CourseFact, UserFact
from groups_consumer.pipeline.decode import PlatformEvent
from groups_consumer.plugins.criterion import course_org

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
    def version(self) -> tuple:
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


def apply_updates(updates: Iterable[FactUpdate]) -> list[ChangedFact]:
    """Apply updates inside the caller's transaction; returns the facts that changed, each with its last event."""
    by_user: dict[int, list[FactUpdate]] = defaultdict(list)
    for update in updates:
        by_user[update.user_id].append(update)
    if not by_user:
        return []
    users, new_users = _lock_users(by_user)
    courses = _course_rows({(u.user_id, u.course_key) for ups in by_user.values() for u in ups if u.course_key})
    changed: dict[tuple, ChangedFact] = {
        (u, BECAME_KNOWN, None): ChangedFact(u, BECAME_KNOWN, None, min(by_user[u], key=lambda x: x.version).event)
        for u in new_users}
    dirty_users, dirty_courses = set(), set()
    for user_id, user_updates in by_user.items():
        row = users[user_id]
        for update in sorted(user_updates, key=lambda u: u.version):
            if update.username and not row.username:
                row.username = update.username
                dirty_users.add(user_id)
            target = courses[(user_id, update.course_key)] if update.course_key else row
            if _merge(target, update):
                key = (user_id, update.fact, update.course_key)
                changed[key] = ChangedFact(user_id, update.fact, update.course_key, update.event)
                (dirty_courses.add((user_id, update.course_key)) if update.course_key else dirty_users.add(user_id))
    _write(UserFact, "user_id", _USER_FIELDS, [users[u] for u in dirty_users])
    _write(CourseFact, "id", _COURSE_FIELDS, [courses[key] for key in dirty_courses])
    return list(changed.values())


# Rows are read and written with plain SQL (``bulk_sql``) into these light records: model instances and
# the ORM's per-value handling of id lists cost more than the queries (``bulk_update`` alone once took 70%
# of a batch).
_USERS, _COURSES = UserFact._meta.db_table, CourseFact._meta.db_table
_USER_FIELDS = ["username", "last_login", "registered_at", "country", "country_changed_at"]
_COURSE_FIELDS = ["mode", "is_active", "enrollment_changed_at", "grade", "grade_changed_at", "is_passing",
                  "passing_changed_at"]
_TIMES = {"last_login", "registered_at", "country_changed_at", "enrollment_changed_at", "grade_changed_at",
          "passing_changed_at"}


@dataclass(slots=True)
class _UserRow:
    user_id: int
    username: str
    last_login: datetime | None
    registered_at: datetime | None
    country: str | None
    country_changed_at: datetime | None


@dataclass(slots=True)
class _CourseRow:
    id: int
    user_id: int
    course_key: str
    mode: str | None
    is_active: bool
    enrollment_changed_at: datetime | None
    grade: float | None
    grade_changed_at: datetime | None
    is_passing: bool | None
    passing_changed_at: datetime | None


def _write(model, key: str, fields: list[str], rows: list) -> None:
    """UPDATE the rows by key."""
    bulk_sql.update(model, [key], fields, [
        [bulk_sql.db_datetime(getattr(row, f)) if f in _TIMES else getattr(row, f) for f in fields]
        + [getattr(row, key)] for row in rows])


def _lock_users(by_user) -> tuple[dict[int, _UserRow], set[int]]:
    """Create missing users, then lock every user row of the batch in user-id order; returns the rows and the
    new user ids."""
    ids = sorted(by_user)
    known = {row[0] for row in bulk_sql.select_where_in(f"SELECT user_id FROM {_USERS} WHERE", "user_id", ids)}
    new_users = set(ids) - known
    bulk_sql.insert_ignoring_conflicts(UserFact, ["user_id", "username"], [(u, "") for u in sorted(new_users)])
    lock = "FOR UPDATE" if bulk_sql.is_postgres() else ""  # SQLite's write lock is the transaction's
    rows = bulk_sql.select_where_in(f"SELECT user_id, username, {', '.join(_USER_FIELDS[1:])} FROM {_USERS} WHERE",
                                    "user_id", ids, suffix=f"ORDER BY user_id {lock}")
    return {row[0]: _UserRow(row[0], row[1], *map(bulk_sql.py_datetime, row[2:4]), row[4],
                             bulk_sql.py_datetime(row[5])) for row in rows}, new_users


def _course_rows(keys: set[tuple[int, str]]) -> dict[tuple[int, str], _CourseRow]:
    """The course rows of the batch (created if missing); their users are locked already."""
    if not keys:
        return {}
    bulk_sql.insert_ignoring_conflicts(CourseFact, ["user_id", "course_key", "org", "is_active"],
                                       [(u, c, course_org(c), False) for u, c in sorted(keys)])
    rows = bulk_sql.select_where_in(f"SELECT id, user_id, course_key, {', '.join(_COURSE_FIELDS)} FROM {_COURSES} "
                                    "WHERE", "user_id", {u for u, _ in keys})
    found = {}
    for (id_, user_id, course_key, mode, is_active, enrolled_at, grade, graded_at, is_passing, passing_at) in rows:
        if (user_id, course_key) in keys:
            found[(user_id, course_key)] = _CourseRow(
                id_, user_id, course_key, mode, bool(is_active), bulk_sql.py_datetime(enrolled_at), grade,
                bulk_sql.py_datetime(graded_at), None if is_passing is None else bool(is_passing),
                bulk_sql.py_datetime(passing_at))
    return found


def _merge(row, update: FactUpdate) -> bool:
    """Apply one update to its row if it is newer than what the row holds; True if the row changed."""
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
    elif update.fact == "enrollment":
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
