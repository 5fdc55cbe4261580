"""Replay: re-read the topics from the beginning or from a time, and converge.

A replay commits under a consumer group of its own (the live consumers keep their offsets and may keep
running), applies events exactly like the live consumer, and stops once it is caught up (no message for
``idle_s`` after its partitions were assigned). It reads the partitions the topics have when it starts,
assigned to its consumers rather than shared by the group protocol: no join to wait for (seconds for a new
group: a Kafka broker's ``group.initial.rebalance.delay.ms``, half the session timeout on tansu), and no
rebalance. Applying events again is idempotent, so a replay over state that already holds them changes
nothing, and a replay into an empty or outdated database rebuilds it. ``until`` leaves out events whose
``ce_time`` is later (they are read, not applied).

With ``processes`` > 1 the partitions are dealt to that many consumers, one per process
(``replay_processes``), which replay them in parallel as that many live consumers would apply them; a topic
with fewer partitions gets fewer processes.

A topic the broker does not have (no event of its types was ever produced, or a misspelt name) is left out
with a warning (``replay_topic_missing``); when none of the topics exists, the replay refuses to start
(``NothingToReplay``) rather than wait for messages that cannot come.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple

import structlog
from confluent_kafka import TopicPartition

from groups_consumer.pipeline.accounting import ConsumerStats
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer, StartPosition
from groups_consumer.pipeline.replay_processes import replay_in_processes
from groups_consumer.progress import Progress

log = structlog.get_logger(__name__)


class NothingToReplay(Exception):
    """None of the topics to replay exists on the broker."""


def replay(config: ConsumerConfig, *, since: datetime | None = None, until: datetime | None = None,
           idle_s: float = 5.0, processes: int = 1,
           on_progress: Callable[[int], None] = lambda messages: None) -> ConsumerStats:
    """Replay the configured topics with ``processes`` consumers (fewer if the topics have fewer partitions);
    returns their counters, added up. ``on_progress`` gets the messages of every batch applied and committed
    (in this process, whichever process applied it), as the progress log counts them. NothingToReplay when none
    of the topics exists."""
    if processes < 1:
        raise ValueError(f"a replay needs at least one process, not {processes}")
    replay_config = replace(config, group_id=f"{config.group_id}-replay-{uuid.uuid4().hex[:8]}")
    found = _find_partitions(config, since)
    if not found.partitions:
        raise NothingToReplay(f"none of the topics exists on the broker: {', '.join(config.topics)}")
    members = dealt(found.partitions, processes)
    if len(members) < processes:
        log.info("replay_processes_limited", processes=len(members), partitions=len(found.partitions))
    with Progress("replay", found.messages, "messages", group_id=replay_config.group_id,
                  processes=len(members)) as progress:

        def advance(messages: int) -> None:
            progress.advance(messages)
            on_progress(messages)

        if len(members) == 1:
            return replay_member(replay_config, members[0], since=since, until=until, idle_s=idle_s,
                                 on_progress=advance)
        return ConsumerStats.added_up(replay_in_processes(replay_config, members, since=since, until=until,
                                                          idle_s=idle_s, on_progress=advance))


def replay_member(config: ConsumerConfig, partitions: Sequence[tuple[str, int]], *, since: datetime | None,
                  until: datetime | None, idle_s: float, on_progress: Callable[[int], None]) -> ConsumerStats:
    """One consumer of the replay, assigned ``partitions`` (committing under ``config.group_id``), until it has
    been idle ``idle_s``; ``on_progress`` gets the messages of each batch."""
    consumer = EventConsumer(config, start=StartPosition(since),
                             accept=(lambda event: event.time <= until) if until else (lambda event: True),
                             on_batch=lambda messages: on_progress(len(messages)), report_partitions=False,
                             partitions=partitions)
    return consumer.run(until=lambda stats: stats.idle_s() > idle_s)


def dealt(partitions: Sequence[tuple[str, int]], processes: int) -> list[list[tuple[str, int]]]:
    """``partitions`` dealt in turn to at most ``processes`` members; none gets an empty share."""
    return [share for n in range(processes) if (share := list(partitions[n::processes]))]


class _Partitions(NamedTuple):
    """The topics' partitions, (topic, number) in order, and an estimate of the messages to read in them."""

    partitions: list[tuple[str, int]]
    messages: int


def _find_partitions(config: ConsumerConfig, since: datetime | None) -> _Partitions:
    """The partitions the replay reads (those the topics have when it starts; a topic the broker does not have is
    left out, with a warning), and how many messages it should find there, for the progress bar (brokers may
    report watermarks loosely)."""
    probe = config.new_consumer(f"{config.group_id}-probe")
    try:
        partitions: list[tuple[str, int]] = []
        total = 0
        for topic in config.topics:
            metadata = probe.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is None or not metadata.partitions:
                log.warning("replay_topic_missing", topic=topic,
                            error=str(metadata.error) if metadata is not None and metadata.error else None)
                continue
            for number in sorted(metadata.partitions):
                partitions.append((topic, number))
                low, high = probe.get_watermark_offsets(TopicPartition(topic, number), timeout=10)
                if since is not None:
                    [start] = probe.offsets_for_times([TopicPartition(topic, number, int(since.timestamp() * 1000))],
                                                      timeout=10)
                    low = start.offset if start.offset >= 0 else high
                total += max(high - low, 0)
        return _Partitions(partitions, total)
    finally:
        probe.close()
