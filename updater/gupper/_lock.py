"""Locks the OS keeps: one updater per install at a time, and which version folders running apps use.

Not filelock: in a one-file app it costs 2.4 MB and 10-17 ms of import on every start (it brings
sqlite3, asyncio and multiprocessing; bench item 9), for what the OS gives in a few lines. A lock
belongs to an open file: it ends when the file is closed or the process dies (a kill leaves no
stale lock), and a second open of the same file, in this process or another, is refused while it
is held.

- :class:`ExclusiveLock`: the update lock, a non-blocking exclusive lock on a file beside the
  install (shared by every user of it: a terminal server, fast user switching). The file exists
  only while someone holds it: it is removed on release, and a holder checks after locking that
  the name still names the file it locked (the way to remove a lock file without a race).
- :func:`hold_in_use` / :func:`in_use`: every running instance of a one-folder app or app bundle
  holds a shared lock on the version it runs for as long as it runs; ``prune`` and the removal of
  a backup skip a version someone holds (an exclusive try fails). POSIX: ``flock`` on the folder
  holding the executable (a folder is never hard-linked, unlike the files a folder delta shares
  between versions; the lock follows the folder through renames, as a swapped app bundle's does).
  Windows: a folder cannot be byte-range locked, so ``LockFileEx`` on the executable itself, at an
  offset far past its end (no read of the file is ever blocked), through a handle opened with
  ``FILE_SHARE_DELETE`` (an update may still rename the file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

_BUSY = frozenset(
    {
        errno.EACCES,
        errno.EAGAIN,
        errno.EWOULDBLOCK,
        getattr(errno, "EDEADLK", errno.EAGAIN),
        getattr(errno, "EDEADLOCK", errno.EAGAIN),
    }
)


def try_lock(fd: int) -> bool:
    """Lock the open file ``fd`` exclusively if nobody holds it; False at once otherwise (also used by the
    publisher's locks)."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # one byte at offset 0, the same for every holder
        except OSError as e:
            if e.errno in _BUSY:
                return False
            raise
        return True
    return _flock(fd, exclusive=True)


def _flock(fd: int, *, exclusive: bool) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _BUSY:
            return False
        raise
    return True


class ExclusiveLock:
    """A non-blocking, exclusive lock on ``path`` (created if missing, removed on release)."""

    ATTEMPTS = 3
    """Opens of the file when it keeps being removed under us by holders releasing it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False at once, without waiting, when someone else holds it.

        The file is created readable by every user (``0666`` less the umask): another user of a
        shared install opens it read-only when it may not write it, which is enough to lock it.

        Raises:
            OSError: the file cannot be created or opened (the caller says which folder to fix).
        """
        for _ in range(self.ATTEMPTS):
            fd = self._open()
            try:
                locked = try_lock(fd)
                same = locked and self._still_named(fd)
            except BaseException:
                os.close(fd)
                raise
            if same:
                self._fd = fd
                return True
            os.close(fd)
            if not locked:
                return False
        return False  # removed under us every time: someone releases and takes it in a loop

    def _open(self) -> int:
        binary = getattr(os, "O_BINARY", 0)
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | binary, 0o666)
        except PermissionError:
            return os.open(self.path, os.O_RDONLY | binary)  # another user's lock file in a shared install

    def _still_named(self, fd: int) -> bool:
        """Whether ``path`` still names the file locked through ``fd`` (a holder releasing it may have
        removed it between our open and our lock). Windows never removes a file someone has open."""
        if sys.platform == "win32":
            return True
        try:
            named, held = os.stat(self.path), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        """Let go and remove the file (POSIX: removed first, so nobody locks a file that is going away;
        Windows: removed after, where a file another process has open cannot be removed at all)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if sys.platform != "win32":
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
            return
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # refused while another process has it open: it then removes it


# --- which versions running apps use ----------------------------------------------------------


class InUseApi(Protocol):
    """How an instance marks the version it runs as in use, and how a pruner asks (per OS)."""

    def open(self, executable: Path) -> Any:
        """A handle to lock for ``executable``'s version."""

    def lock(self, handle: Any, exclusive: bool) -> bool:
        """Lock ``handle`` without waiting: shared (many holders) or exclusive; False when refused."""

    def close(self, handle: Any) -> None:
        """Close ``handle`` (ending its lock)."""


