"""Durable file writes shared by the installer and the state file.

On macOS ``fsync`` only hands the data to the drive, which may keep it in its volatile cache and
write it out of order; ``fcntl(F_FULLFSYNC)`` also flushes that cache (Apple's fsync(2) man
page; SQLite does the same). :func:`full_fsync` uses it there and falls back to ``fsync`` when a
filesystem refuses it (some network and FAT volumes). Linux's and Windows' ``fsync``
(``FlushFileBuffers``) already reach stable storage.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

F_FULLFSYNC = 51
"""``fcntl.F_FULLFSYNC`` on macOS (``<sys/fcntl.h>``); the fcntl module has it only there."""


def _fcntl(fd: int, cmd: int) -> object:
    if sys.platform == "win32":
        raise OSError(errno.ENOTSUP, "fcntl does not exist on Windows")
    import fcntl

    return fcntl.fcntl(fd, cmd)


def full_fsync(fd: int, platform: str | None = None, fcntl_: Callable[[int, int], object] = _fcntl, fsync: Callable[[int], None] = os.fsync) -> None:
    """Flush ``fd``'s data to stable storage: ``F_FULLFSYNC`` on macOS, ``fsync`` elsewhere or where it is refused."""
    if (sys.platform if platform is None else platform) == "darwin":
        try:
            fcntl_(fd, F_FULLFSYNC)
            return
        except OSError:
            pass  # not supported by this filesystem: fsync is the best there is
    fsync(fd)


def fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (POSIX); Windows has no directory fsync (NTFS journals renames)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        full_fsync(fd)
    finally:
        os.close(fd)


def drive_barrier(path: str, platform: str | None = None, sync: Callable[[int], None] | None = None) -> None:
    """macOS: flush the drive's cache (``F_FULLFSYNC`` on ``path``) so that every file fsynced before
    is on stable storage before a rename makes it the installed one. Nothing to do elsewhere."""
    if (sys.platform if platform is None else platform) != "darwin":
        return
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        (sync or (lambda f: full_fsync(f, "darwin")))(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            full_fsync(f.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(str(path.parent))
