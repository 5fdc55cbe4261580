"""Start-up checks of the installed plugins that need the database, and the report of what is installed.

Run by the commands that apply events (``consume``, ``replay``) and the scheduler before they start: a plugin
fact source whose Django app has migrations not yet applied is left out (its tables may not exist), so only
what uses it stops: the criteria reading it break their groups with the reason, its events are dead-lettered
as ``source_unavailable``, the rest works. The service's own migrations not applied stop the command instead.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import structlog
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from groups_consumer.errors import GroupsError
from groups_consumer.plugins import registry

log = structlog.get_logger(__name__)
#: The service's own Django app.
CORE_APP = "groups_consumer"


def check_plugins() -> None:
    """Leave out the fact sources with unapplied migrations, then log what is installed and what cannot work.
    GroupsError if the service's own migrations are not applied."""
    try:
        unmigrated = _unmigrated_apps()
    except DatabaseError as exc:  # the commands wait for the database themselves
        log.warning("plugin_checks_deferred", error=str(exc))
        unmigrated = {}
    if CORE_APP in unmigrated:
        raise GroupsError(f"the database is not up to date: {unmigrated[CORE_APP]}")
    for name, plugin in sorted(registry.fact_source_classes().plugins.items()):
        if reason := unmigrated.get(plugin.obj.app_label()):
            log.error("fact_source_unavailable", source=name, package=plugin.source, reason=reason)
            registry.disable_fact_source(name, reason)
    report = installed_plugins()
    log.info("plugins_checked", fact_sources=[f"{s['name']} ({s['package']})" for s in report["fact_sources"]
                                              if s["available"]],
             event_types=len({e for s in report["fact_sources"] for e in s.get("events", [])}))
    for entry in report["unavailable"]:
        log.error("plugin_unavailable", **entry)


def _unmigrated_apps() -> dict[str, str]:
    """The apps with migrations not applied, with a sentence saying so."""
    executor = MigrationExecutor(connection)
    pending: dict[str, list[str]] = defaultdict(list)
    for migration, _backwards in executor.migration_plan(executor.loader.graph.leaf_nodes()):
        pending[migration.app_label].append(migration.name)
    return {app_label: f"{len(names)} migration(s) of app {app_label!r} not applied (first {names[0]}): "
                       "run groups-consumer migrate" for app_label, names in pending.items()}


def installed_plugins() -> dict[str, Any]:
    """The fact sources (name, package, events, tables; or why they are unavailable), and every criterion type
    or fact source that cannot work, with why."""
    sources = registry.fact_source_classes()
    listing: list[dict[str, Any]] = [
        {"name": name, "available": True, "package": plugin.source, "class": plugin.target,
         "description": plugin.obj.description, "events": [spec.event_type for spec in plugin.obj.events],
         "tables": plugin.obj.tables(), "app": plugin.obj.app_label()}
        for name, plugin in sorted(sources.plugins.items())]
    listing += [{"name": name, "available": False, "error": sources.unavailable_reason(name)}
                for name in sorted({*sources.conflicts, *sources.failures})]
    types = registry.criterion_types()
    unavailable = [{"kind": "fact_source", "name": entry["name"], "error": entry["error"]}
                   for entry in listing if not entry["available"]]
    unavailable += [{"kind": "criterion", "name": name, "error": problem} for name in sorted(types.plugins)
                    if (problem := registry.criterion_problem(name))]
    unavailable += [{"kind": "criterion", "name": name, "error": types.unavailable_reason(name)}
                    for name in sorted({*types.conflicts, *types.failures})]
    return {"fact_sources": listing, "unavailable": unavailable}
