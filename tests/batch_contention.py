"""A second database connection, as another process's transaction in tests of locks (PostgreSQL)."""

import psycopg
from django.db import connection


def other_transaction() -> psycopg.Connection:
    """A new connection to the test database, outside Django: its transaction is another process's."""
    db = connection.settings_dict
    return psycopg.connect(dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None,
                           host=db["HOST"] or None, port=db["PORT"] or None)
