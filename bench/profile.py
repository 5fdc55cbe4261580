"""``python -m bench.profile``: where the time of a batch goes, stage by stage, without the broker.

Loads a platform (as the benchmark does) on its own PostgreSQL database, builds a stream in the LMS wire
format, decodes it in process and applies it batch by batch with the service's ``BatchProcessor``. The stages
of the event path are wrapped in wall-clock timers; the table gives milliseconds per batch for each stage
(stages nest: "facts" includes its statements). Also printed: the events/s of decode and of apply, the
(group, user) pairs evaluated per batch, and per event the CPU of this process and of its PostgreSQL backend
while applying (less noisy than the wall time on a shared machine), the WAL written and the buffers PostgreSQL
touched.
``--reuse`` keeps the loaded platform between runs (each run's stream is later than the last, so it still
changes facts, and is about the whole population loaded, whatever ``--users`` says); ``--cprofile FILE``
writes a cProfile of the apply loop instead of timing; ``--publishing`` turns publishing on
(``KAFKA_MEMBERSHIP_TOPIC``: every change also written to the outbox, which no relay reads here), to see what
the outbox costs the writers.

Examples: ``python -m bench.profile --users 100000 --events 20000``;
``python -m bench.profile --reuse --events 20000 --batch 500``.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from bench.cpu import process_cpu_s
from groups_consumer.pipeline.config import DEFAULT_BATCH_SIZE

#: Timed stages: label -> (module, attribute). Patched where the callers look them up.
if TYPE_CHECKING:
    from groups_consumer.engine.catalog import GroupCatalog
    from groups_consumer.engine.membership_writer import MembershipDiff

P = ParamSpec("P")
R = TypeVar("R")

STAGES = {
    "facts (FactUpdater.apply)": ("groups_consumer.pipeline.facts_update.FactUpdater", "apply"),
    "  lock + read users": ("groups_consumer.users", "lock_reading"),
    "  busy new users": ("groups_consumer.users", "known"),
    "  create users": ("groups_consumer.users", "create"),
    "  read courses": ("groups_consumer.facts.rows", "read_courses"),
    "  create courses": ("groups_consumer.facts.rows", "create_courses"),
    "  write users": ("groups_consumer.facts.rows", "write_users"),
    "  write courses": ("groups_consumer.facts.rows", "write_courses"),
    "  snapshots": ("groups_consumer.facts.rows", "snapshots"),
    "decide": ("groups_consumer.pipeline.batch", "decide"),
    "  qualifying": ("groups_consumer.engine.catalog.CompiledGroup", "qualifying"),
    "  read memberships": ("groups_consumer.engine.membership_writer", "_memberships"),
    "write differences": ("groups_consumer.engine.membership_writer", "_write"),
    "  change log, ids drawn": ("groups_consumer.bulk_sql", "insert_with_ids"),
    "  outbox rows": ("groups_consumer.publishing.outbox", "record_changes"),
}


class Timers:
    """Wall-clock time and calls per stage, accumulated by wrappers around the stages' functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1
        return timed

    def install(self) -> None:
        """Wrap every stage of ``STAGES`` and the connection's commit."""
        from django.db import connection

        for label, (module_name, attribute) in STAGES.items():
            owner = _resolve(module_name)
            setattr(owner, attribute, self.wrap(label, getattr(owner, attribute)))
        connection.ensure_connection()
        # Patched in place, like the stages: the commits of the run are timed too.
        connection.commit = self.wrap("commit", connection.commit)  # type: ignore[method-assign]


