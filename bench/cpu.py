"""Where the machine's CPU goes during a measure: the whole machine and the processes involved, from /proc.

A thread samples, every ``every_s``, the machine's busy CPU time (``/proc/stat``) and the CPU time (user +
system, every thread) of the processes of interest: the ones given by pid (the consumer: this process; the
relay), PostgreSQL's server processes and its backends of the benchmark's database (``postgres``; backends of
other databases are someone else's), and the embedded broker (``broker``: a ``tansu`` started by this
process). ``between(start, stop)`` gives the CPU seconds each used in a window of wall-clock time; ``other``
is what the machine used besides them (anything else running on it: the figures are then less reliable).
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
#: Samples between two scans of every process (the others read only the processes found counting).
RESCAN_EVERY = 10


@dataclass(frozen=True)
class Sample:
    """CPU ticks at one wall-clock instant (``time.time()``): the machine's, and each process's by pid."""

    at: float
    busy: int
    processes: Mapping[int, tuple[str, int]]  # pid -> (group, ticks)


class CpuSampler:
    """Samples CPU time on a thread while used as a context manager; ``pids`` names processes by group;
    ``database`` is the benchmark's (its PostgreSQL backends are counted, others' are not)."""

    def __init__(self, pids: Mapping[str, int | None], database: str, every_s: float = 0.2):
        self._pids = {pid: group for group, pid in pids.items() if pid is not None}
        self._database = database
        self._every_s = every_s
        self._samples: list[Sample] = []
        self._samples_taken = 0
        self._counted: dict[int, str] = {}  # pid -> its group
        self._ignored: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._samples.append(self._sample())
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._samples.append(self._sample())

    def between(self, start: float, stop: float) -> dict[str, float]:
        """CPU seconds used from ``start`` to ``stop`` (wall clock; the samples around them): ``machine`` (every
        CPU), each group of processes (a process started in the window counts from its start, one ended in it
        is left to ``other``), and ``other``; plus ``cpus_busy``, the machine's average busy CPUs."""
        times = [s.at for s in self._samples]
        first = self._samples[max(bisect_right(times, start) - 1, 0)]
        last = self._samples[min(bisect_left(times, stop), len(times) - 1)]
        seconds = {"machine": (last.busy - first.busy) * TICK_S}
        for group in sorted({*self._pids.values(), "postgres", "broker"}):
            seconds[group] = 0.0
        for pid, (group, ticks) in last.processes.items():
            seconds[group] += (ticks - first.processes.get(pid, (group, 0))[1]) * TICK_S
        seconds["other"] = max(seconds["machine"] - sum(v for k, v in seconds.items() if k != "machine"), 0.0)
        elapsed = last.at - first.at
        seconds["cpus_busy"] = seconds["machine"] / elapsed if elapsed > 0 else 0.0
        return {key: round(value, 3) for key, value in seconds.items()}

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._samples.append(self._sample())

    def _sample(self) -> Sample:
        at = time.time()
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(fields[:8]) - fields[3] - fields[4]  # user .. steal, less idle and iowait
        if self._samples_taken % RESCAN_EVERY == 0:  # every process: PostgreSQL's and the broker's, new ones
            self._classify({int(e.name) for e in os.scandir("/proc") if e.name.isdigit()})
        self._samples_taken += 1
        processes: dict[int, tuple[str, int]] = {}
        for pid, group in list(self._counted.items()):
            stat = _stat(pid)
            if stat is None:
                del self._counted[pid]
            else:
                processes[pid] = (group, stat[2])
        return Sample(at, busy, processes)

    def _classify(self, pids: set[int]) -> None:
        for pid in pids - self._counted.keys() - self._ignored:
            stat = _stat(pid)
            group = self._pids.get(pid) or (self._group(pid, stat[0], stat[1]) if stat else None)
            if group:
                self._counted[pid] = group
            else:
                self._ignored.add(pid)

    def _group(self, pid: int, name: str, ppid: int) -> str | None:
        if name == "tansu" and ppid == os.getpid():
            return "broker"
        if name == "postgres":
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                return None
            # A backend's title names its user, database and client ("postgres: 15/main: user db host(port) ...");
            # the server's other processes do not.
            backend = "(" in command
            return "postgres" if not backend or f" {self._database} " in command else None
        return None


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process of this machine so far (every thread); None once it is gone."""
    stat = _stat(pid)
    return None if stat is None else stat[2] * TICK_S


def _stat(pid: int) -> tuple[str, int, int] | None:
    """Name, parent pid and user + system CPU ticks (every thread) of a process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, rest = stat.rpartition(")")
    fields = rest.split()
    return head.partition("(")[2], int(fields[1]), int(fields[11]) + int(fields[12])
