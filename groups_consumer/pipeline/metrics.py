"""Consumer metrics for Prometheus, and a health check, on one small HTTP server (``METRICS_PORT``).

``/metrics``: Prometheus exposition. ``/health``: 200 while the consume loop has polled within
``stale_after_s`` (it polls at least every batch timeout), 503 otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

MESSAGES = Counter("groups_consumer_messages", "Messages read from Kafka")
EVENTS = Counter("groups_consumer_events", "Events decoded and applied")
DEAD_LETTERS = Counter("groups_consumer_dead_letters", "Messages sent to the dead-letter topic", ["reason"])
DB_RETRIES = Counter("groups_consumer_database_retries", "Batches retried after a transient database error")
BATCHES_IN_HALVES = Counter("groups_consumer_batches_in_halves", "Batches applied in two halves at once")
MEMBERSHIP_CHANGES = Counter("groups_consumer_membership_changes", "Memberships joined or left")
BATCH_SECONDS = Histogram("groups_consumer_batch_seconds", "Time to decode, apply and commit one batch",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
KAFKA_ERRORS = Counter("groups_consumer_kafka_errors", "Errors reported by the Kafka clients", ["code"])
LAG = Gauge("groups_consumer_lag", "Messages behind the end of the partition", ["partition"])
LAST_POLL = Gauge("groups_consumer_last_poll_timestamp_seconds", "When the consume loop last polled")
OUTBOX_PENDING = Gauge("groups_consumer_outbox_pending", "Membership changes waiting to be published")
OUTBOX_OLDEST_AGE = Gauge("groups_consumer_outbox_oldest_age_seconds",
                          "Age of the oldest membership change waiting to be published")
PUBLISHED = Counter("groups_consumer_published", "Membership-change events published")
PUBLISH_FAILURES = Counter("groups_consumer_publish_failures",
                           "Waits for acknowledgements that ended with membership-change events unacknowledged")
RELAY_HANDOVERS = Counter("groups_consumer_relay_handovers",
                          "Leases the relay gave back after waiting too long for the broker's acknowledgements")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:  # scrapes every few seconds: not worth a log line each
        pass


def health_app(stale_after_s: float = 60.0) -> WSGIApplication:
    """WSGI app serving ``/health`` and, for every other path, the Prometheus metrics."""
    metrics: WSGIApplication = make_wsgi_app()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/health":
            return metrics(environ, start_response)
        age = time.time() - LAST_POLL._value.get()
        healthy = age < stale_after_s
        start_response("200 OK" if healthy else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [f"{'ok' if healthy else 'stale'}: last poll {age:.1f}s ago\n".encode()]

    return app


def serve(port: int, stale_after_s: float = 60.0) -> WSGIServer:
    """Serve metrics and health on ``port`` from a daemon thread; returns the server."""
    server = make_server("", port, health_app(stale_after_s), handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
