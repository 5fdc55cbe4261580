import os
import uuid

import pytest
import time_machine

from groups_consumer.broker import EmbeddedBroker
from groups_consumer.kafka_clients import KafkaClientSettings
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.plugins import registry
from tests.facts import NOW


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """SQLite tests use a file, as the service does: an in-memory database shared between threads fails on
    table locks instead of waiting, which no deployment sees."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture
def clock_at_now():
    """The wall clock stopped at ``tests.facts.NOW``, for code that reads the time itself (management commands,
    the consumer): facts built relative to ``NOW`` are then evaluated at ``NOW``, whatever the date."""
    with time_machine.travel(NOW, tick=False):
        yield NOW


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Each test sees the installed plugins as they are now (and no plugin state leaks between tests)."""
    registry.reset()
    yield
    registry.reset()


def pytest_configure(config):
    """Test messages are produced as the LMS does, against an in-process schema registry."""
    from tests.lms import use_mock_schema_registry

    use_mock_schema_registry()


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
    kafka = KafkaClientSettings.from_env(bootstrap_servers).with_properties(
        "consumer", EmbeddedBroker.CONSUMER_PROPERTIES)
    # Halves off: their second connection would not see the test's transaction (tests/test_halves.py turns them on).
    return ConsumerConfig(kafka=kafka, topics=(f"events-{run}",), group_id=f"g-{run}",
                          dlq_topic=f"dlq-{run}", batch_timeout_s=0.1, apply_in_halves="off")
