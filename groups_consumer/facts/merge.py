"""How events update the learner facts: each fact is set from an event only if the event is newer.

Every fact keeps the time of the event it came from; an event only overwrites a fact with a strictly newer
``(time, value)`` version (``is_newer``). Redelivered events (same ``ce_id``) and older events are therefore
no-ops, and equal times resolve the same way in any order, so the facts after a batch do not depend on the
order or number of deliveries. The rows read here (under the batch's user locks) are also the batch's
snapshots for evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from operator import attrgetter

from groups_consumer.facts import events as types
from groups_consumer.facts import rows
from groups_consumer.plugins.events import PlatformEvent
from groups_consumer.plugins.source import Applied, ChangedFact, FactUpdate, LockedUsers, is_newer


@dataclass(frozen=True)
class LearnerUpdate(FactUpdate):
    """A learner fact update, with the user's username when the event carries it."""

    username: str | None = None


_VERSION = attrgetter("version")


def updates_from(event: PlatformEvent) -> list[FactUpdate]:
    """The learner facts an event asserts."""
    data, kind = event.data, event.event_type
    if kind in (types.LOGIN, types.REGISTRATION):
        user = data["user"]
        fact = "last_login" if kind == types.LOGIN else "registered_at"
        return [LearnerUpdate(event, user["id"], fact, event.time, username=user["pii"]["username"])]
    if kind in types.ENROLLMENT_EVENTS:
        enrollment = data["enrollment"]
        is_active = enrollment["is_active"] and kind != types.UNENROLLMENT
        return [LearnerUpdate(event, enrollment["user"]["id"], "enrollment", (enrollment["mode"], is_active),
                              enrollment["course"]["course_key"], enrollment["user"]["pii"]["username"])]
    if kind == types.GRADE_CHANGED:
        grade = data["grade"]
        return [LearnerUpdate(event, grade["user_id"], "grade", grade["percent_grade"],
                              grade["course"]["course_key"])]
    if kind == types.PASSING_STATUS_UPDATED:
        status = data["course_passing_status"]
        return [LearnerUpdate(event, status["user"]["id"], "passing", status["is_passing"],
                              status["course"]["course_key"], status["user"]["pii"]["username"])]
    if kind == types.PROFILE_CHANGED:
        profile = data["profile"]
        country = profile["country"].upper() if profile["country"] else None
        return [LearnerUpdate(event, profile["user"]["id"], "country", country,
                              username=profile["user"]["pii"]["username"])]
    raise ValueError(f"no learner fact mapping for {kind}")


def apply(updates: Sequence[FactUpdate], users: LockedUsers) -> Applied:
    """Merge the updates into ``UserFact`` / ``CourseFact``; the snapshots cover every user of ``users``, whose
    ``rows`` hold their ``USER_FIELDS``."""
    by_user: dict[int, list[FactUpdate]] = defaultdict(list)
    for update in updates:
        by_user[update.user_id].append(update)
    user_rows = rows.users_from(users.rows)  # read while locking them (``user_columns``)
    courses = rows.read_courses(users.ids)
    if missing := {(u.user_id, u.course_key) for u in updates if u.course_key} - courses.keys():
        courses.update(rows.create_courses(missing))
    changed: dict[tuple[int, str, str | None], ChangedFact] = {}
    dirty_users, dirty_courses = set(), set()
    for user_id, user_updates in by_user.items():
        row = user_rows[user_id]
        for update in sorted(user_updates, key=_VERSION) if len(user_updates) > 1 else user_updates:
            if isinstance(update, LearnerUpdate) and update.username and not row.username:
                row.username = update.username
                dirty_users.add(user_id)
            if (_merge_course(courses[(user_id, update.course_key)], update) if update.course_key
                    else _merge_user(row, update)):
                key = (user_id, update.fact, update.course_key)
                changed[key] = ChangedFact(user_id, update.fact, update.course_key, update.event)
                (dirty_courses.add((user_id, update.course_key)) if update.course_key else dirty_users.add(user_id))
    # Left to the caller (``Applied.writes``): what the snapshots already hold.
    writes = (partial(rows.write_users, [user_rows[u] for u in dirty_users]),
              partial(rows.write_courses, [courses[key] for key in dirty_courses]))
    return Applied(list(changed.values()), rows.snapshots(user_rows, courses.values()), writes)


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
        if not is_newer(update, row.country_changed_at, row.country):
            return False
        row.country, row.country_changed_at = update.value, time
    return True


def _merge_course(row: rows.CourseRow, update: FactUpdate) -> bool:
    """Apply one course fact update to its course row if it is newer than what the row holds; True if the row
    changed."""
    time = update.event.time
    if update.fact == "enrollment":
        if not is_newer(update, row.enrollment_changed_at, (row.mode, row.is_active)):
            return False
        (row.mode, row.is_active), row.enrollment_changed_at = update.value, time
    elif update.fact == "grade":
        if not is_newer(update, row.grade_changed_at, row.grade):
            return False
        row.grade, row.grade_changed_at = update.value, time
    elif update.fact == "passing":
        if not is_newer(update, row.passing_changed_at, row.is_passing):
            return False
        row.is_passing, row.passing_changed_at = update.value, time
    return True
