"""The entry point of a benchmark consumer process (``measures.end_to_end`` with several processes).

Spawned in a fresh interpreter, it sets Django up from the inherited environment before importing anything
that touches models, then runs the service's consumer and sends back what it measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nothing that touches models before django.setup()
    from multiprocessing import Queue

    from bench.measures import Consumption, SharedCount
    from groups_consumer.pipeline.config import ConsumerConfig


def run(config: ConsumerConfig, count: int, total: SharedCount, results: Queue[Consumption]) -> None:
    """Consume until the group's shared ``total`` reaches ``count``; put the ``Consumption`` on ``results``."""
    import django

    django.setup()
    from django.db import connection

    from bench.measures import consume

    try:
        results.put(consume(config, count, total))
    finally:
        connection.close()
