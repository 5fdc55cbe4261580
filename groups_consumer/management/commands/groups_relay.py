"""``groups-consumer relay``: publishes membership changes from the outbox to Kafka (long-running)."""

import os
import signal
import threading
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from django.core.management.base import CommandError, CommandParser

from groups_consumer.kafka_clients import KafkaClientSettings, KafkaSettingsError
from groups_consumer.management.base import GroupsCommand
from groups_consumer.management.commands.groups_consume import EMBEDDED_PORT
from groups_consumer.pipeline import metrics
from groups_consumer.publishing import outbox
from groups_consumer.publishing.config import PublishingSettings
from groups_consumer.publishing.relay import HANDOVER_S, Relay


class Command(GroupsCommand):
    """Publish the outbox to ``KAFKA_MEMBERSHIP_TOPIC`` until SIGTERM / SIGINT; one relay publishes at a time,
    others wait as standbys."""

    help = ("Publish membership changes to KAFKA_MEMBERSHIP_TOPIC (needs SCHEMA_REGISTRY_URL); idles while "
            "publishing is off. Without KAFKA_BOOTSTRAP_SERVERS it publishes to the embedded broker of "
            "'groups-consumer consume'.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--exit-when-empty", action="store_true",
                            help="stop once no change waits to be published (tests, catch-up runs)")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = PublishingSettings.current()
        handover_s = _handover_s()
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        if not settings.enabled:
            self.stderr.write("publishing is off (KAFKA_MEMBERSHIP_TOPIC is not set): nothing to relay")
            if not options["exit_when_empty"]:
                stopping.wait()
            return
        registry_url = os.environ.get("SCHEMA_REGISTRY_URL")
        if not registry_url:  # mock://...: confluent-kafka's in-process registry (trials: no one else can read)
            raise CommandError("SCHEMA_REGISTRY_URL is not set: published events are framed with their schema "
                               "registry ids, which edx-event-bus-kafka's consumer resolves there")
        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{EMBEDDED_PORT}"
        try:
            relay = Relay.connect(KafkaClientSettings.from_env(servers),
                                  SchemaRegistryClient.new_client({"url": registry_url}), settings,
                                  handover_s=handover_s)
        except KafkaSettingsError as exc:
            raise CommandError(str(exc)) from None
        if os.environ.get("RELAY_METRICS_PORT"):
            metrics.serve(int(os.environ["RELAY_METRICS_PORT"]))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: relay.stop())
        if stopping.is_set():  # asked to stop while connecting
            return
        relay.run(until=lambda r: options["exit_when_empty"] and outbox.backlog().pending == 0)


def _handover_s() -> float:
    """``MEMBERSHIP_RELAY_HANDOVER_S``, in seconds (> 0)."""
    try:
        seconds = float(os.environ.get("MEMBERSHIP_RELAY_HANDOVER_S", HANDOVER_S))
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise CommandError("MEMBERSHIP_RELAY_HANDOVER_S must be a number of seconds > 0")
    return seconds
