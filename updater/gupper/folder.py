"""The files of a one-folder install (``type: archive``): its paths and the steps that change them.

:class:`gupper.layouts.folder.OneFolder` drives these for the updater (as
:class:`gupper.layouts.single.SingleFile` drives :mod:`gupper.install` for one-file apps).

::

    <root>/versions/1.0.0/app, _internal/...     one folder per version, side by side
    <root>/versions/2.0.0/app, _internal/...
    <root>/current -> versions/2.0.0             the stable entry point

POSIX: ``current`` is a relative symlink, switched by creating a new link under a temp name and
renaming it over the old one (atomic: a start sees the old version or the new one). Windows has
no usable symlinks for users: ``current`` is a small file holding the version, replaced by an
atomic rename, which a launcher reads. A version folder appears under its final name only once
fully extracted and verified (it is built under a temp name and renamed). The current version
and the one before it are kept (rollback); older ones are pruned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import install as _install
from .errors import InstallError, PreflightFailedError
from .records import record

if TYPE_CHECKING:
    from .selftest import JobApi

log = logging.getLogger("gupper")

VERSIONS = "versions"
CURRENT = "current"
KEEP = 2


@record(frozen=True)
class FolderLayout:
    """A one-folder app installed under ``root``; ``exe`` is the executable's name in each version folder."""

    root: Path
    exe: str

    @property
    def versions(self) -> Path:
        """The folder holding one folder per version."""
        return self.root / VERSIONS

    @property
    def current(self) -> Path:
        """The entry point: a symlink (POSIX) or pointer file (Windows)."""
        return self.root / CURRENT

    def version_dir(self, version: str) -> Path:
        """Where ``version`` lives."""
        return self.versions / version

    def current_version(self, os_name: str, ops: _install.FileOps | None = None) -> str | None:
        """The version ``current`` names, or None when it names none."""
        try:
            text = (
                (ops or _install.FileOps()).read_text(str(self.current)).strip()
                if os_name == "windows"
                else os.readlink(self.current)
            )
        except OSError:
            return None
        name = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        return name or None

    def entry_point(self, os_name: str, ops: _install.FileOps | None = None, launcher: str | None = None) -> Path:
        """What to run: ``current/<exe>`` through the link; on Windows the launcher that started
        the app (``GUPPER_LAUNCHER``, only if it is this install's ``<root>/<exe>``), else the
        version folder ``current`` names."""
        if (
            os_name == "windows"
            and launcher
            and os.path.normcase(os.path.normpath(launcher)) == os.path.normcase(str(self.root / self.exe))
        ):
            return Path(launcher)
        if os_name == "windows":
            version = self.current_version(os_name, ops)
            if version is None:
                raise InstallError(f"{self.current} names no version; reinstall the app")
            return self.version_dir(version) / self.exe
        return self.current / self.exe


def detect(executable: Path, install_root: str | None) -> FolderLayout | None:
    """The folder layout the running executable belongs to: ``install_root`` when configured, else
    recognised from the path ``<root>/versions/<version>/<exe>`` with a ``<root>/current`` beside."""
    root = folder_root(executable, install_root)
    return FolderLayout(root, executable.name) if root is not None else None


def folder_root(executable: Path, install_root: str | None) -> Path | None:
    """The root of the one-folder install the executable belongs to: ``install_root`` when
    configured, else recognised from the path ``<root>/versions/<version>/<exe>`` with a
    ``<root>/current`` beside; None for a one-file install."""
    if install_root is not None:
        return Path(os.path.realpath(install_root))
    versions = executable.parent.parent
    if versions.name == VERSIONS and os.path.lexists(versions.parent / CURRENT):
        return versions.parent
    return None


def current_folder_root(executable: Path) -> Path | None:
    """The root of a Windows one-folder install whose app runs from ``<root>\\current\\<exe>``, a
    folder (the launcher at ``<root>\\<exe>``, or ``versions\\`` beside), or None."""
    folder = executable.parent
    root = folder.parent
    if folder.name.lower() != CURRENT or folder.is_symlink():
        return None
    return root if (root / executable.name).is_file() or (root / VERSIONS).is_dir() else None


