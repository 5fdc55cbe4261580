"""``groups-consumer scheduler``: the long-running time-driven process (due syncs, time-relative flips)."""

import os
import signal
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser

from groups_consumer.management.base import GroupsCommand
from groups_consumer.plugin_checks import check_plugins
from groups_consumer.scheduling.scheduler import DEFAULT_TICK, Scheduler


class Command(GroupsCommand):
    """Run due fallback syncs and time-relative flips every tick until SIGTERM / SIGINT."""

    help = ("Run the scheduler: time-relative criteria flip on time, due syncs run scope by scope "
            "(safe with several replicas).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tick", type=float, metavar="SECONDS",
                            default=float(os.environ.get("SCHEDULER_TICK_S", DEFAULT_TICK.total_seconds())),
                            help="seconds between passes (env SCHEDULER_TICK_S, default %(default)s)")
        parser.add_argument("--once", action="store_true", help="run one pass and exit (cron, tests)")

    def handle(self, *args: Any, **options: Any) -> None:
        check_plugins()
        scheduler = Scheduler(tick=timedelta(seconds=options["tick"]))
        if options["once"]:
            report = scheduler.run_once()
            self.stdout.write(f"{len(report.syncs)} sync(s), {report.flips_evaluated} time-relative "
                              "re-evaluation(s)" + "".join(f"\nskipped {step}" for step in report.skipped)
                              + "".join(f"\nfailed {step} (see the log)" for step in report.failed))
            if report.failed:
                raise CommandError(f"{len(report.failed)} step(s) failed")
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: scheduler.stop())
        scheduler.run()
