"""What the updater hands back to the app: the :class:`Update` on offer and the :class:`Result` of a run."""

from __future__ import annotations

import enum

from packaging.version import Version

from .errors import UpdateError
from .records import record
from .wire.manifest import Entry, Manifest


@record(frozen=True)
class Update:
    """A verified, applicable release for this install: what an app shows when it asks the user."""

    current: Version
    entry: Entry
    url: str
    manifest: Manifest
    fetch_size: int | None = None
    """What this install will download for it, as the check worked it out; None: the full size."""

    @property
    def version(self) -> str:
        """The version on offer, e.g. ``"1.3.0"``."""
        return str(self.entry.version)

    @property
    def size(self) -> int:
        """Bytes of the full release file (what :attr:`download_size` falls back to)."""
        return self.entry.size

    @property
    def download_size(self) -> int:
        """Bytes this install will download to take the update, to show before asking: the signed
        patch from exactly the installed file when there is one, what is left of a kept partial
        download, a one-folder release's delta, else the full file (a patch that fails to apply
        falls back to the full file)."""
        return self.fetch_size if self.fetch_size is not None else self.entry.size

    @property
    def withdrawn(self) -> bool:
        """True when the publisher withdrew the running version (``gupper-publish yank``) and this goes back to an
        earlier one: word it so when you ask the user."""
        return self.entry.version < self.current

    @property
    def notes(self) -> str | None:
        """Release notes, if the publisher signed some in (``gupper-publish --notes``)."""
        return self.entry.notes


class Status(enum.Enum):
    """What :meth:`Updater.run` did."""

    UP_TO_DATE = "up-to-date"
    DEFERRED = "deferred"
    JUST_UPDATED = "just-updated"
    INSTALLED = "installed"
    ROLLED_BACK = "rolled-back"
    BUSY = "busy"
    DISABLED = "disabled"
    FAILED = "failed"


@record(frozen=True)
class Result:
    """Outcome of :meth:`Updater.run` when it returns (a restart does not return)."""

    status: Status
    message: str
    error: UpdateError | None = None
    version: str | None = None