def switch(layout: FolderLayout, version: str, os_name: str, ops: _install.FileOps | None = None) -> None:
    """Point ``current`` at ``version`` in one atomic step, durably."""
    ops = ops or _install.FileOps()
    if not (layout.version_dir(version) / layout.exe).is_file():
        raise InstallError(
            f"cannot switch to {version}: {layout.version_dir(version) / layout.exe} is "
            "missing; the installed version was left as it was"
        )
    temp = _install.temp_path_for(layout.current)
    try:
        if os_name == "windows":
            ops.write_file(str(temp), f"{VERSIONS}\\{version}\n".encode())
        else:
            ops.symlink(f"{VERSIONS}/{version}", str(temp))
        ops.barrier(str(layout.version_dir(version)))  # macOS: the version's files on stable storage before the switch
        _install.retry(lambda: ops.replace(str(temp), str(layout.current)), ops, f"switching {layout.current}")
        ops.fsync_dir(str(layout.root))
    except OSError as e:
        with contextlib.suppress(OSError):
            ops.unlink(str(temp))
        raise InstallError(
            f"could not switch {layout.current} to {version}: {e.strerror or e}; the installed "
            "version was left as it was"
        ) from e


def run_post_install(
    layout: FolderLayout,
    version: str,
    previous: str,
    env: Mapping[str, str],
    timeout: float,
    os_name: str | None = None,
    *,
    jobs: JobApi | None = None,
    popen: Callable[..., Any] | None = None,
) -> None:
    """Run the package's post-install hook, if it declares one, before ``current`` is switched.

    It runs in the new version's folder with ``GUPPER_INSTALL_ROOT``, ``GUPPER_NEW_VERSION`` and
    ``GUPPER_PREVIOUS_VERSION`` set, as a process tree of its own like the pre-flight (on Windows
    without a console window, so a windowed app's update flashes none; killed with everything it
    started at the timeout). A non-zero exit, a timeout or a hook that cannot start aborts the
    switch (PreflightFailedError: the version is marked bad). ``jobs`` and ``popen`` are for tests.
    """
    from .selftest import run_tree
    from .wire.files import LIST_NAME, FileList  # only when a folder update installs

    folder = layout.version_dir(version)
    try:
        data = (folder / LIST_NAME).read_bytes()
    except FileNotFoundError:
        return
    hook = FileList.from_bytes(data).post_install
    if hook is None:
        return
    run_env = dict(
        env, GUPPER_INSTALL_ROOT=str(layout.root), GUPPER_NEW_VERSION=version, GUPPER_PREVIOUS_VERSION=previous
    )
    try:
        code, _out, _err = run_tree(
            [str(folder / hook)], run_env, timeout, cwd=folder, os_name=os_name, jobs=jobs, popen=popen
        )
    except OSError as e:
        raise PreflightFailedError(
            f"the post-install hook of {version} cannot be started ({e.strerror or e}); not installed"
        ) from e
    if code is None:
        raise PreflightFailedError(
            f"the post-install hook of {version} did not finish within {timeout:g} s; not installed"
        )
    if code != 0:
        raise PreflightFailedError(f"the post-install hook of {version} failed (exit code {code}); not installed")
    log.info("gupper: post-install hook of %s done", version)


def staging_dir(layout: FolderLayout) -> Path:
    """A fresh temp folder beside the version folders (same filesystem) to build a version in.

    Its name is short (``.<6 hex>.tmp``, 11 characters): every file of the new version sits under
    it until it is renamed to ``versions/<version>``, and on Windows a path past 260 characters
    (MAX_PATH) cannot be written unless long paths are on. Hidden and ending in ``.tmp``: the next
    start removes it when a kill left it (:func:`cleanup_leftovers`); ``versions/`` holds only the
    updater's folders, so the name needs no app or version in it.
    """
    return layout.versions / f".{secrets.token_hex(3)}.tmp"


def publish_version(
    layout: FolderLayout, staged: Path, version: str, ops: _install.FileOps | None = None, os_name: str | None = None
) -> Path:
    """Rename a fully extracted and verified folder to ``versions/<version>`` (replacing a stale one
    that ``current`` does not name) and make that durable. The rename is retried while antivirus
    holds a file inside (Windows refuses to rename a folder then)."""
    ops = ops or _install.FileOps()
    final = layout.version_dir(version)
    if final.exists() or final.is_symlink():
        remove_tree(final, ops)
    try:
        _install.retry(lambda: ops.rename(str(staged), str(final)), ops, f"putting {version} in place")
        ops.fsync_dir(str(layout.versions))
    except OSError as e:
        raise InstallError(
            f"cannot put {version} in place: {_install.describe_write_error(e, layout.versions, os_name)}"
        ) from e
    return final


