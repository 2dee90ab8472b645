"""A macOS app bundle (``app`` releases): the whole ``<name>.app`` swapped for the new one, as Sparkle does.

The new version is built beside the bundle (:mod:`gupper.layouts.staging`: a folder delta from
the installed bundle, or the archive of the new bundle's ``Contents/``), freed of the quarantine
attribute, checked against the running bundle's Team ID (:func:`gupper.bundle.check_team`) and
pre-flighted from where it was built; then it takes a backup name, the trial is recorded, and the
two bundles are swapped in one atomic exchange (:func:`gupper.bundle.swap`). The old bundle, now at
the backup name, is what a rollback swaps back. The app restarts through
``<name>.app/Contents/MacOS/<exe>``. See docs/packages.md, "App bundles".

Nothing inside a bundle is ever written: its code signature seals every file under ``Contents/``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .. import bundle as _bundle
from .. import folder as _folder
from .. import install as _install
from ..checkpoints import Checkpoint
from ..errors import InstallError, PreflightFailedError
from ..results import Update
from ..transfer import Progress
from ..wire.files import LIST_NAME
from ..wire.manifest import APP, Entry
from . import staging
from .base import Context

log = logging.getLogger("gupper")


class AppBundle:
    """The :class:`~gupper.layouts.InstallLayout` of the app bundle ``bundle`` whose main program is ``exe``."""

    kind = APP
    folder = None

    restart_after_exit = False

    def __init__(self, bundle: Path, exe: str, ctx: Context, running: Path) -> None:
        """``running`` is the executable this process runs (resolved)."""
        self.bundle, self.exe, self.ctx, self.running = bundle, exe, ctx, running

    @property
    def trial_key(self) -> str:
        """The bundle's path."""
        return str(self.bundle)

    @property
    def partial(self) -> Path:
        """``.<name>.app.gupper-partial`` beside the bundle."""
        return _install.partial_path_for(self.bundle)

    @property
    def space_dir(self) -> Path:
        """The bundle's folder (``/Applications``, ``~/Applications``)."""
        return self.bundle.parent

    @property
    def lock_path(self) -> Path:
        """``.<name>.app.gupper-lock`` beside the bundle."""
        return _install.lock_path_for(self.bundle)

    def hold_in_use(self) -> object | None:
        """This process's bundle, held until it exits (it follows the bundle when the update swaps it
        to a backup name): the backup is not removed under it."""
        from .._lock import hold_in_use

        return hold_in_use(self.running)

    def cleanup(self) -> None:
        """Half-built new bundles and temp files beside the bundle."""
        _bundle.cleanup_leftovers(self.bundle, self._ops())

    def check_writable(self) -> None:
        """Not a translocated copy; files can be made beside the bundle.

        Raises:
            InstallError: App Translocation, no write permission, a read-only volume.
        """
        _bundle.check_not_translocated(self.bundle)
        _install.check_writable(self.bundle, self.ctx.os_name, self.ctx.file_ops())

    def installed(self, entry: Entry) -> bool:
        """The bundle's ``Info.plist`` gives the entry's version (``CFBundleShortVersionString``)."""
        return _bundle.bundle_version(self.bundle) == str(entry.version)

    def source(self) -> staging.Source:
        """Built beside the bundle, from the running version's bundle."""
        return staging.Source(
            installed=self.ctx.config.current_version,
            installed_dir=self.bundle,
            temp_dir=lambda: _install.temp_path_for(self.bundle),
            partial=self.partial,
            beside=self.bundle,
            where=self.bundle.parent,
        )

    def download_size(self, entry: Entry, url: str) -> int:
        """The signed total of the folder delta from the running version, when smaller; else the archive."""
        return staging.download_size(self.source(), entry)

    def stage(self, update: Update, progress: Progress | None) -> Path:
        """The new bundle as a verified temp folder beside the installed one; its file list is not kept
        in it (an unsealed file in a bundle fails ``codesign --verify --strict``)."""
        staged = staging.stage(self.ctx, self.source(), update, progress)
        (staged / LIST_NAME).unlink(missing_ok=True)
        return staged

    def install(
        self,
        staged: Path,
        version: str,
        previous: str,
        preflight: Callable[[Path], None],
        start_trial: Callable[[Path], None],
    ) -> Path:
        """Check and pre-flight the new bundle where it was built, give it a backup name, record the
        trial, swap it with the installed bundle; the old bundle, at the backup name, is returned."""
        ctx, ops = self.ctx, self._ops()
        try:
            program = _bundle.executable_in(staged, self.exe)
            if not program.is_file():
                raise PreflightFailedError(
                    f"the new version {version} has no Contents/MacOS/{self.exe} (the bundle's program must keep its "
                    "name); not installed"
                )
            _bundle.strip_quarantine(staged, ops)
            if ctx.config.check_team_id:
                _bundle.check_team(self.bundle, staged, version, ops)
            preflight(program)
        except BaseException:  # a refused pre-flight included: nothing of it stays
            _folder.remove_tree(staged, ops)
            raise
        ctx.checkpoint(Checkpoint.PREFLIGHT_PASSED)
        backup = _install.backup_path_for(self.bundle)
        try:
            _install.retry(lambda: ops.rename(str(staged), str(backup)), ops, f"naming {version} for the swap")
        except OSError as e:
            _folder.remove_tree(staged, ops)
            raise InstallError(
                f"cannot put {version} beside {self.bundle.name}: "
                f"{_install.describe_write_error(e, self.bundle.parent, ctx.os_name)}"
            ) from e
        ctx.checkpoint(Checkpoint.BACKED_UP)
        try:
            start_trial(backup)
            _bundle.swap(backup, self.bundle, ops)
        except BaseException:
            _folder.remove_tree(backup, ops)  # the new bundle, never swapped in
            raise
        ctx.checkpoint(Checkpoint.SWAPPED)
        if getattr(sys, "frozen", False) and _is_within(self.running, self.bundle):
            # This process goes on from its old bundle, now at the backup name: its later imports too.
            _bundle.follow_moved_bundle(self.bundle, backup)
        return backup

    def settle(self, version: str, backup: Path) -> None:
        """Remove older backups (not the one this trial may need, not one a running process uses)."""
        _bundle.remove_backups(self.bundle, self.exe, backup, self._ops())

    def has_backup(self, backup: Path) -> bool:
        """The backup still holds the bundle's program."""
        return _bundle.executable_in(backup, self.exe).is_file()

    def roll_back(self, backup: Path) -> None:
        """Swap the backup back in (the failed version goes to the backup's name, removed later)."""
        _bundle.swap(backup, self.bundle, self._ops())

    def drop_backups(self, keep: Path | None) -> None:
        """Remove the backups but ``keep`` that no running process uses."""
        _bundle.remove_backups(self.bundle, self.exe, keep, self._ops())

    def switch_pending(self, version: str) -> bool:
        """Never: the swap is made by the install itself."""
        return False

    def entry_point(self, launcher: str | None) -> Path:
        """``<name>.app/Contents/MacOS/<exe>``: the bundle's program, where the new version now is."""
        return _bundle.executable_in(self.bundle, self.exe)

    def _ops(self) -> _install.FileOps:
        return self.ctx.file_ops() or _install.FileOps()


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True
