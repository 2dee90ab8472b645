"""The updater an app embeds: check, download, install, restart.

I/O lives here; the decisions are made by the pure functions in :mod:`updater.manifest` and
:mod:`updater.policy`. :meth:`Updater.run` is the one-call start-up hook: it never raises an
:class:`~updater.errors.UpdateError`, it logs one line and lets the app carry on.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn
from urllib.parse import urljoin

from packaging.version import InvalidVersion, Version

from . import install as _install
from . import restart as _restart
from .errors import ConfigError, InstallError, UpdateError
from .fetch import FetchConfig, Fetcher, Progress, check_url
from .keys import TrustedKeys
from .manifest import MAX_MANIFEST_BYTES, Entry, Manifest, verify_manifest
from .platforms import Platform, current_platform
from .policy import choose_update
from .state import ClientState, StateFile, default_state_dir
from .trust import ChannelRecord, check_fresh, digest_of, rotated_keys

log = logging.getLogger("gupper")


@dataclass(frozen=True)
class UpdaterConfig:
    """Everything the updater needs, fixed when the app is built.

    ``executable`` defaults to the running frozen binary; an app run from source (not frozen)
    has updates off unless it names an executable, so a developer's Python is never replaced.
    ``state_dir`` defaults to the user's state directory (``~/.local/state/gupper/<app>`` on
    Linux); it holds the highest manifest serial seen and any adopted key rotation.
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
    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    retries: int = 2
    executable: str | None = None
    platform: Platform | None = None
    state_dir: str | None = None


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

    ``clock``, ``environ``, ``argv`` and ``file_ops`` are injection points for tests; the
    defaults are the real ones.
    """

    config: UpdaterConfig
    clock: Callable[[], datetime] = _utcnow
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)
    argv: Sequence[str] = field(default_factory=lambda: list(sys.argv))
    file_ops: _install.FileOps | None = None

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

    @property
    def target(self) -> Path | None:
        """The installed executable this updater replaces, or None when updates are off."""
        exe = self.config.executable
        if exe is None and getattr(sys, "frozen", False):
            exe = sys.executable
        return _install.resolve_target(exe) if exe else None

    def check(self) -> Update | None:
        """Fetch and verify the manifest; return the update for this platform, if newer."""
        return self._check()[0]

    def _check(self) -> tuple[Update | None, str]:
        with Fetcher(self.fetch_config) as fetcher:
            fetched = fetcher.get_small(self.config.manifest_url, max_bytes=self.config.max_manifest_bytes, timeout=self.config.manifest_timeout)
        assert fetched is not None  # no ETag sent, so no 304
        state = self.state_file.load()
        trusted = state.trusted(self.trusted)
        manifest = verify_manifest(fetched.body, trusted, app=self.config.app, channel=self.config.channel, now=self.clock())
        seen = state.channels.get(self.config.channel, ChannelRecord())
        check_fresh(manifest, seen)
        new_keys = rotated_keys(manifest, trusted)
        if new_keys is not None:
            state.adopt(new_keys, self.trusted)
            log.info("gupper: key rotation: now trusting %d key(s), threshold %d", len(new_keys.keys), new_keys.threshold)
        if new_keys is not None or manifest.serial > seen.serial:
            state.channels[self.config.channel] = ChannelRecord(manifest.serial, digest_of(manifest))
            self._save_state(state)
        decision = choose_update(manifest, self.platform.key, self.current, state.install_id)
        log.debug("gupper: %s", decision.reason)
        if decision.entry is None:
            return None, decision.reason
        url = urljoin(self.config.manifest_url, decision.entry.url)
        check_url(url, self.config.allow_insecure_loopback)
        return Update(self.current, decision.entry, url, manifest), decision.reason

    def download(self, update: Update, progress: Progress | None = None) -> Path:
        """Download and verify ``update`` into a temp file beside the executable; return its path.

        The temp file is removed on any failure; on success it is fsynced and carries the
        installed file's mode, ready for :meth:`install`.
        """
        target = self._require_target()
        _install.check_writable(target)
        temp = _install.temp_path_for(target)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        except OSError as e:
            raise InstallError(f"cannot create a file in {target.parent} ({e.strerror}); reinstall the app in a folder you own") from e
        try:
            with os.fdopen(fd, "wb") as out:
                with Fetcher(self.fetch_config) as fetcher:
                    fetcher.download(
                        update.url,
                        out,
                        size=update.entry.size,
                        sha256=update.entry.sha256,
                        timeout=self.config.download_timeout,
                        progress=progress,
                    )
                out.flush()
                os.fsync(out.fileno())
            _install.copy_mode(target, temp)
        except OSError as e:
            _unlink_quietly(temp)
            raise InstallError(f"cannot write the update beside {target} ({e.strerror or e}); free some disk space or check the folder's permissions") from e
        except BaseException:
            _unlink_quietly(temp)
            raise
        return temp

    def install(self, staged: Path) -> None:
        """Swap the verified ``staged`` file in as the executable (atomic on POSIX)."""
        target = self._require_target()
        try:
            _install.apply(staged, target, self.platform.os, self.file_ops)
        finally:
            _unlink_quietly(staged)  # gone already after a successful rename

    def restart(self, installed_version: str) -> NoReturn:
        """Run the newly installed executable in place of this process."""
        target = self._require_target()
        env = _restart.child_environment(self.environ, installed_version)
        _restart.restart(str(target), list(self.argv[1:]), env, self.platform.os)

    def run(self, *, restart: bool = True, progress: Progress | None = None) -> Result:
        """Check, download, install and (by default) restart; never raises UpdateError.

        Any failure is logged as one warning line and reported in the result; the installed
        executable is then exactly what it was before, and the app carries on.
        """
        target = self.target
        if target is None:
            return Result(Status.DISABLED, "updates are off: not running as a frozen app and no executable configured")
        restarted_as = self.environ.pop(_restart.RESTARTED_ENV, None)
        if restarted_as is not None:
            # We were just exec'd by an update: don't check again in this run (no loops).
            if restarted_as != self.config.current_version:
                msg = f"the release published as {restarted_as} reports version {self.config.current_version}; republish it with a matching version"
                log.warning("gupper: %s", msg)
                return Result(Status.FAILED, msg, version=self.config.current_version)
            log.info("gupper: now running %s", restarted_as)
            return Result(Status.JUST_UPDATED, f"updated to {restarted_as}", version=restarted_as)
        _install.cleanup_leftovers(target, self.file_ops)
        try:
            update, reason = self._check()
            if update is None:
                return Result(Status.UP_TO_DATE, reason, version=str(self.current))
            log.info("gupper: updating %s %s -> %s (%d bytes)", self.config.app, self.current, update.entry.version, update.entry.size)
            staged = self.download(update, progress)
            self.install(staged)
        except UpdateError as e:
            log.warning("gupper: update failed, carrying on with %s: %s", self.current, e)
            return Result(Status.FAILED, str(e), error=e, version=str(self.current))
        new_version = str(update.entry.version)
        if restart:
            log.info("gupper: installed %s, restarting", new_version)
            self.restart(new_version)
        return Result(Status.INSTALLED, f"installed {new_version}; it runs from the next start", version=new_version)

    def _save_state(self, state: ClientState) -> None:
        try:
            self.state_file.save(state)
        except OSError as e:
            # Not fatal: this check is verified; only the memory for later rollback checks is lost.
            log.warning("gupper: cannot save %s (%s); rollback protection restarts from this manifest", self.state_file.path, e.strerror or e)

    def _require_target(self) -> Path:
        target = self.target
        if target is None:
            raise ConfigError("no executable to update: not a frozen app; set UpdaterConfig.executable")
        return target


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.debug("could not remove %s: %s", path, e)
