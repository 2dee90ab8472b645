"""The files of a macOS app bundle install (``type: app``): its paths and the steps that change them.

:class:`gupper.layouts.bundle.AppBundle` drives these for the updater, the way Sparkle updates a
bundle::

    /Applications/Notes.app/Contents/MacOS/notes, Frameworks/, Resources/, Info.plist   the app
    /Applications/.Notes.app.gupper-<hex>.tmp/Contents/...                              the new version, built
    /Applications/.Notes.app.gupper-previous-<hex>/Contents/...                         the backup, after the swap

The new bundle is built beside the old one (same volume), freed of the quarantine attribute,
checked against the running bundle's code signing Team ID (Sparkle's rule) and pre-flighted,
then swapped with the installed one as a whole in one atomic exchange (``renamex_np`` with
``RENAME_SWAP`` on APFS and HFS+; ``renameat2`` with ``RENAME_EXCHANGE`` on Linux, where the logic
is tested): every file of a bundle is sealed by its signature, so no file inside is ever replaced.
The old bundle, swapped out, is the backup a rollback swaps back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from . import install as _install
from ._fsutil import EXCHANGE_UNSUPPORTED
from .errors import InstallError, PreflightFailedError

log = logging.getLogger("gupper")

QUARANTINE = "com.apple.quarantine"
"""The attribute macOS puts on downloaded files; Gatekeeper checks an app that carries it, and may
run a quarantined app from a read-only random location (App Translocation)."""
TRANSLOCATED = "/AppTranslocation/"


def bundle_of(executable: Path) -> Path | None:
    """The app bundle ``executable`` is the main program of (``<name>.app/Contents/MacOS/<exe>``), or None."""
    macos = executable.parent
    if macos.name == "MacOS" and macos.parent.name == "Contents" and macos.parent.parent.suffix.lower() == ".app":
        return macos.parent.parent
    return None


def executable_in(bundle: Path, exe: str) -> Path:
    """Where a bundle's main program ``exe`` lives."""
    return bundle / "Contents" / "MacOS" / exe


def check_not_translocated(bundle: Path) -> None:
    """Refuse an app that macOS runs from a read-only random copy (App Translocation: an app from a
    download or a disk image, started where it was, not moved to Applications); Sparkle does too.

    Raises:
        InstallError: saying where to move the app.
    """
    if TRANSLOCATED in str(bundle):
        raise InstallError(
            f"cannot update {bundle.name}: macOS runs it from a read-only copy (App Translocation, for an app "
            f"started where it was downloaded); move {bundle.name} to /Applications (drag it there in the Finder) "
            "and start it from there"
        )


def swap(a: Path, b: Path, ops: _install.FileOps) -> None:
    """Swap the bundles at ``a`` and ``b``: one atomic exchange, or, on a volume without one (FAT, some
    network volumes), three renames with one instant between two of them where ``b`` does not exist.

    Raises:
        InstallError: the swap failed; both bundles are where they were.
    """
    try:
        ops.exchange(str(a), str(b))
        ops.fsync_dir(str(b.parent))
        return
    except OSError as e:
        if e.errno not in EXCHANGE_UNSUPPORTED:
            raise InstallError(f"cannot swap {b.name} for its update: {e.strerror or e}; it was left as it was") from e
        log.debug("gupper: no atomic exchange on the volume of %s (%s); three renames", b, e.strerror or e)
    aside = _install.temp_path_for(b)
    try:
        ops.rename(str(a), str(aside))
        ops.rename(str(b), str(a))  # the instant without b starts ...
        try:
            ops.rename(str(aside), str(b))  # ... and ends
        except BaseException:
            ops.rename(str(a), str(b))
            ops.rename(str(aside), str(a))
            raise
        ops.fsync_dir(str(b.parent))
    except OSError as e:
        raise InstallError(f"cannot swap {b.name} for its update: {e.strerror or e}; it was left as it was") from e


def strip_quarantine(bundle: Path, ops: _install.FileOps) -> int:
    """Remove the quarantine attribute from the bundle and everything in it (links themselves, never
    what they point at), as Sparkle does before it installs; returns how many paths were visited.

    Raises:
        InstallError: an attribute that is there cannot be removed.
    """
    visited = 0
    for path in _walk(bundle):
        try:
            ops.remove_xattr(str(path), QUARANTINE)
        except OSError as e:
            raise InstallError(f"cannot remove the quarantine attribute from {path}: {e.strerror or e}") from e
        visited += 1
    return visited


def _walk(root: Path) -> Iterator[Path]:
    yield root
    for top, dirs, files in os.walk(root):  # never descends into linked folders
        for name in sorted(dirs + files):
            yield Path(top, name)


_TEAM = re.compile(r"^TeamIdentifier=(.+)$", re.MULTILINE)


