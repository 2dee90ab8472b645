"""The updater an app embeds: check, download, verify, pre-flight, install, restart, confirm.

I/O lives here; decisions are made by the pure functions in :mod:`gupper.manifest`,
:mod:`gupper.policy` and :mod:`gupper.trust`. :meth:`Updater.run` is the one-call start-up
hook: it never raises an :class:`~gupper.errors.UpdateError`; it logs one line and lets the app
carry on. The invariant at every instant, whatever kills the process: the installed path holds a
complete, verified binary (the old one or the new one).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import logging
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn
from urllib.parse import urljoin

from packaging.version import InvalidVersion, Version

from . import folder as _folder
from . import install as _install
from . import restart as _restart
from ._lock import ExclusiveLock
from .errors import (
    ConfigError,
    DownloadError,
    HTTPError,
    InstallError,
    IntegrityError,
    ManifestError,
    PreflightFailed,
    PreflightInterrupted,
    TooLarge,
    UpdateError,
)
from .fetch import FetchConfig, Fetcher, Progress, Resume, check_url
from .keys import TrustedKeys
from .manifest import MAX_MANIFEST_BYTES, Entry, Manifest, verify_manifest
from .platforms import Platform, pick_key, platform_candidates
from .policy import choose_update
from .selftest import answer_self_test, preflight
from .state import ClientState, ManifestCache, PartialDownload, StateFile, Trial, cacheable_etag, default_state_dir
from .trust import ChannelRecord, check_fresh, digest_of, rotated_keys

# Patching, one-folder deltas and archives are imported by the functions that use them: a start
# that finds no update never loads them (bench item 13, import cost; tests/test_lazy_imports.py).
if TYPE_CHECKING:
    from . import folder_delta
    from .package import PackageEntry

log = logging.getLogger("gupper")

MAX_PREFLIGHT_INTERRUPTIONS = 3
"""A release whose self-test is killed from outside this many times in a row is skipped."""

Checkpoint = Callable[[str], None]
"""Called with the name of each step boundary; a test hook for fault injection."""


@dataclass(frozen=True)
class UpdaterConfig:
    """Everything the updater needs, fixed when the app is built.

    ``executable`` defaults to the running frozen binary; an app run from source (not frozen)
    has updates off unless it names an executable, so a developer's Python is never replaced.
    ``state_dir`` defaults to the user's state directory (``~/.local/state/gupper/<app>`` on
    Linux); it holds the highest manifest serial seen, any adopted key rotation, a pending trial
    run and versions marked bad.
    ``install_root`` selects the one-folder layout (``<root>/versions/<version>/`` and a
    ``<root>/current`` entry point, docs/packages.md); it is also recognised without the setting
    when the executable runs from ``<root>/versions/<version>/``. That layout installs ``archive``
    releases, the single-file one ``binary`` releases.
    """

    app: str
    current_version: str
    manifest_url: str
    public_keys: tuple[str, ...]
    threshold: int = 1
    channel: str = "stable"
    ca_bundle: str | None = None
    allow_insecure_loopback: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    manifest_timeout: float = 20.0
    download_timeout: float = 900.0
    download_attempts: int = 3
    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    retries: int = 2
    preflight_timeout: float = 60.0
    trial_starts: int = 2
    executable: str | None = None
    platform: Platform | None = None
    state_dir: str | None = None
    install_root: str | None = None


@dataclass(frozen=True)
class _Blob:
    """Something to fetch and verify: a full artifact or a patch."""

    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Update:
    """A verified, applicable release for this install: what an app shows when it asks the user."""

    current: Version
    entry: Entry
    url: str
    manifest: Manifest

    @property
    def version(self) -> str:
        """The version on offer, e.g. ``"1.3.0"``."""
        return str(self.entry.version)

    @property
    def size(self) -> int:
        """Bytes of the full download (a patch, when one applies, is much smaller)."""
        return self.entry.size

    @property
    def notes(self) -> str | None:
        """Release notes, if the publisher signed some in (``gupper-publish --notes``)."""
        notes = self.entry.extra.get("notes")
        return notes if isinstance(notes, str) else None


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


@dataclass(frozen=True)
class Result:
    """Outcome of :meth:`Updater.run` when it returns (a restart does not return)."""

    status: Status
    message: str
    error: UpdateError | None = None
    version: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Updater:
    """Checks for, downloads and installs updates for one app.

    ``clock``, ``environ``, ``argv``, ``file_ops`` and ``checkpoint`` are injection points for
    tests; the defaults are the real ones.
    """

    config: UpdaterConfig
    clock: Callable[[], datetime] = _utcnow
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)
    argv: Sequence[str] = field(default_factory=lambda: list(sys.argv))
    file_ops: _install.FileOps | None = None
    checkpoint: Checkpoint | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        self.trusted = TrustedKeys.from_texts(cfg.public_keys, cfg.threshold)
        try:
            self.current = Version(cfg.current_version)
        except InvalidVersion as e:
            raise ConfigError(f"current_version {cfg.current_version!r} is not a PEP 440 version") from e
        check_url(cfg.manifest_url, cfg.allow_insecure_loopback)
        # The pre-flight of a new version ends here, before the app goes on to its UI, however it
        # drives the updater later (run, the steps, a menu item): see README "Use it in your app".
        answer_self_test(cfg.current_version, self.environ)
        self._lock_owner: int | None = None
        self.state_file = StateFile(Path(cfg.state_dir) if cfg.state_dir else default_state_dir(cfg.app))
        self.disabled_reason: str | None = None
        try:
            # Native CPU first (Rosetta, Windows on ARM), then this binary's own.
            self.platforms = (cfg.platform,) if cfg.platform else platform_candidates()
        except ValueError as e:  # a CPU or OS nobody publishes builds for: the app runs, without updates
            self.platforms = (Platform("unknown", "unknown"),)
            self.disabled_reason = f"updates are off: {e}"
        self.platform = self.platforms[0]
        self.fetch_config = FetchConfig(
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            ca_bundle=cfg.ca_bundle,
            allow_insecure_loopback=cfg.allow_insecure_loopback,
            retries=cfg.retries,
            user_agent=f"gupper-updater ({cfg.app}/{cfg.current_version}; {self.platform.key})",
        )
        # Resolved once: after a Windows rename-aside, sys.executable must not lead us to the .old file.
        exe = cfg.executable or (sys.executable if getattr(sys, "frozen", False) else None)
        self.target: Path | None = _install.resolve_target(exe) if exe and self.disabled_reason is None else None
        self._hash_cache: tuple[tuple[int, int, int], str] | None = None
        self.folder = _folder.detect(self.target, cfg.install_root) if self.target is not None else None

    # --- public steps -------------------------------------------------------------------------

    def check(self) -> Update | None:
        """Fetch and verify the manifest; return the update for this platform, if it applies.

        Raises:
            UpdateError: the manifest could not be fetched (DownloadError) or trusted
                (ManifestError), or the config cannot work (ConfigError).
        """
        with _boundary():
            return self._check()[0]

    def download(self, update: Update, progress: Progress | None = None) -> Path:
        """Download and verify ``update``; return the verified file (or folder) for :meth:`install`.

        Raises:
            UpdateError: a refusal before downloading or a write that failed (InstallError), a
                transfer failure (DownloadError; a partial is kept when it can be resumed), bytes
                that do not match the signed ones (IntegrityError).
        """
        with _boundary(), self._locked_step():
            return self._download(update, progress)

    def _download(self, update: Update, progress: Progress | None = None) -> Path:
        """Download and verify ``update`` beside the executable; return the verified file.

        With a signed patch from the exact sha256 of the installed binary, only the patch is
        fetched and applied (any failure falls back to the full file, with one log line). The
        bytes go to a partial file next to the executable (same filesystem, so the final rename
        cannot cross devices). A network failure keeps it and records its ETag, and the next
        attempt (in this run, after a jittered back-off, or in a later run) resumes with
        Range/If-Range. Size and sha256 decide, never the transfer. In the one-folder layout the
        archive is fetched the same way and the verified, extracted folder is returned.
        """
        from .bspatch import PatchError

        target = self._require_target()
        self._refuse_early(target, update)
        full = _Blob(update.url, update.entry.size, update.entry.sha256)
        if self.folder is not None:
            return self._download_package(self.folder, update, full, progress)
        partial = self._partial_path(target)
        # A kept partial of the full file means a delta already failed here: resume that instead.
        patch = None if self._resumable(full, partial) else self._pick_patch(update, target)
        staged = None
        if patch is not None:
            patched = _install.temp_path_for(target, self.platform.os)
            try:
                self._download_delta(full, patch, target, patched, progress)
                staged = patched
            except InstallError:
                raise
            except (UpdateError, PatchError) as e:
                _unlink_quietly(patched)
                log.warning("gupper: delta update failed (%s); downloading the full file", e)
        if staged is None:
            self._fetch_verified(full, partial, progress)
            staged = partial
        try:
            _install.copy_mode(target, staged)
        except OSError as e:
            if staged == partial:
                self._drop_partial(staged)
            else:
                _unlink_quietly(staged)
            raise InstallError(f"cannot set permissions on the update in {target.parent} ({e.strerror or e})") from e
        self._checkpoint("downloaded")
        return staged

    def _resumable(self, blob: _Blob, partial: Path) -> bool:
        kept = self.state_file.load().partial
        return kept is not None and kept.sha256 == blob.sha256 and kept.path == str(partial) and bool(kept.etag) and partial.is_file()

    def _download_package(self, layout: _folder.FolderLayout, update: Update, full: _Blob, progress: Progress | None) -> Path:
        """Fetch the archive beside the version folders, verify it, extract and verify every file
        into a temp folder there; return that folder."""
        from .package import extract_package

        delta = self._folder_delta(layout, update, full, progress)
        if delta is not None:
            return delta
        partial = self._partial_path(layout.current)
        self._fetch_verified(full, partial, progress)
        self._checkpoint("downloaded")
        staged = _folder.staging_dir(layout, str(update.entry.version))
        files_sha256 = update.entry.extra.get("files_sha256")
        try:
            extract_package(partial, staged, files_sha256 if isinstance(files_sha256, str) else None)
        except OSError as e:
            _folder.remove_tree(staged)
            raise InstallError(f"cannot unpack the update in {layout.versions} ({e.strerror or e}); free some disk space or check the folder's permissions") from e
        except IntegrityError as e:
            _folder.remove_tree(staged)
            # The bytes matched the signed sha256, so the same refusal would come every time: the
            # release itself is unsafe (a signer mistake or a stolen key), not the transfer.
            self._mark_bad(str(update.entry.version), str(e))
            raise
        except BaseException:
            _folder.remove_tree(staged)
            raise
        finally:
            self._drop_partial(partial)
        self._checkpoint("extracted")
        return staged

    def _folder_delta(self, layout: _folder.FolderLayout, update: Update, full: _Blob, progress: Progress | None) -> Path | None:
        """Build the new version folder from the installed one plus only the changed files
        (:mod:`gupper.folder_delta`); None when the release offers no delta or it would not
        save bytes, or when it failed (one log line; the caller then takes the archive)."""
        from . import folder_delta
        from .bspatch import PatchError
        from .package import MAX_LIST_BYTES, list_from_wire, parse_file_list

        extra = update.entry.extra
        files_url, blobs_url, files_sha256 = extra.get("files_url"), extra.get("blobs_url"), extra.get("files_sha256")
        current = layout.current_version(self.platform.os, self.file_ops)
        if not (isinstance(files_url, str) and isinstance(blobs_url, str) and isinstance(files_sha256, str)) or current is None:
            return None
        version = str(update.entry.version)
        staged, work = _folder.staging_dir(layout, version), _folder.staging_dir(layout, version + "-parts")
        try:
            # One deadline for the whole delta, however many files it fetches.
            deadline = time.monotonic() + self.config.download_timeout
            with Fetcher(self.fetch_config) as fetcher:
                installed_dir = layout.version_dir(current)
                installed, installed_entries, hashed_now = _installed_list(installed_dir)
                index_url, index, index_from = self._patch_index(fetcher, update, current, deadline)
                list_data = _list_from_index(installed, index, index_from, files_sha256)
                if list_data is None:  # no index from exactly the installed files: fetch the new list
                    list_data = self._get_signed_small(fetcher, files_url, MAX_LIST_BYTES, files_sha256, deadline, list_from_wire)
                entries = parse_file_list(list_data)
                the_plan = folder_delta.plan(installed_entries, entries, index.patches)
                if the_plan.download >= full.size:
                    log.info("gupper: a folder delta would fetch %d bytes, the archive is %d: taking the archive", the_plan.download, full.size)
                    return None
                fetch, reach_half = self._delta_fetcher(fetcher, the_plan.download, progress, deadline)
                blobs = urljoin(self.config.manifest_url, blobs_url)
                self._checkpoint("download-started")
                built = folder_delta.build(
                    the_plan, entries, list_data, installed_dir, staged, work, fetch,
                    blob_url=lambda sha: self._checked_url(urljoin(blobs, sha)),
                    patch_url=lambda name: self._checked_url(urljoin(index_url, "files/" + name)),
                    rehash_sources=not hashed_now,
                )  # fmt: skip
        except OSError as e:
            _folder.remove_tree(staged)
            if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise InstallError(f"no space left in {layout.versions} for {version}; free some disk space") from e
            log.warning("gupper: folder delta failed (%s); downloading the full archive", e.strerror or e)
            return None
        except (UpdateError, PatchError) as e:
            _folder.remove_tree(staged)
            log.warning("gupper: folder delta failed (%s); downloading the full archive", e)
            return None
        except BaseException:
            _folder.remove_tree(staged)
            raise
        finally:
            _folder.remove_tree(work)
        reach_half()
        self._checkpoint("downloaded")
        self._checkpoint("extracted")
        log.info(
            "gupper: built %s from %s: %d files linked, %d copied, %d patched, %d fetched (%d bytes instead of %d)",
            version, current, built.linked, built.copied, built.patched, built.fetched, built.downloaded, full.size,
        )  # fmt: skip
        return staged

    def _get_signed_small(self, fetcher: Fetcher, url: str, max_bytes: int, sha256: str, deadline: float, decode: Callable[[bytes], bytes] = bytes) -> bytes:
        """A small document whose sha256 (of its ``decode``-d form) the manifest signs (a file list, a patch index)."""
        got = fetcher.get_small(self._checked_url(urljoin(self.config.manifest_url, url)), max_bytes=max_bytes, timeout=_left(deadline))
        data = decode(got.body) if got is not None else b""
        if got is None or hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"{url} does not match the signed sha256; the store holds a different file")
        return data

    def _patch_index(self, fetcher: Fetcher, update: Update, current: str, deadline: float) -> tuple[str, folder_delta.Index, str]:
        """The patch index from the installed version, if the release has one: its URL, the index
        (empty without one) and the ``from_sha256`` of the file list it starts from."""
        from . import folder_delta

        patches = update.entry.extra.get("patches")
        for p in patches if isinstance(patches, list) else []:
            if not isinstance(p, dict) or p.get("format") != folder_delta.PATCH_FORMAT or p.get("from_version") != current:
                continue
            size, digest, url, start = p.get("size"), p.get("sha256"), p.get("url"), p.get("from_sha256")
            if isinstance(size, int) and isinstance(digest, str) and isinstance(url, str) and isinstance(start, str):
                index = folder_delta.parse_index(self._get_signed_small(fetcher, url, min(size, folder_delta.MAX_INDEX_BYTES), digest, deadline))
                return urljoin(self.config.manifest_url, url), index, start
        return self.config.manifest_url, folder_delta.Index({}), ""

    def _delta_fetcher(self, fetcher: Fetcher, total: int, progress: Progress | None, deadline: float) -> tuple[folder_delta.Fetch, Callable[[], None]]:
        """``fetch`` for :func:`folder_delta.build` (one bounded, verified GET per file, overall
        progress, ``download-half`` once half the bytes are in) and a call that reports that
        checkpoint if no fetch did."""
        done, half = 0, False

        def reach_half() -> None:
            nonlocal half
            if not half:
                half = True
                self._checkpoint("download-half")

        def fetch(url: str, size: int, sha256: str, out: BinaryIO) -> None:
            nonlocal done

            def report(n: int, _total: int) -> None:
                if progress is not None:
                    progress(done + n, total)

            fetcher.download(url, out, size=size, sha256=sha256, timeout=_left(deadline), progress=report)
            done += size
            if done * 2 >= total:
                reach_half()

        return fetch, reach_half

    def _checked_url(self, url: str) -> str:
        check_url(url, self.config.allow_insecure_loopback)
        return url

    def _pick_patch(self, update: Update, target: Path) -> _Blob | None:
        """A usable bsdiff4 patch from exactly the installed binary, smaller than the full file."""
        patches = update.entry.extra.get("patches")
        if not isinstance(patches, list) or not patches:
            return None
        installed = self._installed_sha256(target)
        for p in patches:
            if not isinstance(p, dict) or p.get("format") != "bsdiff4" or p.get("from_sha256") != installed:
                continue
            size, digest, url = p.get("size"), p.get("sha256"), p.get("url")
            if not (isinstance(size, int) and 0 < size < update.entry.size and isinstance(digest, str) and len(digest) == 64 and isinstance(url, str)):
                continue
            resolved = urljoin(self.config.manifest_url, url)
            try:
                check_url(resolved, self.config.allow_insecure_loopback)
            except ConfigError:
                continue
            return _Blob(resolved, size, digest)
        return None

    def _download_delta(self, full: _Blob, patch: _Blob, target: Path, partial: Path, progress: Progress | None) -> None:
        from .bspatch import apply_patch

        patch_file = _install.patch_path_for(target)
        self._fetch_verified(patch, patch_file, progress, attempts=1)  # on failure the full file is the retry
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
            with os.fdopen(fd, "wb") as out:
                digest = apply_patch(target, patch_file, out, full.size)
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:
            _unlink_quietly(partial)
            raise InstallError(f"cannot write the update beside {target} ({e.strerror or e}); free some disk space or check the folder's permissions") from e
        finally:
            _unlink_quietly(patch_file)
        if digest != full.sha256:
            raise IntegrityError("the patched file does not match the signed sha256")
        log.info("gupper: applied a %d-byte patch instead of downloading %d bytes", patch.size, full.size)

    def _fetch_verified(self, blob: _Blob, dest: Path, progress: Progress | None, attempts: int | None = None) -> None:
        """Fetch ``blob`` into ``dest`` with bounded retries, resuming a kept partial; verified on return."""
        target = self._require_target()
        resume = self._resume_point(self.state_file.load(), blob, dest)
        if resume.offset == blob.size:
            return  # verified by _resume_point; the record stays until the file is used
        attempts = max(1, self.config.download_attempts if attempts is None else attempts)
        for attempt in range(attempts):
            try:
                self._fetch_into(dest, blob, resume, progress)
                break
            except (IntegrityError, TooLarge):
                self._drop_partial(dest)  # these bytes are wrong: never resume them
                raise
            except DownloadError as e:
                if isinstance(e, HTTPError) and e.status == 416:  # our partial no longer fits: start again
                    self._drop_partial(dest)
                    resume = Resume()
                    continue
                if isinstance(e, HTTPError) and not _transient(e):
                    self._drop_partial(dest)
                    raise
                if not (resume.etag and resume.offset):
                    self._drop_partial(dest)  # nothing a later request could validate: start over
                    resume = Resume()
                if attempt == attempts - 1:
                    raise
                delay = min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)  # exponential back-off with jitter
                log.debug("gupper: download interrupted at %d bytes, resuming in %.1fs", resume.offset, delay)
                time.sleep(delay)
            except OSError as e:
                self._drop_partial(dest)
                raise InstallError(f"cannot write the update beside {target} ({e.strerror or e}); free some disk space or check the folder's permissions") from e
            except BaseException:
                self._drop_partial(dest)  # refused (e.g. a redirect to http): nothing worth resuming
                raise
        # The record stays until the file is installed or dropped: killed before that, the next
        # start reuses the complete, verified file instead of fetching it again.

    def install(self, staged: Path, version: str) -> None:
        """Pre-flight ``staged``, keep a backup of the running binary, swap ``staged`` in, start a
        trial (the new version must call :meth:`confirm` once it started fine). The new version
        runs from the next start, or at once with :meth:`restart`.

        Raises:
            UpdateError: the new version failed its self-test (PreflightFailed; it is skipped on
                this machine from now on), its self-test was killed from outside
                (PreflightInterrupted; tried again later), or the swap failed (InstallError); the
                installed version is then the one that was there.
        """
        with _boundary(), self._locked_step():
            self._install(staged, version)

    def _install(self, staged: Path, version: str) -> None:
        """:meth:`install` without the lock.

        In the one-folder layout ``staged`` is the extracted folder: it becomes
        ``versions/<version>``, its executable is pre-flighted, the previous version's folder is
        the backup, and the swap is the atomic switch of ``current``.
        """
        target = self._require_target()
        layout = self.folder
        candidate = staged if layout is None else _folder.publish_version(layout, staged, version) / layout.exe
        try:
            self._preflight(candidate, version)
            self._checkpoint("preflight-passed")
            if layout is None:
                backup = _install.backup_path_for(target)
                _install.make_backup(target, backup)
                self._checkpoint("backed-up")
                _install.apply(staged, target, self.platform.os, self.file_ops)
            else:
                backup = layout.version_dir(layout.current_version(self.platform.os, self.file_ops) or str(self.current))
                env = _restart.child_environment(self.environ, version)
                _folder.run_post_install(layout, version, backup.name, env, self.config.preflight_timeout)
                _folder.switch(layout, version, self.platform.os, self.file_ops)
            self._checkpoint("swapped")
        except PreflightFailed as e:
            self._mark_bad(version, str(e))
            if layout is not None:
                _folder.remove_tree(candidate.parent)
            raise
        except PreflightInterrupted as e:
            if layout is not None:
                _folder.remove_tree(candidate.parent)
            if self._count_interrupted_preflight(version) >= MAX_PREFLIGHT_INTERRUPTIONS:
                reason = f"its self-test was killed {MAX_PREFLIGHT_INTERRUPTIONS} times in a row"
                self._mark_bad(version, reason)
                raise PreflightFailed(f"{e}; {reason}, so {version} is skipped on this machine") from e
            raise
        finally:
            if layout is None:
                self._drop_partial(staged)  # gone already after a successful rename
        state = self.state_file.load()
        state.trial = Trial(version=version, previous_version=str(self.current), target=self._trial_key(target), backup=str(backup))
        state.preflight_interrupted.pop(version, None)
        self._save_state(state)
        self._checkpoint("trial-started")
        if layout is not None:
            _folder.prune(layout, {version, backup.name})

    def _preflight(self, candidate: Path, version: str) -> None:
        """Self-test ``candidate``; a one-file build extracts itself into a folder of Gupper's own,
        emptied before and after, so a self-test killed mid-way leaves nothing in the user's temp."""
        env = _restart.child_environment(self.environ, version)
        scratch = _preflight_dir(self.config.app)
        if scratch is not None:
            env.update(TMPDIR=str(scratch), TMP=str(scratch), TEMP=str(scratch))
        try:
            preflight(candidate, version, env, self.config.preflight_timeout)
        finally:
            _remove_preflight_dir(self.config.app)

    def _count_interrupted_preflight(self, version: str) -> int:
        state = self.state_file.load()
        count = state.preflight_interrupted.get(version, 0) + 1
        state.preflight_interrupted[version] = count
        self._save_state(state)
        return count

    def restart(self, version: str) -> NoReturn:
        """Run the installed executable in place of this process (it will report ``version``).

        Raises:
            UpdateError: the new executable could not be started (this process carries on).
        """
        with _boundary():
            target = self._require_target()
            if self.folder is not None:
                target = self.folder.entry_point(self.platform.os, self.file_ops, self.environ.get("GUPPER_LAUNCHER"))
            env = _restart.child_environment(self.environ, version)
            self._checkpoint("restarting")
            try:
                _restart.restart(str(target), list(self.argv[1:]), env, self.platform.os)
            except OSError as e:
                raise InstallError(f"cannot start {target} ({e.strerror or e}); {version} runs from the next start") from e

    def confirm(self) -> None:
        """Tell the updater this version started fine: end its trial and drop the backup.

        Call it once the app's start-up has succeeded; until then a crash counts towards an
        automatic rollback. Never raises (a failure is logged): it sits on the start-up path too.
        """
        try:
            self._confirm()
        except Exception as e:
            log.warning("gupper: could not confirm %s (%s: %s); it stays on trial", self.config.current_version, type(e).__name__, e)

    def _confirm(self) -> None:
        state = self.state_file.load()
        trial = state.trial
        if trial is None or trial.version != self.config.current_version:
            return
        state.trial = None
        self._save_state(state)
        if self.folder is None:  # a folder layout keeps the previous version's folder for a later rollback
            _unlink_quietly(Path(trial.backup))
        log.debug("gupper: %s confirmed healthy", trial.version)

    def run(self, *, restart: bool = True, progress: Progress | None = None, on_available: Callable[[Update], bool] | None = None) -> Result:
        """The start-up hook: self-test answer, trial bookkeeping, then check/download/install/restart.

        Never raises: every failure, a bug in Gupper included, is logged as one warning line and
        reported in the result; the installed executable is then exactly what it was before. Its
        time is bounded by the deadlines in :class:`UpdaterConfig` (README, "Bounds").

        ``on_available``, if given, is called with the :class:`Update` found (version, size,
        notes) before anything is downloaded; returning False defers it (``Status.DEFERRED``).
        ``progress`` gets (bytes done, bytes total) during the download.
        """
        try:
            result, restart_as = self._run(restart, progress, on_available)
        except Exception as e:  # the last resort: a bug in Gupper must not stop the app
            return self._internal_error(e)
        if restart_as is None:
            return result
        try:
            self.restart(restart_as)
        except Exception as e:
            msg = f"{result.message}, but restarting failed ({type(e).__name__}: {e}); it runs from the next start"
            log.warning("gupper: %s", msg)
            return Result(result.status, msg, version=result.version)

    def _internal_error(self, e: BaseException) -> Result:
        msg = f"internal error ({type(e).__name__}: {str(e)[:300]}); carrying on with {self.config.current_version}; please report this to the app's publisher"
        log.warning("gupper: %s", msg)
        return Result(Status.FAILED, msg, version=self.config.current_version)

    def _run(self, restart: bool, progress: Progress | None, on_available: Callable[[Update], bool] | None) -> tuple[Result, str | None]:
        """``run`` without its safety net: the result, and the version to restart into (if any)."""
        target = self.target
        if target is None:
            return Result(Status.DISABLED, self.disabled_reason or "updates are off: not running as a frozen app and no executable configured"), None
        restarted_as = self.environ.pop(_restart.RESTARTED_ENV, None)
        current = self.config.current_version
        try:
            with self._lock() as locked:
                if not locked:
                    log.info("gupper: another instance is updating %s; carrying on with %s", self.config.app, current)
                    return Result(Status.BUSY, "another instance is updating", version=current), None
                self._cleanup(target)
                rolled = self._trial_start(target)
                if rolled is not None:
                    return rolled, rolled.version if restart else None
                if restarted_as is not None:
                    # We were just exec'd by an update: don't check again in this run (no loops).
                    if restarted_as != current:
                        msg = f"the release installed as {restarted_as} reports version {current}; republish it with a matching version"
                        log.warning("gupper: %s", msg)
                        return Result(Status.FAILED, msg, version=current), None
                    log.info("gupper: now running %s", restarted_as)
                    return Result(Status.JUST_UPDATED, f"updated to {restarted_as}", version=restarted_as), None
                result = self._update(target, progress, on_available)
        except UpdateError as e:
            log.warning("gupper: update failed, carrying on with %s: %s", self.current, e)
            return Result(Status.FAILED, str(e), error=e, version=str(self.current)), None
        if result.status is Status.INSTALLED and restart:
            log.info("gupper: installed %s, restarting", result.version)
            return result, result.version
        return result, None

    def _update(self, target: Path, progress: Progress | None, on_available: Callable[[Update], bool] | None) -> Result:
        """Check, and install what the check found; the caller holds the lock."""
        update, reason = self._check()
        if update is None:
            self._drop_unwanted_partial(None)
            return Result(Status.UP_TO_DATE, reason, version=str(self.current))
        new_version = str(update.entry.version)
        self._drop_unwanted_partial(update.entry.sha256)
        if self._installed(target, update):
            # Another instance installed it after we started: run it rather than fetch it again.
            log.info("gupper: %s was installed by another instance", new_version)
        else:
            self._refuse_early(target, update)
            if on_available is not None and not on_available(update):
                return Result(Status.DEFERRED, f"{new_version} is available; the app chose not to install it now", version=str(self.current))
            log.info("gupper: updating %s %s -> %s (%d bytes)", self.config.app, self.current, new_version, update.entry.size)
            staged = self._download(update, progress)
            self._install(staged, new_version)
        return Result(Status.INSTALLED, f"installed {new_version}; it runs from the next start", version=new_version)

    def check_periodically(
        self, interval: float, on_result: Callable[[Result], None], *, jitter: float = 0.2, on_available: Callable[[Update], bool] | None = None
    ) -> PeriodicCheck:
        """For long-running apps: check, download and install in a background thread every
        ``interval`` seconds (± ``jitter`` of it, so a fleet does not poll in lockstep).

        Installs never restart the app: ``on_result`` gets each :class:`Result` (``INSTALLED``
        means the new version runs from the next start; ask the user, or call
        :meth:`restart`). ``on_available`` is as for :meth:`run` (called in the checker's thread:
        a GUI app hands it to its event loop). Returns a handle whose ``stop()`` ends the thread.

        Raises:
            ConfigError: ``interval`` or ``jitter`` is out of range.
        """
        if interval <= 0 or not 0 <= jitter < 1:
            raise ConfigError("check_periodically needs interval > 0 and 0 <= jitter < 1")
        checker = PeriodicCheck(self, interval, jitter, on_result, on_available)
        checker.start()
        return checker

    # --- internals ----------------------------------------------------------------------------

    def _installed(self, target: Path, update: Update) -> bool:
        """Whether ``update`` is what the installed entry point runs already."""
        if self.folder is not None:
            return self.folder.current_version(self.platform.os, self.file_ops) == str(update.entry.version)
        return self._installed_sha256(target) == update.entry.sha256

    def _installed_sha256(self, target: Path) -> str:
        """sha256 of the installed binary, hashed once per file version (an update asks twice)."""
        from .package import file_sha256

        try:
            st = target.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._hash_cache is None or self._hash_cache[0] != key:
                self._hash_cache = (key, file_sha256(target))
        except OSError:
            return ""  # unreadable: matches no signed digest, so no patch applies and nothing counts as installed
        return self._hash_cache[1]

    def _trial_key(self, target: Path) -> str:
        """What a trial is recorded against: the executable, or a folder install's ``current``."""
        return str(self.folder.current if self.folder is not None else target)

    def _fetch_manifest(self, cache: ManifestCache) -> tuple[bytes, str | None, bool]:
        """The manifest's bytes, its ETag and whether they are the cached copy (a ``304`` to the
        ``If-None-Match`` sent with the cached copy's ETag)."""
        cached = cache.load(self.config.max_manifest_bytes)
        with Fetcher(self.fetch_config) as fetcher:
            fetched = fetcher.get_small(
                self.config.manifest_url, max_bytes=self.config.max_manifest_bytes, timeout=self.config.manifest_timeout, etag=cached[0] if cached else None
            )
        if fetched is None and cached is not None:
            log.debug("gupper: manifest not modified (304)")
            return cached[1], cached[0], True
        assert fetched is not None  # get_small returns None only to the ETag we sent
        return fetched.body, fetched.etag, False

    def _check(self) -> tuple[Update | None, str]:
        state = self.state_file.load()
        cache = ManifestCache(self.state_file.directory, self.config.channel)
        body, etag, from_cache = self._fetch_manifest(cache)
        trusted = state.trusted(self.trusted)
        seen = state.channels.get(self.config.channel, ChannelRecord())
        try:
            manifest = verify_manifest(body, trusted, app=self.config.app, channel=self.config.channel, now=self.clock())
            check_fresh(manifest, seen)
            new_keys = rotated_keys(manifest, trusted)
        except ManifestError:
            if from_cache:
                # The copy no longer passes (it expired, or state moved on): drop it, so that the
                # next start asks unconditionally instead of failing on it again.
                with contextlib.suppress(OSError):
                    cache.drop()
            raise
        if new_keys is not None:
            state.adopt(new_keys, self.trusted)
            log.info("gupper: key rotation: now trusting %d key(s), threshold %d", len(new_keys.keys), new_keys.threshold)
        if new_keys is not None or manifest.serial > seen.serial:
            state.channels[self.config.channel] = ChannelRecord(manifest.serial, digest_of(manifest))
            self._save_state(state)
        if not from_cache:
            self._cache_manifest(cache, etag, body)
        self._checkpoint("checked")
        types = ("archive",) if self.folder is not None else ("binary",)
        decision = choose_update(manifest, pick_key(manifest.entries, self.platforms), self.current, state.install_id, types)  # gupper#16
        log.debug("gupper: %s", decision.reason)
        if decision.entry is None:
            return None, decision.reason
        bad = state.bad_versions.get(str(decision.entry.version))
        if bad is not None:
            msg = f"skipping {decision.entry.version}, marked bad on this machine ({bad}); waiting for a newer release"
            log.info("gupper: %s", msg)
            return None, msg
        url = urljoin(self.config.manifest_url, decision.entry.url)
        check_url(url, self.config.allow_insecure_loopback)
        return Update(self.current, decision.entry, url, manifest), decision.reason

    def _cache_manifest(self, cache: ManifestCache, etag: str | None, body: bytes) -> None:
        """Keep an accepted manifest with its ETag for the next ``If-None-Match`` (or forget the
        old copy when this response has no usable ETag)."""
        try:
            if cacheable_etag(etag):
                assert etag is not None
                cache.save(etag, body)
            else:
                cache.drop()
        except OSError as e:
            log.debug("gupper: cannot cache the manifest (%s); polling without ETag", e)

    def _trial_start(self, target: Path) -> Result | None:
        """Count this start against a pending trial; roll back when it has failed too often."""
        state = self.state_file.load()
        trial = state.trial
        layout = self.folder
        if trial is None or trial.target != self._trial_key(target):
            # A backup no trial refers to (killed between swap and saving the trial): not needed.
            if layout is None:
                _unlink_quietly(_install.backup_path_for(target))
            return None
        if trial.version != self.config.current_version:
            state.trial = None  # the trial version is not what runs (swap never happened, or undone by hand)
            self._save_state(state)
            return None
        trial.starts += 1
        if trial.starts <= self.config.trial_starts:
            self._save_state(state)
            return None
        reason = f"started {trial.starts - 1} times without Updater.confirm() (it crashed at start, or the app never calls confirm())"
        backup = Path(trial.backup)
        if not (backup / layout.exe if layout is not None else backup).is_file():
            state.trial = None
            state.bad_versions[trial.version] = reason
            self._save_state(state)
            raise InstallError(f"{trial.version} {reason}, but the backup of {trial.previous_version} is gone; reinstall the app")
        if layout is not None:
            _folder.switch(layout, backup.name, self.platform.os, self.file_ops)
        else:
            staged = _install.temp_path_for(target, self.platform.os)
            try:
                _install.make_backup(backup, staged)  # a copy: the backup stays until the swap back is done
                _install.apply(staged, target, self.platform.os, self.file_ops)
            finally:
                _unlink_quietly(staged)
        state.trial = None
        state.bad_versions[trial.version] = reason
        self._save_state(state)
        if layout is None:
            _unlink_quietly(backup)
        msg = f"{trial.version} {reason}; rolled back to {trial.previous_version}, and {trial.version} is skipped on this machine"
        log.warning("gupper: %s", msg)
        return Result(Status.ROLLED_BACK, msg, version=trial.previous_version)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[bool]:
        """One updater per app and user at a time; the others carry on without waiting.

        Re-entrant for the thread that holds it (``run`` calls ``download`` and ``install``);
        another thread of this process sees it busy, like another process does.
        """
        me = threading.get_ident()
        if self._lock_owner == me:
            yield True
            return
        lock = ExclusiveLock(self.state_file.directory / "update.lock")
        try:
            self.state_file.directory.mkdir(parents=True, exist_ok=True)
            locked = lock.acquire()
        except OSError as e:
            raise InstallError(
                f"cannot use the updater's state folder {self.state_file.directory} ({e.strerror or e}); make it writable or set UpdaterConfig.state_dir"
            ) from e
        if not locked:
            yield False
            return
        self._lock_owner = me
        try:
            yield True
        finally:
            self._lock_owner = None
            lock.release()

    @contextlib.contextmanager
    def _locked_step(self) -> Iterator[None]:
        """The lock for a public step called on its own; a busy lock is an error there."""
        with self._lock() as locked:
            if not locked:
                raise InstallError(f"another instance is updating {self.config.app}; try again later")
            yield

    def _resume_point(self, state: ClientState, blob: _Blob, partial: Path) -> Resume:
        """Where to start fetching ``blob`` into ``partial``: after the bytes a recorded, resumable
        partial holds, else from zero (an unusable file there is removed)."""
        kept = state.partial
        if kept and kept.sha256 == blob.sha256 and kept.path == str(partial) and kept.etag:
            try:
                size = partial.stat().st_size
                if 0 < size <= blob.size:
                    digest = hashlib.sha256()
                    with partial.open("rb") as f:
                        for block in iter(lambda: f.read(1 << 20), b""):
                            digest.update(block)
                    if size < blob.size:
                        log.info("gupper: resuming the download at %d of %d bytes", size, blob.size)
                        return Resume(size, kept.etag, digest)
                    if digest.hexdigest() == blob.sha256:  # complete and verified: killed before the install
                        log.info("gupper: reusing the complete download of %d bytes", size)
                        return Resume(size, kept.etag, digest)
            except OSError:
                pass
        _unlink_quietly(partial)
        if kept is not None and kept.path == str(partial):
            self._forget_partial()
        return Resume()

    def _fetch_into(self, partial: Path, blob: _Blob, resume: Resume, progress: Progress | None) -> None:
        half, halfway = blob.size // 2, [False]

        def written(offset: int) -> None:  # on the writer's thread: half of the file is on disk
            if offset >= half and not halfway[0]:
                halfway[0] = True
                self._checkpoint("download-half")

        def started(validator: str | None) -> None:
            # Recorded before the first byte is written: a process killed at any later instant
            # leaves a partial the next start resumes (or, without a validator, removes).
            self._record_partial(blob, partial, validator)
            self._checkpoint("download-started")

        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "r+b") as out:
            out.seek(resume.offset)
            out.truncate()
            try:
                with Fetcher(self.fetch_config) as fetcher:
                    fetcher.download(
                        blob.url, out, size=blob.size, sha256=blob.sha256, timeout=self.config.download_timeout,
                        progress=progress, resume=resume, on_start=started, on_written=written,
                    )  # fmt: skip
            finally:
                out.flush()
                os.fsync(out.fileno())

    def _record_partial(self, blob: _Blob, partial: Path, validator: str | None) -> None:
        state = self.state_file.load()
        record = PartialDownload(blob.url, blob.sha256, blob.size, validator, str(partial)) if validator else None
        if state.partial != record:
            state.partial = record
            self._save_state(state)

    def _forget_partial(self) -> None:
        state = self.state_file.load()
        if state.partial is not None:
            state.partial = None
            self._save_state(state)

    def _drop_partial(self, partial: Path) -> None:
        """Remove ``partial`` and the record of it (a record of another file stays)."""
        _unlink_quietly(partial)
        state = self.state_file.load()
        if state.partial is not None and state.partial.path == str(partial):
            state.partial = None
            self._save_state(state)

    def _partial_path(self, target: Path) -> Path:
        """The one place a download in progress lives for this install."""
        if self.folder is not None:
            return _install.partial_path_for(self.folder.current)
        return _install.partial_path_for(target, self.platform.os)

    def _drop_unwanted_partial(self, wanted_sha256: str | None) -> None:
        """After a check: a kept partial of anything but the release now offered will never be
        resumed (a yank, a newer release): remove it."""
        kept = self.state_file.load().partial
        if kept is None or kept.sha256 == wanted_sha256 or self.target is None:
            return
        partial = self._partial_path(self.target)
        if kept.path == str(partial):
            self._drop_partial(partial)
        else:
            self._forget_partial()

    def _cleanup(self, target: Path) -> None:
        """At start, under the lock: remove what a killed or failed run left behind, keeping only
        a partial download the next attempt can resume."""
        if self.folder is not None:
            _folder.cleanup_leftovers(self.folder, self.file_ops)
        else:
            _install.cleanup_leftovers(target, self.file_ops)
        self.state_file.remove_stale_temp_files()
        _remove_preflight_dir(self.config.app)
        partial = self._partial_path(target)
        kept = self.state_file.load().partial
        try:
            size = partial.stat().st_size
        except OSError:
            if kept is not None and kept.path == str(partial):
                self._forget_partial()
            return
        if not (kept is not None and kept.path == str(partial) and kept.etag and 0 < size <= kept.size):
            self._drop_partial(partial)

    def _refuse_early(self, target: Path, update: Update) -> None:
        """Refusals that need no download: an install folder we cannot write, too little space."""
        if self.folder is not None:
            _install.check_writable(self.folder.current, self.platform.os, self.file_ops)
            _install.check_writable(self.folder.versions / "x", self.platform.os, self.file_ops)
            directory = self.folder.versions
        else:
            _install.check_writable(target, self.platform.os, self.file_ops)
            directory = target.parent
        try:
            free = shutil.disk_usage(directory).free
        except OSError:
            return  # unknown: the write itself will tell
        if free < update.entry.size:
            raise InstallError(f"not enough disk space in {directory} for {update.entry.version}: {update.entry.size} bytes needed, {free} free; free some disk space")

    def _mark_bad(self, version: str, reason: str) -> None:
        state = self.state_file.load()
        state.bad_versions[version] = reason
        self._save_state(state)

    def _save_state(self, state: ClientState) -> None:
        try:
            self.state_file.save(state)
        except OSError as e:
            # Not fatal: the update itself is verified; only memory across runs is lost.
            log.warning("gupper: cannot save %s (%s); rollback protection restarts from this manifest", self.state_file.path, e.strerror or e)

    def _checkpoint(self, name: str) -> None:
        if self.checkpoint is not None:
            self.checkpoint(name)

    def _require_target(self) -> Path:
        if self.target is None:
            raise ConfigError("no executable to update: not a frozen app; set UpdaterConfig.executable")
        return self.target


