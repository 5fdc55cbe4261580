"""``groups-consumer explain --user ID --group NAME``."""

from typing import Any

from django.core.management.base import CommandParser

from groups_consumer import api
from groups_consumer.management.base import GroupsCommand


class Command(GroupsCommand):
    """Explain a user's membership: each leaf's outcome and what it saw, and the exclusive set's decision."""

    help = "Explain why a user is or is not in a group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", type=int, required=True, help="LMS user id")
        parser.add_argument("--group", required=True, help="group name")
        self.add_scope_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        explanation = api.explain(options["user"], self.group_from(options))
        self.stdout.write(f"user {explanation.user_id} / group {explanation.group}: "
                          f"{'member' if explanation.is_member else 'not a member'}; "
                          f"{'qualifies' if explanation.qualifies else 'does not qualify'}")
        for line in explanation.lines:
            self.stdout.write(line)
