"""Run a command with the wall clock of every process it starts moved well ahead (``make test-future``).

The suite must not pass only on the day it was written. This runs it (or any command) with the wall clock
of every Python process moved ahead by time-machine: ``future_clock_site/sitecustomize.py`` goes first on
``PYTHONPATH``, so the test process and the consumer, CLI and benchmark processes it starts all see the same
shifted, ticking clock. The clock starts one minute before the end of the last day of the month that is
``--months`` ahead, so a run also crosses a day and a month boundary (a year boundary too when that month
is December). Monotonic clocks are left alone, so timeouts still measure real time.

What keeps its own clock: the database server (the service never asks it for the time), the broker and
librdkafka (message timestamps stay real; a test that compares them with the Python clock must take its
instants from the broker). libfaketime cannot be used instead: librdkafka waits on C11 ``cnd_timedwait``,
which libfaketime does not intercept, so every timed wait inside librdkafka would last the offset.

    python -m tests.future_clock [--months 12] -- pytest -q
"""

from __future__ import annotations

import argparse
import calendar
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path


def start_instant(today: datetime, months: int) -> datetime:
    """One minute before midnight at the end of the month ``months`` after ``today``'s month."""
    index = today.year * 12 + today.month - 1 + months
    year, month = divmod(index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return datetime(year, month + 1, last_day, 23, 59, tzinfo=UTC)


SITE = Path(__file__).with_name("future_clock_site")


def shifted_environment(env: dict[str, str], offset: timedelta) -> dict[str, str]:
    """``env`` with every Python process's clock shifted by ``offset``."""
    path = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "FUTURE_CLOCK_OFFSET_S": str(offset.total_seconds())}


def main(argv: list[str] | None = None) -> None:
    """Parse ``--months`` and exec the command under the shifted clock."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12, help="how far ahead the clock starts (default 12)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    now = datetime.now(UTC)
    start = start_instant(now, args.months)
    print(f"future clock: {command[0]} starts at {start:%Y-%m-%d %H:%M} UTC", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, shifted_environment(dict(os.environ), start - now))


if __name__ == "__main__":
    main()
