"""The array literals bulk statements send to PostgreSQL read back as the values they were built from."""

from datetime import datetime, timezone

import pytest
from django.conf import settings

from groups_consumer import bulk_sql

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                                 reason="array literals: PostgreSQL only")]


@pytest.mark.parametrize("values, sql_type", [
    ([1, None, 2**40], "bigint"),
    ([datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=timezone.utc), None], "timestamptz"),
    (['plain', 'a "quoted" word', "back\\slash", "", "NULL", "{braces}, commas", None], "text"),
    ([True, False, None], "boolean"),
    ([0.1, 1e-05, None], "float8"),
])
def test_array_literals_round_trip(values, sql_type):
    with bulk_sql.cursor() as db:
        db.execute(f"SELECT %s::{sql_type}[]", [bulk_sql._array(values)])
        assert db.fetchone()[0] == values
