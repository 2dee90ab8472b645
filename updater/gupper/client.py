"""The updater an app embeds: check, download, verify, pre-flight, install, restart, confirm.

This module orchestrates; it decides nothing itself and touches no install file directly. What a
manifest is and whether to trust it: :mod:`gupper.manifest` and :func:`gupper.trust.accept_manifest`
(pure); which release to take: :mod:`gupper.policy` (pure); how bytes arrive: :mod:`gupper.download`;
how a one-file or one-folder install is staged, swapped and rolled back: :mod:`gupper.layouts`.
:meth:`Updater.run` is the one-call start-up hook: it never raises; it logs one line and lets the
app carry on. The invariant at every instant, whatever kills the process: the installed path
holds a complete, verified binary (the old one or the new one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urljoin

from packaging.version import InvalidVersion, Version

from . import install as _install
from . import outcomes
from . import restart as _restart
from ._lock import ExclusiveLock
from .checkpoints import Checkpoint, CheckpointHook
from .config import UpdaterConfig, channel_of
from .download import Downloads
from .errors import (
    ConfigError,
    InstallError,
    ManifestError,
    PreflightFailedError,
    PreflightInterruptedError,
    UpdateError,
)
from .keys import TrustedKeys
from .layouts import Context, InstallLayout, open_layout, refuse_early
from .platforms import Platform, pick_key, platform_candidates
from .policy import choose_update, move_line
from .records import field, record
from .results import Result, Status, Update
from .selftest import answer_self_test, preflight, remove_scratch_dir, scratch_dir
from .state import ClientState, ManifestCache, StateFile, Trial, cacheable_etag, default_state_dir
from .transfer import ANCHOR_MEMO_NAME, FetchConfig, Progress, check_url
from .trust import ChannelRecord, accept_manifest
from .wire.manifest import BINARY

if TYPE_CHECKING:
    from .periodic import PeriodicCheck  # loaded by check_periodically() only: not on a start-up check

log = logging.getLogger("gupper")

MAX_PREFLIGHT_INTERRUPTIONS = 3
"""A release whose self-test is killed from outside this many times in a row is skipped."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@record
class Updater:
    """Checks for, downloads and installs updates for one app.

    Create one per process, first thing in ``main()``: creating it is the process start the
    trial of a new version counts (:meth:`confirm`). When this version has used up its trial
    starts without confirming, creating it rolls the install back and, with
    ``restart_on_rollback`` (the default), restarts into the previous version at once, before the
    app shows anything; :attr:`started` then holds the ``ROLLED_BACK`` result.

    ``clock``, ``environ``, ``argv``, ``file_ops`` and ``checkpoint`` (called at each step
    boundary, :class:`~gupper.checkpoints.Checkpoint`) are injection points for tests; the
    defaults are the real ones.

    Raises (when created):
        ConfigError: a public key that does not parse, a threshold out of range, a
            ``current_version`` that is not PEP 440, a manifest URL that is not https (or
            loopback http when the config allows it).
    """

    config: UpdaterConfig
    clock: Callable[[], datetime] = _utcnow
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)
    argv: Sequence[str] = field(default_factory=lambda: list(sys.argv))
    file_ops: _install.FileOps | None = None
    checkpoint: CheckpointHook | None = None
    restart_on_rollback: bool = True

    def __post_init__(self) -> None:
        cfg = self.config
        self.trusted = TrustedKeys.from_texts(cfg.public_keys, cfg.threshold)
        try:
            self.current = Version(cfg.current_version)
        except InvalidVersion as e:
            raise ConfigError(f"current_version {cfg.current_version!r} is not a PEP 440 version") from e
        check_url(cfg.manifest_url, cfg.allow_insecure_loopback)
        self.channel = channel_of(cfg)  # named once: by the manifest URL, or by the setting
        # The pre-flight of a new version ends here, before the app goes on to its UI, however it
        # drives the updater later (run, the steps, a menu item): see README "Use it in your app".
        answer_self_test(cfg.current_version, self.environ, cfg)
        try:
            if getattr(sys, "frozen", False):
                # An update may replace this app's file while it runs (in the background, or from another
                # instance): keep reading its own bundled modules (gupper.frozen_archive).
                from .frozen_archive import pin_own_archive

                pin_own_archive()
            # Started by restart_on_exit(): the old process ends first (its files saved, its locks let go).
            _restart.wait_for_handover(self.environ)
        except Exception as e:  # a bug in Gupper must not stop the app from starting
            self._internal_error(e)
        self._exit_launch: tuple[str, list[str], dict[str, str]] | None = None
        self._exit_launch_lock = threading.Lock()
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
            anchor_memo=str(self.state_file.directory / ANCHOR_MEMO_NAME),
        )
        # Resolved once: after a Windows rename-aside, sys.executable must not lead us to the .old file.
        exe = cfg.executable or (sys.executable if getattr(sys, "frozen", False) else None)
        self.target: Path | None = _install.resolve_target(exe) if exe and self.disabled_reason is None else None
        self.downloads = Downloads(cfg, self.fetch_config, self.state_file, self._save_state, self._checkpoint)
        context = Context(
            cfg,
            self.platform.os,
            self.downloads,
            self.environ,
            self._checkpoint,
            self._mark_bad,
            lambda: self.file_ops,
            getattr(sys, "_MEIPASS", None) if getattr(sys, "frozen", False) else None,
        )
        self.layout: InstallLayout | None = open_layout(self.target, context) if self.target is not None else None
        self.folder = self.layout.folder if self.layout is not None else None
        # Held while this process runs: another process's prune leaves this version's folder alone.
        self._in_use = self.layout.hold_in_use() if self.layout is not None and getattr(sys, "frozen", False) else None
        restarted_as = self.environ.pop(_restart.RESTARTED_ENV, None)
        self.started: Result | None = self._begin(self.layout) if self.layout is not None else None
        """What this process start did: ``ROLLED_BACK`` when this version's trial had failed,
        ``JUST_UPDATED`` when an update started it (``FAILED`` when that version reports another
        version); None when there was nothing to say. :meth:`run` reports it, once."""
        if self.started is None and restarted_as is not None and self.layout is not None:
            self.started = self._just_updated(restarted_as)
        if self.started is not None and self.started.status is Status.ROLLED_BACK and self.restart_on_rollback:
            self._restart_after_rollback(self.started)

    # --- public steps -------------------------------------------------------------------------

    def check(self) -> Update | None:
        """Fetch and verify the manifest; return the update for this platform, if it applies.

        Raises:
            UpdateError: the manifest could not be fetched (DownloadError) or trusted
                (ManifestError), the config cannot work (ConfigError), or the release is of a kind
                this install cannot take, a one-folder build for a one-file install say (InstallError).
        """
        with _boundary():
            return self._check()[0]

    def download(self, update: Update, progress: Progress | None = None) -> Path:
        """Download and verify ``update``; return the verified file (or folder) for :meth:`install`.

        ``progress`` gets (bytes done, bytes total). With a signed patch from exactly the
        installed file only the patch is fetched; a broken transfer is resumed (here, or by a later
        call); a one-folder install takes a folder delta when the release offers one.

        Raises:
            UpdateError: a refusal before downloading or a write that failed (InstallError), a
                transfer failure (DownloadError; a partial is kept when it can be resumed), bytes
                that do not match the signed ones (IntegrityError), another instance updating
                (InstallError), or no executable to update (ConfigError).
        """
        with _boundary(), self._locked_step():
            return self._download(update, progress)

    def install(self, staged: Path, version: str) -> None:
        """Pre-flight ``staged``, keep a backup of the running binary, swap ``staged`` in, start a
        trial (the new version must call :meth:`confirm` once it started fine). The new version
        runs from the next start, or at once with :meth:`restart`.

        Raises:
            UpdateError: the new version failed its self-test (PreflightFailedError; it is skipped on
                this machine from now on), its self-test was killed from outside
                (PreflightInterruptedError; tried again later), or the swap failed (InstallError); the
                installed version is then the one that was there.
        """
        with _boundary(), self._locked_step():
            self._install(staged, version)

    def restart(self, version: str) -> NoReturn:
        """Run the installed executable in place of this process (it will report ``version``).

        For the start-up path and console apps, from the main thread: POSIX replaces the process
        (exec), Windows starts the new version and waits for it. A GUI app with windows open uses
        :meth:`restart_on_exit` instead.

        Raises:
            UpdateError: called from another thread than the main one (a GUI's checker thread: use
                :meth:`restart_on_exit`), the new executable could not be started (InstallError; this
                process carries on), or there is no executable to update (ConfigError).
        """
        with _boundary():
            if threading.current_thread() is not threading.main_thread():
                raise UpdateError(
                    "restart() replaces the whole process and runs on the main thread only; from a GUI app call "
                    "restart_on_exit() and close the app's windows"
                )
            layout = self._require_layout()
            target = layout.entry_point(self.environ.get("GUPPER_LAUNCHER"))
            env = _restart.child_environment(self.environ, version)
            self._checkpoint(Checkpoint.RESTARTING)
            outcomes.settle()  # a trial outcome still being reported (a rollback's) goes out before exec
            if layout.restart_after_exit:  # the switch happens once nothing runs from the old version
                _restart.hand_over(str(target), list(self.argv[1:]), env)
            try:
                _restart.restart(str(target), list(self.argv[1:]), env, self.platform.os)
            except OSError as e:
                raise InstallError(
                    f"cannot start {target} ({e.strerror or e}); {version} runs from the next start"
                ) from e

    def restart_on_exit(self, version: str) -> None:
        """Start the installed ``version`` once this process has ended: for GUI apps that ask
        "restart now?" and then quit the way they always do (windows closed, work saved).

        Safe from any thread. When the process exits normally (its main function returns, or
        ``sys.exit``), the new version is started as a process of its own, which waits until this
        one has fully ended (at most 30 s) before it goes on: exactly one app runs afterwards, and
        nothing ties the two (no waiting parent, no job object on Windows). ``os._exit`` or a crash
        skips it: the new version then runs from the next start.

        Raises:
            ConfigError: there is no executable to update.
        """
        with _boundary():
            target = self._require_layout().entry_point(self.environ.get("GUPPER_LAUNCHER"))
            env = _restart.child_environment(self.environ, version)
            argv = list(self.argv[1:])
        with self._exit_launch_lock:
            first = self._exit_launch is None
            self._exit_launch = (str(target), argv, env)
        if first:
            import atexit

            atexit.register(self._launch_at_exit)

    def _launch_at_exit(self) -> None:
        with self._exit_launch_lock:
            launch, self._exit_launch = self._exit_launch, None
        if launch is None:
            return
        target, argv, env = launch
        try:
            self._checkpoint(Checkpoint.RESTARTING)
            _restart.launch_after_exit(target, argv, env, self.platform.os)
        except Exception as e:  # at exit: nobody to raise to
            log.warning(
                "gupper: could not start the new version (%s: %s); it runs from the next start", type(e).__name__, e
            )

    def confirm(self) -> None:
        """Tell the updater this version started fine: end its trial and drop the backup.

        Call it once the app's start-up has succeeded; until then a crash counts towards an
        automatic rollback. Never raises (a failure is logged): it sits on the start-up path too.
        """
        try:
            self._confirm()
        except Exception as e:
            log.warning(
                "gupper: could not confirm %s (%s: %s); it stays on trial",
                self.config.current_version,
                type(e).__name__,
                e,
            )

    def run(
        self,
        *,
        restart: bool = True,
        progress: Progress | None = None,
        on_available: Callable[[Update], bool] | None = None,
    ) -> Result:
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

    def check_periodically(
        self,
        interval: float,
        on_result: Callable[[Result], None],
        *,
        jitter: float = 0.2,
        first_check: float = 10.0,
        on_available: Callable[[Update], bool] | None = None,
    ) -> PeriodicCheck:
        """For long-running apps: check, download and install in a background thread, first
        ``first_check`` seconds after this call, then every ``interval`` seconds (each ± ``jitter``
        of it, so a fleet does not poll in lockstep).

        Installs never restart the app: ``on_result`` gets each :class:`Result` (``INSTALLED``
        means the new version runs from the next start; ask the user, then call
        :meth:`restart_on_exit` and close the app, or :meth:`restart`). ``on_available`` is as for
        :meth:`run`. Both are called in the checker's thread: a GUI app hands them to its event
        loop (:mod:`gupper.desktop` does). Checks are not starts: they never count towards a trial.
        Returns a handle whose ``stop()`` ends the thread.

        Raises:
            ConfigError: ``interval``, ``first_check`` or ``jitter`` is out of range.
        """
        if interval <= 0 or first_check < 0 or not 0 <= jitter < 1:
            raise ConfigError("check_periodically needs interval > 0, first_check >= 0 and 0 <= jitter < 1")
        from .periodic import PeriodicCheck

        checker = PeriodicCheck(self, interval, jitter, on_result, on_available, first_check)
        checker.start()
        return checker

    # --- the steps, under the lock ------------------------------------------------------------

    def _run(
        self, restart: bool, progress: Progress | None, on_available: Callable[[Update], bool] | None
    ) -> tuple[Result, str | None]:
        """``run`` without its safety net: the result, and the version to restart into (if any)."""
        layout = self.layout
        if layout is None:
            return Result(
                Status.DISABLED,
                self.disabled_reason or "updates are off: not running as a frozen app and no executable configured",
            ), None
        current = self.config.current_version
        started, self.started = self.started, None
        if started is not None:  # what this process start did: reported by the first run, once
            if started.status is Status.ROLLED_BACK:
                return started, started.version if restart else None
            return started, None  # just updated: no check in this run (no update loops)
        try:
            with self._lock() as locked:
                if not locked:
                    log.info("gupper: another instance is updating %s; carrying on with %s", self.config.app, current)
                    return Result(Status.BUSY, "another instance is updating", version=current), None
                self._check_state_folder()
                result = self._update(layout, progress, on_available)
        except UpdateError as e:
            log.warning("gupper: update failed, carrying on with %s: %s", self.current, e)
            return Result(Status.FAILED, str(e), error=e, version=str(self.current)), None
        if result.status is Status.INSTALLED and restart:
            log.info("gupper: installed %s, restarting", result.version)
            return result, result.version
        return result, None

    def _update(
        self, layout: InstallLayout, progress: Progress | None, on_available: Callable[[Update], bool] | None
    ) -> Result:
        """Check, and install what the check found; the caller holds the lock."""
        update, reason = self._check()
        if update is None:
            self.downloads.drop_unwanted(None, layout.partial)
            return Result(Status.UP_TO_DATE, reason, version=str(self.current))
        new_version = str(update.entry.version)
        self.downloads.drop_unwanted(update.entry.sha256, layout.partial)
        if layout.installed(update.entry):
            # Another instance installed it after we started: run it rather than fetch it again.
            log.info("gupper: %s was installed by another instance", new_version)
        else:
            refuse_early(layout, update.entry)
            if on_available is not None and not on_available(update):
                return Result(
                    Status.DEFERRED,
                    f"{new_version} is available; the app chose not to install it now",
                    version=str(self.current),
                )
            log.info("gupper: %s", move_line(self.config.app, self.current, update.entry))
            staged = self._download(update, progress)
            self._install(staged, new_version)
        return Result(Status.INSTALLED, f"installed {new_version}; it runs from the next start", version=new_version)

    def _check(self) -> tuple[Update | None, str]:
        """Fetch the manifest, accept it (:func:`gupper.trust.accept_manifest`), remember what that
        says, and pick this install's update."""
        state = self.state_file.load()
        cache = ManifestCache(self.state_file.directory, self.channel)
        body, etag, from_cache = self._fetch_manifest(cache)
        seen = state.channels.get(self.channel, ChannelRecord())
        try:
            accepted = accept_manifest(
                body,
                state.trusted(self.trusted),
                seen,
                app=self.config.app,
                channel=self.channel,
                now=self.clock(),
            )
        except ManifestError:
            if from_cache:
                # The copy no longer passes (it expired, or state moved on): drop it, so that the
                # next start asks unconditionally instead of failing on it again.
                with contextlib.suppress(OSError):
                    cache.drop()
            raise
        manifest = accepted.manifest
        if accepted.adopt is not None:
            state.adopt(accepted.adopt, self.trusted)
            log.info(
                "gupper: key rotation: now trusting %d key(s), threshold %d",
                len(accepted.adopt.keys),
                accepted.adopt.threshold,
            )
        if accepted.record is not None:
            state.channels[self.channel] = accepted.record
            self._save_state(state)
        if not from_cache:
            self._cache_manifest(cache, etag, body)
        self._checkpoint(Checkpoint.CHECKED)
        kind = self.layout.kind if self.layout is not None else BINARY
        decision = choose_update(
            manifest, pick_key(manifest.entries, self.platforms), self.current, state.install_id, (kind,)
        )  # gupper#16
        log.debug("gupper: %s", decision.reason)
        if decision.refused:  # this install never updates until someone reinstalls it: say so, as a failure
            raise InstallError(decision.reason)
        if decision.entry is None:
            return None, decision.reason
        bad = state.bad_versions.get(str(decision.entry.version))
        if bad is not None:
            msg = f"skipping {decision.entry.version}, marked bad on this machine ({bad}); waiting for a newer release"
            log.info("gupper: %s", msg)
            return None, msg
        url = urljoin(self.config.manifest_url, decision.entry.url)
        check_url(url, self.config.allow_insecure_loopback)
        fetch = self.layout.download_size(decision.entry, url) if self.layout is not None else None
        return Update(self.current, decision.entry, url, manifest, fetch), decision.reason

    def _fetch_manifest(self, cache: ManifestCache) -> tuple[bytes, str | None, bool]:
        """The manifest's bytes, its ETag and whether they are the cached copy (a ``304`` to the
        ``If-None-Match`` sent with the cached copy's ETag)."""
        cached = cache.load(self.config.max_manifest_bytes)
        from .fetch import Fetcher  # the transport loads with the first request (gupper.transfer)

        with Fetcher(self.fetch_config) as fetcher:
            fetched = fetcher.get_small(
                self.config.manifest_url,
                max_bytes=self.config.max_manifest_bytes,
                timeout=self.config.manifest_timeout,
                etag=cached[0] if cached else None,
            )
        if fetched is None and cached is not None:
            log.debug("gupper: manifest not modified (304)")
            return cached[1], cached[0], True
        assert fetched is not None  # get_small returns None only to the ETag we sent
        return fetched.body, fetched.etag, False

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

    def _download(self, update: Update, progress: Progress | None = None) -> Path:
        """:meth:`download` without the lock: refusals that need no download, then the layout stages it."""
        layout = self._require_layout()
        refuse_early(layout, update.entry)
        return layout.stage(update, progress)

    def _install(self, staged: Path, version: str) -> None:
        """:meth:`install` without the lock: the layout pre-flights and swaps; the trial is recorded
        just before the swap (write-ahead), so an install whose trial cannot be saved never happens."""
        layout = self._require_layout()
        previous = str(self.current)

        def start_trial(backup: Path) -> None:
            state = self.state_file.load()
            state.trial = Trial(version=version, previous_version=previous, target=layout.trial_key, backup=str(backup))
            state.preflight_interrupted.pop(version, None)
            try:
                self.state_file.save(state)
            except OSError as e:
                raise InstallError(
                    f"cannot record the trial of {version} in {self.state_file.directory} ({e.strerror or e}), so a "
                    f"crashing {version} could not be rolled back; not installed: make the folder writable or set "
                    "UpdaterConfig.state_dir"
                ) from e
            self._checkpoint(Checkpoint.TRIAL_STARTED)

        try:
            backup = layout.install(staged, version, previous, lambda c: self._preflight(c, version), start_trial)
        except PreflightFailedError as e:
            self._mark_bad(version, str(e))
            outcomes.report(self.config, self.fetch_config, self.platform, version, outcomes.Outcome.PREFLIGHT_FAILED)
            raise
        except PreflightInterruptedError as e:
            outcomes.report(
                self.config, self.fetch_config, self.platform, version, outcomes.Outcome.PREFLIGHT_INTERRUPTED
            )
            if self._count_interrupted_preflight(version) >= MAX_PREFLIGHT_INTERRUPTIONS:
                reason = f"its self-test was interrupted {MAX_PREFLIGHT_INTERRUPTIONS} times in a row"
                self._mark_bad(version, reason)
                raise PreflightFailedError(f"{e}; {reason}, so {version} is skipped on this machine") from e
            raise
        layout.settle(version, backup)

    def _preflight(self, candidate: Path, version: str) -> None:
        """Self-test ``candidate``; a one-file build extracts itself into a folder of Gupper's own,
        emptied before and after, so a self-test killed mid-way leaves nothing in the user's temp."""
        env = _restart.child_environment(self.environ, version)
        scratch = scratch_dir(self.config.app)
        if scratch is not None:
            env.update(TMPDIR=str(scratch), TMP=str(scratch), TEMP=str(scratch))
        try:
            preflight(candidate, version, env, self.config.preflight_timeout)
        finally:
            remove_scratch_dir(self.config.app)

    def _count_interrupted_preflight(self, version: str) -> int:
        state = self.state_file.load()
        count = state.preflight_interrupted.get(version, 0) + 1
        state.preflight_interrupted[version] = count
        self._save_state(state)
        return count

    def _confirm(self) -> None:
        state = self.state_file.load()
        trial = state.trial
        if trial is None or trial.version != self.config.current_version:
            return
        state.trial = None
        self._save_state(state)
        if self.layout is not None:
            self.layout.drop_backups(None)
        log.debug("gupper: %s confirmed healthy", trial.version)
        outcomes.report(self.config, self.fetch_config, self.platform, trial.version, outcomes.Outcome.CONFIRMED)

    def _begin(self, layout: InstallLayout) -> Result | None:
        """Once per process start (when the updater is created): remove what a killed run left,
        count this start against a pending trial and roll back a version that used up its trial
        (the ``ROLLED_BACK`` result). Never raises: a failure is one warning line, and the app
        starts with what it has."""
        try:
            with self._lock() as locked:
                if not locked:
                    log.debug("gupper: another instance is updating; this start is not counted")
                    return None
                self._cleanup(layout)
                return self._count_start(layout)
        except UpdateError as e:
            log.warning("gupper: %s", e)
        except Exception as e:  # a bug in Gupper must not stop the app
            self._internal_error(e)
        return None

    def _just_updated(self, restarted_as: str) -> Result:
        """This process was started by an update (exec, or ``restart_on_exit``): say so, once."""
        current = self.config.current_version
        if restarted_as != current and self.layout is not None and self.layout.switch_pending(restarted_as):
            msg = f"{restarted_as} is installed; it runs once no instance of {current} runs any more"
            log.info("gupper: %s", msg)
            return Result(Status.INSTALLED, msg, version=restarted_as)  # no restart again: another instance holds it
        if restarted_as != current:
            msg = (
                f"the release installed as {restarted_as} reports version {current}; republish it with a "
                "matching version"
            )
            log.warning("gupper: %s", msg)
            return Result(Status.FAILED, msg, version=current)
        log.info("gupper: now running %s", restarted_as)
        return Result(Status.JUST_UPDATED, f"updated to {restarted_as}", version=restarted_as)

    def _restart_after_rollback(self, rolled: Result) -> None:
        """The running version failed its trial: start the one rolled back to in its place."""
        assert rolled.version is not None
        try:
            self.restart(rolled.version)
        except Exception as e:
            log.warning(
                "gupper: could not restart into %s (%s: %s); it runs from the next start",
                rolled.version,
                type(e).__name__,
                e,
            )

    def _cleanup(self, layout: InstallLayout) -> None:
        """At start, under the lock: remove what a killed or failed run left behind, keeping only
        a partial download the next attempt can resume and the backup a trial refers to."""
        layout.cleanup()
        self.state_file.remove_stale_temp_files()
        remove_scratch_dir(self.config.app)
        self.downloads.tidy(layout.partial)

    def _count_start(self, layout: InstallLayout) -> Result | None:
        """Count this process start against a pending trial; roll back when it has failed too often."""
        state = self.state_file.load()
        trial = state.trial
        if trial is None or trial.target != layout.trial_key:
            layout.drop_backups(None)  # no trial refers to them (killed between backup and swap, or confirmed)
            return None
        layout.drop_backups(Path(trial.backup))  # earlier ones a running image kept (Windows)
        if trial.version != self.config.current_version:
            if layout.switch_pending(trial.version):
                return None  # installed, not switched in yet (another instance ran): its trial starts when it runs
            state.trial = None  # the trial version is not what runs (swap never happened, or undone by hand)
            self._save_state(state)
            layout.drop_backups(None)
            return None
        trial.starts += 1
        if trial.starts <= self.config.trial_starts:
            self._save_state(state)
            return None
        reason = (
            f"started {trial.starts - 1} times without Updater.confirm() (it crashed at start, "
            "or the app never calls confirm())"
        )
        backup = Path(trial.backup)
        if not layout.has_backup(backup):
            state.trial = None
            state.bad_versions[trial.version] = reason
            self._save_state(state)
            raise InstallError(
                f"{trial.version} {reason}, but the backup of {trial.previous_version} is gone; reinstall the app"
            )
        layout.roll_back(backup)
        state.trial = None
        state.bad_versions[trial.version] = reason
        self._save_state(state)
        layout.drop_backups(None)
        outcomes.report(self.config, self.fetch_config, self.platform, trial.version, outcomes.Outcome.ROLLED_BACK)
        msg = (
            f"{trial.version} {reason}; rolled back to {trial.previous_version}, and "
            f"{trial.version} is skipped on this machine"
        )
        log.warning("gupper: %s", msg)
        return Result(Status.ROLLED_BACK, msg, version=trial.previous_version)

    def _check_state_folder(self) -> None:
        """Refuse, before the check, a state folder that cannot be written: without it a new
        version's trial cannot be recorded, and a crashing release could not be rolled back.

        Raises:
            InstallError: naming the folder and what to do.
        """
        try:
            self.state_file.probe()
        except OSError as e:
            raise InstallError(
                f"cannot use the updater's state folder {self.state_file.directory} ({e.strerror or e}); make it "
                "writable or set UpdaterConfig.state_dir"
            ) from e

    @contextlib.contextmanager
    def _lock(self) -> Iterator[bool]:
        """One updater per install at a time, whichever user runs it (the lock file sits beside the
        install: a terminal server, fast user switching); the others carry on without waiting. An
        install folder where no file can be made (read-only: it cannot be updated either) falls
        back to a lock in this user's state folder.

        Re-entrant for the thread that holds it (``run`` calls ``download`` and ``install``);
        another thread of this process sees it busy, like another process does.
        """
        me = threading.get_ident()
        if self._lock_owner == me:
            yield True
            return
        lock, locked = None, False
        if self.layout is not None:
            lock = ExclusiveLock(self.layout.lock_path)
            try:
                locked = lock.acquire()
            except OSError as e:
                log.debug("gupper: no update lock beside the install (%s); using the state folder's", e)
                lock = None
        if lock is None:
            lock = ExclusiveLock(self.state_file.directory / "update.lock")
            try:
                self.state_file.directory.mkdir(parents=True, exist_ok=True)
                locked = lock.acquire()
            except OSError as e:
                raise InstallError(
                    f"cannot use the updater's state folder {self.state_file.directory} "
                    f"({e.strerror or e}); make it writable or set UpdaterConfig.state_dir"
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

    # --- small helpers ------------------------------------------------------------------------

    def _internal_error(self, e: BaseException) -> Result:
        msg = (
            f"internal error ({type(e).__name__}: {str(e)[:300]}); carrying on with "
            f"{self.config.current_version}; please report this to the app's publisher"
        )
        log.warning("gupper: %s", msg)
        return Result(Status.FAILED, msg, version=self.config.current_version)

    def _mark_bad(self, version: str, reason: str) -> None:
        state = self.state_file.load()
        state.bad_versions[version] = reason
        self._save_state(state)

    def _save_state(self, state: ClientState) -> None:
        try:
            self.state_file.save(state)
        except OSError as e:
            # Not fatal: the update itself is verified; only memory across runs is lost.
            log.warning(
                "gupper: cannot save %s (%s); what it keeps (the trial of a new version, versions marked bad, the "
                "newest manifest serial seen) is not remembered past this run: make the folder writable",
                self.state_file.path,
                e.strerror or e,
            )

    def _checkpoint(self, step: Checkpoint) -> None:
        if self.checkpoint is not None:
            self.checkpoint(step)

    def _require_layout(self) -> InstallLayout:
        if self.layout is None:
            raise ConfigError("no executable to update: not a frozen app; set UpdaterConfig.executable")
        return self.layout


@contextlib.contextmanager
def _boundary() -> Iterator[None]:
    """The public steps raise UpdateError and nothing else: a bug in Gupper is reported as one."""
    try:
        yield
    except UpdateError:
        raise
    except Exception as e:
        raise UpdateError(
            f"internal error ({type(e).__name__}: {str(e)[:300]}); please report this to the app's publisher"
        ) from e


__all__ = ["Checkpoint", "Result", "Status", "Update", "Updater", "UpdaterConfig"]
