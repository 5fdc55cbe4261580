"""``groups-consumer consume``: the long-running event consumer."""

import os
import signal
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from django.core.management.base import CommandError, CommandParser

from groups_consumer.broker import EmbeddedBroker
from groups_consumer.kafka_clients import NAMED_VARIABLES, KafkaSettingsError
from groups_consumer.management.base import GroupsCommand
from groups_consumer.pipeline import metrics
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer
from groups_consumer.plugin_checks import check_plugins

EMBEDDED_PORT = int(os.environ.get("EMBEDDED_KAFKA_PORT", 19092))


class Command(GroupsCommand):
    """Consume openedx-events into facts and memberships until SIGTERM / SIGINT."""

    help = "Consume openedx-events from Kafka (starts an embedded broker if KAFKA_BOOTSTRAP_SERVERS is unset)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-messages", type=int, help="stop after this many messages")
        parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                            help="once partitions are assigned, stop when no message arrived for this long "
                                 "(demos, tests, catch-up runs)")

    def handle(self, *args: Any, **options: Any) -> None:
        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            _refuse_security_for_the_embedded_broker()
        broker = EmbeddedBroker(port=EMBEDDED_PORT) if not servers else None
        with broker or nullcontext(servers) as bootstrap_servers:
            try:
                config = ConsumerConfig.from_env(bootstrap_servers)
                if broker is not None:
                    config = replace(config, kafka=config.kafka.with_properties(
                        "consumer", EmbeddedBroker.CONSUMER_PROPERTIES))
                    broker.create_topics([*config.topics, config.dlq_topic], config.kafka)
                    self.stderr.write(f"embedded broker (memory only) on {bootstrap_servers}")
                check_plugins()
                consumer = EventConsumer(config)
            except KafkaSettingsError as exc:
                raise CommandError(str(exc)) from None
            if os.environ.get("METRICS_PORT"):
                metrics.serve(int(os.environ["METRICS_PORT"]))
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: consumer.stop())
            limit, idle = options["max_messages"], options["exit_when_idle"]
            consumer.run(until=lambda stats: (limit is not None and stats.messages >= limit)
                         or (idle is not None and stats.idle_s() > idle))


def _refuse_security_for_the_embedded_broker() -> None:
    """Security settings without KAFKA_BOOTSTRAP_SERVERS are a mistake: the embedded broker is plaintext."""
    given = [name for name in [*NAMED_VARIABLES, "EVENT_BUS_KAFKA_API_KEY"] if os.environ.get(name)]
    if given:
        raise CommandError(f"{', '.join(given)} set but KAFKA_BOOTSTRAP_SERVERS is not: the embedded broker "
                           "is plaintext; name your cluster in KAFKA_BOOTSTRAP_SERVERS")
