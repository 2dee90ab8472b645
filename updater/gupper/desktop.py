"""Updates for desktop apps that ask first: every callback on the app's UI thread.

Tk and Qt (and most toolkits) may be used from their UI thread only, and an update is found,
downloaded and installed in other threads. :class:`UiQueue` carries work to the UI thread (the
toolkit's own timer pumps it: Tk's ``root.after``, Qt's ``QTimer.singleShot``), and
:class:`BackgroundUpdates` runs the whole flow with it::

    updater = Updater(CONFIG)                  # first thing: self-test answer, trial start, rollback
    root = tkinter.Tk()
    ui = UiQueue()
    ui.attach(root.after)                      # Qt: ui.attach(QTimer.singleShot)

    def offer(update):                         # UI thread
        mb = update.download_size / 1e6
        if messagebox.askyesno("Update", f"Version {update.version} is available ({mb:.1f} MB). Install it?"):
            updates.install(update)            # downloads and installs in a worker thread
        else:
            updates.decline(update)            # not offered again in this session

    def ready(result):                         # UI thread: the new version is installed
        if messagebox.askyesno("Update", f"{result.version} is ready. Restart now?"):
            updates.restart_when_closed()      # starts it once this process has ended ...
            root.destroy()                     # ... which the app's own quit path brings about

    updates = BackgroundUpdates(updater, ui, on_available=offer, on_ready=ready)
    updates.start()
    updater.confirm()                          # once the window is up
    root.mainloop()

Nothing here imports a toolkit. Errors never escape into the UI: a failed check or install is
one log line and, when given, ``on_failed(result)``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import ConfigError, UpdateError
from .results import Result, Status, Update

if TYPE_CHECKING:
    from .client import Updater
    from .periodic import PeriodicCheck

log = logging.getLogger("gupper")

Schedule = Callable[[int, Callable[[], None]], object]
"""A toolkit's "call this on the UI thread in N ms": Tk's ``root.after``, Qt's ``QTimer.singleShot``."""

PROGRESS_EVERY = 0.1
"""Seconds between two progress callbacks (the last one, at 100 %, always comes)."""


class UiQueue:
    """Work handed from any thread to the UI thread, run there by :meth:`pump`."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def post(self, work: Callable[[], None]) -> None:
        """Queue ``work`` to run on the UI thread (from any thread)."""
        self._queue.put(work)

    def pump(self) -> int:
        """On the UI thread: run what was queued, in order; returns how many ran. A callback that
        raises is logged and the others still run."""
        ran = 0
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return ran
            ran += 1
            try:
                work()
            except Exception:
                log.exception("gupper: an update callback on the UI thread failed")

    def attach(self, schedule: Schedule, every_ms: int = 100) -> None:
        """Pump every ``every_ms`` on the UI thread through the toolkit's timer; call it from the UI thread."""

        def tick() -> None:
            self.pump()
            schedule(every_ms, tick)

        schedule(every_ms, tick)


