"""``groups-consumer manual GROUP --csv FILE [--append]``."""

import csv
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from groups_consumer import api
from groups_consumer.management.base import GroupsCommand


class Command(GroupsCommand):
    """Replace or extend a manual group's users from a CSV of user ids or usernames (first column)."""

    help = "Replace (default) or extend a manual group's users from a CSV of user ids or usernames."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group", help="group name")
        self.add_scope_argument(parser)
        parser.add_argument("--csv", required=True, help="CSV file (first column: user id or username); - for stdin")
        parser.add_argument("--append", action="store_true", help="add to the current users instead of replacing them")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with (open(options["csv"], newline="") if options["csv"] != "-" else sys.stdin) as source:
                rows = list(csv.reader(source))
        except OSError as exc:
            raise CommandError(f"{options['csv']}: {exc}") from exc
        update = api.update_manual_group(self.group_from(options), rows, append=options["append"])
        for line, value, reason in update.unknown:
            self.stderr.write(f"line {line}: {value!r} skipped: {reason}")
        self.stdout.write(f"{update.user_ids} user(s) listed; {update.sync.changes.joined} joined, "
                          f"{update.sync.changes.left} left; {len(update.unknown)} row(s) skipped")
