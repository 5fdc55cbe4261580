"""``python -m bench.compare``: one design change, before and after, side by side in one run.

The change is switched by an environment variable the consumer reads (``--env NAME=BEFORE,AFTER``, e.g.
``CONSUMER_BATCH_SIZE=2000,5000``). One consumer process runs end to end over the same stream with each value,
alternated before, after, after, before, ... (an order that cancels a linear drift of the machine), each run
from the same state: the platform loaded and synced again. Printed and saved (``compare-*.json`` in the
results folder): events/s and CPU seconds by process group of every run, and the median ratio after / before.
With ``--processes N`` (N > 1), N consumer processes share the stream in one consumer group, as the
benchmark's main figure runs them: events/s only (``measures.end_to_end``), no CPU breakdown.

Example: ``python -m bench.compare --env CONSUMER_BATCH_SIZE=2000,5000 --rounds 3 [--processes 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.__main__ import arguments as bench_arguments


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The comparison's options (the population and stream sizes are the benchmark's)."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--env", required=True, help="NAME=BEFORE,AFTER: the variable and its two values")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs")
    parser.add_argument("--processes", type=int, default=1, help="consumer processes sharing the stream")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/gc_compare")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Alternate end-to-end runs with the variable's two values and report them (on the broker of
    ``KAFKA_BOOTSTRAP_SERVERS``, else an embedded one)."""
    args = arguments(argv)
    name, _, values = args.env.partition("=")
    before, after = values.split(",")
    from bench.setup import django_on, fresh_database

    fresh_database(args.database_url)
    django_on(args.database_url)
    from bench import measures
    from bench.report import machine
    from bench.run import Benchmark
    from groups_consumer.broker import EmbeddedBroker

    settings = bench_arguments(["--users", str(args.users), "--events", str(args.events), "--groups",
                                str(args.groups), "--results", str(args.results)])
    order = [v for n in range(args.rounds) for v in ((before, after) if n % 2 == 0 else (after, before))]
    runs: list[dict[str, Any]] = []
    running = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with nullcontext(running) if running else EmbeddedBroker() as servers:
        bench = Benchmark(settings, servers)
        bench._platform(args.users, args.groups)
        topic, messages = bench._stream(args.events)
        for value in order:
            bench._platform(args.users, args.groups)
            os.environ[name] = value
            if args.processes > 1:
                shared = measures.end_to_end(servers, topic, len(messages), args.processes)
                runs.append({"value": value, "processes": args.processes, "events_per_s": shared.events_per_s})
                print(f"{name}={value}: {shared.events_per_s:,.0f} events/s; batches in halves: "
                      f"{shared.batches_in_halves} of {shared.batches}", file=sys.stderr)
                continue
            run = measures.end_to_end_publishing(servers, topic, len(messages), None)
            runs.append({"value": value, **asdict(run)})
            print(f"{name}={value}: {run.events_per_s:,.0f} events/s; CPU s: {run.cpu_s}; batches in halves: "
                  f"{run.batches_in_halves} of {run.batches}", file=sys.stderr)
    medians = {v: statistics.median(r["events_per_s"] for r in runs if r["value"] == v) for v in (before, after)}
    result = {"machine": machine(), "variable": name, "before": before, "after": after, "users": args.users,
              "events": args.events, "groups": args.groups, "processes": args.processes, "median_events_per_s": medians,
              "ratio_after_to_before": medians[after] / medians[before], "runs": runs}
    path = args.results / f"compare-{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"{name}: {before} -> {after}: median {medians[before]:,.0f} -> {medians[after]:,.0f} events/s, "
          f"ratio {result['ratio_after_to_before']:.3f}\nresults: {path}")


if __name__ == "__main__":
    main()
