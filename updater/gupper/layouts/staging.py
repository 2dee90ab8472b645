"""Building a new version as a folder (``archive`` and ``app`` releases), for every folder layout.

The update is built as a temp folder beside where it will live: from the installed version plus
only the changed files when the release offers a folder delta (:mod:`gupper.folder_delta`), else
extracted from the archive (:mod:`gupper.package`), every file verified against the signed file
list. A one-folder install builds into ``versions/`` (:mod:`gupper.layouts.folder`), an app bundle
beside the bundle (:mod:`gupper.layouts.bundle`); :class:`Source` says where.
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
from ..checkpoints import Checkpoint
from ..download import Blob
from ..errors import InstallError, IntegrityError, UpdateError
from ..fetch import Fetcher
from ..records import record
from ..results import Update
from ..transfer import Progress
from ..wire.files import LIST_NAME, MAX_INDEX_BYTES, MAX_LIST_BYTES, FileList, PatchIndex, list_from_wire
from ..wire.manifest import FILES_PATCH_FORMAT, Entry
from .base import Context

log = logging.getLogger("gupper")


@record(frozen=True)
class Source:
    """Where a folder update comes from and goes to.

    ``installed`` is the version installed now and ``installed_dir`` its folder (the source of a
    folder delta; None: no delta); ``temp_dir()`` names a fresh temp folder on the filesystem of
    the final place; ``partial`` is where the archive downloads; ``beside`` is a path in the
    folder the download's free space and writes are for; ``where`` names that folder in messages.
    """

    installed: str | None
    installed_dir: Path | None
    temp_dir: Callable[[], Path]
    partial: Path
    beside: Path
    where: Path


def download_size(source: Source, entry: Entry) -> int:
    """The signed total of the folder delta from the installed version, when the release lists one
    with it and it is smaller; else the archive."""
    for p in entry.patches_of(FILES_PATCH_FORMAT):
        if p.from_version == source.installed and p.download is not None and entry.blobs_url and entry.files_url:
            return min(p.download, entry.size)
    return entry.size


def stage(ctx: Context, source: Source, update: Update, progress: Progress | None) -> Path:
    """The new version as a verified temp folder: built by a folder delta when the release offers
    one that saves bytes, else extracted from the archive.

    Raises:
        UpdateError: a transfer failure (DownloadError), bytes that do not match the signed ones
            (IntegrityError: the version is marked bad when the signed archive itself is unsafe), a
            write that failed (InstallError).
    """
    from ..package import extract_package

    full = Blob(update.url, update.entry.size, update.entry.sha256)
    delta = _folder_delta(ctx, source, update, full, progress)
    if delta is not None:
        return delta
    downloads, partial, version = ctx.downloads, source.partial, str(update.entry.version)
    downloads.fetch_verified(full, partial, progress, beside=source.beside)
    ctx.checkpoint(Checkpoint.DOWNLOADED)
    staged = source.temp_dir()
    try:
        extract_package(partial, staged, update.entry.files_sha256)
    except OSError as e:
        _folder.remove_tree(staged)
        reason = _install.describe_write_error(e, source.where, ctx.os_name)
        raise InstallError(f"cannot unpack {version}: {reason}") from e
    except IntegrityError as e:
        _folder.remove_tree(staged)
        # The bytes matched the signed sha256, so the same refusal would come every time: the
        # release itself is unsafe (a signer mistake or a stolen key), not the transfer.
        ctx.mark_bad(version, str(e))
        raise
    except BaseException:
        _folder.remove_tree(staged)
        raise
    finally:
        downloads.drop(partial)
    ctx.checkpoint(Checkpoint.EXTRACTED)
    return staged


def _folder_delta(ctx: Context, source: Source, update: Update, full: Blob, progress: Progress | None) -> Path | None:
    """Build the new version folder from the installed one plus only the changed files; None when
    the release offers no delta or it would not save bytes, or when it failed (one log line; the
    caller then takes the archive)."""
    from .. import folder_delta

    entry, downloads, current, installed_dir = update.entry, ctx.downloads, source.installed, source.installed_dir
    if (
        entry.files_url is None
        or entry.blobs_url is None
        or entry.files_sha256 is None
        or current is None
        or installed_dir is None
    ):
        return None
    files_url, blobs_url, files_sha256 = entry.files_url, entry.blobs_url, entry.files_sha256
    version = str(entry.version)
    staged, work = source.temp_dir(), source.temp_dir()
    try:
        # One deadline for the whole delta, however many files it fetches.
        deadline = time.monotonic() + ctx.config.download_timeout
        with Fetcher(downloads.fetch_config) as fetcher:
            installed_bytes, installed, hashed_now = _installed_list(installed_dir)
            index_url, index, index_from = _patch_index(ctx, fetcher, entry, current, deadline)
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
            blobs = urljoin(ctx.config.manifest_url, blobs_url)
            ctx.checkpoint(Checkpoint.DOWNLOAD_STARTED)
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
            raise InstallError(f"no space left in {source.where} for {version}; free some disk space") from e
        too_long = _install.path_too_long(e, ctx.os_name)
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
    ctx.checkpoint(Checkpoint.DOWNLOADED)
    ctx.checkpoint(Checkpoint.EXTRACTED)
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
    ctx: Context, fetcher: Fetcher, entry: Entry, current: str, deadline: float
) -> tuple[str, PatchIndex, str]:
    """The patch index from the installed version, if the release has one: its URL, the index (empty
    without one) and the ``from_sha256`` of the file list it starts from."""
    for p in entry.patches_of(FILES_PATCH_FORMAT):
        if p.from_version == current and p.from_sha256 is not None:
            index = PatchIndex.from_bytes(
                ctx.downloads.get_signed_small(fetcher, p.url, min(p.size, MAX_INDEX_BYTES), p.sha256, deadline)
            )
            return urljoin(ctx.config.manifest_url, p.url), index, p.from_sha256
    return ctx.config.manifest_url, PatchIndex({}), ""


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
