"""``python -m bench`` (``make bench``): the product's performance figures, measured in one run on PostgreSQL.

See ``bench/__init__.py`` for what is measured and how; ``--help`` for the sizes. ``--quick`` runs everything
small (sizes given explicitly still apply), in about a minute, to check the benchmark itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path

from bench.timeout import StepTimeout

QUICK = {"users": 5000, "events": 10000, "latency_events": 5000, "scaling": "2000,5000", "scaling_events": 5000,
         "full_sync_users": 5000, "naive_users": 2000, "naive_events": 200, "naive_budget": 5.0,
         "publishing_rounds": 1}
#: The consumers' batch size of a quick run (unless ``CONSUMER_BATCH_SIZE`` is set): the steady rates need two
#: batches or more in each process, and the default size (5,000) would need a longer stream.
QUICK_BATCH_SIZE = "1000"


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options (``--quick`` replaces the sizes by small ones)."""
    parser = argparse.ArgumentParser(prog="make bench ARGS=", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000, help="population of the main run")
    parser.add_argument("--events", type=int, default=100_000, help="events of the main stream")
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2,
                        help="consumer processes of the main end-to-end and latency runs (one process is measured too)")
    parser.add_argument("--rate", type=float, default=5000, help="produce rate of the latency run (events/s)")
    parser.add_argument("--latency-events", type=int, default=50_000)
    parser.add_argument("--scaling", default="10000,100000,1000000", help="populations of the scaling run")
    parser.add_argument("--scaling-events", type=int, default=50_000)
    parser.add_argument("--scaling-active", type=int, default=None, metavar="USERS",
                        help="the second scaling stream of each population is about this many of its users "
                             "(default: the smallest population)")
    parser.add_argument("--full-sync-users", type=int, default=1_000_000)
    parser.add_argument("--full-sync-groups", type=int, default=20)
    parser.add_argument("--naive-users", type=int, default=10_000)
    parser.add_argument("--naive-events", type=int, default=2000)
    parser.add_argument("--naive-budget", type=float, default=30.0, help="seconds the naive loop may run")
    parser.add_argument("--publishing-rounds", type=int, default=3,
                        help="pairs of 1-process end-to-end runs with publishing off and on, alternated off, on, "
                             "on, off, ... (each on the main stream, the platform loaded again)")
    parser.add_argument("--skip", default="", help="comma-separated parts: ceiling,end_to_end,peer,latency,"
                                                   "publishing,replay,scaling,full_sync,naive")
    parser.add_argument("--step-timeout", type=float, default=None, metavar="SECONDS",
                        help="fail a step that runs longer, with the traceback of where it waited (default: none)")
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere (checks the benchmark)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/gc_bench"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.quick:  # small defaults; sizes given explicitly still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
        args.results = args.results / "quick"  # a check of the benchmark is not a result
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark on a fresh database and the broker (embedded unless KAFKA_BOOTSTRAP_SERVERS is set)."""
    args = arguments(argv)
    if args.quick:  # read by every consumer process the run starts
        os.environ.setdefault("CONSUMER_BATCH_SIZE", QUICK_BATCH_SIZE)
    from bench.setup import django_on, fresh_database

    fresh_database(args.database_url)
    django_on(args.database_url)
    from bench.run import Benchmark
    from groups_consumer.broker import EmbeddedBroker

    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with (nullcontext(servers) if servers else EmbeddedBroker()) as bootstrap_servers:
        Benchmark(args, bootstrap_servers).run()


if __name__ == "__main__":
    try:
        main()
    except StepTimeout:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # a thread the step started may still wait: do not wait for it at exit
