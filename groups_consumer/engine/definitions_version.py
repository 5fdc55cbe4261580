"""Definition changes and event batches never overlap: the definitions' version, locked by both sides.

A consumer evaluates events against the groups it compiled (its catalog). A definition that changed while a
batch was being evaluated with the old one (a group disabled, deleted, moved to another exclusive set) would
let the batch write memberships the change had just removed, and nothing would remove them again (a disabled
or deleted group is never synced). So:

- every transaction that changes definitions increments the ``DefinitionsVersion`` row first
  (``mark_definitions_changed``; saving or deleting a ``Group`` does it too, for changes made elsewhere, such as
  the admin);
- every event batch reads the version first, under a share lock (``locked_definitions_version``), and is
  evaluated only if its catalog was compiled from that version; otherwise it reloads the catalog and starts
  again.

On PostgreSQL the change's update waits for the batches in flight (share locks do not block each other, so
consumers never wait for one another), and the batches that start meanwhile wait for the change to commit,
then see the new version. On SQLite, transactions are already serialized (IMMEDIATE). The change takes the
lock before touching anything else, so the two never wait for each other in opposite orders.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from groups_consumer.models import DefinitionsVersion

_TABLE = DefinitionsVersion._meta.db_table


class DefinitionsChanged(Exception):
    """The group definitions changed since the catalog was compiled: reload it and start the batch again."""


def mark_definitions_changed() -> None:
    """Increment the version in the current transaction (call it first: see the module docstring)."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {connection.ops.quote_name(_TABLE)} SET version = version + 1 WHERE id = 1")
        if cursor.rowcount:
            return
    # The row is missing (a database flushed by tests, or written before the migration that creates it).
    DefinitionsVersion.objects.get_or_create(id=1, defaults={"version": 1})


def definitions_version() -> int:
    """The current version (0 before any change)."""
    return DefinitionsVersion.objects.filter(id=1).values_list("version", flat=True).first() or 0


def locked_definitions_version() -> int:
    """The current version, share-locked until the transaction ends (no definition change commits meanwhile)."""
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT version FROM {connection.ops.quote_name(_TABLE)} WHERE id = 1{lock}")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def on_group_saved_or_deleted(sender: Any, **kwargs: Any) -> None:
    """Signal receiver: a ``Group`` saved or deleted is a definition change."""
    mark_definitions_changed()
