import pytest

from groups_consumer.plugins import registry


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