def team_identifier(codesign_output: str) -> str | None:
    """The Team ID in ``codesign --display --verbose=2`` output; None for ad hoc or unsigned code
    (``TeamIdentifier=not set``, or no such line). Pure."""
    found = _TEAM.search(codesign_output)
    if found is None or found.group(1).strip() in ("", "not set"):
        return None
    return found.group(1).strip()


def check_team(installed: Path, new: Path, version: str, ops: _install.FileOps) -> None:
    """Sparkle's rule: when the installed bundle is signed with a Team ID (a Developer ID), the new
    one must carry a valid signature (``codesign --verify --deep --strict``) with the same Team ID.
    An installed bundle signed ad hoc (PyInstaller's own signature) or not at all has no Team ID to
    compare: nothing is checked.

    Raises:
        PreflightFailedError: the new bundle is unsigned, broken, or signed by another team (it is
            marked bad: the signed release itself is not what this install may take).
    """
    code, shown = ops.codesign(["--display", "--verbose=2", str(installed)])
    team = team_identifier(shown) if code == 0 else None
    if team is None:
        log.debug("gupper: %s has no Team ID (ad hoc or unsigned): no signature to compare", installed.name)
        return
    code, verified = ops.codesign(["--verify", "--deep", "--strict", str(new)])
    if code != 0:
        detail = " ".join(verified.split())[:200] or f"exit code {code}"
        raise PreflightFailedError(
            f"the new version {version} does not carry a valid code signature ({detail}), and the installed app is "
            f"signed by team {team}; not installed"
        )
    code, shown = ops.codesign(["--display", "--verbose=2", str(new)])
    new_team = team_identifier(shown) if code == 0 else None
    if new_team != team:
        raise PreflightFailedError(
            f"the new version {version} is signed by team {new_team or 'none (ad hoc)'}, the installed app by team "
            f"{team}; not installed"
        )


def bundle_version(bundle: Path) -> str | None:
    """``CFBundleShortVersionString`` of the bundle's ``Info.plist``, if it has one."""
    import plistlib

    try:
        with (bundle / "Contents" / "Info.plist").open("rb") as f:
            version = plistlib.load(f).get("CFBundleShortVersionString")
    except (OSError, ValueError, plistlib.InvalidFileException, AttributeError):
        return None
    return version if isinstance(version, str) else None


def backups_of(bundle: Path) -> list[Path]:
    """This user's backups beside ``bundle`` (``.<name>.app.gupper-previous-[u<uid>-]<hex>``)."""
    try:
        return sorted(p for p in bundle.parent.iterdir() if _install.is_backup_name(p.name, bundle.name))
    except OSError:
        return []


def remove_backups(
    bundle: Path, exe: str, keep: Path | None, ops: _install.FileOps, busy: Callable[[Path], bool] | None = None
) -> list[Path]:
    """Remove the backups beside ``bundle`` but ``keep`` and any a running process uses (``busy``:
    the app that installed the update runs from its old bundle, swapped to a backup name, until it
    quits); those go at a later start."""
    from . import folder as _folder

    if busy is None:
        from ._lock import in_use

        busy = in_use
    removed = []
    for path in backups_of(bundle):
        if keep is not None and path.name == keep.name:
            continue
        if busy(executable_in(path, exe)):
            log.debug("gupper: %s is still running; it stays until a later start", path.name)
            continue
        _folder.remove_tree(path, ops)
        removed.append(path)
    return removed


def cleanup_leftovers(bundle: Path, ops: _install.FileOps) -> None:
    """Remove what a killed update left beside ``bundle``: temp folders (a half-built new version)
    and temp files (``.<name>.app.gupper-*.tmp``)."""
    from . import folder as _folder

    prefix = f".{bundle.name}{_install.TEMP_TAG}"
    try:
        temps = [p for p in bundle.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for path in temps:
        _folder.remove_tree(path, ops)


def follow_moved_bundle(old: Path, new: Path, sysmod: ModuleType = sys) -> bool:
    """After the swap, this process's bundle lives at ``new`` (the backup) and ``old`` holds the
    update: point the places it still loads files from at ``new`` (``sys._MEIPASS``, PyInstaller's
    folder of bundled files, and ``sys.path``), so that modules and native libraries it imports
    later come from its own version. Its module archive is read through a handle held since it
    started (:mod:`gupper.frozen_archive`). True when something was changed."""
    prefix, moved = str(old) + os.sep, str(new) + os.sep

    def follow(path: str) -> str:
        return moved + path[len(prefix) :] if path.startswith(prefix) else path

    changed = False
    meipass = getattr(sysmod, "_MEIPASS", None)
    if isinstance(meipass, str) and follow(meipass) != meipass:
        sysmod._MEIPASS = follow(meipass)  # type: ignore[attr-defined]
        changed = True
    paths = list(sysmod.path)
    followed = [follow(p) if isinstance(p, str) else p for p in paths]
    if followed != paths:
        sysmod.path[:] = followed
        with contextlib.suppress(AttributeError):
            sysmod.path_importer_cache.clear()
        changed = True
    return changed