def remove_tree(path: Path, ops: _install.FileOps | None = None) -> None:
    """Remove a version or temp folder, retried through antivirus locks; problems are logged, never
    raised (retried next start)."""
    ops = ops or _install.FileOps()
    try:
        if path.is_symlink() or path.is_file():
            _install.retry(lambda: ops.unlink(str(path)), ops, f"removing {path.name}")
        else:
            _install.retry(lambda: ops.rmtree(str(path)), ops, f"removing {path.name}")
    except FileNotFoundError:
        pass
    except OSError as e:
        log.debug("could not remove %s: %s", path, e)


def prune(
    layout: FolderLayout,
    keep: set[str],
    ops: _install.FileOps | None = None,
    busy: Callable[[Path], bool] | None = None,
) -> list[str]:
    """Remove version folders not in ``keep`` (the current one and the one before it) that no running
    instance uses (``busy``, :func:`gupper._lock.in_use` by default: each instance holds its version
    while it runs; one in use is removed by a later install); returns the ones removed."""
    if busy is None:
        from ._lock import in_use

        busy = in_use
    removed: list[str] = []
    try:
        names = [p.name for p in layout.versions.iterdir() if not p.name.startswith(".")]
    except OSError:
        return removed
    for name in names:
        if name in keep:
            continue
        if busy(layout.version_dir(name) / layout.exe):
            log.debug("gupper: %s is still running; its folder stays until a later install", name)
            continue
        remove_tree(layout.version_dir(name), ops)
        removed.append(name)
    return removed


