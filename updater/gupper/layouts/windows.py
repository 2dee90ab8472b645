"""A one-folder app on Windows (``archive`` releases) whose ``current`` is the app's own folder.

::

    <root>\\app.exe              the launcher (launcher/launcher.c): shortcuts, pins and PATH point here
    <root>\\current\\app.exe       the app, at this one path for every version: the process users see
    <root>\\current\\_internal\\...
    <root>\\versions\\<version>\\  a new version waiting to be switched in, or the previous one (rollback)
    <root>\\next                  a pending switch: "versions\\<new>" and "versions\\<old>"

Windows can neither replace nor move a running program, nor the folder it runs from, so the switch
cannot be one rename while the app runs. The update builds and checks ``versions\\<new>`` as any
one-folder update does, records the trial, and writes ``next``; the launcher makes the switch at the
next start, before the app runs and only when no process runs from ``current`` (two folder
renames, finished by the next start if a kill falls between them). The app restarts through the
launcher after it has ended (:meth:`restart_after_exit`). Because the process always runs from
``<root>\\current\\app.exe``, what Windows keys on a program's path stays across updates:
firewall rules, taskbar pins, compatibility and DPI settings, the notification identity of a
shortcut. See docs/packages.md, "Windows: one path for every version".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from .. import folder as _folder
from .. import install as _install
from ..checkpoints import Checkpoint
from ..errors import InstallError, PreflightFailedError, PreflightInterruptedError
from ..results import Update
from ..transfer import Progress
from ..wire.manifest import Entry
from . import staging
from .folder import OneFolder

log = logging.getLogger("gupper")

NEXT = "next"


class WindowsFolder(OneFolder):
    """The :class:`~gupper.layouts.InstallLayout` of a Windows one-folder app run from ``<root>\\current``."""

    restart_after_exit = True

    @property
    def next_path(self) -> Path:
        """The pending switch's file."""
        return self.folder.root / NEXT

    def pending(self) -> tuple[str, str] | None:
        """The switch ``next`` asks for: (the version to run, the version ``current`` holds now)."""
        try:
            lines = (self.ctx.file_ops() or _install.FileOps()).read_text(str(self.next_path)).splitlines()
        except OSError:
            return None
        names = [line.strip().replace("\\", "/").rsplit("/", 1)[-1] for line in lines if line.strip()]
        return (names[0], names[1]) if len(names) == 2 else None

    def installed_version(self) -> str | None:
        """The version running from ``current`` (this process: nothing else runs from there)."""
        return self.ctx.config.current_version

    def installed(self, entry: Entry) -> bool:
        """A switch to the entry's version is pending: it runs from the next start."""
        return self.switch_pending(str(entry.version))

    def switch_pending(self, version: str) -> bool:
        """Whether ``next`` still asks for ``version``: installed, not switched in yet (another instance ran)."""
        pending = self.pending()
        return pending is not None and pending[0] == version

    def source(self) -> staging.Source:
        """Built in ``versions\\``, from the running version's folder ``current``."""
        base = super().source()
        return staging.Source(
            installed=self.installed_version(),
            installed_dir=self.folder.current,
            temp_dir=base.temp_dir,
            partial=base.partial,
            beside=base.beside,
            where=base.where,
        )

    def cleanup(self) -> None:
        """Temp files and partial versions; a ``next`` that is done (the version it asks for runs) or
        that names nothing to switch to."""
        super().cleanup()
        _install.cleanup_leftovers(self.next_path, self.ctx.file_ops())  # a switch file a kill left half-written
        pending = self.pending()
        if self.next_path.exists() and (
            pending is None
            or pending[0] == self.ctx.config.current_version
            or not (self.folder.version_dir(pending[0]) / self.folder.exe).is_file()
        ):
            with contextlib.suppress(OSError):
                (self.ctx.file_ops() or _install.FileOps()).unlink(str(self.next_path))

    def check_writable(self) -> None:
        """The launcher is there to make the switch; files can be made in the root and ``versions\\``.

        Raises:
            InstallError: no launcher, no write permission.
        """
        launcher = self.folder.root / self.folder.exe
        if not launcher.is_file():
            raise InstallError(
                f"cannot update {self.folder.current}: the launcher {launcher} that switches versions is missing; "
                "reinstall the app (docs/packages.md, 'First install')"
            )
        _install.check_writable(self.next_path, self.ctx.os_name, self.ctx.file_ops())
        self._make_versions()
        _install.check_writable(self.folder.versions / "x", self.ctx.os_name, self.ctx.file_ops())

    def _make_versions(self) -> None:
        """``versions\\`` (the first update makes it).

        Raises:
            InstallError: it cannot be made.
        """
        try:
            self.folder.versions.mkdir(exist_ok=True)
        except OSError as e:
            raise InstallError(
                f"cannot make {self.folder.versions}: "
                f"{_install.describe_write_error(e, self.folder.root, self.ctx.os_name)}"
            ) from e

    def stage(self, update: Update, progress: Progress | None) -> Path:
        """Built among the version folders (``versions\\`` made if this is the first update)."""
        self._make_versions()
        return super().stage(update, progress)

    def install(
        self,
        staged: Path,
        version: str,
        previous: str,
        preflight: Callable[[Path], None],
        start_trial: Callable[[Path], None],
    ) -> Path:
        """``staged`` becomes ``versions\\<version>``, is pre-flighted, its hook run; the trial is
        recorded and the switch written to ``next`` for the launcher. The backup is
        ``versions\\<previous>``, where the switch moves ``current``."""
        ctx, layout = self.ctx, self.folder
        ops = ctx.file_ops() or _install.FileOps()
        candidate = _folder.publish_version(layout, staged, version, ops, ctx.os_name) / layout.exe
        try:
            preflight(candidate)
            ctx.checkpoint(Checkpoint.PREFLIGHT_PASSED)
            from .. import restart as _restart

            env = _restart.child_environment(ctx.environ, version)
            _folder.run_post_install(layout, version, previous, env, ctx.config.preflight_timeout, ctx.os_name)
        except (PreflightFailedError, PreflightInterruptedError):
            _folder.remove_tree(candidate.parent, ops)
            raise
        backup = layout.version_dir(previous)
        if backup.exists():  # a stale folder of the running version: the switch must not find one there
            _folder.remove_tree(backup, ops)
            if backup.exists():
                raise InstallError(f"cannot clear {backup} for the switch to {version}; it is tried again later")
        start_trial(backup)
        self._write_next(version, previous)
        ctx.checkpoint(Checkpoint.SWAPPED)
        log.info("gupper: %s runs from %s once the app has restarted", version, layout.current / layout.exe)
        return backup

    def roll_back(self, backup: Path) -> None:
        """Ask the launcher for the switch back: ``backup`` into ``current``, the failed version out."""
        self._write_next(backup.name, self.ctx.config.current_version)

    def has_backup(self, backup: Path) -> bool:
        """The previous version's folder, where the switch moved it, still holds the program."""
        return (backup / self.folder.exe).is_file()

    def entry_point(self, launcher: str | None) -> Path:
        """The launcher ``<root>\\<exe>``: it makes a pending switch, then runs ``current``."""
        return self.folder.root / self.folder.exe

    def _write_next(self, to: str, from_: str) -> None:
        """``next`` written whole (temp name, then one rename), durably."""
        ops = self.ctx.file_ops() or _install.FileOps()
        temp = _install.temp_path_for(self.next_path)
        text = f"{_folder.VERSIONS}\\{to}\r\n{_folder.VERSIONS}\\{from_}\r\n".encode()
        try:
            ops.write_file(str(temp), text)
            _install.retry(lambda: ops.replace(str(temp), str(self.next_path)), ops, "writing the switch")
            ops.fsync_dir(str(self.folder.root))
        except OSError as e:
            with contextlib.suppress(OSError):
                ops.unlink(str(temp))
            raise InstallError(
                f"cannot write the switch to {to} in {self.folder.root}: "
                f"{_install.describe_write_error(e, self.folder.root, self.ctx.os_name)}; the installed version was "
                "left as it was"
            ) from e
