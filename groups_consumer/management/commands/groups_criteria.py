"""``groups-consumer criteria [--json]``."""

import json
from typing import Any

from django.core.management.base import CommandParser

from groups_consumer import api
from groups_consumer.management.base import GroupsCommand


class Command(GroupsCommand):
    """List registered criterion types with their plugin package and config JSON schema."""

    help = "List criterion types, their plugin package and config schema."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        listing = api.criterion_catalog()
        if options["json"]:
            self.stdout.write(json.dumps(listing, indent=2))
            return
        for entry in listing:
            if "error" in entry:
                self.stdout.write(f"{entry['name']:<16} UNAVAILABLE: {entry['error']}")
                continue
            self.stdout.write(f"{entry['name']:<16} {entry['package']:<20} operators {' '.join(entry['operators'])}"
                              f"  scopes {','.join(entry['scopes'])}")
            self.stdout.write(f"{'':<16} config: {json.dumps(entry['config_schema'].get('properties', {}))}")
