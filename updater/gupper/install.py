"""Putting a verified file in place of the running executable, one function per OS.

POSIX (Linux, macOS): the new file already sits beside the target (same filesystem), so
``rename`` swaps it in atomically; the running process keeps its old inode. Windows cannot
replace or delete a running ``.exe`` but can rename it, so the running file is moved aside to
``<name>.old`` first and removed on the next start. Filesystem calls go through :class:`FileOps`
so the Windows semantics can be injected and tested on Linux.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._fsutil import fsync_dir
from .errors import InstallError

log = logging.getLogger("gupper")

TEMP_TAG = ".gupper-"
OLD_SUFFIX = ".old"
RENAME_ATTEMPTS = 8


def write_durable(path: str, data: bytes) -> None:
    """Create ``path`` with ``data``, fsynced (not atomic by itself: write a temp name, then rename)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_small_text(path: str) -> str:
    """A small text file's content."""
    with open(path, encoding="utf-8") as f:
        return f.read(4096)


@dataclass
class FileOps:
    """The filesystem primitives the installer uses; tests swap in other semantics."""

    replace: Callable[[str, str], None] = os.replace
    rename: Callable[[str, str], None] = os.rename
    unlink: Callable[[str], None] = os.unlink
    sleep: Callable[[float], None] = time.sleep
    fsync_dir: Callable[[str], None] = fsync_dir
    symlink: Callable[[str, str], None] = os.symlink
    write_file: Callable[[str, bytes], None] = write_durable
    read_text: Callable[[str], str] = read_small_text


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


def patch_path_for(target: Path) -> Path:
    """Where a downloaded delta patch waits to be applied (a temp name: cleaned on the next start)."""
    return target.with_name(f".{target.name}{TEMP_TAG}patch.tmp")


def backup_path_for(target: Path) -> Path:
    """Where the previous version waits until the new one confirms it runs."""
    return target.with_name(f".{target.name}{TEMP_TAG}previous")


def make_backup(source: Path, dest: Path) -> None:
    """Atomically make ``dest`` a copy of ``source``: a hard link when possible, else a full copy.

    Either way ``dest`` appears complete or not at all (temp name, fsync, rename).
    """
    temp = dest.with_name(f"{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copy2(source, temp)  # filesystems without hard links (FAT, some network shares)
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(temp, dest)
        fsync_dir(str(dest.parent))
    except OSError as e:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise InstallError(f"cannot keep a backup of {source.name} in {dest.parent} ({e.strerror or e}); free some disk space") from e


def check_writable(target: Path) -> None:
    """Fail early, before any download, if the install directory cannot take a new file."""
    directory = target.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InstallError(
            f"cannot update {target}: no write permission on {directory}; reinstall the app in a folder you own or run the update with rights to that folder"
        )


def copy_mode(source: Path, dest: Path) -> None:
    """Give ``dest`` the permission bits (and, when we may, the owner) of ``source``."""
    st = source.stat()
    os.chmod(dest, stat.S_IMODE(st.st_mode) | stat.S_IXUSR)
    if hasattr(os, "chown") and os.name == "posix":
        # Only root may give files away; same-user installs keep the owner anyway.
        with contextlib.suppress(PermissionError):
            os.chown(dest, st.st_uid, st.st_gid)


def _retry(op: Callable[[], None], ops: FileOps, what: str) -> None:
    # Antivirus scanners hold freshly written files for a moment on Windows; back off and retry.
    delay = 0.05
    for attempt in range(RENAME_ATTEMPTS):
        try:
            op()
            return
        except PermissionError:
            if attempt == RENAME_ATTEMPTS - 1:
                raise
            log.debug("%s: access denied, retrying in %.2fs", what, delay)
            ops.sleep(delay)
            delay = min(delay * 2, 1.0)


def apply_posix(new: Path, target: Path, ops: FileOps) -> None:
    """Atomically rename ``new`` over ``target`` and make the rename durable."""
    ops.replace(str(new), str(target))
    ops.fsync_dir(str(target.parent))


def apply_windows(new: Path, target: Path, ops: FileOps) -> None:
    """Move the running ``target`` aside, move ``new`` in; undo the first move if the second fails."""
    old = target.with_name(target.name + OLD_SUFFIX)
    try:
        ops.unlink(str(old))  # a leftover from an earlier update, no longer running
    except FileNotFoundError:
        pass
    except PermissionError:
        old = target.with_name(f"{target.name}.{secrets.token_hex(4)}{OLD_SUFFIX}")
    _retry(lambda: ops.rename(str(target), str(old)), ops, f"moving {target.name} aside")
    try:
        _retry(lambda: ops.rename(str(new), str(target)), ops, f"moving the new {target.name} in")
    except OSError:
        ops.rename(str(old), str(target))
        raise


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
        raise InstallError(f"could not replace {target}: {e.strerror or e}; the installed version was left as it was") from e


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
        ours = (name.startswith(f".{target.name}{TEMP_TAG}") and name.endswith(".tmp")) or (name.startswith(target.name + ".") and name.endswith(OLD_SUFFIX))
        if not ours:
            continue
        try:
            ops.unlink(str(path))
            removed.append(path)
        except OSError:
            pass  # still running (Windows) or not ours to remove; try again next start
    return removed
