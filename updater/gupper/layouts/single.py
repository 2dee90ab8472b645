"""A one-file app (``binary`` releases): the executable is replaced in place.

The update is staged beside the executable (a patched copy, or the download's partial file),
pre-flighted there, the running file is kept as ``.<exe>.gupper-previous-<random>`` (a hard link,
else a copy; a fresh name each time, since on Windows an earlier backup may still be the image of
a running process, which can be neither replaced nor deleted), the trial recorded, and the new
file renamed over the executable (:mod:`gupper.install`, one function per OS). A rollback copies
the backup back the same way. See docs/crash-safety.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .. import install as _install
from .._fsutil import file_sha256
from ..checkpoints import Checkpoint
from ..download import Blob, unlink_quietly
from ..errors import InstallError, UpdateError
from ..results import Update
from ..transfer import Progress
from ..wire.manifest import BINARY, Entry
from .base import Context

log = logging.getLogger("gupper")


class SingleFile:
    """The :class:`~gupper.layouts.InstallLayout` of a one-file app whose executable is ``target``."""

    kind = BINARY
    folder = None

    restart_after_exit = False

    def __init__(self, target: Path, ctx: Context) -> None:
        self.target, self.ctx = target, ctx
        self._hash_cache: tuple[tuple[int, int, int], str] | None = None

    @property
    def trial_key(self) -> str:
        """The executable's path."""
        return str(self.target)

    @property
    def partial(self) -> Path:
        """``.<exe>.gupper-partial`` beside the executable."""
        return _install.partial_path_for(self.target, self.ctx.os_name)

    @property
    def space_dir(self) -> Path:
        """The executable's folder."""
        return self.target.parent

    @property
    def lock_path(self) -> Path:
        """``.<exe>.gupper-lock`` beside the executable."""
        return _install.lock_path_for(self.target)

    def hold_in_use(self) -> object | None:
        """Nothing to hold: an update renames a new file over the executable, the running one keeps its own."""
        return None

    def cleanup(self) -> None:
        """Temp files and ``.old`` executables beside the executable."""
        _install.cleanup_leftovers(self.target, self.ctx.file_ops())

    def check_writable(self) -> None:
        """A file can be created beside the executable, and it is not inside a macOS app bundle."""
        _install.check_writable(self.target, self.ctx.os_name, self.ctx.file_ops())

    def installed(self, entry: Entry) -> bool:
        """The executable's sha256 is the entry's."""
        return self.installed_sha256() == entry.sha256

    def installed_sha256(self) -> str:
        """sha256 of the installed binary, hashed once per file version (an update asks twice)."""
        try:
            st = self.target.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._hash_cache is None or self._hash_cache[0] != key:
                self._hash_cache = (key, file_sha256(self.target))
        except OSError:
            return ""  # unreadable: matches no signed digest, so no patch applies and nothing counts as installed
        return self._hash_cache[1]

    def download_size(self, entry: Entry, url: str) -> int:
        """What is left of a kept partial of the full file; else the patch from exactly the installed
        file; else the full file (the choices :meth:`stage` makes, in its order)."""
        downloads, partial = self.ctx.downloads, self.partial
        if downloads.resumable(Blob(url, entry.size, entry.sha256), partial):
            try:
                return max(entry.size - partial.stat().st_size, 0)
            except OSError:
                return entry.size
        patch = downloads.pick_patch(entry, self.installed_sha256())
        return patch.size if patch is not None else entry.size

    def stage(self, update: Update, progress: Progress | None) -> Path:
        """The verified new executable beside the old one.

        With a signed patch from the exact sha256 of the installed binary, only the patch is
        fetched and applied (any failure falls back to the full file, with one log line). A
        kept partial of the full file means a delta already failed here: that is resumed instead.
        """
        downloads, target = self.ctx.downloads, self.target
        full = Blob(update.url, update.entry.size, update.entry.sha256)
        partial = self.partial
        patch = (
            None if downloads.resumable(full, partial) else downloads.pick_patch(update.entry, self.installed_sha256())
        )
        staged = None
        if patch is not None:
            patched = _install.temp_path_for(target, self.ctx.os_name)
            try:
                downloads.fetch_patched(full, patch, target, patched, progress)
                staged = patched
            except InstallError:
                raise
            except UpdateError as e:  # a patch that cannot be fetched or does not apply (PatchError) included
                unlink_quietly(patched)
                log.warning("gupper: delta update failed (%s); downloading the full file", e)
        if staged is None:
            downloads.fetch_verified(full, partial, progress, beside=target)
            staged = partial
        try:
            _install.copy_mode(target, staged)
        except OSError as e:
            if staged == partial:
                downloads.drop(staged)
            else:
                unlink_quietly(staged)
            raise InstallError(f"cannot set permissions on the update in {target.parent} ({e.strerror or e})") from e
        self.ctx.checkpoint(Checkpoint.DOWNLOADED)
        return staged

    def install(
        self,
        staged: Path,
        version: str,
        previous: str,
        preflight: Callable[[Path], None],
        start_trial: Callable[[Path], None],
    ) -> Path:
        """Pre-flight ``staged`` where it is, keep a backup of the executable, record the trial,
        rename ``staged`` over the executable."""
        ctx, target = self.ctx, self.target
        try:
            preflight(staged)
            ctx.checkpoint(Checkpoint.PREFLIGHT_PASSED)
            backup = _install.backup_path_for(target)
            _install.make_backup(target, backup, ctx.file_ops())
            ctx.checkpoint(Checkpoint.BACKED_UP)
            try:
                start_trial(backup)
            except BaseException:
                unlink_quietly(backup)
                raise
            _install.apply(staged, target, ctx.os_name, ctx.file_ops())
            ctx.checkpoint(Checkpoint.SWAPPED)
        finally:
            ctx.downloads.drop(staged)  # gone already after a successful rename
        return backup

    def settle(self, version: str, backup: Path) -> None:
        """Nothing: the backup stays until the new version confirms."""

    def has_backup(self, backup: Path) -> bool:
        """The backup file is there."""
        return backup.is_file()

    def roll_back(self, backup: Path) -> None:
        """Copy the backup beside the executable and rename it over; the backup stays until that is done."""
        staged = _install.temp_path_for(self.target, self.ctx.os_name)
        try:
            _install.make_backup(backup, staged)  # a copy: the backup stays until the swap back is done
            _install.apply(staged, self.target, self.ctx.os_name, self.ctx.file_ops())
        finally:
            unlink_quietly(staged)

    def drop_backups(self, keep: Path | None) -> None:
        """Remove the backup files beside the executable but ``keep``."""
        _install.remove_backups(self.target, keep, self.ctx.file_ops())

    def switch_pending(self, version: str) -> bool:
        """Never: the swap is made by the install itself."""
        return False

    def entry_point(self, launcher: str | None) -> Path:
        """The executable itself."""
        return self.target
