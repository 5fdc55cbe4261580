"""Rows written by the bulk statements (COPY / executemany inserts, array-joined updates and deletes) read back
as the values they were written from: odd strings, NULLs, booleans, floats given as ints, choices, timestamps."""

import time
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction

from groups_consumer import bulk_sql
from groups_consumer.models import CourseFact, Group, MembershipChange, Scope, UserFact

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
NAMES = ["plain", 'a "quoted" word', "back\\slash", "", "NULL", "{braces}, commas"]


def test_inserts_and_updates_round_trip():
    bulk_sql.insert(UserFact, ["user_id", "username", "last_login", "country"],
                    [(n, name, AT if n % 2 else None, None) for n, name in enumerate(NAMES, start=1)])
    assert [(u.username, u.last_login) for u in UserFact.objects.order_by("user_id")] == [
        (name, AT if n % 2 else None) for n, name in enumerate(NAMES, start=1)]

    bulk_sql.update(UserFact, ["user_id"], ["username", "country"],
                    [(name.upper(), "ES" if n % 3 else None, n) for n, name in enumerate(NAMES, start=1)])
    assert [(u.username, u.country) for u in UserFact.objects.order_by("user_id")] == [
        (name.upper(), "ES" if n % 3 else None) for n, name in enumerate(NAMES, start=1)]


def test_a_column_mixing_ints_and_floats_or_choices_and_strings_is_sent_whole():
    UserFact.objects.create(user_id=1)
    rows = bulk_sql.insert_ignoring_conflicts(
        CourseFact, ["user_id", "course_key", "org", "is_active"],
        [(1, f"course-v1:O+C{n}+R", "O", n % 2 == 0) for n in range(3)], returning=["id"])
    ids = sorted(row[0] for row in rows) or sorted(CourseFact.objects.values_list("id", flat=True))
    bulk_sql.update(CourseFact, ["id"], ["grade", "is_passing"], [(1, True, ids[0]), (0.25, None, ids[1]),
                                                                  (None, False, ids[2])])
    assert list(CourseFact.objects.order_by("id").values_list("grade", "is_passing", "is_active")) == [
        (1.0, True, True), (0.25, None, False), (None, False, True)]

    group = Group.objects.create(name="g", scope=Scope.objects.create(type="instance", key=""), rule={})
    bulk_sql.insert(MembershipChange, ["group_id", "user_id", "kind", "at", "cause", "cause_id"],
                    [(group.id, 1, MembershipChange.Kind.JOINED, AT, "event", "e1"),
                     (group.id, 1, "left", AT, "event", 'e"2')])
    assert list(MembershipChange.objects.order_by("id").values_list("kind", "cause_id", "at")) == [
        ("joined", "e1", AT), ("left", 'e"2', AT)]

    bulk_sql.delete(CourseFact, ["user_id", "course_key"], [(1, "course-v1:O+C0+R"), (1, "course-v1:O+C2+R")])
    assert list(CourseFact.objects.values_list("course_key", flat=True)) == ["course-v1:O+C1+R"]
    assert bulk_sql.select_where_in(f"SELECT user_id FROM {UserFact._meta.db_table} WHERE", "user_id",
                                    {1, 2}) == [(1,)]


def test_statements_sent_without_waiting_are_answered_in_order_and_inserts_go_without_copy():
    with bulk_sql.overlapping():
        # On PostgreSQL in libpq's pipeline mode, where COPY cannot run.
        assert connection.vendor != "postgresql" or connection.connection.pgconn.pipeline_status
        bulk_sql.insert(UserFact, ["user_id", "username"], [(n, name) for n, name in enumerate(NAMES, start=1)])
        bulk_sql.update(UserFact, ["user_id"], ["username"], [(f"{name}!", n) for n, name in enumerate(NAMES, start=1)])
        read = bulk_sql.select_where_in("SELECT user_id, username FROM groups_consumer_userfact WHERE", "user_id",
                                        range(1, len(NAMES) + 1), suffix="ORDER BY user_id")
    assert read == [(n, f"{name}!") for n, name in enumerate(NAMES, start=1)]  # the read waited for both writes


def test_a_statement_refused_inside_the_overlap_raises_a_django_error_by_the_end_of_it():
    UserFact.objects.create(user_id=1)
    with pytest.raises(IntegrityError), transaction.atomic(), bulk_sql.overlapping():
        bulk_sql.update(UserFact, ["user_id"], ["username"], [(None, 1)])  # NOT NULL
    assert UserFact.objects.get(user_id=1).username == ""