class PosixInUse:
    """``flock`` on the folder holding the executable."""

    def open(self, executable: Path) -> int:
        """The executable's folder, opened read-only (not inherited by child processes)."""
        return os.open(executable.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def lock(self, handle: int, exclusive: bool) -> bool:
        """``flock`` shared or exclusive, non-blocking."""
        return _flock(handle, exclusive=exclusive)

    def close(self, handle: int) -> None:
        """Close the folder."""
        os.close(handle)


LOCK_OFFSET = 1 << 62
"""Where the Windows in-use lock sits in the executable: far past its end, so no read is blocked."""


class WindowsInUse:
    """``LockFileEx`` on the executable, at :data:`LOCK_OFFSET` (kernel32 through ctypes, or a recorder in tests).

    The executable is opened as the running app's module archive is (:func:`gupper.frozen_archive.open_shared`:
    for reading, every sharing mode allowed, so an update may still rename it)."""

    LOCKFILE_FAIL_IMMEDIATELY = 0x1
    LOCKFILE_EXCLUSIVE_LOCK = 0x2

    def __init__(
        self,
        kernel32: Any,
        overlapped: Callable[[int], Any],
        open_fd: Callable[[str], int] | None = None,
        os_handle: Callable[[int], Any] | None = None,
        close_fd: Callable[[int], None] = os.close,
    ) -> None:
        """``overlapped(offset)`` makes the OVERLAPPED structure naming the locked byte's offset;
        ``open_fd`` opens a C runtime descriptor, ``os_handle`` gives its Windows handle."""
        if open_fd is None:
            from .frozen_archive import open_shared

            open_fd = open_shared
        if os_handle is None:
            import msvcrt

            os_handle = msvcrt.get_osfhandle  # type: ignore[attr-defined,unused-ignore]
        self.kernel32, self.overlapped = kernel32, overlapped
        self.open_fd, self.os_handle, self.close_fd = open_fd, os_handle, close_fd

    def open(self, executable: Path) -> int:
        """The executable, opened for reading and shared with everyone (a C runtime descriptor)."""
        return self.open_fd(str(executable))

    def lock(self, handle: int, exclusive: bool) -> bool:
        """LockFileEx of one byte at :data:`LOCK_OFFSET`, failing at once when it is taken."""
        flags = self.LOCKFILE_FAIL_IMMEDIATELY | (self.LOCKFILE_EXCLUSIVE_LOCK if exclusive else 0)
        return bool(self.kernel32.LockFileEx(self.os_handle(handle), flags, 0, 1, 0, self.overlapped(LOCK_OFFSET)))

    def close(self, handle: int) -> None:
        """Close it (Windows drops the handle's locks)."""
        self.close_fd(handle)


def _windows_in_use() -> WindowsInUse:  # pragma: no cover - Windows only, run by the Windows CI job
    import ctypes
    from ctypes import wintypes

    class Overlapped(ctypes.Structure):
        _fields_ = [
            ("Internal", ctypes.c_size_t),
            ("InternalHigh", ctypes.c_size_t),
            ("Offset", wintypes.DWORD),
            ("OffsetHigh", wintypes.DWORD),
            ("hEvent", wintypes.HANDLE),
        ]

    def overlapped(offset: int) -> Any:
        return ctypes.byref(Overlapped(0, 0, offset & 0xFFFFFFFF, offset >> 32, None))

    k = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    k.LockFileEx.restype = wintypes.BOOL
    dword = wintypes.DWORD
    k.LockFileEx.argtypes = [wintypes.HANDLE, dword, dword, dword, dword, ctypes.c_void_p]
    return WindowsInUse(k, overlapped)


def in_use_api() -> InUseApi:
    """This OS's way."""
    return _windows_in_use() if sys.platform == "win32" else PosixInUse()


class InUse:
    """The shared lock a running instance holds on its version until it exits (:func:`hold_in_use`)."""

    def __init__(self, api: InUseApi, handle: Any) -> None:
        self.api, self.handle = api, handle

    def release(self) -> None:
        """Let go (the process ending does the same)."""
        handle, self.handle = self.handle, None
        if handle is not None:
            self.api.close(handle)


def hold_in_use(executable: Path, api: InUseApi | None = None) -> InUse | None:
    """Mark the version ``executable`` belongs to as in use by this process, until it exits (or the
    result is released); None when that cannot be done here (a folder that cannot be opened or
    locked): never an error, the app starts either way."""
    api = api or in_use_api()
    try:
        handle = api.open(executable)
    except OSError:
        return None
    try:
        if api.lock(handle, exclusive=False):
            return InUse(api, handle)
    except OSError:
        pass
    api.close(handle)
    return None


def in_use(executable: Path, api: InUseApi | None = None) -> bool:
    """Whether a running instance holds the version ``executable`` belongs to (an exclusive lock is
    refused); False when it is gone. A folder that cannot be opened counts as in use (never removed);
    one whose filesystem has no locks (some network shares) as not: no instance can hold it there either."""
    api = api or in_use_api()
    try:
        handle = api.open(executable)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        return not api.lock(handle, exclusive=True)
    except OSError:
        return False
    finally:
        api.close(handle)
