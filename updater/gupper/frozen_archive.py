"""A running one-file app keeps reading its own bundled modules after its file is replaced.

PyInstaller's reader of the bundled modules (the PYZ archive, ``pyimod01_archive``) reopens the
executable *by path*, at the offsets it read at start, for every module imported for the first
time, for the life of the process. Once an update renames the new binary into that path (the
running app updating itself in the background, or another instance updating while this one
runs), such an import reads the new file's bytes at the old offsets and the app dies
(``zlib.error: incorrect header check``, or "appears to have been moved or deleted").

:func:`pin_own_archive` opens the file once, while it is still this process's own, and makes the
reader's opens of that one path read through the open handle: the old inode on POSIX (alive as
long as a handle holds it), the renamed-aside image on Windows (opened with
``FILE_SHARE_DELETE``, so the rename of an update is not refused). Reads use ``os.pread`` (POSIX)
or a lock around seek and read (Windows), so imports in several threads stay safe. Any other
file is opened as before. :class:`~gupper.Updater` calls it when it is created in a frozen app;
nothing happens when the running app is not a PyInstaller 6 bundle.
"""

from __future__ import annotations

import builtins
import logging
import os
import sys
import threading
from collections.abc import Callable, MutableMapping
from types import ModuleType
from typing import Any

log = logging.getLogger("gupper")

_READER_MODULE = "pyimod01_archive"
_IMPORTER_MODULE = "pyimod02_importers"


class PinnedFile:
    """One file held open; :meth:`view` hands out independent read positions over it."""

    def __init__(self, path: str, fd: int, pread: Callable[[int, int, int], bytes] | None = None) -> None:
        self.path, self.fd = path, fd
        self._pread = pread if pread is not None else getattr(os, "pread", None)
        self._lock = threading.Lock()

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes (fewer at the end) from ``offset``, whatever other threads read meanwhile."""
        if self._pread is not None:
            chunks: list[bytes] = []
            while size > 0:
                chunk = self._pread(self.fd, size, offset)
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
                size -= len(chunk)
            return b"".join(chunks)
        with self._lock:  # Windows has no pread: one seek-and-read at a time
            os.lseek(self.fd, offset, os.SEEK_SET)
            chunks = []
            while size > 0:
                chunk = os.read(self.fd, size)
                if not chunk:
                    break
                chunks.append(chunk)
                size -= len(chunk)
            return b"".join(chunks)

    def view(self) -> PinnedView:
        """A file-like object at offset 0, as ``open(path, "rb")`` would return."""
        return PinnedView(self)


class PinnedView:
    """What the archive reader gets from ``open``: ``seek``/``tell``/``read`` and a context manager."""

    def __init__(self, pinned: PinnedFile) -> None:
        self._pinned, self._pos = pinned, 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the read position (from the start or the current position)."""
        if whence == os.SEEK_SET:
            self._pos = offset
        elif whence == os.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._pinned.fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        """The read position."""
        return self._pos

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the read position (to the end when negative)."""
        if size < 0:
            size = max(os.fstat(self._pinned.fd).st_size - self._pos, 0)
        data = self._pinned.read_at(self._pos, size)
        self._pos += len(data)
        return data

    def close(self) -> None:
        """Nothing to close: the pinned handle lives as long as the process."""

    def __enter__(self) -> PinnedView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PinnedOpen:
    """``open`` for the archive reader's module: the pinned path through the handle, the rest as usual."""

    def __init__(self, pinned: PinnedFile) -> None:
        self.pinned = pinned

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "rb" and not args and not kwargs and file == self.pinned.path:
            return self.pinned.view()
        return builtins.open(file, mode, *args, **kwargs)


def pin_own_archive(
    modules: MutableMapping[str, ModuleType] | None = None,
    candidates: Callable[[str], list[str]] | None = None,
    open_fd: Callable[[str], int] | None = None,
    pread: Callable[[int, int, int], bytes] | None = None,
) -> bool:
    """Make this frozen app's module reader read its own file through a handle held open from now
    on; True when it does (or already did). Never raises: a layout it does not know is left as it is.

    The handle is the first of :func:`own_file_candidates` whose bytes at the archive's offset are
    a PYZ archive. ``modules``, ``candidates``, ``open_fd`` and ``pread`` are for tests
    (``sys.modules``, :func:`own_file_candidates`, :func:`open_shared` and ``os.pread`` by default).
    """
    mods = sys.modules if modules is None else modules
    reader_module, importers = mods.get(_READER_MODULE), mods.get(_IMPORTER_MODULE)
    archive = getattr(importers, "pyz_archive", None)
    path, offset = getattr(archive, "_filename", None), getattr(archive, "_start_offset", None)
    if reader_module is None or not isinstance(path, str) or not isinstance(offset, int):
        return False
    if isinstance(reader_module.__dict__.get("open"), PinnedOpen):
        return True
    for candidate in (candidates or own_file_candidates)(path):
        try:
            fd = (open_fd or open_shared)(candidate)
        except OSError as e:
            log.debug("gupper: cannot hold %s open (%s)", candidate, e)
            continue
        pinned = PinnedFile(path, fd, pread)
        try:
            is_archive = pinned.read_at(offset, len(_PYZ_MAGIC)) == _PYZ_MAGIC
        except OSError:
            is_archive = False
        if is_archive:
            reader_module.__dict__["open"] = PinnedOpen(pinned)
            return True
        os.close(fd)
    log.debug("gupper: %s holds no module archive at offset %d; not pinned", path, offset)
    return False


_PYZ_MAGIC = b"PYZ\0"


def own_file_candidates(path: str, platform: str | None = None) -> list[str]:
    """Where this process's own image can be opened, best first: on Linux ``/proc/self/exe``, which
    names the running image even after its path was given to another file; then ``path``."""
    return ["/proc/self/exe", path] if (platform or sys.platform).startswith("linux") else [path]


def open_shared(path: str) -> int:
    """A read-only descriptor of ``path``; on Windows opened with ``FILE_SHARE_DELETE``, so an update
    may still rename the file aside while it is held (Python's ``open`` would refuse that rename)."""
    if sys.platform == "win32":
        return _open_shared_windows(path)
    return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


def _open_shared_windows(path: str) -> int:
    """CreateFileW with FILE_SHARE_READ | WRITE | DELETE, as a C runtime descriptor."""
    import ctypes
    import msvcrt
    from ctypes import wintypes

    generic_read, share_all, open_existing, invalid = 0x80000000, 0x7, 3, wintypes.HANDLE(-1).value
    k = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    k.CreateFileW.restype = wintypes.HANDLE
    k.CreateFileW.argtypes = [
        wintypes.LPCWSTR,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.LPVOID,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.HANDLE,
    ]
    handle = k.CreateFileW(path, generic_read, share_all, None, open_existing, 0, None)
    if handle in (None, invalid):
        raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined,unused-ignore]
    fd: int = msvcrt.open_osfhandle(handle, os.O_RDONLY | os.O_BINARY)  # type: ignore[attr-defined,unused-ignore]
    return fd
