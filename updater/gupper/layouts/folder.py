"""A one-folder app (``archive`` releases): versions side by side, switched by renaming ``current``.

The update is built as a temp folder beside the version folders: from the installed version plus
only the changed files when the release offers a folder delta (:mod:`gupper.folder_delta`),
else extracted from the archive (:mod:`gupper.package`), every file verified against the signed
file list. It is renamed to ``versions/<version>``, its executable pre-flighted, its post-install
hook run, and ``current`` switched in one atomic rename (:mod:`gupper.folder`). The previous
version's folder is the backup; older ones are pruned. See docs/packages.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .. import folder as _folder
from .. import install as _install
from .. import restart as _restart
from ..checkpoints import Checkpoint
from ..errors import PreflightFailedError, PreflightInterruptedError
from ..results import Update
from ..transfer import Progress
from ..wire.manifest import ARCHIVE, Entry
from . import staging
from .base import Context

log = logging.getLogger("gupper")

LOCK_NAME = ".gupper-lock"


class OneFolder:
    """The :class:`~gupper.layouts.InstallLayout` of a one-folder app laid out as ``folder``."""

    kind = ARCHIVE

    restart_after_exit = False

    def __init__(self, folder: _folder.FolderLayout, ctx: Context, running: Path) -> None:
        """``running`` is the executable this process runs (resolved: in its version's folder)."""
        self.folder, self.ctx, self.running = folder, ctx, running

    @property
    def trial_key(self) -> str:
        """The path of ``current``."""
        return str(self.folder.current)

    @property
    def partial(self) -> Path:
        """A partial archive beside ``current``."""
        return _install.partial_path_for(self.folder.current)

    @property
    def space_dir(self) -> Path:
        """The version folders' folder."""
        return self.folder.versions

    @property
    def lock_path(self) -> Path:
        """``<root>/.gupper-lock``."""
        return self.folder.root / LOCK_NAME

    def hold_in_use(self) -> object | None:
        """This process's version folder, held until it exits: ``prune`` leaves it alone."""
        from .._lock import hold_in_use

        return hold_in_use(self.running)

    def cleanup(self) -> None:
        """Temp links beside ``current`` and partial extractions among the version folders; what a
        plain copy arranged for updates left at the root, once no process of it runs."""
        _folder.cleanup_leftovers(self.folder, self.ctx.file_ops())
        _folder.remove_plain_leftovers(self.folder, self.ctx.file_ops())

    def check_writable(self) -> None:
        """Files can be created beside ``current`` and among the version folders."""
        _install.check_writable(self.folder.current, self.ctx.os_name, self.ctx.file_ops())
        _install.check_writable(self.folder.versions / "x", self.ctx.os_name, self.ctx.file_ops())

    def installed_version(self) -> str | None:
        """The version ``current`` names."""
        return self.folder.current_version(self.ctx.os_name, self.ctx.file_ops())

    def installed(self, entry: Entry) -> bool:
        """``current`` names the entry's version."""
        return self.installed_version() == str(entry.version)

    def source(self) -> staging.Source:
        """Built among the version folders, from the one ``current`` names."""
        current = self.installed_version()
        return staging.Source(
            installed=current,
            installed_dir=self.folder.version_dir(current) if current is not None else None,
            temp_dir=lambda: _folder.staging_dir(self.folder),
            partial=self.partial,
            beside=self.folder.current,
            where=self.folder.versions,
        )

    def download_size(self, entry: Entry, url: str) -> int:
        """The signed total of the folder delta from the installed version, when the release lists
        one with it and it is smaller; else the archive."""
        return staging.download_size(self.source(), entry)

    def stage(self, update: Update, progress: Progress | None) -> Path:
        """The new version as a verified temp folder beside the version folders (:func:`staging.stage`)."""
        return staging.stage(self.ctx, self.source(), update, progress)

    def install(
        self,
        staged: Path,
        version: str,
        previous: str,
        preflight: Callable[[Path], None],
        start_trial: Callable[[Path], None],
    ) -> Path:
        """``staged`` becomes ``versions/<version>``, its executable is pre-flighted, its post-install
        hook run, the trial recorded and ``current`` switched to it; the previous version's folder
        is the backup."""
        ctx, layout = self.ctx, self.folder
        candidate = _folder.publish_version(layout, staged, version, ctx.file_ops(), ctx.os_name) / layout.exe
        try:
            preflight(candidate)
            ctx.checkpoint(Checkpoint.PREFLIGHT_PASSED)
            backup = layout.version_dir(self.installed_version() or previous)
            env = _restart.child_environment(ctx.environ, version)
            _folder.run_post_install(layout, version, backup.name, env, ctx.config.preflight_timeout, ctx.os_name)
            start_trial(backup)
            _folder.switch(layout, version, ctx.os_name, ctx.file_ops())
            ctx.checkpoint(Checkpoint.SWAPPED)
        except (PreflightFailedError, PreflightInterruptedError):
            _folder.remove_tree(candidate.parent)
            raise
        return backup

    def settle(self, version: str, backup: Path) -> None:
        """Prune every version folder but the new one and the backup."""
        _folder.prune(self.folder, {version, backup.name})

    def has_backup(self, backup: Path) -> bool:
        """The backup folder still holds the executable."""
        return (backup / self.folder.exe).is_file()

    def roll_back(self, backup: Path) -> None:
        """Switch ``current`` back to the backup folder."""
        _folder.switch(self.folder, backup.name, self.ctx.os_name, self.ctx.file_ops())

    def drop_backups(self, keep: Path | None) -> None:
        """Nothing: the previous version's folder stays for a later rollback (pruned by the next install)."""

    def switch_pending(self, version: str) -> bool:
        """Never: the swap is made by the install itself."""
        return False

    def entry_point(self, launcher: str | None) -> Path:
        """``current/<exe>`` (on Windows the launcher, or the version folder ``current`` names)."""
        return self.folder.entry_point(self.ctx.os_name, self.ctx.file_ops(), launcher)
