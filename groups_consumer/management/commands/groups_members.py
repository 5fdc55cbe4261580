"""``groups-consumer members GROUP [--scope SCOPE] [--json]``."""

import json
from typing import Any

from django.core.management.base import CommandParser

from groups_consumer import api
from groups_consumer.management.base import GroupsCommand


class Command(GroupsCommand):
    """List a group's members, one user id per line or as JSON."""

    help = "List the members of a group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group", help="group name")
        self.add_scope_argument(parser)
        parser.add_argument("--json", action="store_true", help="one JSON document with the members")

    def handle(self, *args: Any, **options: Any) -> None:
        group = self.group_from(options)
        rows = api.members(group).values_list("user_id", "joined_at")
        if options["json"]:
            self.stdout.write(json.dumps({
                "group": group.name, "scope": str(group.scope), "broken_reason": group.broken_reason or None,
                "members": [{"user_id": uid, "joined_at": joined.isoformat()} for uid, joined in rows.iterator()],
            }))
        else:
            for user_id, _joined in rows.iterator():
                self.stdout.write(str(user_id))
