"""``python -m bench.web``: latency of the REST API's two hot reads under load, with the consumer running.

On PostgreSQL (its own database, ``gc_webbench``): the synthetic platform (1M users by default), the
benchmark's 50 groups and one instance group everyone is in (``everyone``: 1M members), synced. Then
``groups-consumer serve`` (gunicorn, ``--workers`` x ``--web-threads``) and ``groups-consumer consume`` on a
stream produced at ``--rate`` events/s for the whole run, and for each endpoint a warm-up and a ``wrk`` run of
``--duration`` seconds with ``--connections`` connections (``wrk --latency``, Lua scripts rotating the ids):

- ``GET /api/v1/users/{id}/groups/``, a random user each request;
- ``GET /api/v1/groups/{everyone}/members/?page_size=N&cursor=...``, a random page of the 1M-member group
  each request (cursors built for random user-id positions, as ``next`` links carry them).

Then page 1 against page 500: page 500's URL is reached by following ``next`` links from page 1, both pages are
requested in turn by one client (consumer running, no other load), and ``EXPLAIN (ANALYZE, BUFFERS)`` of both
SQL queries is recorded. Results: ``bench/results/web-<timestamp>.json`` (p50 / p90 / p99 and requests/s of
each endpoint, the page timings and plans, what the consumer did, the machine).

``--reuse`` keeps a database loaded by an earlier run of the same size; ``--quick`` runs everything small (page
size 10, so page 500 exists) to check the benchmark, results under ``bench/results/quick/``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).parent.parent
EVERYONE = "everyone"
#: The 1M-member group: an instance group whose rule every user matches (listed, or not listed).
_LISTED = {"type": "manual", "operator": "in", "config": {"user_ids": [1]}}
EVERYONE_DEFINITION = {"name": EVERYONE, "scope": {"type": "instance"}, "rule": {"any": [_LISTED, {"not": _LISTED}]}}
QUICK = {"users": 6000, "duration": 3.0, "warmup": 1.0, "page_size": 10, "page_samples": 30, "rate": 100.0}
#: wrk's report, as one JSON line (latencies in microseconds).
WRK_DONE = """
function done(summary, latency, requests)
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d,'
    .. ' "write_errors": %d, "status_errors": %d, "timeouts": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d,'
    .. ' "mean": %f, "max": %d}\\n', summary.requests, summary.duration, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
