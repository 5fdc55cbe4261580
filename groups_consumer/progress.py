"""Progress of long operations: a bar on a terminal, periodic structured log lines otherwise."""

from __future__ import annotations

import sys
import time

import structlog
from tqdm import tqdm

log = structlog.get_logger(__name__)


class Progress:
    """Counts work done toward a known total; use as a context manager."""

    def __init__(self, operation: str, total: int, unit: str, log_every_s: float = 5.0,
                 **context: object) -> None:
        self.operation, self.total, self.unit, self.context = operation, total, unit, context
        self.done = 0
        self._bar = tqdm(total=total, unit=unit, desc=operation, file=sys.stderr) if sys.stderr.isatty() else None
        self._log_every_s = log_every_s
        self._started = self._last_log = time.monotonic()

    def advance(self, amount: int) -> None:
        """Record ``amount`` more units done."""
        self.done += amount
        if self._bar is not None:
            self._bar.update(amount)
        elif time.monotonic() - self._last_log >= self._log_every_s:
            self._last_log = time.monotonic()
            log.info(f"{self.operation}_progress", done=self.done, total=self.total, unit=self.unit, **self.context)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()
