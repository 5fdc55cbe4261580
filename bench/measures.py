"""Each figure of the benchmark, measured over a topic that already holds the stream.

Throughputs are taken between the end of the first batch and the end of the last one, so group joins and
connection set-up (seconds with tansu) do not count: events after the first batch / seconds after it. With
publishing on (``end_to_end_publishing``), the end is the later of the last batch and the relay's publication
of the stream's last membership change.
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
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from confluent_kafka import Message, TopicPartition
from confluent_kafka.cimpl import NewTopic
from django.conf import settings
from django.db import connection
from django.db.models import Max

from bench import consumer_process, relay_process
from bench.cpu import CpuSampler
from bench.relay_process import RelayRun
from bench.stream import WireMessage, produce
from groups_consumer.broker import EmbeddedBroker
from groups_consumer.kafka_clients import KafkaClientSettings
from groups_consumer.models import MembershipChange, OutboxMessage
from groups_consumer.pipeline.config import ConsumerConfig
from groups_consumer.pipeline.consumer import EventConsumer, poll_batch
from groups_consumer.pipeline.decode import EventDecoder, message_headers
from groups_consumer.pipeline.replay import replay as replay_topics
from groups_consumer.plugins.events import Origin
from groups_consumer.publishing import outbox


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
    # The service's CONSUMER_* settings, as in production (``bench.compare`` varies them).
    return replace(ConsumerConfig.from_env(bootstrap_servers), kafka=kafka, topics=(topic,), group_id=f"bench-{run}",
                   dlq_topic=f"bench-dlq-{run}")


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
    #: Batches applied, and how many of them in two halves at once (``pipeline.halves``).
    batches: int = 0
    batches_in_halves: int = 0

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
    #: How many of the batches were applied in two halves at once (``pipeline.halves``).
    batches_in_halves: int = 0

    def record(self, messages: list[Message]) -> int:
        """Record a batch that has just been applied and committed; returns its size."""
        committed = time.time()
        valid = [m for m in messages if not m.error()]
        self.batches.append((committed, len(valid)))
        self.latencies_ms.extend(committed * 1000 - m.timestamp()[1] for m in valid)
        return len(valid)


def steady_rate(consumptions: list[Consumption]) -> float:
    """Messages per second while every process was consuming: between the end of the last process's first batch
    (group joins and rebalances are over) and the end of the first process's last batch. When the processes never
    consumed at the same time (a short stream, one joining late), the rate between the end of the first batch
    and the end of the last, whichever process read them."""
    active = [c.batches for c in consumptions if c.batches]
    if not active:
        return 0.0
    start, stop = max(b[0][0] for b in active), min(b[-1][0] for b in active)
    if stop <= start:
        start, stop = min(b[0][0] for b in active), max(b[-1][0] for b in active)
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
    return EndToEnd(steady_rate(consumptions), processes, [ms for c in consumptions for ms in c.latencies_ms],
                    sum(len(c.batches) for c in consumptions), sum(c.batches_in_halves for c in consumptions))


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
    stats = consumer.run(until=lambda stats: total.value >= count or time.monotonic() > deadline)
    consumption.batches_in_halves = stats.batches_in_halves
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


@dataclass
class PublishingRun:
    """One process of ``groups-consumer consume`` over a stream, publishing off or on (``end_to_end_publishing``).

    ``events_per_s`` is the end-to-end figure: the events after the first batch divided by the seconds from the
    end of the first batch to ``end``, the later of the consumer's last batch and (publishing on) the relay's
    deletion of the stream's last outbox row (published); publishing off, it is the steady rate of
    ``end_to_end``. ``consume_events_per_s`` stops at the consumer's last batch (the consumer's own pace),
    ``relay_lag_s`` is how long after it the relay finished. ``cpu_s``: CPU seconds of the machine, of the
    consumer (this process), the relay, PostgreSQL, the broker and anything else between the end of the first
    batch and ``end`` (``bench.cpu``).
    """

    publishing: bool
    events: int
    events_per_s: float
    consume_events_per_s: float
    membership_changes: int
    outbox_rows: int
    relay_lag_s: float
    seconds: float
    cpu_s: dict[str, float]
    relay: RelayRun | None = None
    batches: int = 0
    batches_in_halves: int = 0


def end_to_end_publishing(bootstrap_servers: str, topic: str, count: int,
                          membership_topic: str | None) -> PublishingRun:
    """``end_to_end`` with one consumer process (this one), publishing membership changes to ``membership_topic``
    (None: publishing off) through the outbox, and a relay running concurrently in a process of its own, as in
    production; the figure counts until the relay has published every outbox row the stream produced, so a
    relay that falls behind lowers it (see ``PublishingRun``). Publishing is on in this process only during
    the measure."""
    config = consumer_config(bootstrap_servers, topic)
    changes_before, rows_before = last_change_id(), _outbox_ids_drawn()
    with (_RelayProcess(bootstrap_servers, membership_topic) if membership_topic else nullcontext()) as relay, \
            CpuSampler({"consumer": os.getpid(), "relay": relay.pid if relay else None},
                       connection.settings_dict["NAME"]) as cpu:
        with publishing_on(membership_topic) if membership_topic else nullcontext():
            consumption = consume(config, count, _Total())
        rows = _outbox_ids_drawn() - rows_before  # the relay deletes the rows it published
        relay_run = relay.finish(rows) if relay else None
    first, last = consumption.batches[0][0], consumption.batches[-1][0]
    end = max(last, relay_run.last_published_at or last) if relay_run else last
    after_first = sum(size for _, size in consumption.batches[1:])
    return PublishingRun(
        publishing=membership_topic is not None, events=count,
        events_per_s=after_first / (end - first) if end > first else 0.0,  # 0: one batch, too few events
        consume_events_per_s=steady_rate([consumption]), membership_changes=last_change_id() - changes_before,
        outbox_rows=rows, relay_lag_s=round(end - last, 3), seconds=round(end - first, 3),
        cpu_s=cpu.between(first, end), relay=relay_run, batches=len(consumption.batches),
        batches_in_halves=consumption.batches_in_halves)


@contextmanager
def publishing_on(membership_topic: str) -> Iterator[None]:
    """Publishing on in this process (every membership writer reads the setting on each write), off again after."""
    previous = settings.GROUPS_CONSUMER_MEMBERSHIP_TOPIC
    settings.GROUPS_CONSUMER_MEMBERSHIP_TOPIC = membership_topic
    try:
        yield
    finally:
        settings.GROUPS_CONSUMER_MEMBERSHIP_TOPIC = previous


def create_topic(bootstrap_servers: str, topic: str, partitions: int = 4) -> None:
    """Create a topic (the relay's, before it produces to it)."""
    admin = KafkaClientSettings.from_env(bootstrap_servers).admin()
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        future.result(30)


def _outbox_ids_drawn() -> int:
    """How many outbox ids were ever drawn (the rows published are gone; the identity's sequence counts them)."""
    table = OutboxMessage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
        cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {cursor.fetchone()[0]}")
        return int(cursor.fetchone()[0])


def last_change_id() -> int:
    """The change log's highest id: its difference over a run is the membership changes the run recorded (and
    the ids of any rolled-back batch)."""
    return int(MembershipChange.objects.aggregate(top=Max("id"))["top"] or 0)


class _RelayProcess:
    """The relay in a process of its own (``bench.relay_process``), ready once entered; ``finish(rows)`` waits
    until it has published the ``rows`` outbox rows of the stream (and any left before it)."""

    def __init__(self, bootstrap_servers: str, membership_topic: str, start_timeout_s: float = 120.0,
                 finish_timeout_s: float = 1800.0):
        self._context = multiprocessing.get_context("spawn")  # a clean interpreter, as consumer_process
        self._pending_before = outbox.backlog().pending
        self._ready, self._target = self._context.Event(), self._context.Value("q", 2**62)
        self._results: multiprocessing.Queue[RelayRun] = self._context.Queue()
        self._process = self._context.Process(target=relay_process.run, name="bench-relay", args=(
            bootstrap_servers, membership_topic, self._ready, self._target, self._results))
        self._start_timeout_s, self._finish_timeout_s = start_timeout_s, finish_timeout_s
        self.pid: int | None = None

    def __enter__(self) -> _RelayProcess:
        self._process.start()
        self.pid = self._process.pid
        if not self._ready.wait(self._start_timeout_s) or not self._process.is_alive():
            self._fail("the relay process did not start")
        return self

    def finish(self, rows: int) -> RelayRun:
        """Let the relay stop once it has published ``rows`` more rows than were pending before; its report."""
        with self._target.get_lock():
            self._target.value = self._pending_before + rows
        deadline = time.monotonic() + self._finish_timeout_s
        while True:
            try:
                run = self._results.get(timeout=5)
                break
            except queue.Empty:
                if self._process.exitcode is not None or time.monotonic() > deadline:
                    self._fail("the relay process stopped before publishing the stream's changes")
        if run.error:
            raise RuntimeError(f"the relay failed: {run.error}")
        return run

    def _fail(self, reason: str) -> None:
        try:
            run = self._results.get(timeout=1)
        except queue.Empty:
            raise RuntimeError(f"{reason} (exit code {self._process.exitcode})") from None
        raise RuntimeError(f"{reason}: {run.error}")

    def __exit__(self, *exc_info: object) -> None:
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


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


@dataclass(frozen=True)
class ReplayRun:
    """A replay's messages per second: ``overall`` from the call to the commit of its last batch (the processes'
    start and group joins included, the idle wait that ends a replay not); ``steady`` between the batches that
    took it past a tenth and past nine tenths of the stream (what a replay long enough to hide its start runs at)."""

    overall: float
    steady: float


def replay(bootstrap_servers: str, topic: str, count: int, processes: int) -> ReplayRun:
    """``replay --from-beginning --processes N`` of the topic (``groups_consumer.pipeline.replay``)."""
    progress: list[tuple[float, int]] = []  # (when a batch was reported, messages so far)

    def on_progress(messages: int) -> None:
        progress.append((time.monotonic(), (progress[-1][1] if progress else 0) + messages))

    started = time.monotonic()
    stats = replay_topics(consumer_config(bootstrap_servers, topic), idle_s=3, processes=processes,
                          on_progress=on_progress)
    if stats.messages != count:
        raise RuntimeError(f"the replay read {stats.messages} messages of {count}")
    first = next(point for point in progress if point[1] >= count / 10)
    last = next(point for point in progress if point[1] >= count * 9 / 10)
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else 0.0
    # ``last_message``: a system-wide clock, the processes' times compare.
    return ReplayRun(overall=stats.messages / (stats.last_message - started), steady=steady)


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
