import os
import uuid

import pytest

from groups_consumer.broker import EmbeddedBroker
from groups_consumer.pipeline.config import ConsumerConfig

from groups_consumer.plugins import registry


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """SQLite tests use a file, as the service does: an in-memory database shared between threads fails on
    table locks instead of waiting, which no deployment sees."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Each test sees the installed plugins as they are now (and no plugin state leaks between tests)."""
    registry.reset()
    yield
    registry.reset()


def pytest_configure(config):
    """edx-event-bus-kafka's serializers (used to produce test messages as the LMS does) need a schema registry:
    confluent-kafka's in-process one stands in for the server that cannot run here."""
    import edx_event_bus_kafka.internal.producer as lms_producer
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient

    registry = MockSchemaRegistryClient({"url": "mock://lms-registry"})
    lms_producer.get_schema_registry_client = lambda: registry


@pytest.fixture(scope="session")
def bootstrap_servers():
    """A real Kafka-protocol broker: KAFKA_BOOTSTRAP_SERVERS, or an embedded tansu for the session."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with EmbeddedBroker() as servers:
        yield servers


@pytest.fixture
def config(bootstrap_servers):
    """Consumer settings with a topic, group and dead-letter topic of the test's own."""
    run = uuid.uuid4().hex[:8]
    return ConsumerConfig(bootstrap_servers=bootstrap_servers, topics=(f"events-{run}",), group_id=f"g-{run}",
                          dlq_topic=f"dlq-{run}", batch_timeout_s=0.1)
