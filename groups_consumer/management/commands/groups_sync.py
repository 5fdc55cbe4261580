"""``groups-consumer sync [--group NAME] [--scope SCOPE]``."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from groups_consumer import api
from groups_consumer.engine.full_sync import DEFAULT_CHUNK
from groups_consumer.management.base import GroupsCommand


class Command(GroupsCommand):
    """Full sync: recompute groups and write only the differences, in bounded batches with progress."""

    help = "Recompute groups (all by default) and write only the membership differences."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", help="group name")
        self.add_scope_argument(parser)
        parser.add_argument("--chunk-size", type=int, help=f"users per batch (default {DEFAULT_CHUNK})")

    def handle(self, *args: Any, **options: Any) -> None:
        groups = list(api.groups_matching(options["group"], api.parse_scope(options["scope"])))
        if not groups:
            raise CommandError("no group matches")
        report = api.sync_groups(groups, chunk_size=options["chunk_size"])
        for group, reason in api.not_synced(groups, report):
            self.stdout.write(f"not synced: {group} ({reason})")
        self.stdout.write(f"synced {len(report.groups)} group(s) over {report.users_scanned} users in "
                          f"{report.seconds:.1f}s: {report.changes.joined} joined, {report.changes.left} left "
                          f"(run {report.run_id})")