def _resolve(dotted: str) -> object:
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module_name, _, attribute = dotted.rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The profiler's options."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000, help="population loaded (with --reuse: the loaded one)")
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_SIZE,
                        help="events per batch (default: the consumer's batch size)")
    parser.add_argument("--reuse", action="store_true", help="keep the platform already loaded in the database")
    parser.add_argument("--seed", type=int, default=None, help="stream seed (default: from the clock)")
    parser.add_argument("--cprofile", metavar="FILE", help="write a cProfile of the apply loop instead of timing")
    parser.add_argument("--publishing", action="store_true",
                        help="publishing on: changes also go to the outbox (not relayed)")
    parser.add_argument("--halves", action="store_true",
                        help="apply each batch in two halves at once (pipeline.halves)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/gc_profile")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Time (or cProfile) the apply loop of the event path over a generated platform and stream."""
    args = arguments(argv)
    from bench.setup import django_on, fresh_database

    if not args.reuse:
        fresh_database(args.database_url)
    django_on(args.database_url)
    from django.db.models import Max
    from django.utils import timezone

    from bench.platform import Platform, group_definitions
    from bench.stream import build_stream
    from groups_consumer import api
    from groups_consumer.engine.catalog import GroupCatalog
    from groups_consumer.models import MembershipChange, UserFact
    from groups_consumer.pipeline.batch import BatchProcessor
    from groups_consumer.pipeline.decode import EventDecoder
    from groups_consumer.pipeline.garbage import CollectBetweenBatches
    from groups_consumer.pipeline.halves import InHalves

    # Reused, the stream is about the population loaded then (ids 1..n, then registered users), whatever --users.
    population = UserFact.objects.aggregate(Max("user_id"))["user_id__max"] if args.reuse else args.users
    platform = Platform(population or 0, timezone.now())
    if not args.reuse:
        platform.load()
        api.apply_definitions(group_definitions(args.groups), sync=True, wait_s=0)
    users = UserFact.objects.count()
    # Later than anything applied so far, so a reused platform still sees changes.
    start = timezone.now() + timedelta(minutes=MembershipChange.objects.count() % 100_000)
    seed = args.seed if args.seed is not None else int(time.time())
    messages = build_stream(platform.enrollments(), args.events, start, seed=seed)

    decoder = EventDecoder(max_clock_skew=timedelta.max)  # --reuse dates each run's stream later than the last
    started = time.perf_counter()
    events = [decoder.decode(m.value, m.headers) for m in messages]
    decode_s = time.perf_counter() - started

    processor = BatchProcessor(GroupCatalog.load())
    applier = InHalves(processor) if args.halves else processor
    if args.publishing:  # after the sync: only the stream's changes go to the outbox
        from django.conf import settings

        settings.GROUPS_CONSUMER_MEMBERSHIP_TOPIC = "bench-profile-membership"
    timers = Timers()
    if not args.cprofile:
        timers.install()
    pairs = _count_pairs()
    batches = [events[n:n + args.batch] for n in range(0, len(events), args.batch)]
    garbage = CollectBetweenBatches()  # as the consumer does
    garbage.start()
    profiler = cProfile.Profile() if args.cprofile else None
    database_before = _database_counters()
    backend_cpu = _BackendCpu()
    started, cpu_started = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    changes = 0
    for batch in batches:
        changes += len(applier.process(batch).diff)
        garbage.after_batch()
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.cprofile)
    apply_s, apply_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    backend_cpu_s = backend_cpu.since()
    if isinstance(applier, InHalves):
        applier.close()
    garbage.stop()
    wal_bytes, reads, hits = (after - before
                              for after, before in zip(_database_counters(), database_before, strict=True))

    count = len(batches)
    print(f"{users:,} users, {len(processor.catalog.groups)} groups, {len(events):,} events in {count} batches "
          f"of {args.batch}, publishing {'on' if args.publishing else 'off'}; the stream is about users 1 to "
          f"{population:,}")
    print(f"decode: {len(events) / decode_s:,.0f} events/s; apply: {len(events) / apply_s:,.0f} events/s "
          f"({apply_s / count * 1000:.1f} ms per batch); pairs evaluated per batch: {pairs[0] / count:,.0f}; "
          f"membership changes per batch: {changes / count:,.0f}")
    backend = "" if backend_cpu_s is None else f", its PostgreSQL backend {backend_cpu_s / len(events) * 1e6:.1f} µs"
    print(f"CPU per event while applying: this process {apply_cpu_s / len(events) * 1e6:.1f} µs{backend}")
    print(f"per event: {wal_bytes / len(events):,.0f} WAL bytes, {(reads + hits) / len(events):,.1f} buffer accesses "
          f"of which {reads / len(events):,.2f} outside PostgreSQL's shared buffers")
    if not profiler:
        print(f"\n{'stage':<28}{'ms/batch':>10}{'calls/batch':>13}")
        for label in [*STAGES, "commit"]:
            print(f"{label:<28}{timers.seconds[label] / count * 1000:>10.1f}{timers.calls[label] / count:>13.1f}")


class _BackendCpu:
    """CPU seconds of this process's PostgreSQL backend since it was made (None if the server is not on this
    machine, or not PostgreSQL)."""

    def __init__(self) -> None:
        from django.db import connection

        self._pid: int | None = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self._pid = cursor.fetchone()[0]
        self._started = self._now()

    def _now(self) -> float | None:
        return None if self._pid is None else process_cpu_s(self._pid)

    def since(self) -> float | None:
        """CPU seconds the backend used since this object was made."""
        now = self._now()
        return None if now is None or self._started is None else now - self._started


def _database_counters() -> tuple[int, int, int]:
    """WAL position (bytes), and blocks read from outside shared buffers / found in them, of this database."""
    from django.db import connection

    time.sleep(1)  # statistics reach the shared counters within a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, blks_read, blks_hit FROM pg_stat_database"
                       " WHERE datname = current_database()")
        wal, reads, hits = cursor.fetchone()
    return int(wal), reads, hits


def _count_pairs() -> list[int]:
    """Counts the (group, user) pairs the batches evaluate, by wrapping the ``decide`` the batch stage calls."""
    from groups_consumer.pipeline import batch

    total = [0]
    # The binding the batch stage calls (already timed when ``Timers`` is installed): batch imports ``decide``
    # from the engine without re-exporting it, and is patched in place: hence the two ignores.
    decide: Callable[..., MembershipDiff] = batch.decide  # type: ignore[attr-defined]

    def counting(catalog: GroupCatalog, pairs: Mapping[int, Collection[int]], **kwargs: Any) -> MembershipDiff:
        total[0] += sum(len(users) for users in pairs.values())
        return decide(catalog, pairs, **kwargs)

    batch.decide = counting  # type: ignore[attr-defined]
    return total


if __name__ == "__main__":
    main()
