"""``groups-consumer scheduler``: the time-driven half of the service.

Every tick it (1) re-evaluates the users whose time-relative answers flipped since the last pass, and (2)
runs the fallback syncs that are due, scope by scope. Everything it needs to resume lives in the database
(each group's last sync and flip watermark), so a restarted scheduler carries on where the last one stopped
instead of running everything again; several replicas may run, and leases keep them from doing the same
work twice.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import structlog
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import SyncReport
from groups_consumer.engine.time_flips import FlipReport, process_flips
from groups_consumer.models import Group
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.scheduling.leases import Leases, LeaseUnavailable
from groups_consumer.scheduling.policy import due_scopes
from groups_consumer.scheduling.sync_runner import run_sync

log = structlog.get_logger(__name__)
DEFAULT_TICK = timedelta(seconds=15)


@dataclass
class TickReport:
    """What one tick did."""

    now: datetime
    flips: FlipReport | None = None
    syncs: list[SyncReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Scheduler:
    """Runs due time-relative flips and due syncs, tick after tick (see the module docstring)."""

    def __init__(self, clock: Callable[[], datetime] = timezone.now, tick: timedelta = DEFAULT_TICK):
        self.clock = clock
        self.tick = tick
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the current tick, then return from ``run``."""
        self._stop.set()

    def run(self) -> None:
        """Tick until ``stop()``; a failing tick is logged and retried at the next one."""
        log.info("scheduler_started", tick_s=self.tick.total_seconds())
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except (OperationalError, InterfaceError) as error:
                log.warning("scheduler_database_error", error=str(error))
                connection.close()
            except Exception:  # a long-running process: report and try again next tick
                log.exception("scheduler_tick_failed")
            self._stop.wait(max(self.tick.total_seconds() - (time.monotonic() - started), 0.0))
        log.info("scheduler_stopped")

    def run_once(self) -> TickReport:
        """One tick: flips first (so a sync finds no time-relative drift), then the due syncs."""
        report = TickReport(now=self.clock())
        catalog = GroupCatalog.load()
        try:
            with Leases(["time-flips"]).acquire():
                report.flips = process_flips(catalog, report.now)
        except LeaseUnavailable as busy:
            report.skipped.append(str(busy))
        self._run_due_syncs(catalog, report)
        if report.syncs or report.skipped:
            log.info("scheduler_tick", syncs=[s.run_id for s in report.syncs], skipped=report.skipped,
                     flips=report.flips.users_evaluated if report.flips else None)
        return report

    def _run_due_syncs(self, catalog: GroupCatalog, report: TickReport) -> None:
        last_syncs = dict(Group.objects.values_list("id", "last_full_sync"))
        due = due_scopes(catalog, last_syncs, report.now)
        if not due:
            return
        log.info("syncs_due", scopes=[str(scope) for scope in due])
        try:  # one walk over the users for every due scope
            report.syncs.append(self._sync(catalog, [g for groups in due.values() for g in groups], report.now))
            return
        except LeaseUnavailable:
            pass
        for scope, groups in due.items():  # some group is busy elsewhere: do the scopes that are free
            try:
                report.syncs.append(self._sync(catalog, groups, report.now))
            except LeaseUnavailable as busy:
                log.info("sync_skipped_busy", scope=str(scope), reason=str(busy))
                report.skipped.append(str(busy))

    @staticmethod
    def _sync(catalog: GroupCatalog, groups, now: datetime) -> SyncReport:
        return run_sync(catalog, groups, now=now, method=UpdateMethod.SCHEDULE)
