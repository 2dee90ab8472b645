"""One updater per app and user at a time: a non-blocking, exclusive lock on a file.

Not filelock: in a one-file app it costs 2.4 MB and 10-17 ms of import on every start (it brings
sqlite3, asyncio and multiprocessing; bench item 9), for what the OS gives in a few lines. The
lock belongs to the open file: it ends when the file is closed or the process dies (a kill
leaves no stale lock), and a second open of the same file, in this process or another, is
refused while it is held.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

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
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _BUSY:
            return False
        raise
    return True


class ExclusiveLock:
    """A non-blocking, exclusive lock on ``path`` (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False at once, without waiting, when someone else holds it.

        Raises:
            OSError: the file cannot be created or opened (the caller says which folder to fix).
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        try:
            locked = try_lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go (closing the file releases the lock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
