"""Trial outcome reports: one GET of a static path beside the manifest when a trial ends.

Gupper has no server, so a publisher learns how a release fares in the field from the store's
own access log (``gupper-publish stats``, ``advance``). When a trial ends the client sends one GET
of ``outcomes/<version>/<platform>/<outcome>`` relative to the manifest URL, that is
``<app>/<channel>/outcomes/…`` in the store. Nothing needs to be there: a 403 or 404 answer is
fine, only the log line matters. The request carries what the manifest check already sends (the
``User-Agent`` naming app, running version and platform) and nothing else: no install id, no
cookie, no body.

Bounds: :func:`report` starts a daemon thread and returns at once (about 0.4 ms, bench/results-logs.md);
the GET has one overall deadline (:data:`DEADLINE`) and no retries. A process that exits, or re-executes
itself into another version, waits for a report still under way at most until that deadline
(:func:`settle`, run at exit and by :meth:`gupper.Updater.restart`). Nothing here raises.
"""

from __future__ import annotations

import atexit
import enum
import logging
import threading
import time
from urllib.parse import quote, urljoin

from .config import UpdaterConfig
from .platforms import Platform
from .records import replace
from .transfer import FetchConfig, check_url

log = logging.getLogger("gupper")

DEADLINE = 3.0
"""Seconds: the report's overall deadline, and the longest an exit or a restart waits for it."""
MAX_BYTES = 4096
"""A body the store may send back (an error page) is read up to this and dropped."""
PATH = "outcomes"


class Outcome(enum.StrEnum):
    """How a trial of a new version ended on this machine."""

    CONFIRMED = "confirmed"  # the new version called Updater.confirm()
    ROLLED_BACK = "rolled-back"  # it started too often without confirming: the previous version is back
    PREFLIGHT_FAILED = "preflight-failed"  # it failed its self-test: never installed, skipped here
    PREFLIGHT_INTERRUPTED = "preflight-interrupted"  # its self-test was killed from outside: tried again later


def outcome_url(manifest_url: str, version: str, platform: str, outcome: Outcome) -> str:
    """The URL reported to: ``outcomes/<version>/<platform>/<outcome>`` beside the manifest."""
    return urljoin(manifest_url, f"{PATH}/{quote(version, safe='')}/{quote(platform, safe='')}/{outcome.value}")


_pending: list[threading.Thread] = []
_lock = threading.Lock()


def report(
    config: UpdaterConfig, fetch_config: FetchConfig, platform: Platform, version: str, outcome: Outcome
) -> threading.Thread | None:
    """Send the outcome of ``version``'s trial in the background, unless the app turned reports off.

    Returns the sending thread (None when nothing is sent). Never raises, never blocks: one GET
    under :data:`DEADLINE`, same ``User-Agent`` as the manifest check, no retries.
    """
    if not config.report_outcomes:
        return None
    try:
        url = outcome_url(config.manifest_url, version, platform.key, outcome)
        check_url(url, config.allow_insecure_loopback)
        thread = threading.Thread(
            target=_send, args=(url, replace(fetch_config, retries=0)), name="gupper-outcome", daemon=True
        )
        with _lock:
            _pending[:] = [t for t in _pending if t.is_alive()]
            _pending.append(thread)
        thread.start()
    except Exception as e:  # a report is worth nothing next to the app's start
        log.debug("gupper: not reporting %s of %s (%s: %s)", outcome.value, version, type(e).__name__, e)
        return None
    return thread


def _send(url: str, fetch_config: FetchConfig) -> None:
    time.sleep(0)  # hand the interpreter back at once: the caller goes on with its start-up first
    try:
        from .fetch import Fetcher  # in the sending thread: the app's start does not wait for the transport's import

        with Fetcher(fetch_config) as fetcher:
            fetcher.get_small(url, max_bytes=MAX_BYTES, timeout=DEADLINE)
    except Exception as e:  # 403/404 included: the store's access log has the line either way
        log.debug("gupper: outcome report %s: %s", url, e)


def settle(timeout: float = DEADLINE) -> None:
    """Wait for reports still being sent, at most ``timeout`` seconds in all (before exec, at exit)."""
    end = time.monotonic() + timeout
    with _lock:
        waiting = list(_pending)
    for thread in waiting:
        thread.join(max(0.0, end - time.monotonic()))


# A daemon thread dies with the process: at exit, a report still under way gets until its deadline.
atexit.register(settle)
