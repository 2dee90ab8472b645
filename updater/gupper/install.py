"""Putting a verified file in place of the running executable, one function per OS.

POSIX (Linux, macOS): the new file already sits beside the target (same filesystem), so
``rename`` swaps it in atomically; the running process keeps its old inode. Windows cannot
replace or delete a running ``.exe`` but can rename it, so the running file is moved aside to
``<name>.old`` and the new one moved in, by two renames back to back (everything that can wait
or be retried happens before the first or after both), and the ``.old`` file is removed on the
next start. Filesystem calls go through :class:`FileOps` so the Windows semantics (a running
image, antivirus locks) can be injected and tested on Linux.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ._fsutil import drive_barrier, durable_file, exchange_paths, fsync_dir, full_fsync, remove_xattr
from .errors import InstallError
from .records import record

log = logging.getLogger("gupper")

TEMP_TAG = ".gupper-"
OLD_SUFFIX = ".old"
RENAME_ATTEMPTS = 8
"""Tries of a filesystem call that antivirus may hold up: 0.05 s doubling to 1 s between them, ~3.5 s in all."""

WINDOWS_PER_USER_HINT = r"per user, under %LOCALAPPDATA%\Programs, needs no administrator rights"


def write_durable(path: str, data: bytes) -> None:
    """Create ``path`` with ``data``, fsynced (not atomic by itself: write a temp name, then rename)."""
    with durable_file(Path(path), mode=0o666, sync=full_fsync) as f:
        f.write(data)


def read_small_text(path: str) -> str:
    """A small text file's content."""
    with open(path, encoding="utf-8") as f:
        return f.read(4096)


