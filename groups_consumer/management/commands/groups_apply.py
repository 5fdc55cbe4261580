"""``groups-consumer apply FILE.json``."""

import json
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from groups_consumer import api, definitions
from groups_consumer.management.base import GroupsCommand


class Command(GroupsCommand):
    """Create or update groups from a JSON file (one document or a list), then sync the changed ones."""

    help = "Create or update groups from a JSON file (a group document or a list of them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSON file; - for standard input")
        parser.add_argument("--no-sync", action="store_true", help="save only; memberships change at the next sync")
        parser.add_argument("--dry-run", action="store_true",
                            help="save nothing: print what each group would select and the differences saving "
                                 "would make (joins, leaves, exclusive siblings affected)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with (open(options["file"]) if options["file"] != "-" else sys.stdin) as source:
                data = definitions.decode(source.read())
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"{options['file']}: {exc}") from exc
        if options["dry_run"]:
            for preview in api.preview_documents(data):
                self._print_preview(preview)
            return
        report = api.apply_definitions(data, sync=not options["no_sync"])
        for outcome in ("created", "updated", "unchanged"):
            for name in getattr(report, outcome):
                self.stdout.write(f"{outcome:<10} {name}")
        if report.sync:
            self.stdout.write(f"synced {len(report.sync.groups)} group(s): {report.sync.changes.joined} joined, "
                              f"{report.sync.changes.left} left")

    def _print_preview(self, preview: api.Preview) -> None:
        changes = preview.changes
        self.stdout.write(f"{preview.group}: {preview.members_before} -> {preview.members_after} member(s) "
                          f"({preview.qualifying} qualify before exclusivity); would join {changes.joined}"
                          f"{_sample(changes.joined_sample)}, would leave {changes.left}{_sample(changes.left_sample)}")
        for sibling, moved in preview.siblings.items():
            self.stdout.write(f"  exclusive sibling {sibling}: would join {moved.joined}"
                              f"{_sample(moved.joined_sample)}, would leave {moved.left}{_sample(moved.left_sample)}")


def _sample(user_ids: list[int]) -> str:
    return f" (e.g. users {', '.join(map(str, user_ids))})" if user_ids else ""
