"""Locks in shared folders, and the work folders of running publishes, that a killed publisher never leaves behind.

A lock belongs to an open file (``fcntl.flock``; ``msvcrt.locking`` on Windows): it ends when its
holder closes the file or dies, so a killed publisher never leaves a lock that blocks. Its file
is removed when the holder lets go, so nothing stays beside what a static host serves (the
folder store's channel folders), and a file left by a killed holder is taken over and removed by
the next. Taking over is safe because a holder checks, once locked, that the name still leads to
the file it locked: one that locked a file another holder removed in between tries again.

A publish works in a folder under the system's temp dir (archives, extracted releases, patches:
tens of MB). SIGKILL, an OOM kill or a power cut leaves it there; so each holds a lock on a file
in it, and the next publish removes every such folder whose lock nobody holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gupper._lock import try_lock

from .errors import StoreError

POLL = 0.05  # seconds between tries while another holder has the lock
WORK_PREFIX = "gupper-publish-"
OWNER = ".gupper-owner.lock"
STALE = 24 * 3600.0  # seconds: a work folder without an owner file this old is an earlier version's leftover
_LEGACY_PREFIXES = (WORK_PREFIX, "gupper-folder-")  # what releases before issue 22 left without an owner file


class FileLock:
    """An exclusive lock on ``path`` whose file exists only while it is held (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self, *, create: bool = True) -> bool:
        """Take the lock if nobody holds it; False at once otherwise (or, with ``create`` off, if there is no file).

        Raises:
            OSError: the file cannot be created or opened.
        """
        flags = os.O_RDWR | (os.O_CREAT if create else 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            if create:
                raise
            return False
        try:
            if try_lock(fd) and _same_file(fd, self.path):
                self._fd = fd
                return True
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return False

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for its holder.

        Raises:
            StoreError: another holder kept it for all of ``timeout``.
            OSError: the file cannot be created or opened.
        """
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"{self.path} stayed locked for {timeout:g} s: another gupper-publish is writing there; try again "
                    "when it is done"
                )
            time.sleep(POLL)

    def release(self, *, remove: bool = True) -> None:
        """Let go, removing the file unless ``remove`` is off (POSIX removes it while still holding it;
        Windows cannot remove an open file, so it tries after closing and leaves it to the next holder if
        another process opened it in between)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if remove and sys.platform != "win32":
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(fd)
        if remove and sys.platform == "win32":
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def held(path: Path, timeout: float) -> Iterator[None]:
    """Hold the lock on ``path`` for the block (waiting up to ``timeout`` seconds); its file is gone after."""
    lock = FileLock(path)
    lock.acquire(timeout)
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def work_folder(tmp: Path | None = None) -> Iterator[Path]:
    """A fresh folder for one publish under ``tmp`` (the system's temp dir), removed after the block.

    First removes what killed publishes left there (:func:`sweep`); the lock on the folder's owner
    file tells the next publish that this one is alive.

    Raises:
        OSError: no folder can be made there.
    """
    base = Path(tmp or tempfile.gettempdir())
    sweep(base)
    for _ in range(5):
        folder = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=base))
        owner = FileLock(folder / OWNER)
        try:
            if owner.try_acquire():
                break
        except FileNotFoundError:
            pass
        # Another publish's sweep found the folder in the instant before its owner file was locked,
        # and is removing it: leave it to that sweep, take another.
    else:
        raise OSError(f"cannot keep a work folder in {base}: other publishes keep removing them")
    try:
        yield folder
    finally:
        # Emptied while the owner file is held, then the file, then the folder: a kill at any point
        # leaves a folder whose owner nobody holds, or an empty one, and the next sweep removes both.
        with contextlib.suppress(OSError):
            for entry in folder.iterdir():
                if entry.name != OWNER:
                    _remove(entry)
        owner.release()
        shutil.rmtree(folder, ignore_errors=True)


def sweep(base: Path, now: float | None = None) -> list[Path]:
    """Remove the work folders under ``base`` of publishes that are gone; returns them.

    A folder whose owner file nobody holds is a killed publish's: it is emptied while its lock is
    held, so a publish that just made it finds it gone and takes another. One with no owner file
    that is empty was made by a publish killed before it made the file, or by one about to make
    it, which then takes another folder: it goes at once (``rmdir`` removes only an empty folder).
    One with no owner file but with files in it was left by a release before owner files: it goes
    once it is :data:`STALE`. Errors are ignored: another publish may be sweeping too, and what
    stays is tried again next time.
    """
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(_LEGACY_PREFIXES)]
    except OSError:
        return []
    for folder in candidates:
        owner = FileLock(folder / OWNER)
        try:
            if folder.is_symlink() or not folder.is_dir():
                continue
            if owner.try_acquire(create=False):
                with contextlib.suppress(OSError):
                    for entry in folder.iterdir():
                        if entry.name != OWNER:
                            _remove(entry)
                owner.release()
            elif owner.path.exists():
                continue  # alive
            elif now - folder.stat().st_mtime < STALE:
                try:
                    folder.rmdir()
                except OSError:
                    continue  # not empty: an earlier release's, too new to tell
                removed.append(folder)
                continue
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            owner.release(remove=False)
            continue
        removed.append(folder)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
