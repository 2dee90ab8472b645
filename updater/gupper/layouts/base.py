"""What every install layout is to the updater: the :class:`InstallLayout` protocol, the
:class:`Context` a layout gets, and the refusals common to all (:func:`refuse_early`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import InstallError
from ..records import record

if TYPE_CHECKING:
    from ..checkpoints import CheckpointHook
    from ..config import UpdaterConfig
    from ..download import Downloads
    from ..folder import FolderLayout
    from ..install import FileOps
    from ..results import Update
    from ..transfer import Progress
    from ..wire.manifest import Entry


@record(frozen=True)
class Context:
    """What a layout needs of the updater: its config, the OS whose semantics apply, the
    downloads, the environment for child processes, the updater's checkpoint and mark-bad hooks,
    where the running app's bundled files are, and the filesystem primitives
    (:class:`~gupper.install.FileOps`; read at each use, as ``Updater.file_ops`` may be set after
    the updater is made)."""

    config: UpdaterConfig
    os_name: str
    downloads: Downloads
    environ: Mapping[str, str]
    checkpoint: CheckpointHook
    mark_bad: Callable[[str, str], None]
    file_ops: Callable[[], FileOps | None]
    bundle_dir: str | None = None
    """PyInstaller's ``sys._MEIPASS`` of this process when frozen: where its bundled files are."""


class InstallLayout(Protocol):
    """One kind of install, as the updater drives it."""

    @property
    def kind(self) -> str:
        """The manifest entry type it installs (``binary``, ``archive``)."""
        ...

    @property
    def folder(self) -> FolderLayout | None:
        """The one-folder paths; None for a one-file install."""
        ...

    @property
    def restart_after_exit(self) -> bool:
        """Whether the new version can start only once this process has ended (a Windows folder
        install switches versions in its launcher, while nothing runs from ``current``)."""
        ...

    @property
    def trial_key(self) -> str:
        """What a trial is recorded against: the executable, or a folder install's ``current``."""
        ...

    @property
    def partial(self) -> Path:
        """The one place a download in progress lives for this install."""
        ...

    @property
    def space_dir(self) -> Path:
        """Where the update is written (its free space is checked before downloading)."""
        ...

    @property
    def lock_path(self) -> Path:
        """The update lock's file: beside the install, so that every user of a shared install takes the same one."""
        ...

    def hold_in_use(self) -> object | None:
        """Mark the version this process runs as in use for as long as it runs, so that no other
        process removes its files (``prune``, an old backup); the hold, or None where nothing can be
        removed under a running version (a one-file install) or it cannot be held."""
        ...

    def cleanup(self) -> None:
        """At start, under the lock: remove what a killed or failed run left (temp files, ``.old``
        executables, partial extractions); a resumable partial download and a backup stay."""
        ...

    def check_writable(self) -> None:
        """Refuse, before any download, an install this process cannot change.

        Raises:
            InstallError: no write permission, a read-only volume, a macOS app bundle.
        """
        ...

    def installed(self, entry: Entry) -> bool:
        """Whether ``entry`` is what the installed entry point runs already."""
        ...

    def download_size(self, entry: Entry, url: str) -> int:
        """What :meth:`stage` will fetch for ``entry`` (its full file at ``url``) from this install, in bytes."""
        ...

    def stage(self, update: Update, progress: Progress | None) -> Path:
        """Download and verify ``update``; return what :meth:`install` takes (a file or a folder).

        Raises:
            UpdateError: a transfer failure (DownloadError), bytes that do not match the signed
                ones (IntegrityError), a write that failed (InstallError).
        """
        ...

    def install(
        self,
        staged: Path,
        version: str,
        previous: str,
        preflight: Callable[[Path], None],
        start_trial: Callable[[Path], None],
    ) -> Path:
        """Pre-flight ``staged`` (``preflight`` is called with the executable to self-test), then
        make it the installed version; return the backup a rollback goes back to. ``start_trial``
        is called with that backup right before the swap (write-ahead: if it raises, nothing is
        swapped). A refused pre-flight leaves nothing of ``staged`` behind.

        Raises:
            PreflightFailedError, PreflightInterruptedError: what ``preflight`` (or a post-install hook) raised.
            InstallError: the swap failed, or ``start_trial`` refused; the installed version is the one that was there.
        """
        ...

    def settle(self, version: str, backup: Path) -> None:
        """After the trial of ``version`` is recorded: drop what no rollback needs any more."""
        ...

    def has_backup(self, backup: Path) -> bool:
        """Whether the backup a trial recorded is still there to roll back to."""
        ...

    def roll_back(self, backup: Path) -> None:
        """Make ``backup`` the installed version again.

        Raises:
            InstallError: the swap back failed.
        """
        ...

    def drop_backups(self, keep: Path | None) -> None:
        """Remove every backup but ``keep`` (None: all of them; confirmed, rolled back to, or
        never recorded by a trial). One that cannot be removed yet (a running image on Windows)
        is left for a later start. A one-folder install keeps the previous folder."""
        ...

    def switch_pending(self, version: str) -> bool:
        """Whether ``version`` is installed but not switched in yet (it runs from a later start)."""
        ...

    def entry_point(self, launcher: str | None) -> Path:
        """What to run to start the installed version (``launcher``: the Windows launcher that started the app, if any).

        Raises:
            InstallError: a folder install whose ``current`` names no version.
        """
        ...


def refuse_early(layout: InstallLayout, entry: Entry) -> None:
    """Refusals that need no download: an install folder we cannot write, too little space.

    Raises:
        InstallError: saying which, and what to do.
    """
    layout.check_writable()
    directory = layout.space_dir
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # unknown: the write itself will tell
    if free < entry.size:
        raise InstallError(
            f"not enough disk space in {directory} for {entry.version}: {entry.size} bytes "
            f"needed, {free} free; free some disk space"
        )