def test_the_wait_for_an_answer_does_the_given_work_until_the_answer_arrives():
    """On PostgreSQL, a read by id sent inside ``filling_waits`` calls the work while the server is busy (here
    0.2 s asleep), stops once the answer is there (work left over), and reads the same rows; elsewhere the work
    is never called."""
    bulk_sql.insert(UserFact, ["user_id", "username"], [(n, f"u{n}") for n in range(1, 4)])
    steps = []

    def work():
        steps.append(time.monotonic())
        time.sleep(0.01)
        return True  # never runs out
    started = time.monotonic()
    with bulk_sql.filling_waits(work):
        read = bulk_sql.select_where_in(f"SELECT user_id, username, pg_sleep(0.2)::text FROM "
                                        f"{UserFact._meta.db_table} WHERE" if connection.vendor == "postgresql"
                                        else f"SELECT user_id, username, '' FROM {UserFact._meta.db_table} WHERE",
                                        "user_id", [1, 3], suffix="ORDER BY user_id LIMIT 2")
    assert [row[:2] for row in read] == [(1, "u1"), (3, "u3")]
    if connection.vendor != "postgresql":
        assert steps == []
        return
    assert len(steps) >= 5  # about 0.2 s of 10 ms steps...
    assert steps[-1] - started < 0.6  # ...stopped once the answer came, though the work had more
    assert connection.connection.pgconn.pipeline_status == 0  # back out of pipeline mode


def test_writes_wait_doing_the_work_too_but_not_those_sent_without_waiting():
    """Work that has run out (False) is asked once per wait, then the driver waits as usual."""
    bulk_sql.insert(UserFact, ["user_id", "username"], [(1, "a")])
    calls = []
    read = f"SELECT username FROM {UserFact._meta.db_table} WHERE"
    with transaction.atomic(), bulk_sql.filling_waits(lambda: calls.append(1) or False):
        bulk_sql.update(UserFact, ["user_id"], ["username"], [("b", 1)])
        after_write = len(calls)
        assert bulk_sql.select_where_in(read, "user_id", [1]) == [("b",)]
        after_read = len(calls)
        with bulk_sql.overlapping():
            bulk_sql.update(UserFact, ["user_id"], ["username"], [("c", 1)])
            after_overlapped_write = len(calls)
            assert bulk_sql.select_where_in(read, "user_id", [1]) == [("c",)]
    expected = [1, 2, 2, 3] if connection.vendor == "postgresql" else [0, 0, 0, 0]
    assert [after_write, after_read, after_overlapped_write, len(calls)] == expected


def test_the_wait_for_the_end_of_a_copy_does_the_work_too():
    """On PostgreSQL, inserts are a COPY, whose end waits while the server writes the rows and their index
    entries: that wait calls the work; elsewhere it is never called."""
    calls = []
    with transaction.atomic(), bulk_sql.filling_waits(lambda: calls.append(1) or True):
        bulk_sql.insert(UserFact, ["user_id", "username"], [(n, f"u{n}") for n in range(1, 20_001)])
    assert UserFact.objects.count() == 20_000 and UserFact.objects.get(user_id=20_000).username == "u20000"
    assert (len(calls) > 0) == (connection.vendor == "postgresql")


def test_a_refused_copy_in_a_filled_wait_raises_a_django_error_and_leaves_the_connection_usable():
    UserFact.objects.create(user_id=2, username="kept")
    with pytest.raises(IntegrityError), transaction.atomic(), bulk_sql.filling_waits(lambda: True):
        bulk_sql.insert(UserFact, ["user_id", "username"], [(n, "new") for n in range(1, 1001)])  # 2 exists
    assert list(UserFact.objects.values_list("user_id", "username")) == [(2, "kept")]


def test_inserted_rows_get_their_ids_in_their_order():
    group = Group.objects.create(name="g", scope=Scope.objects.create(type="instance", key=""), rule={})
    columns = ["group_id", "user_id", "kind", "at", "cause", "cause_id"]
    rows = [(group.id, n, MembershipChange.Kind.JOINED if n % 2 else "left", AT, "event", name)
            for n, name in enumerate(NAMES, start=1)]
    first, second = (bulk_sql.insert_with_ids(MembershipChange, columns, part) for part in (rows[:2], rows[2:]))
    stored = {id_: values for id_, *values in MembershipChange.objects.values_list("id", *columns)}
    assert first + second == sorted(stored) and [stored[id_] for id_ in first + second] == [list(r) for r in rows]


def test_a_refused_statement_in_a_filled_wait_raises_a_django_error():
    UserFact.objects.create(user_id=1)
    with pytest.raises(IntegrityError), transaction.atomic(), bulk_sql.filling_waits(lambda: True):
        bulk_sql.update(UserFact, ["user_id"], ["username"], [(None, 1)])  # NOT NULL
    assert UserFact.objects.get(user_id=1).username == ""
