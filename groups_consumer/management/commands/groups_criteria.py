"""``groups-consumer criteria [--json]``."""

import json
from typing import Any

from django.core.management.base import CommandParser

from groups_consumer import api
from groups_consumer.management.base import GroupsCommand
from groups_consumer.plugin_checks import installed_plugins


class Command(GroupsCommand):
    """List criterion types (plugin package, config JSON schema) and fact sources (events, tables)."""

    help = "List criterion types with their plugin package and config schema, and fact sources with their events " \
           "and tables; --json: {\"criteria\": [...], \"fact_sources\": [...]}."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        criteria, sources = api.criterion_catalog(), installed_plugins()["fact_sources"]
        if options["json"]:
            self.stdout.write(json.dumps({"criteria": criteria, "fact_sources": sources}, indent=2))
            return
        self.stdout.write("Criterion types")
        for entry in criteria:
            if not entry["available"]:
                self.stdout.write(f"  {entry['name']:<16} UNAVAILABLE: {entry['error']}")
                continue
            self.stdout.write(f"  {entry['name']:<16} {entry['package']:<20} operators {' '.join(entry['operators'])}"
                              f"  scopes {','.join(entry['scopes'])}  reads {entry['backend']}")
            self.stdout.write(f"  {'':<16} config: {json.dumps(entry['config_schema'].get('properties', {}))}")
        self.stdout.write("Fact sources")
        for entry in sources:
            if not entry["available"]:
                self.stdout.write(f"  {entry['name']:<16} UNAVAILABLE: {entry['error']}")
                continue
            self.stdout.write(f"  {entry['name']:<16} {entry['package']:<20} tables {', '.join(entry['tables'])}")
            for event_type in entry["events"]:
                self.stdout.write(f"  {'':<16} consumes {event_type}")
