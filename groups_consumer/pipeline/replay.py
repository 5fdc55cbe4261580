"""Replay: re-read the topics from the beginning or from a time, and converge.

A replay runs under its own consumer group (the live consumers keep their offsets and may keep running),
applies events exactly like the live consumer, and stops once it is caught up (no message for
``idle_s`` after its partitions were assigned). Applying events again is idempotent, so a replay over
state that already holds them changes nothing, and a replay into an empty or outdated database rebuilds
it. ``until`` leaves out events whose ``ce_time`` is later (they are read, not applied).

With ``processes`` > 1 the replay group has that many members, one per process (``replay_processes``), which
replay the partitions in parallel as that many live consumers would apply them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from confluent_kafka import TopicPartition

from groups_consumer.pipeline.accounting import ConsumerStats
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer, StartPosition
from groups_consumer.pipeline.replay_processes import replay_in_processes
from groups_consumer.progress import Progress


def replay(config: ConsumerConfig, *, since: datetime | None = None, until: datetime | None = None,
           idle_s: float = 5.0, processes: int = 1,
           on_progress: Callable[[int], None] = lambda messages: None) -> ConsumerStats:
    """Replay the configured topics with ``processes`` consumers; returns their counters, added up.
    ``on_progress`` gets the messages of every batch applied and committed (in this process, whichever process
    applied it), as the progress log counts them."""
    if processes < 1:
        raise ValueError(f"a replay needs at least one process, not {processes}")
    replay_config = replace(config, group_id=f"{config.group_id}-replay-{uuid.uuid4().hex[:8]}")
    with Progress("replay", _messages_to_read(config, since), "messages", group_id=replay_config.group_id,
                  processes=processes) as progress:

        def advance(messages: int) -> None:
            progress.advance(messages)
            on_progress(messages)

        if processes == 1:
            return replay_member(replay_config, since=since, until=until, idle_s=idle_s, on_progress=advance)
        return ConsumerStats.added_up(replay_in_processes(replay_config, processes, since=since, until=until,
                                                          idle_s=idle_s, on_progress=advance))


def replay_member(config: ConsumerConfig, *, since: datetime | None, until: datetime | None, idle_s: float,
                  on_progress: Callable[[int], None]) -> ConsumerStats:
    """One consumer of the replay group ``config.group_id``, until it has been idle ``idle_s``; ``on_progress``
    gets the messages of each batch."""
    consumer = EventConsumer(config, start=StartPosition(since),
                             accept=(lambda event: event.time <= until) if until else (lambda event: True),
                             on_batch=lambda messages: on_progress(len(messages)), report_partitions=False)
    return consumer.run(until=lambda stats: stats.idle_s() > idle_s)


def _messages_to_read(config: ConsumerConfig, since: datetime | None) -> int:
    """An estimate for the progress bar (brokers may report watermarks loosely)."""
    probe = config.new_consumer(f"{config.group_id}-probe")
    try:
        total = 0
        for topic in config.topics:
            partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
            for number in partitions:
                low, high = probe.get_watermark_offsets(TopicPartition(topic, number), timeout=10)
                if since is not None:
                    [start] = probe.offsets_for_times([TopicPartition(topic, number, int(since.timestamp() * 1000))],
                                                      timeout=10)
                    low = start.offset if start.offset >= 0 else high
                total += max(high - low, 0)
        return total
    finally:
        probe.close()
