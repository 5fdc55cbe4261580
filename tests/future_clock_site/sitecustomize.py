"""Moves this Python process's wall clock ahead when ``FUTURE_CLOCK_OFFSET_S`` is set (``make test-future``).

``tests/future_clock.py`` puts this directory first on ``PYTHONPATH``, so the test process and every Python
process it starts (consumers, the console script, the benchmark) see the same shifted, ticking clock.
"""

import os

if os.environ.get("FUTURE_CLOCK_OFFSET_S"):
    from datetime import UTC, datetime, timedelta

    import time_machine

    _offset = timedelta(seconds=float(os.environ["FUTURE_CLOCK_OFFSET_S"]))
    time_machine.travel(datetime.now(UTC) + _offset, tick=True).start()
