"""``groups-consumer publish-snapshot [--group NAME] [--scope SCOPE]``."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from groups_consumer import api
from groups_consumer.engine.full_sync import DEFAULT_CHUNK
from groups_consumer.management.base import GroupsCommand
from groups_consumer.publishing.snapshot import publish_snapshot


class Command(GroupsCommand):
    """Publish the current members of groups as ``joined`` events (cause ``snapshot``) for a new subscriber."""

    help = ("Publish the current members of groups (all by default) as 'joined' membership events with cause "
            "'snapshot', through the outbox, in order with live changes (docs/membership-events.rst).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", help="group name")
        self.add_scope_argument(parser)
        parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                            help=f"users per transaction (default {DEFAULT_CHUNK})")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size: at least 1")
        groups = list(api.groups_matching(options["group"], api.parse_scope(options["scope"])))
        if not groups:
            raise CommandError("no group matches")
        report = publish_snapshot(groups, chunk_size=options["chunk_size"])
        for group, rows in report.rows.items():
            self.stdout.write(f"{group}: {rows} member(s)")
        self.stdout.write(f"snapshot {report.run_id}: {sum(report.rows.values())} event(s) recorded in "
                          f"{report.seconds:.1f}s; the relay publishes them")