class PeriodicCheck:
    """A stoppable background update checker (see :meth:`Updater.check_periodically`)."""

    def __init__(
        self, updater: Updater, interval: float, jitter: float, on_result: Callable[[Result], None], on_available: Callable[[Update], bool] | None = None
    ) -> None:
        self._updater, self._interval, self._jitter, self._on_result = updater, interval, jitter, on_result
        self._on_available = on_available
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

    def _loop(self) -> None:
        while not self._stop.wait(self._interval * random.uniform(1 - self._jitter, 1 + self._jitter)):
            if self.installed is not None:
                return  # installed: the next start runs it; nothing more to do in this process
            result = self._updater.run(restart=False, on_available=self._on_available)
            if result.status is Status.INSTALLED:
                self.installed = result.version
            try:
                self._on_result(result)
            except Exception:  # the app's callback must not kill the checker
                log.exception("gupper: the periodic check's callback failed")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.debug("could not remove %s: %s", path, e)


__all__ = ["Checkpoint", "Result", "Status", "Update", "Updater", "UpdaterConfig"]


def _installed_list(folder: Path) -> tuple[bytes, list[PackageEntry], bool]:
    """The installed version's file list (bytes and entries) and whether its files were hashed
    just now: the list kept beside it (a hint: every file is hashed again before reuse), or, for a
    version installed by other means, the list of a scan, which is byte for byte the publisher's
    when the files are the published ones."""
    from .package import LIST_NAME, MAX_LIST_BYTES, file_list_bytes, parse_file_list, scan_folder

    try:
        with (folder / LIST_NAME).open("rb") as f:
            data = f.read(MAX_LIST_BYTES + 1)
        return data, parse_file_list(data), False
    except (OSError, IntegrityError):
        entries = scan_folder(folder)
        return file_list_bytes(entries), entries, True


