"""Whether the database can evaluate a group's rule, asked before a definition is saved and before a sync walks
the users: one group the database refuses (a rule saved before the definition limits, a database that changed)
is marked broken and left out, and the other groups go on."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog
from django.db import DatabaseError, transaction
from django.utils import timezone

from groups_consumer.engine.catalog import UNEVALUABLE, CompiledGroup, GroupCatalog
from groups_consumer.engine.definitions_version import mark_definitions_changed
from groups_consumer.models import Group, UserFact
from groups_consumer.shared import Selection, UserRange, probe

log = structlog.get_logger(__name__)


def evaluation_error(group: CompiledGroup, now: datetime) -> str | None:
    """Why the database cannot evaluate the group's rule (its broken reason), or None when it can.

    Every query of the group's selection is compiled by the database as a sync runs it, on a range of no
    users, in a savepoint (a failing query aborts the transaction around it on PostgreSQL). A criterion that
    cannot build its selection now for another reason (its backend is down) says nothing of the rule: that is
    logged, not refused, and the sync reports it as any failure of the backend."""
    try:
        with transaction.atomic():
            probe(group.members(now))
    except DatabaseError as exc:
        return _refusal(exc)
    except Exception as exc:  # a plugin's own failure
        log.warning("evaluation_not_checked", group=str(group), error=f"{type(exc).__name__}: {exc}")
    return None


def selection_error(selection: Selection, within: UserRange | None = None) -> str | None:
    """Why the database cannot resolve ``selection`` (on ``within``; default: compile its queries only), or
    None when it can."""
    try:
        with transaction.atomic():
            if within is None:
                probe(selection)
            else:
                selection.resolve(within)
    except DatabaseError as exc:
        return _refusal(exc)
    return None


def _refusal(error: DatabaseError) -> str:
    """The broken reason for a query the database refused; when the database then fails a trivial query too,
    the trouble is the database's, not the rule's: the error is raised again."""
    if not database_answers():
        raise error
    return f"{UNEVALUABLE}{error}"


def database_answers() -> bool:
    """True when the database runs a trivial query (so an error just seen came from the query, not from it)."""
    try:
        with transaction.atomic():
            UserFact.objects.filter(user_id=0).exists()
    except DatabaseError:
        return False
    return True


def mark_broken(catalog: GroupCatalog, group: CompiledGroup, reason: str) -> None:
    """Store the group's broken reason and hold it as broken in ``catalog``; it is a definition change, so every
    process (consumers included) reloads and holds the group too. Not to be called while holding users' locks
    (see ``engine.definitions_version``)."""
    with transaction.atomic():
        mark_definitions_changed()
        Group.objects.filter(id=group.id).update(broken_reason=reason, modified=timezone.now())
    catalog.groups[group.id] = replace(group, rule=None, broken_reason=reason)
    log.error("group_broken", group=group.name, scope=str(group.scope), reason=reason)
