"""The users the service knows, and the one way to hold them while their facts or memberships change.

Every user any event mentioned has a ``UserFact`` row: the instance population. Whoever changes a user's facts
or memberships (a consumer batch, a sync range, a time pass, a manual list, the API) first locks that row and
keeps the lock until its transaction commits, so no writer decides on facts another is changing. Each call
locks in user-id order; a consumer batch locks its known users, then the users it has just created (which no
other transaction can hold yet, as it does not know them), so concurrent writers never deadlock. SQLite
locks the whole database for each writing transaction, so there the row locks are implied.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from groups_consumer import bulk_sql
from groups_consumer.models import UserFact
from groups_consumer.shared import UserRange

_TABLE = UserFact._meta.db_table


def lock(users: Collection[int] | UserRange, *, skip_locked: bool = False) -> set[int]:
    """Lock the rows of the known users among ``users`` (ids or a range) until the transaction ends, in
    user-id order; returns the users held. ``skip_locked`` leaves out, instead of waiting for them, the users
    another transaction holds."""
    if isinstance(users, UserRange):
        query = UserFact.objects.filter(users.q()).order_by("user_id").values_list("user_id", flat=True)
        if bulk_sql.is_postgres():
            query = query.select_for_update(skip_locked=skip_locked)
        return set(query)
    return set(lock_reading(users, (), skip_locked=skip_locked))


def lock_reading(user_ids: Collection[int], columns: Sequence[str], *,
                 skip_locked: bool = False) -> dict[int, tuple[Any, ...]]:
    """``lock`` for ids, reading ``columns`` of the rows it locks in the same statement (the built-in learner
    facts live in this table): the values by user id, as the database driver gives them."""
    suffix = ""
    if bulk_sql.is_postgres():
        suffix = "ORDER BY user_id FOR UPDATE SKIP LOCKED" if skip_locked else "ORDER BY user_id FOR UPDATE"
    found = bulk_sql.select_where_in(f"SELECT {', '.join(['user_id', *columns])} FROM {_TABLE} WHERE", "user_id",
                                     sorted(user_ids), suffix=suffix)
    return {row[0]: row[1:] for row in found}


def known(users: Collection[int] | UserRange) -> set[int]:
    """The users among ``users`` (ids or a range) that have a row now, without locking."""
    if isinstance(users, UserRange):
        return set(UserFact.objects.filter(users.q()).values_list("user_id", flat=True))
    return {row[0] for row in bulk_sql.select_where_in(f"SELECT user_id FROM {_TABLE} WHERE", "user_id", users)}


def count(users: UserRange) -> int:
    """How many known users a range has now."""
    return UserFact.objects.filter(users.q()).count()


def create(user_ids: Collection[int]) -> None:
    """Insert rows for users first heard of, in user-id order (existing rows are left as they are)."""
    bulk_sql.insert_ignoring_conflicts(UserFact, ["user_id", "username"], [(u, "") for u in sorted(user_ids)])


def ranges(size: int) -> Iterator[UserRange]:
    """Consecutive ranges of about ``size`` known users covering every user id; the last is open-ended."""
    after = None
    while True:
        ids = UserFact.objects.order_by("user_id").values_list("user_id", flat=True)
        if after is not None:
            ids = ids.filter(user_id__gt=after)
        upto = ids[size - 1:size].first()
        yield UserRange(after, upto)
        if upto is None:
            return
        after = upto