"""
#: Each wrk thread draws its own sequence from ``paths`` (a Lua table set before this text).
WRK_ROTATE = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(seed * 7919)
end
function request()
  return wrk.format("GET", paths[math.random(1, #paths)])
end
"""


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The options (``--quick`` replaces the sizes by small ones)."""
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000, help="population; the everyone group has them all")
    parser.add_argument("--groups", type=int, default=50, help="the benchmark's groups, besides everyone")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of wrk before each measured run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (WEB_CONCURRENCY)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per gunicorn worker (WEB_THREADS)")
    parser.add_argument("--page-size", type=int, default=100, help="members per page")
    parser.add_argument("--far-page", type=int, default=500, help="the page compared with page 1")
    parser.add_argument("--page-samples", type=int, default=200, help="requests of page 1 and of the far page each")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s produced for the consumer meanwhile")
    parser.add_argument("--port", type=int, default=0, help="the web process's port (default: a free one)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database if an earlier run loaded this population (else load it)")
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere (checks the benchmark)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_WEB_DATABASE_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/gc_webbench"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        explicit = {arg.lstrip("-").split("=")[0].replace("-", "_") for arg in (argv or sys.argv[1:])}
        for key, value in QUICK.items():
            if key not in explicit:
                setattr(args, key, value)
        args.results = args.results / "quick"  # a check of the benchmark is not a result
    if args.users < args.far_page * args.page_size:
        parser.error(f"--users must be at least --far-page x --page-size ({args.far_page * args.page_size})")
    if not shutil.which("wrk"):
        parser.error("wrk is missing: apt-get install wrk")
    return args


def main(argv: list[str] | None = None) -> None:
    """Set the database up (or reuse it), start the web process and a consumer, measure, write the results."""
    args = arguments(argv)
    from bench.setup import django_on

    if not (args.reuse and _loaded(args.database_url, args.users)):
        from bench.setup import fresh_database

        fresh_database(args.database_url)
        django_on(args.database_url)
        _step(f"platform of {args.users:,} users, {args.groups} groups and {EVERYONE}, synced",
              lambda: _load(args.users, args.groups))
    else:
        django_on(args.database_url)
    from groups_consumer.broker import EmbeddedBroker

    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with nullcontext(servers) if servers else EmbeddedBroker() as bootstrap_servers:
        results = WebBenchmark(args, bootstrap_servers).run()
    path = _save(results, args.results)
    print(json.dumps({key: results[key] for key in ("users_groups", "members", "pages")}, indent=2))
    print(f"results: {path}", file=sys.stderr)


def _loaded(url: str, users: int) -> bool:
    """Whether the database holds a platform of ``users`` users and the synced everyone group."""
    import psycopg

    try:
        with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as connection:
            row = connection.execute(
                "SELECT (SELECT count(*) FROM groups_consumer_userfact),"
                " (SELECT count(*) FROM groups_consumer_membership m JOIN groups_consumer_group g"
                "  ON g.id = m.group_id WHERE g.name = %s)", [EVERYONE]).fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] >= users and row[1] >= users


def _load(users: int, groups: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from bench.platform import Platform, group_definitions
    from groups_consumer import api
    from groups_consumer.models import Membership

    # Dated in the past: the streams of this run and of later --reuse runs are newer than the facts.
    Platform(users, timezone.now() - timedelta(hours=3)).load()
    api.apply_definitions([*group_definitions(groups), EVERYONE_DEFINITION], sync=True, wait_s=0)
    with connection.cursor() as cursor:  # as autovacuum soon would after the syncs' inserts
        cursor.execute(f"ANALYZE {Membership._meta.db_table}")


@dataclass(frozen=True)
class Wrk:
    """One wrk run's figures (milliseconds, requests/s)."""

    requests: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]

    @classmethod
    def parse(cls, output: str) -> Wrk:
        """From the ``WRK_JSON`` line the scripts' ``done`` writes."""
        line = next((line for line in output.splitlines() if line.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no report: {output[-2000:]}")
        raw = json.loads(line.removeprefix("WRK_JSON "))
        errors = {key: raw[key] for key in ("connect_errors", "read_errors", "write_errors", "status_errors",
                                            "timeouts")}
        return cls(requests=raw["requests"], requests_per_s=round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
                   p50_ms=raw["p50"] / 1000, p90_ms=raw["p90"] / 1000, p99_ms=raw["p99"] / 1000,
                   p999_ms=raw["p999"] / 1000, mean_ms=round(raw["mean"] / 1000, 3), max_ms=raw["max"] / 1000,
                   errors=errors)


class WebBenchmark:
    """The web process and a consumer on the loaded database; wrk against both endpoints; the page timings."""

    def __init__(self, args: argparse.Namespace, bootstrap_servers: str) -> None:
        from groups_consumer.models import Group

        self.args = args
        self.servers = bootstrap_servers
        self.port = args.port or _free_port()
        self.group_id = Group.objects.get(name=EVERYONE, scope__type="instance").pk
        self.members = Group.objects.get(pk=self.group_id).memberships.count()
        self.token = _token()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
        self.web_pid = 0  # gunicorn's master, once started

    def run(self) -> dict[str, Any]:
        """Everything, in order; the results document."""
        from bench.report import machine

        args = self.args
        results: dict[str, Any] = {
            "machine": machine(), "users": args.users, "groups": args.groups + 1, "everyone_members": self.members,
            "load": {"tool": _wrk_version(), "connections": args.connections, "wrk_threads": args.wrk_threads,
                     "duration_s": args.duration, "warmup_s": args.warmup},
            "web": {"server": "groups-consumer serve (gunicorn gthread)", "workers": args.workers,
                    "threads": args.web_threads}, "page_size": args.page_size}
        try:
            with self._consumer() as consumer, self._web():
                results["users_groups"] = self._wrk("users_groups", self._user_paths())
                results["members"] = self._wrk("members", self._member_paths())
                results["pages"] = self._pages()
                results["consumer"] = consumer.report()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return results

    # -- the processes -------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "LOG_FORMAT": "json",
                "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "groups_consumer.settings"}

    @contextmanager
    def _web(self) -> Iterator[None]:
        env = {**self._environment(), "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
        command = [str(Path(sys.executable).parent / "groups-consumer"), "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(self.args.workers),
                   "--threads", str(self.args.web_threads)]
        log = (self.workdir / "web.log").open("w")
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        self.web_pid = process.pid
        try:
            _step(f"web process on port {self.port}", lambda: self._wait_for_health(process))
            yield
        finally:
            _stop(process)
            log.close()

    def _wait_for_health(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the web process exited: {(self.workdir / 'web.log').read_text()[-2000:]}")
            try:
                status, _body = self._get(f"/api/v1/groups/{self.group_id}/")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the web process did not answer within 60 s")

    @contextmanager
    def _consumer(self) -> Iterator[Consumer]:
        consumer = Consumer(self.servers, self.args.users, self.args.rate, self._environment(), self.workdir)
        _step(f"consumer and a stream at {self.args.rate:,.0f} events/s", consumer.start)
        try:
            yield consumer
        finally:
            consumer.stop()

    # -- wrk -----------------------------------------------------------------------------------------------

    def _user_paths(self) -> list[str]:
        users = self.args.users
        return [f"/api/v1/users/{n * 7919 % users + 1}/groups/" for n in range(min(users, 5000))]

    def _member_paths(self) -> list[str]:
        """Page 1 and pages after random user-id positions all through the group."""
        base = f"/api/v1/groups/{self.group_id}/members/"
        size, step = self.args.page_size, max(1, self.args.users // 5000)
        return [f"{base}?{urlencode({'page_size': size})}",
                *(f"{base}?{urlencode({'cursor': member_cursor(position), 'page_size': size})}"
                  for position in range(0, self.args.users - size, step))]

    def _wrk(self, name: str, paths: list[str]) -> dict[str, Any]:
        script = self.workdir / f"{name}.lua"
        script.write_text(f"paths = {{{', '.join(json.dumps(p) for p in paths)}}}\n"
                          f'wrk.headers["Authorization"] = "Token {self.token}"\n{WRK_ROTATE}{WRK_DONE}')
        args = self.args
        command = ["wrk", "--latency", "-t", str(args.wrk_threads), "-c", str(args.connections), "--timeout", "10s",
                   "-s", str(script), f"http://127.0.0.1:{self.port}"]
        if args.warmup > 0:
            _step(f"{name}: warm-up", lambda: _run_wrk([*command, "-d", f"{max(1, round(args.warmup))}s"]))
        cpu_before, load_before = cpu_seconds(self.web_pid), os.getloadavg()[0]
        measured = _step(f"{name}: wrk {args.duration:g} s, {args.connections} connections",
                         lambda: _run_wrk([*command, "-d", f"{max(1, round(args.duration))}s"]))
        web_cpu = cpu_seconds(self.web_pid) - cpu_before
        if any(measured.errors.values()):
            raise RuntimeError(f"wrk saw errors on {name}: {measured.errors}")
        print(f"  p50 {measured.p50_ms:.1f} ms, p99 {measured.p99_ms:.1f} ms, {measured.requests_per_s:,.0f} req/s",
              file=sys.stderr)
        return {"paths": len(paths), "example": paths[-1], **measured.__dict__,
                "web_cpu_ms_per_request": round(web_cpu * 1000 / max(measured.requests, 1), 2),
                "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}

    # -- page 1 against the far page -----------------------------------------------------------------------

    def _pages(self) -> dict[str, Any]:
        args = self.args
        first = f"/api/v1/groups/{self.group_id}/members/?{urlencode({'page_size': args.page_size})}"
        far, position = _step(f"page {args.far_page} by following next links", lambda: self._follow(first))
        timings: dict[str, list[float]] = {"page_1": [], f"page_{args.far_page}": []}
        for _ in range(args.page_samples):
            for key, path in (("page_1", first), (f"page_{args.far_page}", far)):
                started = time.perf_counter()
                status, _body = self._get(path)
                timings[key].append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise RuntimeError(f"{path}: HTTP {status}")
        document: dict[str, Any] = {"far_page": args.far_page, "far_page_path": far, "far_page_after_user_id": position,
                                    "samples": args.page_samples,
                                    "client": "one keep-alive connection, the two pages in turn; consumer running"}
        for key, values in timings.items():
            document[key] = {"p50_ms": round(statistics.median(values), 2),
                             "p99_ms": round(_percentile(values, 99), 2), "mean_ms": round(statistics.fmean(values), 2),
                             "min_ms": round(min(values), 2)}
            print(f"  {key}: p50 {document[key]['p50_ms']} ms, p99 {document[key]['p99_ms']} ms", file=sys.stderr)
        document["explain"] = {"page_1": self._explain(None), f"page_{args.far_page}": self._explain(position)}
        return document

    def _follow(self, first: str) -> tuple[str, int]:
        """The far page's path, reached from page 1 by ``next`` links; and the user id its cursor starts after."""
        path = first
        for _ in range(self.args.far_page - 1):
            status, body = self._get(path)
            if status != 200 or not body["next"]:
                raise RuntimeError(f"{path}: HTTP {status}, next {body.get('next')!r}")
            parts = urlsplit(body["next"])
            path = f"{parts.path}?{parts.query}"
        return path, _cursor_position(path)

    def _explain(self, after: int | None) -> dict[str, Any]:
        """EXPLAIN (ANALYZE, BUFFERS) of the page query the cursor paginator runs (page size + 1 rows)."""
        from groups_consumer import api
        from groups_consumer.models import Group

        rows = api.members(Group.objects.get(pk=self.group_id))
        if after is not None:
            rows = rows.filter(user_id__gt=after)
        plan = rows[:self.args.page_size + 1].explain(analyze=True, buffers=True)
        sql, params = rows[:self.args.page_size + 1].query.sql_with_params()
        return {"sql": sql % tuple(repr(p) for p in params), "plan": plan.splitlines()}

    def _get(self, path: str) -> tuple[int, Any]:
        """GET on a keep-alive connection; once more on a new one if the server had closed it (idle)."""
        for attempt in (1, 2):
            if self._http is None:
                self._http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self._http.request("GET", path, headers={"Authorization": f"Token {self.token}"})
                response = self._http.getresponse()
                body = response.read()
                return response.status, json.loads(body) if body else None
            except (OSError, http.client.HTTPException):
                self._http.close()
                self._http = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    _http: http.client.HTTPConnection | None = None


class Consumer:
    """``groups-consumer consume`` on a topic of its own, and a stream produced to it at ``rate`` events/s."""

    def __init__(self, servers: str, users: int, rate: float, env: dict[str, str], workdir: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.servers, self.rate, self.workdir = servers, rate, workdir
        self.topic, self.group = f"bench-web-{run}", f"bench-web-{run}"
        self.env = {**env, "KAFKA_BOOTSTRAP_SERVERS": servers, "KAFKA_TOPICS": self.topic,
                    "KAFKA_GROUP_ID": self.group, "KAFKA_DLQ_TOPIC": f"bench-web-dlq-{run}"}
        from groups_consumer.broker import EmbeddedBroker
        from groups_consumer.kafka_clients import as_environment

        # Short sessions, as the benchmark's consumers have (bench.measures): the group forms in seconds on tansu.
        self.env |= as_environment(EmbeddedBroker.CONSUMER_PROPERTIES, "KAFKA_CONSUMER_")
        from bench.platform import Platform

        self.enrollments = Platform(users, datetime.now(UTC)).enrollments()  # as the loaded platform's
        self.slices = 0  # of the stream produced, each with its own seed
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._producer: threading.Thread | None = None
        self._started = 0.0

    def start(self) -> None:
        """Create the topic, start the consumer, then produce in the background until ``stop``."""
        from bench.stream import produce

        messages = self._messages(1)
        produce(self.servers, self.topic, messages[:1])
        log = (self.workdir / "consumer.log").open("w")
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "groups-consumer"), "consume"],
                                        env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        deadline = time.monotonic() + 60
        while self._consumed() < 1:  # joined its group and applied the first event
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the consumer did not start: {(self.workdir / 'consumer.log').read_text()[-2000:]}")
            time.sleep(0.5)
        self._started = time.monotonic()
        self._producer = threading.Thread(target=self._produce, daemon=True)
        self._producer.start()

    def _messages(self, seconds: float) -> list[Any]:
        from django.utils import timezone

        from bench.stream import build_stream

        count = max(1, int(self.rate * seconds))
        # Dated just before now, one millisecond apart: produced at up to 1,000/s they never lie in the future.
        return build_stream(self.enrollments, count, timezone.now() - timedelta(seconds=count / 1000 + 1),
                            seed=self.slices + 1)

    def _produce(self) -> None:
        """One-second slices of the stream, each built just before it is produced, until ``stop``."""
        from bench.stream import produce

        while not self._stopping.is_set():
            messages = self._messages(1)
            produce(self.servers, self.topic, messages, rate=self.rate)
            self.slices += 1

    def _consumed(self) -> int:
        return self._offsets()[0]

    def _offsets(self) -> tuple[int, int]:
        """Messages the consumer has applied and committed, and messages in the topic."""
        from confluent_kafka import TopicPartition

        from bench.measures import consumer_config

        admin = consumer_config(self.servers, self.topic).new_consumer(self.group)
        try:
            partitions = [TopicPartition(self.topic, p)
                          for p in admin.list_topics(self.topic, timeout=10).topics[self.topic].partitions]
            committed = admin.committed(partitions, timeout=10)
            end = sum(admin.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions)
        finally:
            admin.close()
        return sum(max(tp.offset, 0) for tp in committed), end

    def report(self) -> dict[str, Any]:
        """What the consumer did during the measurements."""
        seconds = time.monotonic() - self._started
        consumed, produced = self._offsets()
        return {"command": "groups-consumer consume (1 process)", "produce_rate_events_per_s": self.rate,
                "seconds": round(seconds, 1), "produced": produced, "consumed": consumed,
                "cpu_s": round(cpu_seconds(self.process.pid), 1) if self.process else None,
                "stream": "the benchmark's mixed LMS stream (bench/stream.py)"}

    def stop(self) -> None:
        """Stop producing, then the consumer."""
        self._stopping.set()
        if self._producer is not None:
            self._producer.join(timeout=30)
        if self.process is not None:
            _stop(self.process)


def member_cursor(after_user_id: int) -> str:
    """The cursor of the members page after ``after_user_id``, encoded as DRF's ``CursorPagination`` does."""
    return base64.b64encode(urlencode({"p": str(after_user_id)}).encode("ascii")).decode("ascii")


def _cursor_position(path: str) -> int:
    from urllib.parse import parse_qs

    cursor = parse_qs(urlsplit(path).query)["cursor"][0]
    return int(parse_qs(base64.b64decode(cursor).decode("ascii"))["p"][0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants alive now (gunicorn's master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _token() -> str:
    """An API token of a reader account made for the benchmark."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user, _created = get_user_model().objects.get_or_create(username="bench-web")
    return str(Token.objects.get_or_create(user=user)[0].key)


def _run_wrk(command: list[str]) -> Wrk:
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed: {(process.stderr or process.stdout)[-2000:]}")
    return Wrk.parse(process.stdout)


def _wrk_version() -> str:
    process = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (process.stdout or process.stderr).splitlines()[0].strip()


def _percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _step(title: str, work: Any) -> Any:
    print(f"- {title} ...", end="", flush=True, file=sys.stderr)
    started = time.monotonic()
    value = work()
    print(f" ({time.monotonic() - started:.1f} s)", flush=True, file=sys.stderr)
    return value


def _save(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"web-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


if __name__ == "__main__":
    main()
