"""``python -m bench.peak_memory COMMAND ...``: run a ``groups-consumer`` command, then print its peak resident
memory (``PEAK_RSS_KB=...`` on stderr).

The peak is this process's ``VmHWM``, the high-water mark of its memory since it started running Python.
The kernel's ``ru_maxrss`` of a child also counts the parent's pages it shared between fork and exec: for a
benchmark process holding a few hundred MB of streams, it reported that instead of the command's own peak.
"""

from __future__ import annotations

import sys
from pathlib import Path

from groups_consumer.cli import main


def peak_rss_kb() -> int:
    """This process's peak resident set size (kB), from ``/proc/self/status``."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1])


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    finally:
        print(f"PEAK_RSS_KB={peak_rss_kb()}", file=sys.stderr, flush=True)
