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
from ._fsutil import atomic_write
from .errors import ConfigError, DownloadError, HTTPError, InstallError, IntegrityError, PreflightFailed, TooLarge, UpdateError
from .fetch import FetchConfig, Fetcher, Progress, Resume, check_url
from .keys import TrustedKeys
from .manifest import MAX_MANIFEST_BYTES, Entry, Manifest, verify_manifest
from .platforms import Platform, current_platform
from .policy import choose_update
from .selftest import answer_self_test, preflight
from .state import ClientState, PartialDownload, StateFile, Trial, default_state_dir
from .trust import ChannelRecord, check_fresh, digest_of, rotated_keys

# Patching, one-folder deltas, archives and the update lock are imported by the functions that
# use them: a start that finds no update never loads them (bench/results.md, import cost).
if TYPE_CHECKING:
    from . import folder_delta
    from .package import PackageEntry

log = logging.getLogger("gupper")

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
    """A verified, applicable release for this install."""

    current: Version
    entry: Entry
    url: str
    manifest: Manifest


class Status(enum.Enum):
    """What :meth:`Updater.run` did."""

    UP_TO_DATE = "up-to-date"
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
        self.state_file = StateFile(Path(cfg.state_dir) if cfg.state_dir else default_state_dir(cfg.app))
        self.platform = cfg.platform or current_platform()
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
        self.target: Path | None = _install.resolve_target(exe) if exe else None
        self._hash_cache: tuple[tuple[int, int, int], str] | None = None
        self.folder = _folder.detect(self.target, cfg.install_root) if self.target is not None else None

    # --- public steps -------------------------------------------------------------------------

    def check(self) -> Update | None:
        """Fetch and verify the manifest; return the update for this platform, if it applies."""
        return self._check()[0]

    def download(self, update: Update, progress: Progress | None = None) -> Path:
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
        full = _Blob(update.url, update.entry.size, update.entry.sha256)
        if self.folder is not None:
            return self._download_package(self.folder, update, full, progress)
        _install.check_writable(target)
        partial = _install.partial_path_for(target, self.platform.os)
        patch = self._pick_patch(update, target)
        done = False
        if patch is not None:
            try:
                self._download_delta(full, patch, target, partial, progress)
                done = True
            except InstallError:
                raise
            except (UpdateError, PatchError) as e:
                _unlink_quietly(partial)
                log.warning("gupper: delta update failed (%s); downloading the full file", e)
        if not done:
            self._fetch_verified(full, partial, progress)
        try:
            _install.copy_mode(target, partial)
        except OSError as e:
            self._drop_partial(partial)
            raise InstallError(f"cannot set permissions on the update in {target.parent} ({e.strerror or e})") from e
        self._checkpoint("downloaded")
        return partial

    def _download_package(self, layout: _folder.FolderLayout, update: Update, full: _Blob, progress: Progress | None) -> Path:
        """Fetch the archive beside the version folders, verify it, extract and verify every file
        into a temp folder there; return that folder."""
        from .package import extract_package

        _install.check_writable(layout.current)
        _install.check_writable(layout.versions / "x")
        delta = self._folder_delta(layout, update, full, progress)
        if delta is not None:
            return delta
        partial = _install.partial_path_for(layout.current)
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
            _unlink_quietly(partial)
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
            with Fetcher(self.fetch_config) as fetcher:
                installed_dir = layout.version_dir(current)
                installed, installed_entries, hashed_now = _installed_list(installed_dir)
                index_url, index, index_from = self._patch_index(fetcher, update, current)
                list_data = _list_from_index(installed, index, index_from, files_sha256)
                if list_data is None:  # no index from exactly the installed files: fetch the new list
                    list_data = self._get_signed_small(fetcher, files_url, MAX_LIST_BYTES, files_sha256, list_from_wire)
                entries = parse_file_list(list_data)
                the_plan = folder_delta.plan(installed_entries, entries, index.patches)
                if the_plan.download >= full.size:
                    log.info("gupper: a folder delta would fetch %d bytes, the archive is %d: taking the archive", the_plan.download, full.size)
                    return None
                fetch, reach_half = self._delta_fetcher(fetcher, the_plan.download, progress)
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

    def _get_signed_small(self, fetcher: Fetcher, url: str, max_bytes: int, sha256: str, decode: Callable[[bytes], bytes] = bytes) -> bytes:
        """A small document whose sha256 (of its ``decode``-d form) the manifest signs (a file list, a patch index)."""
        got = fetcher.get_small(self._checked_url(urljoin(self.config.manifest_url, url)), max_bytes=max_bytes, timeout=self.config.download_timeout)
        data = decode(got.body) if got is not None else b""
        if got is None or hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"{url} does not match the signed sha256; the store holds a different file")
        return data

    def _patch_index(self, fetcher: Fetcher, update: Update, current: str) -> tuple[str, folder_delta.Index, str]:
        """The patch index from the installed version, if the release has one: its URL, the index
        (empty without one) and the ``from_sha256`` of the file list it starts from."""
        from . import folder_delta

        patches = update.entry.extra.get("patches")
        for p in patches if isinstance(patches, list) else []:
            if not isinstance(p, dict) or p.get("format") != folder_delta.PATCH_FORMAT or p.get("from_version") != current:
                continue
            size, digest, url, start = p.get("size"), p.get("sha256"), p.get("url"), p.get("from_sha256")
            if isinstance(size, int) and isinstance(digest, str) and isinstance(url, str) and isinstance(start, str):
                index = folder_delta.parse_index(self._get_signed_small(fetcher, url, min(size, folder_delta.MAX_INDEX_BYTES), digest))
                return urljoin(self.config.manifest_url, url), index, start
        return self.config.manifest_url, folder_delta.Index({}), ""

    def _delta_fetcher(self, fetcher: Fetcher, total: int, progress: Progress | None) -> tuple[folder_delta.Fetch, Callable[[], None]]:
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

            fetcher.download(url, out, size=size, sha256=sha256, timeout=self.config.download_timeout, progress=report)
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
        self._fetch_verified(patch, patch_file, progress)
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

    def _fetch_verified(self, blob: _Blob, dest: Path, progress: Progress | None) -> None:
        """Fetch ``blob`` into ``dest`` with bounded retries, resuming a kept partial; verified on return."""
        target = self._require_target()
        resume = self._resume_point(self.state_file.load(), blob, dest)
        attempts = max(1, self.config.download_attempts)
        for attempt in range(attempts):
            try:
                self._fetch_into(dest, blob, resume, progress)
                break
            except (IntegrityError, TooLarge, HTTPError) as e:
                self._drop_partial(dest)
                if isinstance(e, HTTPError) and e.status == 416:  # our partial no longer fits: start again
                    resume = Resume()
                    continue
                raise
            except DownloadError:
                self._remember_partial(blob, dest, resume)
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
        self._forget_partial()

    def install(self, staged: Path, version: str) -> None:
        """Pre-flight ``staged``, keep a backup of the running binary, swap ``staged`` in, start a trial.

        In the one-folder layout ``staged`` is the extracted folder: it becomes
        ``versions/<version>``, its executable is pre-flighted, the previous version's folder is
        the backup, and the swap is the atomic switch of ``current``.
        """
        target = self._require_target()
        layout = self.folder
        candidate = staged if layout is None else _folder.publish_version(layout, staged, version) / layout.exe
        try:
            preflight(candidate, version, _restart.child_environment(self.environ, version), self.config.preflight_timeout)
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
        finally:
            if layout is None:
                _unlink_quietly(staged)  # gone already after a successful rename
        state = self.state_file.load()
        state.trial = Trial(version=version, previous_version=str(self.current), target=self._trial_key(target), backup=str(backup))
        self._save_state(state)
        self._checkpoint("trial-started")
        if layout is not None:
            _folder.prune(layout, {version, backup.name})

    def restart(self, version: str) -> NoReturn:
        """Run the installed executable in place of this process (it will report ``version``)."""
        target = self._require_target()
        if self.folder is not None:
            target = self.folder.entry_point(self.platform.os, self.file_ops, self.environ.get("GUPPER_LAUNCHER"))
        env = _restart.child_environment(self.environ, version)
        self._checkpoint("restarting")
        _restart.restart(str(target), list(self.argv[1:]), env, self.platform.os)

    def confirm(self) -> None:
        """Tell the updater this version started fine: end its trial and drop the backup.

        Call it once the app's start-up has succeeded; until then a crash counts towards an
        automatic rollback.
        """
        state = self.state_file.load()
        trial = state.trial
        if trial is None or trial.version != self.config.current_version:
            return
        state.trial = None
        self._save_state(state)
        if self.folder is None:  # a folder layout keeps the previous version's folder for a later rollback
            _unlink_quietly(Path(trial.backup))
        log.debug("gupper: %s confirmed healthy", trial.version)

    def run(self, *, restart: bool = True, progress: Progress | None = None) -> Result:
        """The start-up hook: self-test answer, trial bookkeeping, then check/download/install/restart.

        Never raises UpdateError: any failure is logged as one warning line and reported in the
        result; the installed executable is then exactly what it was before.
        """
        answer_self_test(self.environ, self.config.current_version)
        target = self.target
        if target is None:
            return Result(Status.DISABLED, "updates are off: not running as a frozen app and no executable configured")
        restarted_as = self.environ.pop(_restart.RESTARTED_ENV, None)
        try:
            rolled = self._trial_start(target, restart)
        except UpdateError as e:
            log.warning("gupper: %s", e)
            return Result(Status.FAILED, str(e), error=e, version=str(self.current))
        if rolled is not None:
            return rolled
        if restarted_as is not None:
            # We were just exec'd by an update: don't check again in this run (no loops).
            if restarted_as != self.config.current_version:
                msg = f"the release installed as {restarted_as} reports version {self.config.current_version}; republish it with a matching version"
                log.warning("gupper: %s", msg)
                return Result(Status.FAILED, msg, version=self.config.current_version)
            log.info("gupper: now running %s", restarted_as)
            return Result(Status.JUST_UPDATED, f"updated to {restarted_as}", version=restarted_as)
        if self.folder is not None:
            _folder.cleanup_leftovers(self.folder, self.file_ops)
        else:
            _install.cleanup_leftovers(target, self.file_ops)
        try:
            return self._update(target, restart, progress)
        except UpdateError as e:
            log.warning("gupper: update failed, carrying on with %s: %s", self.current, e)
            return Result(Status.FAILED, str(e), error=e, version=str(self.current))

    def _update(self, target: Path, restart: bool, progress: Progress | None) -> Result:
        with self._lock() as locked:
            if not locked:
                log.info("gupper: another instance is updating %s; carrying on with %s", self.config.app, self.current)
                return Result(Status.BUSY, "another instance is updating", version=str(self.current))
            update, reason = self._check()
            if update is None:
                return Result(Status.UP_TO_DATE, reason, version=str(self.current))
            new_version = str(update.entry.version)
            if self._installed(target, update):
                # Another instance installed it after we started: run it rather than fetch it again.
                log.info("gupper: %s was installed by another instance", new_version)
            else:
                log.info("gupper: updating %s %s -> %s (%d bytes)", self.config.app, self.current, new_version, update.entry.size)
                staged = self.download(update, progress)
                self.install(staged, new_version)
        if restart:
            log.info("gupper: installed %s, restarting", new_version)
            self.restart(new_version)
        return Result(Status.INSTALLED, f"installed {new_version}; it runs from the next start", version=new_version)

    def check_periodically(self, interval: float, on_result: Callable[[Result], None], *, jitter: float = 0.2) -> PeriodicCheck:
        """For long-running apps: check, download and install in a background thread every
        ``interval`` seconds (± ``jitter`` of it, so a fleet does not poll in lockstep).

        Installs never restart the app: ``on_result`` gets each :class:`Result` (``INSTALLED``
        means the new version runs from the next start; ask the user, or call
        :meth:`restart`). Returns a handle whose ``stop()`` ends the thread.
        """
        if interval <= 0 or not 0 <= jitter < 1:
            raise ConfigError("check_periodically needs interval > 0 and 0 <= jitter < 1")
        checker = PeriodicCheck(self, interval, jitter, on_result)
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

    def _fetch_manifest(self, state: ClientState) -> bytes:
        """The manifest's bytes; ``If-None-Match`` with the last ETag, and a 304 answered from the
        signed copy kept in the state dir (it is verified again like a fresh one)."""
        cache = self.state_file.directory / f"{self.config.channel}.latest.json"
        etag = state.etags.get(self.config.channel)
        cached: bytes | None = None
        if etag:
            try:
                cached = cache.read_bytes()
            except OSError:
                etag = None
        with Fetcher(self.fetch_config) as fetcher:
            fetched = fetcher.get_small(self.config.manifest_url, max_bytes=self.config.max_manifest_bytes, timeout=self.config.manifest_timeout, etag=etag)
        if fetched is None:
            assert cached is not None  # a 304 only answers an ETag we sent
            log.debug("gupper: manifest not modified (304)")
            return cached
        if fetched.etag and fetched.etag != etag:
            try:
                atomic_write(cache, fetched.body)
                state.etags[self.config.channel] = fetched.etag
            except OSError as e:
                log.debug("gupper: cannot cache the manifest (%s); polling without ETag", e)
        return fetched.body

    def _check(self) -> tuple[Update | None, str]:
        state = self.state_file.load()
        etags_before = dict(state.etags)
        body = self._fetch_manifest(state)
        trusted = state.trusted(self.trusted)
        manifest = verify_manifest(body, trusted, app=self.config.app, channel=self.config.channel, now=self.clock())
        seen = state.channels.get(self.config.channel, ChannelRecord())
        check_fresh(manifest, seen)
        new_keys = rotated_keys(manifest, trusted)
        if new_keys is not None:
            state.adopt(new_keys, self.trusted)
            log.info("gupper: key rotation: now trusting %d key(s), threshold %d", len(new_keys.keys), new_keys.threshold)
        if new_keys is not None or manifest.serial > seen.serial or state.etags != etags_before:
            state.channels[self.config.channel] = ChannelRecord(manifest.serial, digest_of(manifest))
            self._save_state(state)
        self._checkpoint("checked")
        types = ("archive",) if self.folder is not None else ("binary",)
        decision = choose_update(manifest, self.platform.key, self.current, state.install_id, types)
        log.debug("gupper: %s", decision.reason)
        if decision.entry is None:
            return None, decision.reason
        bad = state.bad_versions.get(str(decision.entry.version))
        if bad is not None:
            return None, f"skipping {decision.entry.version}, marked bad ({bad}); waiting for a newer release"
        url = urljoin(self.config.manifest_url, decision.entry.url)
        check_url(url, self.config.allow_insecure_loopback)
        return Update(self.current, decision.entry, url, manifest), decision.reason

    def _trial_start(self, target: Path, restart: bool) -> Result | None:
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
        reason = f"started {trial.starts - 1} times without confirming it runs"
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
        log.warning("gupper: %s %s; rolled back to %s", trial.version, reason, trial.previous_version)
        if restart:
            self.restart(trial.previous_version)
        return Result(Status.ROLLED_BACK, f"rolled back to {trial.previous_version}", version=trial.previous_version)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[bool]:
        """One updater per app and user at a time; the others carry on without waiting."""
        from filelock import FileLock
        from filelock import Timeout as LockTimeout

        lock = FileLock(str(self.state_file.directory / "update.lock"))
        try:
            self.state_file.directory.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)
        except LockTimeout:
            yield False
            return
        except OSError as e:
            raise InstallError(
                f"cannot use the updater's state folder {self.state_file.directory} ({e.strerror or e}); make it writable or set UpdaterConfig.state_dir"
            ) from e
        try:
            yield True
        finally:
            lock.release()

    def _resume_point(self, state: ClientState, blob: _Blob, partial: Path) -> Resume:
        kept = state.partial
        if kept and kept.sha256 == blob.sha256 and kept.path == str(partial) and partial.is_file():
            size = partial.stat().st_size
            if 0 < size < blob.size and kept.etag:
                digest = hashlib.sha256()
                with partial.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                log.info("gupper: resuming the download at %d of %d bytes", size, blob.size)
                return Resume(size, kept.etag, digest)
        self._drop_partial(partial)
        return Resume()

    def _fetch_into(self, partial: Path, blob: _Blob, resume: Resume, progress: Progress | None) -> None:
        half = blob.size // 2

        def report(done: int, total: int) -> None:
            if done >= half > done - 65536 * 2:
                self._checkpoint("download-half")
            if progress is not None:
                progress(done, total)

        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "r+b") as out:
            out.seek(resume.offset)
            out.truncate()
            self._checkpoint("download-started")
            try:
                with Fetcher(self.fetch_config) as fetcher:
                    fetcher.download(
                        blob.url, out, size=blob.size, sha256=blob.sha256, timeout=self.config.download_timeout,
                        progress=report, resume=resume,
                    )  # fmt: skip
            finally:
                out.flush()
                os.fsync(out.fileno())

    def _remember_partial(self, blob: _Blob, partial: Path, resume: Resume) -> None:
        state = self.state_file.load()
        state.partial = PartialDownload(blob.url, blob.sha256, blob.size, resume.etag, str(partial))
        self._save_state(state)

    def _forget_partial(self) -> None:
        state = self.state_file.load()
        if state.partial is not None:
            state.partial = None
            self._save_state(state)

    def _drop_partial(self, partial: Path) -> None:
        _unlink_quietly(partial)
        self._forget_partial()

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

    def __init__(self, updater: Updater, interval: float, jitter: float, on_result: Callable[[Result], None]) -> None:
        self._updater, self._interval, self._jitter, self._on_result = updater, interval, jitter, on_result
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
            result = self._updater.run(restart=False)
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
