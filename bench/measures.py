"""Each figure of the benchmark, measured over a topic that already holds the stream.

Throughputs are taken between the end of the first batch and the end of the last one, so group joins and
connection set-up (seconds with tansu) do not count: events after the first batch / seconds after it.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from confluent_kafka import Message, TopicPartition
from django.conf import settings
from django.db import connection

from bench import consumer_process
from bench.stream import WireMessage, produce
from groups_consumer.broker import EmbeddedBroker
from groups_consumer.kafka_clients import KafkaClientSettings
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer, poll_batch
from groups_consumer.pipeline.decode import EventDecoder, Origin, message_headers


@dataclass
class Rate:
    """Messages counted between the end of the first batch and the end of the last."""

    first_batch_end: float | None = None
    last_batch_end: float = 0.0
    after_first: int = 0
    total: int = 0

    def batch(self, size: int) -> None:
        """Record a batch of ``size`` messages that has just finished."""
        now = time.monotonic()
        if self.first_batch_end is None:
            self.first_batch_end = now
        else:
            self.after_first += size
        self.last_batch_end = now
        self.total += size

    def per_second(self) -> float:
        """Messages per second after the first batch."""
        elapsed = self.last_batch_end - (self.first_batch_end or self.last_batch_end)
        return self.after_first / elapsed if elapsed > 0 else 0.0


def consumer_config(bootstrap_servers: str, topic: str) -> ConsumerConfig:
    """The service's consumer settings on the benchmark topic, under a consumer group of its own."""
    run = uuid.uuid4().hex[:8]
    kafka = KafkaClientSettings.from_env(bootstrap_servers).with_properties("consumer",
                                                                         EmbeddedBroker.CONSUMER_PROPERTIES)
    return ConsumerConfig(kafka=kafka, topics=(topic,), group_id=f"bench-{run}", dlq_topic=f"bench-dlq-{run}")


def ceiling(bootstrap_servers: str, topic: str, count: int) -> float:
    """Raw consume + decode of one process, same client settings and batch size as the service."""
    config = consumer_config(bootstrap_servers, topic)
    consumer = config.new_consumer()
    consumer.subscribe([topic])
    decoder, rate = EventDecoder(), Rate()
    deadline = time.monotonic() + 300
    try:
        while rate.total < count and time.monotonic() < deadline:
            messages = poll_batch(consumer, config)
            for message in messages:
                if not message.error():
                    decoder.decode(message.value(), message_headers(message), Origin.of(message))
            if messages:
                rate.batch(sum(1 for m in messages if not m.error()))
    finally:
        consumer.close()
    return rate.per_second()


@dataclass
class EndToEnd:
    """``groups-consumer consume``'s loop over the stream: throughput and per-message latencies."""

    events_per_s: float
    processes: int = 1
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float | None:
        """The p-th percentile latency (ms)."""
        if not self.latencies_ms:
            return None
        return statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")[int(p * 10) - 1]