def create_empty(path: str) -> None:
    """Create ``path`` as a new empty file (fails if it exists)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600))


def remove_tree(path: str) -> None:
    """Remove a folder tree (``shutil.rmtree``)."""
    shutil.rmtree(path)


def run_codesign(args: Sequence[str]) -> tuple[int, str]:
    """macOS's ``codesign`` with ``args``: its exit code and what it printed (it reports on stderr);
    127 and a line saying so where there is none (not macOS)."""
    tool = "/usr/bin/codesign"
    if not os.path.exists(tool):
        return 127, f"{tool} is not here: code signatures are macOS's"
    import subprocess

    proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stderr + proc.stdout


@record
class FileOps:
    """The filesystem primitives the installer uses; tests swap in other semantics.

    ``exchange`` swaps two paths atomically (an app bundle's update), ``remove_xattr`` removes an
    extended attribute (macOS's quarantine), ``codesign`` runs macOS's ``codesign``."""

    replace: Callable[[str, str], None] = os.replace
    rename: Callable[[str, str], None] = os.rename
    unlink: Callable[[str], None] = os.unlink
    sleep: Callable[[float], None] = time.sleep
    fsync_dir: Callable[[str], None] = fsync_dir
    symlink: Callable[[str, str], None] = os.symlink
    write_file: Callable[[str, bytes], None] = write_durable
    read_text: Callable[[str], str] = read_small_text
    create: Callable[[str], None] = create_empty
    link: Callable[[str, str], None] = os.link
    rmtree: Callable[[str], None] = remove_tree
    barrier: Callable[[str], None] = drive_barrier
    exchange: Callable[[str, str], None] = exchange_paths
    remove_xattr: Callable[[str, str], None] = remove_xattr
    codesign: Callable[[Sequence[str]], tuple[int, str]] = run_codesign


def resolve_target(executable: str) -> Path:
    """The real file to replace: a symlinked executable has its target replaced, not the link."""
    return Path(os.path.realpath(executable))


def temp_path_for(target: Path, os_name: str = "linux") -> Path:
    """A fresh temp name beside ``target`` (same directory, so the final rename cannot cross devices).

    On Windows it ends in ``.exe`` so that the pre-flight can start it.
    """
    suffix = ".tmp.exe" if os_name == "windows" else ".tmp"
    return target.with_name(f".{target.name}{TEMP_TAG}{secrets.token_hex(6)}{suffix}")


def partial_path_for(target: Path, os_name: str = "linux") -> Path:
    """Where a download in progress lives; kept across runs so it can be resumed."""
    return target.with_name(f".{target.name}{TEMP_TAG}partial" + (".exe" if os_name == "windows" else ""))


def lock_path_for(target: Path) -> Path:
    """The update lock's file for the install whose executable (or bundle) is ``target``: beside it."""
    return target.with_name(f".{target.name}{TEMP_TAG}lock")


def patch_path_for(target: Path) -> Path:
    """Where a downloaded delta patch waits to be applied (a temp name: cleaned on the next start)."""
    return target.with_name(f".{target.name}{TEMP_TAG}patch.tmp")


BACKUP_TAG = "previous-"


def backup_path_for(target: Path) -> Path:
    """A fresh name for the previous version to wait under until the new one confirms it runs.

    Fresh each time: on Windows an earlier backup may still be the image of a running process
    (the waiting parent of a restart, another instance), which can be neither replaced nor deleted.
    On POSIX the name carries the uid of the user whose trial it backs (``u<uid>-``): in an
    install several users share, one user's start never removes another's backup.
    """
    return target.with_name(f".{target.name}{TEMP_TAG}{BACKUP_TAG}{_owner_tag()}{secrets.token_hex(6)}")


def _owner_tag() -> str:
    return f"u{os.getuid()}-" if hasattr(os, "getuid") else ""


def is_backup_name(name: str, target_name: str) -> bool:
    """Whether ``name`` is a backup of ``target_name`` this user may remove (its own, or one from
    before backups named their user), not a temp file of one."""
    prefix = f".{target_name}{TEMP_TAG}{BACKUP_TAG}"
    if not name.startswith(prefix) or "." in name[len(prefix) :]:
        return False
    rest, tag = name[len(prefix) :], _owner_tag()
    return not (tag and rest.startswith("u") and "-" in rest and not rest.startswith(tag))


def remove_backups(target: Path, keep: Path | None, ops: FileOps | None = None) -> list[Path]:
    """Remove this user's backups beside ``target`` but ``keep``; one still in use (a running image
    on Windows) stays until a later start."""
    ops = ops or FileOps()
    removed: list[Path] = []
    try:
        backups = [p for p in target.parent.iterdir() if is_backup_name(p.name, target.name)]
    except OSError:
        return removed
    for path in backups:
        if keep is not None and path.name == keep.name:
            continue
        try:
            ops.unlink(str(path))
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.debug("gupper: could not remove the backup %s yet (%s)", path, e.strerror or e)
    return removed


def retry(op: Callable[[], None], ops: FileOps, what: str, attempts: int = RENAME_ATTEMPTS) -> None:
    """Run ``op``, retrying with back-off while it is refused with access denied.

    On Windows an antivirus scanner (Defender scans every file as it is written and when it is
    run) or a search indexer holds fresh files for a moment; a rename, replace or delete of such
    a file fails with access denied or a sharing violation, both ``PermissionError`` in Python.
    """
    delay = 0.05
    for attempt in range(attempts):
        try:
            op()
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            log.debug("%s: access denied, retrying in %.2fs", what, delay)
            ops.sleep(delay)
            delay = min(delay * 2, 1.0)


MAX_PATH = 260
"""Windows' path limit, the terminating NUL included: a path of 260 characters or more cannot be
created unless long paths are on (LongPathsEnabled, Windows 10 1607 and later; PyInstaller's
bootloader declares itself longPathAware)."""
ERROR_FILENAME_EXCED_RANGE = 206


def path_too_long(e: OSError, os_name: str | None = None) -> str | None:
    """What to say when ``e`` failed because a path is too long (Windows' MAX_PATH, or the OS's
    ``ENAMETOOLONG``); None for any other failure. ``os_name`` defaults to this OS. Pure."""
    os_name = os_name or ("windows" if sys.platform == "win32" else sys.platform)
    name = str(e.filename) if e.filename is not None else ""
    shown = f"{name[:40]}...{name[-40:]}" if len(name) > 90 else name
    path = f"the path {shown} ({len(name)} characters)" if name else "a path of the update"
    if os_name == "windows" and (getattr(e, "winerror", None) == ERROR_FILENAME_EXCED_RANGE or len(name) >= MAX_PATH):
        return (
            f"{path} is past Windows' limit of {MAX_PATH - 1} characters (MAX_PATH); install the app in a folder "
            r"with a shorter path (per user: %LOCALAPPDATA%\Programs\<app>) or turn on long paths (LongPathsEnabled)"
        )
    if e.errno == errno.ENAMETOOLONG:
        return f"{path} is too long for this system; install the app in a folder with a shorter path"
    return None


def describe_write_error(e: OSError, directory: Path, os_name: str | None = None) -> str:
    """Why a file could not be written in ``directory``, and what to do: a path too long (Windows'
    MAX_PATH), permissions, space or a read-only volume. ``os_name`` defaults to this OS."""
    too_long = path_too_long(e, os_name)
    if too_long is not None:
        return too_long
    if isinstance(e, PermissionError):
        return f"no write permission on {directory} ({e.strerror or e}); check the folder's permissions"
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"no space left in {directory}; free some disk space"
    if e.errno == errno.EROFS:
        return f"{directory} is on a read-only volume; reinstall the app in a writable folder"
    return f"cannot write in {directory} ({e.strerror or e})"


def make_backup(source: Path, dest: Path, ops: FileOps | None = None) -> None:
    """Atomically make ``dest`` a copy of ``source``: a hard link when possible, else a full copy.

    Either way ``dest`` appears complete or not at all (temp name, fsync, rename). A refused link
    falls back to the copy; the rename into place is retried through antivirus locks (:func:`retry`).
    """
    ops = ops or FileOps()
    temp = dest.with_name(f"{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            ops.link(str(source), str(temp))
        except OSError:
            shutil.copy2(source, temp)  # filesystems without hard links (FAT, some network shares)
            with open(temp, "rb+") as f:
                full_fsync(f.fileno())
        retry(lambda: ops.replace(str(temp), str(dest)), ops, f"putting the backup of {source.name} in place")
        ops.fsync_dir(str(dest.parent))
    except OSError as e:
        with contextlib.suppress(OSError):
            ops.unlink(str(temp))
        raise InstallError(f"cannot keep a backup of {source.name}: {describe_write_error(e, dest.parent)}") from e


def app_bundle_of(path: Path) -> Path | None:
    """The macOS ``.app`` bundle ``path`` lies in (``<name>.app/Contents/...``), or None."""
    parts = path.parts
    for i in range(len(parts) - 1):
        if parts[i].lower().endswith(".app") and parts[i + 1] == "Contents":
            return Path(*parts[: i + 1])
    return None


def check_writable(target: Path, os_name: str | None = None, ops: FileOps | None = None) -> None:
    """Fail early, before any download, if ``target`` cannot be replaced where it is.

    Refused: a file inside a macOS ``.app`` bundle (its code signature seals every file in it,
    so Gupper does not swap one; a bundle's own program is updated with its whole bundle,
    :mod:`gupper.layouts.bundle`), and a folder this process cannot create a file in. The folder
    is probed by creating and removing an empty file: on Windows ``os.access`` ignores ACLs and
    reports Program Files writable, and elsewhere it answers for the real, not the effective,
    user. ``os_name`` (default: this OS) only picks the advice in the message.
    """
    bundle = app_bundle_of(target)
    if bundle is not None:
        raise InstallError(
            f"cannot update {target}: it is inside the macOS app bundle {bundle}, and "
            "replacing a file in a signed bundle breaks its "
            "code signature; publish the bundle itself (gupper-publish dist/<name>.app): an app bundle "
            "whose program is Contents/MacOS/<exe> is updated as a whole"
        )
    ops = ops or FileOps()
    os_name = os_name or ("windows" if sys.platform == "win32" else sys.platform)
    directory = target.parent
    probe = directory / f".{target.name}{TEMP_TAG}probe-{secrets.token_hex(4)}.tmp"
    try:
        ops.create(str(probe))
    except OSError as e:
        if isinstance(e, PermissionError):
            where = f"a folder you own ({WINDOWS_PER_USER_HINT})" if os_name == "windows" else "a folder you own"
            raise InstallError(
                f"cannot update {target}: no write permission on {directory} ({e.strerror or e}); "
                f"reinstall the app in {where} "
                "or run the update with rights to that folder"
            ) from e
        raise InstallError(f"cannot update {target}: {describe_write_error(e, directory)}") from e
    try:
        ops.unlink(str(probe))
    except OSError as e:  # held by a scanner: the next start's cleanup removes it (a temp name)
        log.debug("could not remove %s: %s", probe, e)


def copy_mode(source: Path, dest: Path) -> None:
    """Give ``dest`` the permission bits (and, when we may, the owner) of ``source``."""
    st = source.stat()
    os.chmod(dest, stat.S_IMODE(st.st_mode) | stat.S_IXUSR)
    if hasattr(os, "chown") and os.name == "posix":
        # Only root may give files away; same-user installs keep the owner anyway.
        with contextlib.suppress(PermissionError):
            os.chown(dest, st.st_uid, st.st_gid)


def apply_posix(new: Path, target: Path, ops: FileOps) -> None:
    """Atomically rename ``new`` over ``target`` and make the rename durable.

    On macOS the drive's cache is flushed first (:func:`~gupper._fsutil.drive_barrier`): the new
    file's bytes are on stable storage before the rename that makes them the app.
    """
    ops.barrier(str(new))
    ops.replace(str(new), str(target))
    ops.fsync_dir(str(target.parent))


def apply_windows(new: Path, target: Path, ops: FileOps) -> None:
    """Move the running ``target`` aside and ``new`` in, by two renames back to back.

    Before the first rename: the name for the old exe is freed (or a fresh one picked) and
    ``new`` is moved once to a fresh temp name, retried while antivirus holds it, which proves
    nothing holds it now. Then the pair runs with nothing in between; if the second rename is
    refused, the first is undone at once and the pair is tried again after a back-off, so every
    wait happens while ``target`` is in place. The one instant without a ``target`` is between
    the two renames (and, if the second is refused, until the undo succeeds): see
    docs/crash-safety.md.
    """
    old = target.with_name(target.name + OLD_SUFFIX)
    try:
        ops.unlink(str(old))  # a leftover from an earlier update, no longer running
    except FileNotFoundError:
        pass
    except PermissionError:
        old = target.with_name(
            f"{target.name}.{secrets.token_hex(4)}{OLD_SUFFIX}"
        )  # still running (an earlier update's parent)
    ready = temp_path_for(target, "windows")
    retry(lambda: ops.rename(str(new), str(ready)), ops, f"preparing the new {target.name}")
    delay = 0.05
    for attempt in range(RENAME_ATTEMPTS):
        try:
            ops.rename(str(target), str(old))  # the running exe, aside ...
            ops.rename(str(ready), str(target))  # ... and the new one in, immediately
            return
        except BaseException as e:
            if not os.path.lexists(target) and os.path.lexists(
                old
            ):  # checked on disk: an interrupt may land between the two
                _put_back(old, target, ops)
            if not isinstance(e, PermissionError) or attempt == RENAME_ATTEMPTS - 1:
                raise
        log.debug("moving the new %s in: access denied, retrying in %.2fs", target.name, delay)
        ops.sleep(delay)
        delay = min(delay * 2, 1.0)


def _put_back(old: Path, target: Path, ops: FileOps) -> None:
    """Undo the first rename of a swap; the one wait that happens while ``target`` is missing."""
    try:
        retry(lambda: ops.rename(str(old), str(target)), ops, f"putting {target.name} back")
    except OSError as e:
        raise InstallError(
            f"could not put {target.name} back after a failed update ({e.strerror or e}); "
            f"rename {old} to {target.name} to start the app again"
        ) from e


APPLIERS: dict[str, Callable[[Path, Path, FileOps], None]] = {
    "linux": apply_posix,
    "darwin": apply_posix,
    "windows": apply_windows,
}


def apply(new: Path, target: Path, os_name: str, ops: FileOps | None = None) -> None:
    """Install ``new`` (verified, fsynced, beside ``target``) as ``target`` using ``os_name``'s method."""
    ops = ops or FileOps()
    try:
        applier = APPLIERS[os_name]
    except KeyError as e:
        raise InstallError(f"no install method for OS {os_name!r}") from e
    try:
        applier(new, target, ops)
    except OSError as e:
        raise InstallError(
            f"could not replace {target}: {e.strerror or e}; the installed version was left as it was"
        ) from e


def cleanup_leftovers(target: Path, ops: FileOps | None = None) -> list[Path]:
    """Remove temp files and ``.old`` executables that an earlier run left beside ``target``.

    A partial download (resumable) and the backup of a version on trial are kept.
    """
    ops = ops or FileOps()
    removed: list[Path] = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        name = path.name
        ours = (name.startswith(f".{target.name}{TEMP_TAG}") and name.endswith((".tmp", ".tmp.exe"))) or (
            name.startswith(target.name + ".") and name.endswith(OLD_SUFFIX)
        )
        if not ours:
            continue
        try:
            ops.unlink(str(path))
            removed.append(path)
        except OSError:
            pass  # still running (Windows) or not ours to remove; try again next start
    return removed
