import pytest

from groups_consumer.plugins import registry


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Each test sees the installed plugins as they are now (and no plugin state leaks between tests)."""
    registry.reset()
    yield
    registry.reset()
