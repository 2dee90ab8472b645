"""The step boundaries of an update, named: what ``Updater(checkpoint=...)`` is called with.

A test hook for fault injection (kill the process at each one, see docs/crash-safety.md); an app
may also use it to show where an update is. :class:`Checkpoint` is a :class:`~enum.StrEnum`, so
a hook written for plain strings (``if step == "swapped"``) keeps working.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class Checkpoint(enum.StrEnum):
    """Each boundary, in the order an update passes them (the one-folder steps say which layout)."""

    CHECKED = "checked"
    """The manifest was accepted and remembered."""
    DOWNLOAD_STARTED = "download-started"
    """The first byte is about to be written (a partial download is recorded)."""
    DOWNLOAD_HALF = "download-half"
    """Half the bytes are in."""
    DOWNLOADED = "downloaded"
    """The download (or patch, or folder delta) is complete and verified."""
    EXTRACTED = "extracted"
    """One-folder: the new version's folder is complete and verified."""
    PREFLIGHT_PASSED = "preflight-passed"
    """The new version answered its self-test."""
    BACKED_UP = "backed-up"
    """One-file: the running executable has its backup."""
    TRIAL_STARTED = "trial-started"
    """Its trial is recorded, before the swap (write-ahead: it must call ``confirm()`` once it runs)."""
    SWAPPED = "swapped"
    """The new version is the installed one."""
    RESTARTING = "restarting"
    """The new version is about to be started in place of this process."""


CheckpointHook = Callable[[Checkpoint], None]
"""What ``Updater(checkpoint=...)`` takes: called at each boundary (a ``Callable[[str], None]`` fits too)."""
