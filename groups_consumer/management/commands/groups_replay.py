"""``groups-consumer replay --from-beginning | --from-time ISO [--to-time ISO]``."""

import os
from argparse import ArgumentTypeError
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from groups_consumer.kafka_clients import KafkaSettingsError
from groups_consumer.management.base import GroupsCommand
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.replay import NothingToReplay, replay
from groups_consumer.plugin_checks import check_plugins


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"{text!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ArgumentTypeError(f"{text} is not a positive number")
    return number


class Command(GroupsCommand):
    """Re-read the topics under a separate consumer group and converge (idempotent), with progress."""

    help = "Replay the topics from the beginning or from a time (requires KAFKA_BOOTSTRAP_SERVERS)."

    def add_arguments(self, parser: CommandParser) -> None:
        start = parser.add_mutually_exclusive_group(required=True)
        start.add_argument("--from-beginning", action="store_true")
        start.add_argument("--from-time", type=_instant, metavar="ISO", help="first message at or after this time")
        parser.add_argument("--to-time", type=_instant, metavar="ISO", help="apply events up to this ce_time")
        parser.add_argument("--idle", type=float, default=5.0, help="seconds without messages that end the replay")
        parser.add_argument("--processes", type=_positive, default=1,
                            help="consumers of the replay, one per process: partitions replayed in parallel")

    def handle(self, *args: Any, **options: Any) -> None:
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            raise CommandError("KAFKA_BOOTSTRAP_SERVERS is not set: replay reads an existing broker")
        check_plugins()
        try:
            config = ConsumerConfig.from_env()
            stats = replay(config, since=options["from_time"], until=options["to_time"], idle_s=options["idle"],
                           processes=options["processes"])
        except (KafkaSettingsError, NothingToReplay) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"replayed {stats.messages} messages: {stats.events} events applied, "
                          f"{stats.dead_letters} dead letters, {stats.membership_changes} membership changes")
