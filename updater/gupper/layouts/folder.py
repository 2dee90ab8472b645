"""A one-folder app (``archive`` releases): versions side by side, switched by renaming ``current``.

The update is built as a temp folder beside the version folders: from the installed version plus
only the changed files when the release offers a folder delta (:mod:`gupper.folder_delta`),
else extracted from the archive (:mod:`gupper.package`), every file verified against the signed
file list. It is renamed to ``versions/<version>``, its executable pre-flighted, its post-install
hook run, and ``current`` switched in one atomic rename (:mod:`gupper.folder`). The previous
version's folder is the backup; older ones are pruned. See docs/packages.md.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

from .. import folder as _folder
from .. import install as _install
from .. import restart as _restart
from ..checkpoints import Checkpoint
from ..download import Blob
from ..errors import InstallError, IntegrityError, PreflightFailedError, PreflightInterruptedError, UpdateError
from ..fetch import Fetcher, Progress
from ..results import Update
from ..wire.files import LIST_NAME, MAX_INDEX_BYTES, MAX_LIST_BYTES, FileList, PatchIndex, list_from_wire
from ..wire.manifest import ARCHIVE, FILES_PATCH_FORMAT, Entry
from .base import Context

log = logging.getLogger("gupper")

LOCK_NAME = ".gupper-lock"


class OneFolder:
    """The :class:`~gupper.layouts.InstallLayout` of a one-folder app laid out as ``folder``."""

    kind = ARCHIVE

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
        """Temp links beside ``current`` and partial extractions among the version folders."""
        _folder.cleanup_leftovers(self.folder, self.ctx.file_ops())

    def check_writable(self) -> None:
        """Files can be created beside ``current`` and among the version folders."""
        _install.check_writable(self.folder.current, self.ctx.os_name, self.ctx.file_ops())
        _install.check_writable(self.folder.versions / "x", self.ctx.os_name, self.ctx.file_ops())

    def installed(self, entry: Entry) -> bool:
        """``current`` names the entry's version."""
        return self.folder.current_version(self.ctx.os_name, self.ctx.file_ops()) == str(entry.version)

    def download_size(self, entry: Entry, url: str) -> int:
        """The signed total of the folder delta from the installed version, when the release lists
        one with it and it is smaller; else the archive."""
        current = self.folder.current_version(self.ctx.os_name, self.ctx.file_ops())
        for p in entry.patches_of(FILES_PATCH_FORMAT):
            if p.from_version == current and p.download is not None and entry.blobs_url and entry.files_url:
                return min(p.download, entry.size)
        return entry.size

    def stage(self, update: Update, progress: Progress | None) -> Path:
        """The new version as a verified temp folder beside the version folders: built by a folder
        delta when the release offers one that saves bytes, else extracted from the archive."""
        from ..package import extract_package

        full = Blob(update.url, update.entry.size, update.entry.sha256)
        delta = self._folder_delta(update, full, progress)
        if delta is not None:
            return delta
        downloads, partial, version = self.ctx.downloads, self.partial, str(update.entry.version)
        downloads.fetch_verified(full, partial, progress, beside=self.folder.current)
        self.ctx.checkpoint(Checkpoint.DOWNLOADED)
        staged = _folder.staging_dir(self.folder)
        try:
            extract_package(partial, staged, update.entry.files_sha256)
        except OSError as e:
            _folder.remove_tree(staged)
            where = _install.describe_write_error(e, self.folder.versions, self.ctx.os_name)
            raise InstallError(f"cannot unpack {version}: {where}") from e
        except IntegrityError as e:
            _folder.remove_tree(staged)
            # The bytes matched the signed sha256, so the same refusal would come every time: the
            # release itself is unsafe (a signer mistake or a stolen key), not the transfer.
            self.ctx.mark_bad(version, str(e))
            raise
        except BaseException:
            _folder.remove_tree(staged)
            raise
        finally:
            downloads.drop(partial)
        self.ctx.checkpoint(Checkpoint.EXTRACTED)
        return staged

    def _folder_delta(self, update: Update, full: Blob, progress: Progress | None) -> Path | None:
        """Build the new version folder from the installed one plus only the changed files; None
        when the release offers no delta or it would not save bytes, or when it failed (one log
        line; the caller then takes the archive)."""
        from .. import folder_delta

        entry, layout, downloads = update.entry, self.folder, self.ctx.downloads
        current = layout.current_version(self.ctx.os_name, self.ctx.file_ops())
        if entry.files_url is None or entry.blobs_url is None or entry.files_sha256 is None or current is None:
            return None
        files_url, blobs_url, files_sha256 = entry.files_url, entry.blobs_url, entry.files_sha256
        version = str(entry.version)
        staged, work = _folder.staging_dir(layout), _folder.staging_dir(layout)
        try:
            # One deadline for the whole delta, however many files it fetches.
            deadline = time.monotonic() + self.ctx.config.download_timeout
            with Fetcher(downloads.fetch_config) as fetcher:
                installed_dir = layout.version_dir(current)
                installed_bytes, installed, hashed_now = _installed_list(installed_dir)
                index_url, index, index_from = self._patch_index(fetcher, entry, current, deadline)
                list_data = _list_from_index(installed_bytes, installed, index, index_from, files_sha256)
                if list_data is None:  # no index from exactly the installed files: fetch the new list
                    list_data = downloads.get_signed_small(
                        fetcher, files_url, MAX_LIST_BYTES, files_sha256, deadline, list_from_wire
                    )
                entries = FileList.from_bytes(list_data).entries
                the_plan = folder_delta.plan(installed.entries, entries, index.patches)
                if the_plan.download >= full.size:
                    log.info(
                        "gupper: a folder delta would fetch %d bytes, the archive is %d: taking the archive",
                        the_plan.download,
                        full.size,
                    )
                    return None
                fetch, reach_half = downloads.delta_fetcher(fetcher, the_plan.download, progress, deadline)
                blobs = urljoin(self.ctx.config.manifest_url, blobs_url)
                self.ctx.checkpoint(Checkpoint.DOWNLOAD_STARTED)
                built = folder_delta.build(
                    the_plan,
                    entries,
                    list_data,
                    installed_dir,
                    staged,
                    work,
                    fetch,
                    blob_url=lambda sha: downloads.checked_url(urljoin(blobs, sha)),
                    patch_url=lambda name: downloads.checked_url(urljoin(index_url, "files/" + name)),
                    rehash_sources=not hashed_now,
                )
        except OSError as e:
            _folder.remove_tree(staged)
            if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise InstallError(f"no space left in {layout.versions} for {version}; free some disk space") from e
            too_long = _install.path_too_long(e, self.ctx.os_name)
            if too_long is not None:  # the archive's files would land on the same paths
                raise InstallError(f"cannot build {version}: {too_long}") from e
            log.warning("gupper: folder delta failed (%s); downloading the full archive", e.strerror or e)
            return None
        except UpdateError as e:  # PatchError included
            _folder.remove_tree(staged)
            log.warning("gupper: folder delta failed (%s); downloading the full archive", e)
            return None
        except BaseException:
            _folder.remove_tree(staged)
            raise
        finally:
            _folder.remove_tree(work)
        reach_half()
        self.ctx.checkpoint(Checkpoint.DOWNLOADED)
        self.ctx.checkpoint(Checkpoint.EXTRACTED)
        log.info(
            "gupper: built %s from %s: %d files linked, %d copied, %d patched, %d fetched (%d bytes instead of %d)",
            version,
            current,
            built.linked,
            built.copied,
            built.patched,
            built.fetched,
            built.downloaded,
            full.size,
        )
        return staged

    def _patch_index(
        self, fetcher: Fetcher, entry: Entry, current: str, deadline: float
    ) -> tuple[str, PatchIndex, str]:
        """The patch index from the installed version, if the release has one: its URL, the index
        (empty without one) and the ``from_sha256`` of the file list it starts from."""
        for p in entry.patches_of(FILES_PATCH_FORMAT):
            if p.from_version == current and p.from_sha256 is not None:
                index = PatchIndex.from_bytes(
                    self.ctx.downloads.get_signed_small(
                        fetcher, p.url, min(p.size, MAX_INDEX_BYTES), p.sha256, deadline
                    )
                )
                return urljoin(self.ctx.config.manifest_url, p.url), index, p.from_sha256
        return self.ctx.config.manifest_url, PatchIndex({}), ""

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
            backup = layout.version_dir(layout.current_version(ctx.os_name, ctx.file_ops()) or previous)
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

    def entry_point(self, launcher: str | None) -> Path:
        """``current/<exe>`` (on Windows the launcher, or the version folder ``current`` names)."""
        return self.folder.entry_point(self.ctx.os_name, self.ctx.file_ops(), launcher)


def _installed_list(folder: Path) -> tuple[bytes, FileList, bool]:
    """The installed version's file list (as kept, and parsed) and whether its files were hashed
    just now: the list kept beside it (a hint: every file is hashed again before reuse), or, for a
    version installed by other means, the list of a scan, which is byte for byte the publisher's
    when the files are the published ones."""
    from ..package import scan_folder

    try:
        with (folder / LIST_NAME).open("rb") as f:
            data = f.read(MAX_LIST_BYTES + 1)
        return data, FileList.from_bytes(data), False
    except (OSError, IntegrityError):
        scanned = FileList.of(scan_folder(folder))
        return scanned.to_bytes(), scanned, True


def _list_from_index(
    installed_bytes: bytes, installed: FileList, index: PatchIndex, index_from: str, files_sha256: str
) -> bytes | None:
    """The new file list rebuilt from the installed one and the index's list delta, if the index
    starts from exactly the installed list and the result hashes to the signed ``files_sha256``;
    else None (then it is fetched)."""
    if hashlib.sha256(installed_bytes).hexdigest() != index_from:
        return None
    data = index.delta.apply(installed).to_bytes()
    return data if hashlib.sha256(data).hexdigest() == files_sha256 else None