@dataclass
class Consumption:
    """What one consumer process did: the end time and size of each batch, and each message's latency from its
    producer timestamp to the commit of the batch that applied it (membership changes included)."""

    batches: list[tuple[float, int]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def record(self, messages: list[Message]) -> int:
        """Record a batch that has just been applied and committed; returns its size."""
        committed = time.time()
        valid = [m for m in messages if not m.error()]
        self.batches.append((committed, len(valid)))
        self.latencies_ms.extend(committed * 1000 - m.timestamp()[1] for m in valid)
        return len(valid)


def steady_rate(consumptions: list[Consumption]) -> float:
    """Messages per second while every process was consuming: between the end of the last process's first batch
    (group joins and rebalances are over) and the end of the first process's last batch."""
    active = [c.batches for c in consumptions if c.batches]
    if not active:
        return 0.0
    start, stop = max(b[0][0] for b in active), min(b[-1][0] for b in active)
    count = sum(size for batches in active for at, size in batches if start < at <= stop)
    return count / (stop - start) if stop > start else 0.0


def end_to_end(bootstrap_servers: str, topic: str, count: int, processes: int = 1) -> EndToEnd:
    """The service's consumer (decode, facts, evaluation, membership writes, offset commits) over the stream;
    with ``processes`` > 1, that many consumer processes in one consumer group share the topic's partitions."""
    config = consumer_config(bootstrap_servers, topic)
    if processes == 1:
        consumptions = [consume(config, count, _Total())]
    else:
        consumptions = _consume_in_processes(config, count, processes)
    return EndToEnd(steady_rate(consumptions), processes, [ms for c in consumptions for ms in c.latencies_ms])


class _Total:
    """The message count of a single process (``multiprocessing.Value``'s interface)."""

    value = 0

    def get_lock(self) -> AbstractContextManager[object]:
        return nullcontext()


class SharedCount(Protocol):
    """A message count shared by the consumer processes of a group (``multiprocessing.Value``, or ``_Total``)."""

    value: int

    def get_lock(self) -> AbstractContextManager[object]:
        """A lock to hold while changing ``value``."""


def consume(config: ConsumerConfig, count: int, total: SharedCount) -> Consumption:
    """Run ``EventConsumer`` until ``total.value`` (shared by the processes of the group) reaches ``count``."""
    consumption = Consumption()

    def on_batch(messages: list[Message]) -> None:
        size = consumption.record(messages)
        with total.get_lock():
            total.value += size

    consumer = EventConsumer(config, on_batch=on_batch, stats_every_s=3600)
    deadline = time.monotonic() + 1800
    consumer.run(until=lambda stats: total.value >= count or time.monotonic() > deadline)
    return consumption


def _consume_in_processes(config: ConsumerConfig, count: int, processes: int) -> list[Consumption]:
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited broker or database state
    total, results = context.Value("q", 0), context.Queue()
    workers = [context.Process(target=consumer_process.run, args=(config, count, total, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    consumptions: list[Consumption] = []
    try:
        while len(consumptions) < processes:
            try:
                consumptions.append(results.get(timeout=5))
            except queue.Empty:
                if failed := [w.exitcode for w in workers if w.exitcode not in (None, 0)]:
                    raise RuntimeError(f"a consumer process failed (exit codes {failed})") from None
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
    return consumptions


def latency_at_rate(bootstrap_servers: str, messages: list[WireMessage], rate: float, processes: int = 1) -> EndToEnd:
    """Event-to-membership latency while the stream is produced at ``rate`` events/s: each message's time from
    its producer timestamp to the commit of the batch that applied it (its membership changes included)."""
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    produce(bootstrap_servers, topic, messages[:1])  # create the topic; the consumer joins before the stream
    result: list[EndToEnd] = []

    def consume_the_stream() -> None:
        result.append(end_to_end(bootstrap_servers, topic, len(messages) + 1, processes))
        connection.close()
    worker = threading.Thread(target=consume_the_stream)
    worker.start()
    time.sleep(8 + 4 * (processes - 1))  # the consumers join their group (tansu takes a few seconds per member)
    produce(bootstrap_servers, topic, messages, rate=rate)
    worker.join(timeout=600)
    return result[0]


def peer(bootstrap_servers: str, topic: str, count: int) -> float:
    """edx-event-bus-kafka's ``KafkaEventConsumer`` (what an Open edX operator runs today) with no-op
    receivers, over the same stream."""
    from edx_event_bus_kafka.internal.consumer import KafkaEventConsumer
    from openedx_events.tooling import OpenEdxPublicSignal

    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = bootstrap_servers
    group_id = f"bench-peer-{uuid.uuid4().hex[:8]}"
    _start_at_beginning(bootstrap_servers, topic, group_id)  # its consumer would start at the end otherwise
    consumer = KafkaEventConsumer(topic, group_id)
    rate = Rate()

    def receiver(**_kwargs: object) -> None:  # one message per poll: count each as a batch of one
        rate.batch(1)
        if rate.total >= count:
            consumer._shut_down()

    signals = OpenEdxPublicSignal.all_events()
    for signal in signals:
        signal.connect(receiver)
    try:
        consumer.consume_indefinitely()
    finally:
        for signal in signals:
            signal.disconnect(receiver)
    return rate.per_second()


def _start_at_beginning(bootstrap_servers: str, topic: str, group_id: str) -> None:
    admin = consumer_config(bootstrap_servers, topic).new_consumer(group_id)
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    admin.commit(offsets=[TopicPartition(topic, p, 0) for p in partitions], asynchronous=False)
    admin.close()


@dataclass(frozen=True)
class CommandRun:
    """Wall time and peak resident memory of one ``groups-consumer`` command."""

    seconds: float
    peak_rss_mb: float
    output: str


def run_command(*args: str) -> CommandRun:
    """Run a ``groups-consumer`` command on the benchmark database: wall time, and the peak RSS the command's
    own process reports (``bench.peak_memory``)."""
    env = {**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "LOG_FORMAT": "json"}
    started = time.monotonic()
    process = subprocess.run([sys.executable, "-m", "bench.peak_memory", *args], env=env, capture_output=True,
                             text=True, cwd=Path(__file__).parent.parent)
    seconds = time.monotonic() - started
    peak = [line for line in process.stderr.splitlines() if line.startswith("PEAK_RSS_KB=")]
    if process.returncode != 0 or not peak:
        raise RuntimeError(f"groups-consumer {' '.join(args)} failed: {process.stderr[-2000:]}")
    return CommandRun(seconds, int(peak[-1].split("=")[1]) / 1024, process.stdout)
