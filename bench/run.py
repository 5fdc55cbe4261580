"""One benchmark run: every part in order, on one broker and one database, and the report."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.utils import timezone

from bench import measures
from bench.naive import naive_events_per_s
from bench.platform import Platform, group_definitions
from bench.report import machine, save, table
from bench.stream import WireMessage, build_stream, produce
from bench.timeout import within
from groups_consumer import api

T = TypeVar("T")


class Benchmark:
    """Runs the parts the arguments ask for and collects their figures."""

    def __init__(self, args: argparse.Namespace, bootstrap_servers: str) -> None:
        self.args = args
        self.servers = bootstrap_servers
        self.skip = {part.strip() for part in args.skip.split(",") if part.strip()}
        self.results: dict[str, Any] = {"machine": machine(), "users": args.users, "groups": args.groups,
                                        "events": args.events}
        self._enrollments: list[tuple[str, ...]] = []  # of the platform loaded last
        self._main_stream: tuple[str, int] | None = None  # topic and size of the main population's first stream
        # Facts and streams are dated from an instant in the past: the consumer dead-letters events from the
        # future, and each later stream (+30 min, +1 h) must be newer than the facts before it.
        self.origin = timezone.now() - timedelta(hours=3)

    def run(self) -> None:
        """Every part, then the table and the JSON files."""
        started = time.monotonic()
        self._main_population()
        self._scaling()
        self._naive()
        self._full_sync()
        self.results["bench_seconds"] = round(time.monotonic() - started, 1)
        path = save(self.results, self.args.results)
        print("\n" + table(self.results))
        print(f"\nresults: {self.args.results / 'latest.json'} (and {path.name})")

    def _main_population(self) -> None:
        args = self.args
        if not {"ceiling", "end_to_end", "peer", "latency", "publishing", "replay"} - self.skip:
            return
        self._platform(args.users, args.groups)
        if {"ceiling", "end_to_end", "peer"} - self.skip:
            self._first_stream()
        if "latency" not in self.skip:
            later = self._build(args.latency_events, self.origin + timedelta(hours=1), seed=8)
            result = self._step(f"latency at {args.rate:,.0f} events/s, {args.processes} process(es)",
                                lambda: measures.latency_at_rate(self.servers, later, args.rate, args.processes))
            self.results.update(latency_rate_events_per_s=args.rate, latency_p50_ms=result.percentile(50),
                                latency_p99_ms=result.percentile(99))
        if "publishing" not in self.skip and args.publishing_rounds > 0:
            self._publishing()
        if "replay" not in self.skip:
            self._replay()

    def _first_stream(self) -> None:
        """The throughput figures of the main population, on its first streams."""
        args = self.args
        topic, messages = self._stream(args.events)
        self._main_stream = topic, len(messages)
        if "ceiling" not in self.skip:
            self.results["ceiling_events_per_s"] = self._step("raw consume+decode ceiling", lambda: measures.ceiling(
                self.servers, topic, len(messages)))
        if "end_to_end" not in self.skip:
            one = self._step("end to end, 1 process", partial(self._at_population, "scaling", args.users, topic,
                                                                  len(messages)))
            self.results.update(end_to_end_one_process_events_per_s=one, end_to_end_events_per_s=one,
                                consumer_processes=1)
            if self.results.get("ceiling_events_per_s"):
                self.results["ratio_to_ceiling"] = one / self.results["ceiling_events_per_s"]
        if "peer" not in self.skip:
            peer = self._step("edx-event-bus-kafka consumer", lambda: measures.peer(self.servers, topic, len(messages)))
            self.results["peer_events_per_s"] = peer
        if "end_to_end" not in self.skip and args.processes > 1:
            # A stream of its own, later than the first: the first one's facts are applied already.
            topic, messages = self._stream(args.events, self.origin + timedelta(minutes=30), seed=9)
            shared = self._step(f"end to end, {args.processes} processes",
                                lambda: measures.end_to_end(self.servers, topic, len(messages), args.processes))
            self.results.update(end_to_end_events_per_s=shared.events_per_s, consumer_processes=args.processes,
                                end_to_end_batches_in_halves=[shared.batches_in_halves, shared.batches])
        if self.results.get("end_to_end_events_per_s") and self.results.get("peer_events_per_s"):
            self.results["ratio_to_peer"] = self.results["end_to_end_events_per_s"] / self.results["peer_events_per_s"]

    def _publishing(self) -> None:
        """Publishing's cost: one consumer process end to end with publishing off, and on with a relay in a
        process of its own (``measures.end_to_end_publishing``: on, the figure counts until the relay has
        published the stream's last change), alternated off, on, on, off, ... for ``--publishing-rounds`` pairs.

        Each measure starts from the same state, the main population loaded and synced again, and consumes the
        same stream, the main one (a stream's facts apply once, but a reloaded platform has none of them): off
        and on do the very same work (events and membership changes), which streams of their own would not (each
        later stream of the benchmark changes fewer memberships than the one before: users already active stay
        so). ``publishing_cost_ratio`` = 1 - median(on) / median(off) of these runs, measured identically and
        close in time, in an order (ABBA) that cancels a linear drift of the machine; the off runs measure
        again what ``end_to_end_one_process_events_per_s`` measured earlier (the ratio to it is kept too:
        ``publishing_cost_ratio_vs_one_process``)."""
        args = self.args
        if self._main_stream is None:
            topic, messages = self._stream(args.events)
            self._main_stream = topic, len(messages)
        topic, count = self._main_stream
        membership_topic = f"bench-membership-{uuid.uuid4().hex[:8]}"
        measures.create_topic(self.servers, membership_topic)
        order = [on for n in range(args.publishing_rounds) for on in ((False, True) if n % 2 == 0 else (True, False))]
        measured: list[measures.PublishingRun] = []
        for on in order:
            self._platform(args.users, args.groups)
            run = self._step(f"end to end, 1 process, publishing {'on, relay in its own process' if on else 'off'}",
                             partial(measures.end_to_end_publishing, self.servers, topic, count,
                                     membership_topic if on else None))
            measured.append(run)
            relay = run.relay
            print(f"  {run.events_per_s:,.0f} events/s (consumer alone {run.consume_events_per_s:,.0f}/s); "
                  f"{run.membership_changes:,} membership changes, {run.outbox_rows:,} outbox rows"
                  + (f"; relay: lag {run.relay_lag_s:.2f} s, {relay.batches} batches, read {relay.read_s:.2f} s, "
                     f"produce {relay.produce_s:.2f} s, delete {relay.delete_s:.2f} s" if relay else "")
                  + f"; CPU s: {run.cpu_s}", file=sys.stderr)
        busy = [r.cpu_s["other"] / (r.seconds * (os.cpu_count() or 1)) for r in measured if r.seconds]
        if max(busy, default=0) > 0.1:
            print(f"  warning: other processes used up to {max(busy):.0%} of the machine's CPU during these runs "
                  "(publishing_runs[].cpu_s.other): the ratio is unreliable", file=sys.stderr)
        off = statistics.median(r.events_per_s for r in measured if not r.publishing)
        published = statistics.median(r.events_per_s for r in measured if r.publishing)
        one = self.results.get("end_to_end_one_process_events_per_s")
        self.results.update(
            end_to_end_publishing_events_per_s=published, publishing_off_events_per_s=off,
            publishing_cost_ratio=1 - published / off if off else None,
            publishing_cost_ratio_vs_one_process=1 - published / one if one else None,
            publishing_others_cpu_share=max(busy, default=None), publishing_runs=[asdict(run) for run in measured])

    def _replay(self) -> None:
        """``replay --from-beginning`` of the main stream in one process and in ``--processes``, each into the main
        population loaded again (none of the stream's facts applied: the work of a replay after an outage)."""
        args = self.args
        if self._main_stream is None:
            topic, messages = self._stream(args.events)
            self._main_stream = topic, len(messages)
        topic, count = self._main_stream
        rates = self.results.setdefault("replay_events_per_s", {})
        steady = self.results.setdefault("replay_steady_events_per_s", {})
        for processes in sorted({1, args.processes}):
            self._platform(args.users, args.groups)
            run = self._step(f"replay, {processes} process(es)",
                             partial(measures.replay, self.servers, topic, count, processes))
            rates[str(processes)], steady[str(processes)] = run.overall, run.steady

    def _scaling(self) -> None:
        """End to end, one process, at each population, on a stream about any of its users (``scaling``), then
        on one about the same number of its users at every population (``scaling_same_traffic``:
        ``--scaling-active`` users, by default the smallest population, all of whose users the first stream
        is about). The first kind's events change more memberships as the population grows: fewer of them are
        about a user an earlier event already moved. Each platform is loaded afresh."""
        if "scaling" in self.skip:
            return
        populations = [int(n) for n in self.args.scaling.split(",") if n.strip()]
        active = self.args.scaling_active or min(populations)
        self.results["scaling_active_users"] = active
        for users in populations:
            for key, about in (("scaling", None), ("scaling_same_traffic", active)):
                if str(users) in self.results.get(key, {}):
                    continue  # the main population's first stream
                self._platform(users, self.args.groups)
                topic, messages = self._stream(self.args.scaling_events, active=about)
                self._step(f"end to end at {users:,} users" + (f", {about:,} of them active" if about else ""),
                           partial(self._at_population, key, users, topic, len(messages)))

    def _at_population(self, key: str, users: int, topic: str, count: int) -> float:
        """One process end to end over the stream; its events/s at ``results[key][users]`` and the membership
        changes it made per event at ``results[key + "_changes_per_event"][users]``."""
        before = measures.last_change_id()
        run = measures.end_to_end(self.servers, topic, count)
        changes = (measures.last_change_id() - before) / count
        self.results.setdefault(key, {})[str(users)] = run.events_per_s
        self.results.setdefault(f"{key}_changes_per_event", {})[str(users)] = round(changes, 3)
        self.results.setdefault(f"{key}_batches_in_halves", {})[str(users)] = [run.batches_in_halves, run.batches]
        return run.events_per_s

    def _naive(self) -> None:
        if "naive" in self.skip:
            return
        users = self.args.naive_users
        self.results["naive_users"] = users
        self._platform(users, self.args.groups)
        topic, messages = self._stream(self.args.naive_events)
        naive = self._step("naive baseline", lambda: naive_events_per_s(self.servers, topic, len(messages),
                                                                         self.args.naive_budget))
        self.results["naive_events_per_s"] = naive
        ours = (self.results.get("scaling") or {}).get(str(users))
        if ours is None:
            self._platform(users, self.args.groups)
            topic, messages = self._stream(self.args.naive_events)
            ours = self._step("end to end on the naive run's stream",
                              lambda: measures.end_to_end(self.servers, topic, len(messages)).events_per_s)
        self.results["speedup_over_naive"] = ours / naive if naive else None

    def _full_sync(self) -> None:
        if "full_sync" in self.skip:
            return
        args = self.args
        self.results.update(full_sync_users=args.full_sync_users, full_sync_groups=args.full_sync_groups)
        self._platform(args.full_sync_users, args.full_sync_groups, sync=False)
        first = self._step("first full sync", lambda: measures.run_command("sync"))
        again = self._step("re-sync", lambda: measures.run_command("sync"))
        self.results.update(full_sync_s=first.seconds, full_sync_peak_rss_mb=first.peak_rss_mb,
                            resync_s=again.seconds, resync_peak_rss_mb=again.peak_rss_mb)

    def _platform(self, users: int, groups: int, sync: bool = True) -> None:
        platform = Platform(users, self.origin)
        self._step(f"platform of {users:,} users", platform.load)
        self._enrollments = platform.enrollments()
        self._step(f"{groups} groups" + (", first sync" if sync else ""),
                   lambda: api.apply_definitions(group_definitions(groups), sync=sync, wait_s=0))

    def _stream(self, count: int, start: datetime | None = None, seed: int = 7,
                active: int | None = None) -> tuple[str, list[WireMessage]]:
        """A stream about the platform loaded last (``active`` of its users, or all), produced to a topic of its
        own."""
        messages = self._build(count, start or self.origin, seed, active)
        topic = f"bench-{len(self._enrollments) - 1}-{uuid.uuid4().hex[:8]}"
        self._step("produced to the broker", lambda: produce(self.servers, topic, messages))
        return topic, messages

    def _build(self, count: int, start: datetime, seed: int, active: int | None = None) -> list[WireMessage]:
        return self._step(f"{count:,} events in the LMS wire format",
                          lambda: build_stream(self._enrollments, count, start, seed=seed, active=active))

    def _step(self, title: str, work: Callable[[], T]) -> T:
        print(f"- {title} ...", end="", flush=True, file=sys.stderr)
        started = time.monotonic()
        value = within(self.args.step_timeout, title, work)
        shown = f" {value:,.1f}" if isinstance(value, float) else ""
        print(f"{shown} ({time.monotonic() - started:.1f} s)", flush=True, file=sys.stderr)
        return value