def _list_from_index(installed: bytes, index: folder_delta.Index, index_from: str, files_sha256: str) -> bytes | None:
    """The new file list rebuilt from the installed one and the index's list delta, if the index
    starts from exactly the installed list and the result hashes to the signed ``files_sha256``;
    else None (then it is fetched)."""
    from . import folder_delta

    if hashlib.sha256(installed).hexdigest() != index_from:
        return None
    try:
        data = folder_delta.apply_list_delta(installed, index)
    except (UpdateError, ValueError, KeyError, TypeError):
        return None
    return data if hashlib.sha256(data).hexdigest() == files_sha256 else None


@contextlib.contextmanager
def _boundary() -> Iterator[None]:
    """The public steps raise UpdateError and nothing else: a bug in Gupper is reported as one."""
    try:
        yield
    except UpdateError:
        raise
    except Exception as e:
        raise UpdateError(f"internal error ({type(e).__name__}: {str(e)[:300]}); please report this to the app's publisher") from e


def _left(deadline: float) -> float:
    """Seconds left before ``deadline`` (a monotonic time); 0 once it passed."""
    return max(0.0, deadline - time.monotonic())


def _transient(e: HTTPError) -> bool:
    """A status that says "not now" rather than "not here"."""
    return e.status is not None and (e.status >= 500 or e.status in (408, 429))


def _preflight_dir(app: str) -> Path | None:
    """A fresh, private scratch folder for the self-test's one-file extraction, or None (then the
    self-test uses the normal temp folder). Under the system temp folder, where the app itself
    extracts, so that it allows executables; per user and per app, refused if anyone else made it."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"gupper-preflight-{app}{_uid_suffix()}"
    _remove_preflight_dir(app)
    try:
        path.mkdir(mode=0o700)
    except OSError as e:
        log.debug("gupper: no private folder for the self-test (%s)", e)
        return None
    return path


def _remove_preflight_dir(app: str) -> None:
    """Empty and remove the self-test's scratch folder, if it is ours (a real folder we own)."""
    import stat
    import tempfile

    path = Path(tempfile.gettempdir()) / f"gupper-preflight-{app}{_uid_suffix()}"
    try:
        st = path.lstat()
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return  # a link or someone else's: not ours to touch
    shutil.rmtree(path, ignore_errors=True)


def _uid_suffix() -> str:
    return f"-{os.getuid()}" if hasattr(os, "getuid") else ""
