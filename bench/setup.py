"""The benchmark's own PostgreSQL database, created fresh for each run, and Django configured on it."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import psycopg


def fresh_database(url: str) -> None:
    """Drop and create the database named by ``url`` (never the test or production database by default)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise SystemExit("the benchmark runs on PostgreSQL: give --database-url postgres://...")
    name = parsed.path.lstrip("/")
    with psycopg.connect(host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432,
                         user=parsed.username or "postgres", password=parsed.password, dbname="postgres",
                         autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def django_on(url: str) -> None:
    """Configure Django on the database, create the schema, and produce as the LMS does."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("LOG_FORMAT", "json")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the benchmark prints its own progress
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "groups_consumer.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from tests.lms import use_mock_schema_registry

    use_mock_schema_registry()