class BackgroundUpdates:
    """Check in the background, ask on the UI thread, install in the background, restart on quit.

    ``on_available(update)``: a release is on offer (not yet downloaded); ask the user, then call
    :meth:`install` or :meth:`decline`. ``on_ready(result)``: it is installed and runs from the
    next start; offer :meth:`restart_when_closed`. ``on_progress(done, total)``: bytes of the
    download. ``on_failed(result)``: a check or install failed (already logged). ``on_checked(result)``:
    a check that offered nothing (up to date, a declined version, a failure): for a "last checked"
    line, or the answer to :meth:`check_now`. All run on the UI thread.
    """

    def __init__(
        self,
        updater: Updater,
        ui: UiQueue,
        *,
        on_available: Callable[[Update], None],
        on_ready: Callable[[Result], None],
        on_progress: Callable[[int, int], None] | None = None,
        on_failed: Callable[[Result], None] | None = None,
        on_checked: Callable[[Result], None] | None = None,
        interval: float = 6 * 3600,
        first_check: float = 10.0,
        jitter: float = 0.2,
    ) -> None:
        """Raises ConfigError when ``interval``, ``first_check`` or ``jitter`` is out of range."""
        if interval <= 0 or first_check < 0 or not 0 <= jitter < 1:
            raise ConfigError("BackgroundUpdates needs interval > 0, first_check >= 0 and 0 <= jitter < 1")
        self.updater, self.ui = updater, ui
        self._on_available, self._on_ready, self._on_progress = on_available, on_ready, on_progress
        self._on_failed, self._on_checked = on_failed, on_checked
        self._interval, self._first_check, self._jitter = interval, first_check, jitter
        self._busy = threading.Lock()  # one check or install at a time, in whichever thread
        self._state = threading.Lock()
        self._offered: str | None = None
        self._offered_now = False
        self._declined: set[str] = set()
        self.ready: str | None = None
        """The version installed in this session (it runs from the next start), if any."""
        self._checker: PeriodicCheck | None = None

    # --- UI thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start checking: soon after this call, then every interval."""
        from .periodic import PeriodicCheck

        # The checker drives run() below, not the updater's: one check or install at a time.
        self._checker = PeriodicCheck(
            self, self._interval, self._jitter, self._periodic_result, first_check=self._first_check
        )
        self._checker.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the periodic checks (waits up to ``timeout`` s for one in progress)."""
        if self._checker is not None:
            self._checker.stop(timeout)

    def check_now(self) -> None:
        """Check at once in a worker thread ("Check for updates…"): an offer goes to
        ``on_available`` (a version declined before is offered again: the user asked), anything
        else to ``on_checked``."""
        with self._state:
            self._declined.clear()
        threading.Thread(target=self._check_now, name="gupper-check-now", daemon=True).start()

    def install(self, update: Update) -> None:
        """Download and install ``update`` in a worker thread (the user said yes)."""
        threading.Thread(target=self._install, args=(update,), name="gupper-install", daemon=True).start()

    def decline(self, update: Update) -> None:
        """The user said not now: ``update`` is not offered again in this session."""
        with self._state:
            self._declined.add(update.version)
            if self._offered == update.version:
                self._offered = None

    def restart_when_closed(self) -> None:
        """Start the installed version once this process has ended; the app then closes its windows
        and quits as it always does (:meth:`gupper.Updater.restart_on_exit`)."""
        if self.ready is not None:
            try:
                self.updater.restart_on_exit(self.ready)
            except UpdateError as e:
                log.warning("gupper: %s", e)

    # --- worker threads -----------------------------------------------------------------------

    def run(self, *, restart: bool = True, on_available: Callable[[Update], bool] | None = None) -> Result:
        """One periodic check (the :class:`~gupper.periodic.PeriodicCheck` drives this): offers go to
        ``on_available`` on the UI thread; nothing is downloaded here."""
        with self._busy:
            if self.ready is not None:
                return Result(Status.INSTALLED, f"{self.ready} is installed", version=self.ready)
            self._offered_now = False
            result = self.updater.run(restart=False, on_available=self._offer)
            offered = self._offered_now
        if not offered and result.status is not Status.INSTALLED and self._on_checked is not None:
            checked = self._on_checked
            self.ui.post(lambda: checked(result))
        return result

    def _offer(self, update: Update) -> bool:
        with self._state:
            fresh = update.version not in self._declined and self._offered != update.version
            if fresh:
                self._offered = update.version
        if fresh:
            self._offered_now = True
            self.ui.post(lambda: self._on_available(update))
        return False  # never here: the user's answer comes back through install()

    def _periodic_result(self, result: Result) -> None:
        if result.status is Status.INSTALLED and result.version is not None:
            self._installed(result)  # by another instance, found by this check
        elif result.status is Status.FAILED and self._on_failed is not None:
            failed = self._on_failed
            self.ui.post(lambda: failed(result))

    def _check_now(self) -> None:
        self._periodic_result(self.run())

    def _install(self, update: Update) -> None:
        try:
            with self._busy:
                staged = self.updater.download(update, self._progress())
                self.updater.install(staged, update.version)
        except UpdateError as e:
            with self._state:
                self._offered = None
            log.warning("gupper: the update to %s failed: %s", update.version, e)
            if self._on_failed is not None:
                failed, result = self._on_failed, Result(Status.FAILED, str(e), error=e, version=str(update.current))
                self.ui.post(lambda: failed(result))
            return
        except Exception as e:  # a bug in Gupper must not kill the app
            log.warning("gupper: internal error while updating (%s: %s)", type(e).__name__, e)
            return
        log.info("gupper: installed %s; it runs from the next start", update.version)
        self._installed(Result(Status.INSTALLED, f"installed {update.version}", version=update.version))

    def _installed(self, result: Result) -> None:
        self.ready = result.version
        self.ui.post(lambda: self._on_ready(result))

    def _progress(self) -> Callable[[int, int], None] | None:
        report = self._on_progress
        if report is None:
            return None
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < PROGRESS_EVERY:
                return
            last[0] = now
            self.ui.post(lambda: report(done, total))

        return progress
