"""The rows of the fact tables as light records, read and written with plain SQL (``bulk_sql``).

The event path reads, merges and writes thousands of fact rows per batch: model instances and the ORM's
per-value handling cost more than the queries themselves (``bulk_update`` alone once took 70% of a batch).
The same rows make the per-user snapshots the incremental evaluation reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.db.models import Model

from groups_consumer import bulk_sql
from groups_consumer.facts.snapshot import CourseState, LearnerSnapshot
from groups_consumer.models import CourseFact, UserFact
from groups_consumer.shared import course_org

_USERS, _COURSES = UserFact._meta.db_table, CourseFact._meta.db_table
USER_FIELDS = ["username", "last_login", "registered_at", "country", "country_changed_at"]
COURSE_FIELDS = ["mode", "is_active", "enrollment_changed_at", "grade", "grade_changed_at", "is_passing",
                 "passing_changed_at"]
_TIMES = {"last_login", "registered_at", "country_changed_at", "enrollment_changed_at", "grade_changed_at",
          "passing_changed_at"}


@dataclass(slots=True)
class UserRow:
    """A ``UserFact`` row."""

    user_id: int
    username: str
    last_login: datetime | None
    registered_at: datetime | None
    country: str | None
    country_changed_at: datetime | None


@dataclass(slots=True)
class CourseRow:
    """A ``CourseFact`` row, known by its (user, course key): it is written back through the unique index the
    batch has just read it through, not the primary key's pages."""

    user_id: int
    course_key: str
    org: str
    mode: str | None
    is_active: bool
    enrollment_changed_at: datetime | None
    grade: float | None
    grade_changed_at: datetime | None
    is_passing: bool | None
    passing_changed_at: datetime | None


def read_users(user_ids: Collection[int]) -> dict[int, UserRow]:
    """The rows of the known users among ``user_ids``."""
    found = bulk_sql.select_where_in(f"SELECT user_id, {', '.join(USER_FIELDS)} FROM {_USERS} WHERE", "user_id",
                                     user_ids)
    return users_from({row[0]: row[1:] for row in found})


def users_from(values: Mapping[int, tuple[Any, ...]]) -> dict[int, UserRow]:
    """User rows from the values of ``USER_FIELDS`` by user id, as the database driver gives them."""
    if bulk_sql.is_postgres():  # values come typed as the records hold them
        return {user_id: UserRow(user_id, *row) for user_id, row in values.items()}
    dt = bulk_sql.py_datetime
    return {user_id: UserRow(user_id, row[0], dt(row[1]), dt(row[2]), row[3], dt(row[4]))
            for user_id, row in values.items()}


def read_courses(user_ids: Collection[int]) -> dict[tuple[int, str], CourseRow]:
    """Every course row of the users, by (user id, course key)."""
    found = bulk_sql.select_where_in(
        f"SELECT user_id, course_key, org, {', '.join(COURSE_FIELDS)} FROM {_COURSES} WHERE", "user_id", user_ids)
    if bulk_sql.is_postgres():
        return {(row[0], row[1]): CourseRow(*row) for row in found}
    dt = bulk_sql.py_datetime
    return {(row[0], row[1]): CourseRow(row[0], row[1], row[2], row[3], bool(row[4]), dt(row[5]), row[6], dt(row[7]),
                                        None if row[8] is None else bool(row[8]), dt(row[9]))
            for row in found}


def create_courses(keys: Collection[tuple[int, str]]) -> dict[tuple[int, str], CourseRow]:
    """Insert empty rows for (user id, course key) pairs that have none; returns the rows of those pairs
    (including any a concurrent transaction has just made)."""
    new = [(user_id, course_key, course_org(course_key), False) for user_id, course_key in sorted(keys)]
    created = {(user_id, course_key): CourseRow(user_id, course_key, org, None, False, None, None, None, None, None)
               for user_id, course_key, org in bulk_sql.insert_ignoring_conflicts(
                   CourseFact, ["user_id", "course_key", "org", "is_active"], new,
                   returning=["user_id", "course_key", "org"])}
    if missing := {key for key in keys if key not in created}:
        created.update((key, row) for key, row in read_courses({u for u, _ in missing}).items() if key in missing)
    return created


def write_users(rows: Iterable[UserRow]) -> None:
    """UPDATE the rows' fact columns."""
    _write(UserFact, ["user_id"], USER_FIELDS, rows)


def write_courses(rows: Iterable[CourseRow]) -> None:
    """UPDATE the rows' fact columns."""
    _write(CourseFact, ["user_id", "course_key"], COURSE_FIELDS, rows)


def _write(model: type[Model], key: list[str], fields: list[str], rows: Iterable[UserRow | CourseRow]) -> None:
    values_of = attrgetter(*fields, *key)
    values: list[Sequence[Any]]
    if bulk_sql.is_postgres():  # the driver takes the records' values as they are
        values = [values_of(row) for row in rows]
    else:
        values = [[bulk_sql.db_datetime(getattr(row, f)) if f in _TIMES else getattr(row, f) for f in fields]
                  + [getattr(row, k) for k in key] for row in rows]
    bulk_sql.update(model, key, fields, values)


def snapshots(users: Mapping[int, UserRow], courses: Iterable[CourseRow]) -> dict[int, LearnerSnapshot]:
    """The learner snapshots of ``users`` from their rows (``courses`` may hold rows of other users)."""
    states: dict[int, dict[str, CourseState]] = defaultdict(dict)
    for row in courses:
        if row.user_id in users:
            states[row.user_id][row.course_key] = CourseState(row.org, row.mode, row.is_active, row.grade,
                                                              row.is_passing)
    return {user_id: LearnerSnapshot(user_id, row.username, row.registered_at, row.last_login, row.country,
                                     states.get(user_id, {}))
            for user_id, row in users.items()}
