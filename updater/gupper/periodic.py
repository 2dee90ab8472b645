"""Checking in the background, for long-running apps (:meth:`gupper.Updater.check_periodically`)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Protocol

from .results import Result, Status, Update

log = logging.getLogger("gupper")


class Runs(Protocol):
    """What the checker drives: :meth:`gupper.Updater.run`."""

    def run(self, *, restart: bool = True, on_available: Callable[[Update], bool] | None = None) -> Result:
        """One check, and an install if it finds an update."""
        ...


class PeriodicCheck:
    """A stoppable background update checker (see :meth:`Updater.check_periodically`)."""

    def __init__(
        self,
        updater: Runs,
        interval: float,
        jitter: float,
        on_result: Callable[[Result], None],
        on_available: Callable[[Update], bool] | None = None,
        first_check: float = 0.0,
    ) -> None:
        self._updater, self._interval, self._jitter, self._on_result = updater, interval, jitter, on_result
        self._on_available, self._first_check = on_available, first_check
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gupper-periodic-check", daemon=True)
        self.installed: str | None = None

    def start(self) -> None:
        """Start the thread (done by check_periodically)."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` s for a check in progress to end."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _delay(self, seconds: float) -> float:
        return seconds * random.uniform(1 - self._jitter, 1 + self._jitter)

    def _loop(self) -> None:
        # The first check soon after start: an app used for an hour a day never lives a whole interval.
        delay = self._delay(min(self._first_check, self._interval))
        while not self._stop.wait(delay):
            delay = self._delay(self._interval)
            if self.installed is not None:
                return  # installed: the next start runs it; nothing more to do in this process
            result = self._updater.run(restart=False, on_available=self._on_available)
            if result.status is Status.INSTALLED:
                self.installed = result.version
            try:
                self._on_result(result)
            except Exception:  # the app's callback must not kill the checker
                log.exception("gupper: the periodic check's callback failed")
