"""Arrays packed by ``pg_arrays`` read back by PostgreSQL as the values they were packed from, with NULLs and
empty; values it does not pack are left to psycopg, and a value out of its type's range is refused."""

import struct
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from groups_consumer import bulk_sql, pg_arrays

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                                 reason="PostgreSQL's array parameters")]

AT = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
CASES = {
    "bigint": [1, 2**62, -5, 0],
    "integer": [7, -(2**31), 2**31 - 1],
    "smallint": [3, -4],
    "double precision": [0.25, 1e300, -3.5],
    "boolean": [True, False, True],
    "timestamp with time zone": [AT, AT - timedelta(days=9000), AT.astimezone(timezone(timedelta(hours=-5)))],
}


def _read_back(parameter: object, pg_type: str) -> list[object]:
    with bulk_sql.cursor() as db:
        db.execute(f"SELECT unnest(%b::{pg_type}[])", [parameter])
        return [row[0] for row in db.fetchall()]


@pytest.mark.parametrize("pg_type", CASES)
@pytest.mark.parametrize("shape", ["plain", "with NULLs", "empty", "one"])
def test_packed_arrays_read_back_as_their_values(pg_type, shape):
    values = CASES[pg_type]
    values = {"plain": values, "with NULLs": [None, *values[:1], None, *values[1:]], "empty": [],
              "one": values[:1]}[shape]
    packed = pg_arrays.array(values, pg_type)
    assert isinstance(packed, pg_arrays.PackedArray)
    assert _read_back(packed, pg_type) == values


def test_floats_columns_take_ints_and_other_values_are_left_to_psycopg():
    assert _read_back(pg_arrays.array([1, 0.5], "double precision"), "double precision") == [1.0, 0.5]
    for values, pg_type in [([True, 2], "bigint"),  # a bool is not packed as an integer
                            ([AT.replace(tzinfo=None)], "timestamp with time zone"),  # naive
                            (["a", None], "varchar"), ([1], "numeric")]:
        left = pg_arrays.array(values, pg_type)
        assert left == values and isinstance(left, list)


def test_a_value_out_of_its_type_s_range_is_refused_before_it_is_sent():
    with pytest.raises(struct.error):
        pg_arrays.array([2**31], "integer")


def test_every_new_connection_sends_them():
    other = connection.copy()  # a connection of its own, opened now
    try:
        other.ensure_connection()
        with psycopg.Cursor(other.connection) as db:  # binding on the server, as bulk_sql's
            db.execute("SELECT %b::bigint[]", [pg_arrays.array([4, None], "bigint")])
            assert db.fetchone() == ([4, None],)
    finally:
        other.close()
