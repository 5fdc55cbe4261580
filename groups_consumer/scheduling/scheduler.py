"""``groups-consumer scheduler``: the time-driven half of the service.

Every tick it (1) re-evaluates the users whose time-relative answers flipped since the last pass, and (2)
runs the fallback syncs that are due, scope by scope. Everything it needs to resume lives in the database
(each group's last sync and flip watermark), so a restarted scheduler carries on where the last one stopped
instead of running everything again. Several replicas may run: both steps hold the leases of the groups
they decide, and a replica skips what another one holds. A step that fails is logged and retried with
backoff, without holding back the other groups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import structlog
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from groups_consumer.engine.catalog import GroupCatalog
from groups_consumer.engine.full_sync import SyncReport
from groups_consumer.engine.time_flips import FlipReport, process_flips
from groups_consumer.models import Group
from groups_consumer.plugins.criterion import UpdateMethod
from groups_consumer.scheduling.leases import LeaseUnavailable
from groups_consumer.scheduling.policy import due_scopes
from groups_consumer.scheduling.sync_runner import group_leases, run_sync

log = structlog.get_logger(__name__)
DEFAULT_TICK = timedelta(seconds=15)
MAX_BACKOFF_S = 600.0


@dataclass
class TickReport:
    """What one tick did."""

    now: datetime
    flips: list[FlipReport] = field(default_factory=list)
    syncs: list[SyncReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def flips_evaluated(self) -> int:
        """Users re-evaluated by time-relative passes, summed over groups."""
        return sum(report.users_evaluated for report in self.flips)


class Backoff:
    """Per step, when it may be tried again after failures (doubling from one tick, up to 10 minutes)."""

    def __init__(self, first_s: float) -> None:
        self.first_s = first_s
        self._failures: dict[str, tuple[int, float]] = {}

    def ready(self, step: str) -> bool:
        """True unless the step failed recently."""
        return time.monotonic() >= self._failures.get(step, (0, 0.0))[1]

    def failed(self, step: str) -> float:
        """Record a failure; returns the delay before the next attempt."""
        count = self._failures.get(step, (0, 0.0))[0] + 1
        delay = min(self.first_s * 2.0 ** (count - 1), MAX_BACKOFF_S)
        self._failures[step] = (count, time.monotonic() + delay)
        return delay

    def succeeded(self, step: str) -> None:
        """Forget the step's failures."""
        self._failures.pop(step, None)


class Scheduler:
    """Runs due time-relative flips and due syncs, tick after tick (see the module docstring)."""

    def __init__(self, clock: Callable[[], datetime] = timezone.now, tick: timedelta = DEFAULT_TICK):
        self.clock = clock
        self.tick = tick
        self._stop = threading.Event()
        self._backoff = Backoff(tick.total_seconds())

    def stop(self) -> None:
        """Finish the current step, then return from ``run``."""
        self._stop.set()

    def run(self) -> None:
        """Tick until ``stop()``."""
        log.info("scheduler_started", tick_s=self.tick.total_seconds())
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except (OperationalError, InterfaceError) as error:  # loading the catalog failed: next tick
                log.warning("scheduler_database_error", error=str(error))
                connection.close()
            self._stop.wait(max(self.tick.total_seconds() - (time.monotonic() - started), 0.0))
        log.info("scheduler_stopped")

    def run_once(self) -> TickReport:
        """One tick: time-relative flips first (so a sync finds no time-relative drift), then due syncs."""
        report = TickReport(now=self.clock())
        catalog = GroupCatalog.load()
        for unit in _flip_units(catalog):
            self._step(f"flips:{min(unit)}", report, partial(self._flips, unit, report))
        self._run_due_syncs(catalog, report)
        if report.syncs or report.skipped or report.failed:
            log.info("scheduler_tick", syncs=[s.run_id for s in report.syncs], skipped=report.skipped,
                     failed=report.failed, flips=report.flips_evaluated)
        return report

    def _flips(self, unit: frozenset[int], report: TickReport) -> None:
        with group_leases(unit).acquire() as leases:
            catalog = GroupCatalog.load(record_broken=False)  # as defined now that the groups are leased
            groups = [catalog.groups[gid] for gid in unit if gid in catalog.groups]
            report.flips.append(process_flips(catalog, self.clock(), groups, heartbeat=leases.renew))

    def _run_due_syncs(self, catalog: GroupCatalog, report: TickReport) -> None:
        due = due_scopes(catalog, dict(Group.objects.values_list("id", "last_full_sync")), report.now)
        if due:
            log.info("syncs_due", scopes=[str(scope) for scope in due])
        for scope, groups in due.items():
            if self._stop.is_set():
                return
            self._step(f"sync:{scope}", report, partial(self._sync, [g.id for g in groups], report))

    def _sync(self, group_ids: list[int], report: TickReport) -> None:
        synced = run_sync(group_ids, clock=self.clock, method=UpdateMethod.SCHEDULE, only_if_due=True)
        if synced is not None:
            report.syncs.append(synced)

    def _step(self, name: str, report: TickReport, step: Callable[[], None]) -> None:
        """Run one step unless it is backing off; a busy lease skips it, a failure backs it off."""
        if not self._backoff.ready(name):
            return
        try:
            step()
            self._backoff.succeeded(name)
        except LeaseUnavailable as busy:
            report.skipped.append(f"{name}: {busy}")
        except Exception as error:  # a long-running process: report, back off, go on with the other steps
            if isinstance(error, (OperationalError, InterfaceError)):
                connection.close()
            delay = self._backoff.failed(name)
            log.exception("scheduler_step_failed", step=name, retry_in_s=delay)
            report.failed.append(name)


def _flip_units(catalog: GroupCatalog) -> list[frozenset[int]]:
    """Groups with time-relative criteria, each with its exclusive siblings (decided together)."""
    units = {frozenset(g.id for g in catalog.with_exclusive_siblings([group]))
             for group in catalog.groups.values() if group.time_relative}
    return sorted(units, key=min)
