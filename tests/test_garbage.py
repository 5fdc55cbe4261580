"""The consumer's garbage collection: none inside a batch, cycles freed after it, the collector restored."""

import gc
import weakref

from groups_consumer.pipeline.garbage import CollectBetweenBatches


class Node:
    """A cycle-forming object."""

    def __init__(self):
        self.me = self


def test_cycles_wait_for_the_end_of_the_batch_and_the_collector_is_restored():
    now = [0.0]
    collector = CollectBetweenBatches(full_every_s=60, clock=lambda: now[0])
    assert gc.isenabled()
    collector.start()
    try:
        assert not gc.isenabled()
        cycle = Node()
        alive = weakref.ref(cycle)
        del cycle
        for _ in range(200_000):  # far past the default thresholds: still no collection
            Node.__new__(Node)
        assert alive() is not None
        collector.after_batch()
        assert alive() is None

        now[0] = 61  # a full collection is due: it frees older cycles too
        old = Node()
        gc.collect(1)  # promoted out of the young generations
        alive, old = weakref.ref(old), None
        collector.after_batch()
        assert alive() is None
    finally:
        collector.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
