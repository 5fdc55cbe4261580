"""The consumer's garbage collection: none inside a batch, cycles freed after it, the collector restored."""

import gc
import weakref

from groups_consumer.pipeline.garbage import CollectBetweenBatches


class Node:
    """A cycle-forming object."""

    def __init__(self):
        self.me = self


def test_cycles_wait_for_the_next_full_collection_and_the_collector_is_restored():
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
        collector.after_batch()  # frozen, not traversed
        assert alive() is not None

        now[0] = 61  # a full collection is due: it frees every cycle, frozen ones too
        collector.after_batch()
        assert alive() is None
    finally:
        collector.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_what_a_batch_leaves_alive_is_not_traversed_by_the_next_batch_s_collection():
    """The batch polled ahead (here: many live objects) is frozen after the batch, not scanned."""
    now = [0.0]
    collector = CollectBetweenBatches(full_every_s=60, clock=lambda: now[0])
    collector.start()
    try:
        ahead = [[n] for n in range(100_000)]
        collector.after_batch()
        assert gc.get_freeze_count() >= len(ahead)
    finally:
        collector.stop()