def cleanup_leftovers(layout: FolderLayout, ops: _install.FileOps | None = None) -> None:
    """Remove what a killed update left: temp links (beside ``current``, and beside ``<root>/<exe>``
    from arranging a plain copy) and partial extractions (hidden temp names)."""
    _install.cleanup_leftovers(layout.current, ops)
    _install.cleanup_leftovers(layout.root / layout.exe, ops)
    try:
        hidden = [p for p in layout.versions.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    except OSError:
        return
    for path in hidden:
        remove_tree(path, ops)


# --- a one-folder build copied as a plain folder (issue 21) -------------------------------------

PLAIN_RECORD = ".plain-copy.json"
"""In ``versions/``: which version a plain copy was and which of its root's entries it left behind."""
CONTENTS_DIR = "_internal"
"""PyInstaller's default contents folder beside a one-folder build's executable (``--contents-directory``)."""


def plain_root(executable: Path, bundle_dir: str | None) -> Path | None:
    """The folder of a one-folder build copied as a plain folder (``<root>/<exe>`` with its files
    beside it, as PyInstaller wrote it and a user or an installer copied it), or None.

    ``bundle_dir`` is the running app's ``sys._MEIPASS``: a one-folder build's contents folder
    (``<root>/_internal``, or ``<root>`` itself with ``--contents-directory .``), a temp folder for
    a one-file build. Not frozen (None): a ``_internal`` folder beside the executable says it."""
    folder = executable.parent
    if bundle_dir is not None:
        contents = Path(os.path.realpath(bundle_dir))
        return folder if folder in (contents, contents.parent) else None
    return folder if (folder / CONTENTS_DIR).is_dir() else None


def plain_names(layout: FolderLayout) -> list[str]:
    """What a plain copy holds at its root: every entry but the updater's own (``versions``,
    ``current`` and hidden names: locks, temp files, a partial download)."""
    return sorted(
        p.name for p in layout.root.iterdir() if p.name not in (VERSIONS, CURRENT) and not p.name.startswith(".")
    )


def adopt_plain_copy(layout: FolderLayout, version: str, os_name: str, ops: _install.FileOps | None = None) -> bool:
    """Arrange a plain copy of ``version`` into ``versions/<version>`` and ``current``, keeping
    ``<root>/<exe>`` as the entry point; False when it was arranged already.

    Nothing a running process uses is moved or removed (POSIX only; on Windows a running ``.exe``
    can be neither replaced nor deleted, and the entry point would need a launcher):

    1. ``versions/<version>`` is made of hard links to the root's files (copies where links
       fail), built under a temp name and renamed into place;
    2. what the root held besides the executable is recorded (``versions/.plain-copy.json``);
    3. ``current`` is made, naming ``versions/<version>``: the install is a one-folder install;
    4. ``<root>/<exe>`` is replaced, in one rename, by the link ``current/<exe>`` (PyInstaller's
       bootloader finds its files from the resolved executable). The running file lives on as
       ``versions/<version>/<exe>``.

    A kill between any two steps leaves a copy that runs (the plain one, or the arranged one), and
    the next update goes on from there. The root's other entries (``_internal/``) stay until no
    process of the plain copy runs any more (:func:`remove_plain_leftovers`).

    Raises:
        InstallError: a step failed; the copy runs as it did.
    """
    ops = ops or _install.FileOps()
    entry = layout.root / layout.exe
    if os.path.islink(entry) and os.path.lexists(layout.current):
        return False
    try:
        if not os.path.lexists(layout.current):
            names = plain_names(layout)
            layout.versions.mkdir(exist_ok=True)
            staged = staging_dir(layout)
            _link_copy(layout.root, names, staged)
            publish_version(layout, staged, version, ops, os_name)
            from ._fsutil import atomic_write
            from .wire.canonical import canonical_bytes

            left = [n for n in names if n != layout.exe]
            atomic_write(layout.versions / PLAIN_RECORD, canonical_bytes({"version": version, "left": left}))
            switch(layout, version, os_name, ops)
        temp = _install.temp_path_for(entry)
        ops.symlink(f"{CURRENT}/{layout.exe}", str(temp))
        try:
            _install.retry(lambda: ops.replace(str(temp), str(entry)), ops, f"pointing {entry.name} at {CURRENT}")
        except BaseException:
            with contextlib.suppress(OSError):
                ops.unlink(str(temp))
            raise
        ops.fsync_dir(str(layout.root))
    except OSError as e:
        raise InstallError(
            f"cannot arrange {layout.root} for updates: {_install.describe_write_error(e, layout.root, os_name)}"
        ) from e
    return True


def _link_copy(root: Path, names: list[str], dest: Path) -> None:
    """``dest`` as a copy of ``root``'s entries ``names``: files hard-linked (copied, and fsynced,
    where links fail: FAT, another filesystem), folders made, symlinks made again as links."""
    import shutil

    from ._fsutil import full_fsync

    def one(source: Path, target: Path) -> None:
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        elif source.is_dir():
            target.mkdir(mode=0o755)
            for child in sorted(source.iterdir()):
                one(child, target / child.name)
        else:
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
                with open(target, "rb+") as f:
                    full_fsync(f.fileno())

    dest.mkdir(mode=0o755)
    try:
        for name in names:
            one(root / name, dest / name)
    except BaseException:
        remove_tree(dest)
        raise


def remove_plain_leftovers(
    layout: FolderLayout, ops: _install.FileOps | None = None, busy: Callable[[Path], bool] | None = None
) -> list[str]:
    """Once a plain copy was arranged (:func:`adopt_plain_copy`) and no process of it runs any more
    (each holds its folder, the root, while it runs: ``busy``), remove what it left at the root
    (``_internal/`` ...; the same files live on in ``versions/<version>``). Returns what was removed."""
    import json

    record = layout.versions / PLAIN_RECORD
    try:
        left = json.loads(record.read_bytes())["left"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not os.path.islink(layout.root / layout.exe):
        return []  # not arranged yet: the root is still the app
    if busy is None:
        from ._lock import in_use

        busy = in_use
    if busy(layout.root / layout.exe):
        return []
    removed = []
    for name in left:
        plain_name = isinstance(name, str) and name not in ("", ".", "..") and not set(name) & {"/", "\\", "\0"}
        if plain_name and name not in (VERSIONS, CURRENT, layout.exe) and not name.startswith("."):
            remove_tree(layout.root / name, ops)
            removed.append(name)
    with contextlib.suppress(OSError):
        (ops or _install.FileOps()).unlink(str(record))
    if removed:
        log.debug("gupper: removed what the plain copy left at %s: %s", layout.root, ", ".join(removed))
    return removed
