"""Durable file writes and file hashing, the one place for each across the client.

:func:`durable_file` is how every file the client writes is opened (downloads, patched files,
extracted and delta-built package files, the state file, the ``current`` pointer): fsynced when
the block ends. :func:`hash_file` is how every file is hashed. On macOS ``fsync`` only hands the
data to the drive, which may keep it in its volatile cache and write it out of order;
``fcntl(F_FULLFSYNC)`` also flushes that cache (Apple's fsync(2) man page; SQLite does the same).
:func:`full_fsync` uses it there and falls back to ``fsync`` when a filesystem refuses it (some
network and FAT volumes). Linux's and Windows' ``fsync`` (``FlushFileBuffers``) already reach
stable storage.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

F_FULLFSYNC = 51
"""``fcntl.F_FULLFSYNC`` on macOS (``<sys/fcntl.h>``); the fcntl module has it only there."""
CHUNK = 1 << 20


def _fcntl(fd: int, cmd: int) -> object:
    if sys.platform == "win32":
        raise OSError(errno.ENOTSUP, "fcntl does not exist on Windows")
    import fcntl

    return fcntl.fcntl(fd, cmd)


def full_fsync(
    fd: int,
    platform: str | None = None,
    fcntl_: Callable[[int, int], object] = _fcntl,
    fsync: Callable[[int], None] = os.fsync,
) -> None:
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


@contextlib.contextmanager
def durable_file(
    path: Path, *, exclusive: bool = True, keep: int = 0, mode: int = 0o600, sync: Callable[[int], None] = os.fsync
) -> Iterator[BinaryIO]:
    """Open ``path`` for writing; when the block ends, flush it and ``sync`` it (``os.fsync``;
    :func:`full_fsync` where the drive's cache matters), so what was written is on disk.

    Never through a link. ``exclusive``: a new file, never an existing one (``mode``, 0600 until
    the caller sets the final mode). Else the file is created or reused and cut to its first
    ``keep`` bytes, the next write going there (0: rewrite it; a resumed download keeps its bytes).
    A block that ends in an exception still syncs what it wrote (a partial download stays usable),
    and the exception is the one raised.
    """
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_BINARY", 0)
        | (os.O_EXCL if exclusive else 0)
    )
    f = os.fdopen(os.open(path, flags, mode), "wb")
    try:
        if not exclusive:
            f.seek(keep)
            f.truncate()
        yield f
    except BaseException:
        with contextlib.suppress(OSError):
            f.flush()
            sync(f.fileno())
        with contextlib.suppress(OSError):
            f.close()
        raise
    with f:
        f.flush()
        sync(f.fileno())


def hash_file(path: Path, digest: Any = None, *, progress: Callable[[int], None] | None = None) -> tuple[Any, int]:
    """Feed the bytes of ``path`` (in 1 MiB blocks) to ``digest`` (a fresh sha256 by default);
    return it (``.hexdigest()``, or ``.update`` to hash what follows) and the bytes read.
    ``progress`` is called with each block's length."""
    digest = hashlib.sha256() if digest is None else digest
    size = 0
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            size += len(block)
            if progress is not None:
                progress(len(block))
    return digest, size


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file."""
    return str(hash_file(path)[0].hexdigest())


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content.

    ``durable=False`` skips the syncs, for caches a later run rebuilds at a small cost (an fsync can
    cost an app's start tens of ms on a busy disk): a crash of the process still leaves the old
    content or the new, a power loss may leave nothing usable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with durable_file(temp, mode=0o666, sync=full_fsync if durable else _no_sync) as f:
            f.write(data)
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    if durable:
        fsync_dir(str(path.parent))


def _no_sync(fd: int) -> None:
    """The sync of a write that need not survive a power loss: none."""


RENAME_SWAP = 0x2
"""``renamex_np`` flag (macOS ``<stdio.h>``): swap the two names atomically (APFS, HFS+)."""
RENAME_EXCHANGE = 0x2
"""``renameat2`` flag (Linux ``<linux/fs.h>``): the same, on ext4, xfs, btrfs, tmpfs and others."""
AT_FDCWD = -100
EXCHANGE_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EINVAL), getattr(errno, "EOPNOTSUPP", errno.EINVAL)}
)
"""What an exchange says on a filesystem or kernel without it (FAT, some network volumes)."""


def exchange_paths(a: str, b: str, platform: str | None = None, libc: Any = None) -> None:
    """Swap what ``a`` and ``b`` name, in one atomic step: ``renamex_np(RENAME_SWAP)`` on macOS,
    ``renameat2(RENAME_EXCHANGE)`` on Linux. ``libc`` is for tests (the C library by default).

    Raises:
        OSError: the swap failed; an errno in :data:`EXCHANGE_UNSUPPORTED` when this system or
            filesystem cannot exchange at all.
    """
    import ctypes

    platform = sys.platform if platform is None else platform
    lib = libc if libc is not None else ctypes.CDLL(None, use_errno=True)
    encoded = (os.fsencode(a), os.fsencode(b))
    if platform == "darwin":
        call = getattr(lib, "renamex_np", None)
        args: tuple[Any, ...] = (*encoded, RENAME_SWAP)
        types: list[Any] = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
    elif platform.startswith("linux"):
        call = getattr(lib, "renameat2", None)  # glibc 2.28 and later
        args = (AT_FDCWD, encoded[0], AT_FDCWD, encoded[1], RENAME_EXCHANGE)
        types = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    else:
        call = None
    if call is None:
        raise OSError(errno.ENOSYS, f"no atomic exchange of two paths on {platform}", a, None, b)
    call.argtypes, call.restype = types, ctypes.c_int
    if call(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), a, None, b)


XATTR_NOFOLLOW = 0x0001
ENOATTR = 93
"""macOS's "no such attribute"."""


def remove_xattr(path: str, name: str, platform: str | None = None, libc: Any = None) -> None:
    """Remove the extended attribute ``name`` from ``path`` itself (never through a link); nothing
    when it has none. macOS only (``removexattr``); nothing to do elsewhere, where the attributes
    Gupper removes (``com.apple.quarantine``) do not exist.

    Raises:
        OSError: the attribute is there and cannot be removed.
    """
    if (sys.platform if platform is None else platform) != "darwin":
        return
    import ctypes

    lib = libc if libc is not None else ctypes.CDLL(None, use_errno=True)
    lib.removexattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.removexattr.restype = ctypes.c_int
    if lib.removexattr(os.fsencode(path), name.encode(), XATTR_NOFOLLOW) != 0:
        code = ctypes.get_errno()
        if code != ENOATTR:
            raise OSError(code, os.strerror(code), path)
