"""Whether the host has a CPU to spare: decoding ahead pays only then.

Decoding the next batch while the current one waits for PostgreSQL (``polled``) turns the process's waits into
work. When a core would otherwise sit idle (one consumer process on a host of two cores, or PostgreSQL on
another host), that is time gained. When every core is busy (as many consumer processes as cores, PostgreSQL
beside them), the work only takes CPU from the PostgreSQL backends running the batches' statements, whose
transactions then hold their users' locks longer, and the other consumers wait for them (measured in
docs/event-path.rst: a fifth fewer events/s with two processes on two cores). So the consumer decodes ahead
only while the host had at least ``threshold`` of a core idle since it last asked.

Linux only (``/proc/stat``; within a cgroup with a CPU quota, the quota left unused, from ``cpu.stat`` and
``cpu.max`` of cgroup v2); elsewhere a CPU always counts as spare.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

#: Idle share of a core below which decoding ahead stops (see the module docstring).
DEFAULT_THRESHOLD = 0.4


class SpareCpu:
    """Answers, each time it is asked, whether at least ``threshold`` of a core went unused since the last time
    (the first time: since it was made)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, proc: Path = Path("/proc"),
                 cgroup: Path = Path("/sys/fs/cgroup"), clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold, self._clock = threshold, clock
        self._stat, self._cgroup = proc / "stat", cgroup
        self._quota = _quota_cores(cgroup / "cpu.max")
        self._last = self._reading()

    def __call__(self) -> bool:
        """True if at least ``threshold`` of a core was idle since the last call."""
        reading = self._reading()
        if reading is None or self._last is None:
            self._last = reading
            return True
        (busy, total), (last_busy, last_total) = reading, self._last
        self._last = reading
        if total <= last_total:
            return True  # too soon to tell: keep deciding as if spare
        return (total - last_total) - (busy - last_busy) >= self._threshold * (total - last_total) / self._cores()

    def _cores(self) -> float:
        return self._quota if self._quota is not None else float(os.cpu_count() or 1)

    def _reading(self) -> tuple[float, float] | None:
        """(CPU time used, CPU time available), in any one unit, summed over the cores counted."""
        try:
            if self._quota is not None:
                usage_s = _cgroup_usage_s(self._cgroup / "cpu.stat")
                return usage_s, self._clock() * self._quota
            return _host_jiffies(self._stat)
        except (OSError, ValueError):
            return None


def _host_jiffies(stat: Path) -> tuple[float, float]:
    """(busy, total) jiffies of every core, from the first line of ``/proc/stat``."""
    with stat.open() as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user and nice]
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


def _cgroup_usage_s(stat: Path) -> float:
    for line in stat.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec":
            return int(value) / 1e6
    raise ValueError("no usage_usec in cpu.stat")


def _quota_cores(cpu_max: Path) -> float | None:
    """The cgroup's CPU quota in cores, or None (no quota, or no cgroup v2)."""
    try:
        quota, period = cpu_max.read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)
