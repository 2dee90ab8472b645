"""Shared installs (issue 21, item 4): one update lock per install, whoever runs it, and version
folders that running instances use are never pruned. Real processes hold the locks; the
Windows branch of the in-use lock is checked call by call here and runs for real in the Windows job."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gupper import Status
from gupper._lock import LOCK_OFFSET, ExclusiveLock, WindowsInUse, hold_in_use, in_use
from gupper.folder import FolderLayout, prune

from .conftest import fake_app

EXE = "app.exe" if sys.platform == "win32" else "app"

HOLDER = """
import sys
sys.path[:0] = {paths!r}
from pathlib import Path
from gupper._lock import hold_in_use
held = hold_in_use(Path(sys.argv[1]))
print("held" if held is not None else "not held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@contextmanager
def running_instance(executable: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding ``executable``'s version as a running app does, until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(paths=sys.path), str(executable)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the instance exits
        proc.wait(timeout=30)


def versions(tmp_path: Path, *names: str) -> FolderLayout:
    layout = FolderLayout(tmp_path / "root", EXE)
    for name in names:
        layout.version_dir(name).mkdir(parents=True)
        (layout.version_dir(name) / EXE).write_bytes(name.encode())
    return layout


def test_a_running_instance_holds_its_version_and_lets_go_when_it_exits(tmp_path: Path) -> None:
    layout = versions(tmp_path, "1.0.0", "2.0.0")
    exe1, exe2 = layout.version_dir("1.0.0") / EXE, layout.version_dir("2.0.0") / EXE
    assert not in_use(exe1) and not in_use(layout.version_dir("9.9.9") / EXE)
    with running_instance(exe1), running_instance(exe1):  # two instances of one version: shared
        assert in_use(exe1) and not in_use(exe2)
        mine = hold_in_use(exe1)  # and this process too
        assert mine is not None
        mine.release()
    assert not in_use(exe1)


def test_prune_keeps_a_version_a_running_instance_uses_and_removes_it_after(tmp_path: Path) -> None:
    layout = versions(tmp_path, "1.0.0", "2.0.0", "3.0.0")
    with running_instance(layout.version_dir("1.0.0") / EXE):
        assert prune(layout, {"3.0.0", "2.0.0"}) == []
        assert (layout.version_dir("1.0.0") / EXE).read_bytes() == b"1.0.0"  # every file still there
    assert prune(layout, {"3.0.0", "2.0.0"}) == ["1.0.0"]
    assert sorted(p.name for p in layout.versions.iterdir()) == ["2.0.0", "3.0.0"]


def test_the_update_lock_file_exists_only_while_held_and_a_removed_one_is_not_taken(tmp_path: Path) -> None:
    path = tmp_path / ".gupper-lock"
    first = ExclusiveLock(path)
    assert first.acquire() and path.exists()
    assert not ExclusiveLock(path).acquire()
    first.release()
    assert not path.exists()  # no lock file left beside the install
    if sys.platform != "win32":  # (Windows removes no file anyone has open)
        # a holder that released (and removed the file) between another's open and lock: that one
        # must not count a lock on the removed file as the lock
        late = ExclusiveLock(path)
        fd = late._open()
        os.unlink(path)
        assert not late._still_named(fd)
        os.close(fd)


@pytest.mark.posix
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switches to the nobody user: needs root")
def test_another_user_of_a_shared_install_takes_the_same_lock() -> None:
    """The lock file is made by one user (0644 here); another one who may not write it opens it read-only."""
    import tempfile

    with tempfile.TemporaryDirectory() as shared:  # not under pytest's 0700 folders: nobody can reach it
        Path(shared).chmod(0o777)  # a shared install: every user may create files in it
        check_shared_lock(Path(shared) / ".gupper-lock")


def check_shared_lock(path: Path) -> None:
    script = (
        f"import fcntl, os, sys\nsys.path[:0] = {sys.path!r}\nfrom pathlib import Path\n"
        "from gupper._lock import ExclusiveLock\n"
        "os.setgid(65534); os.setuid(65534)\nprint(ExclusiveLock(Path(sys.argv[1])).acquire())\n"
    )
    mine = ExclusiveLock(path)
    old = os.umask(0o022)
    try:
        assert mine.acquire()
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    command = [sys.executable, "-c", script, str(path)]
    other = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert other.stdout.strip() == "False", other.stderr  # refused, not an error
    mine.release()
    other = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert other.stdout.strip() == "True", other.stderr


class Kernel32:
    """Records the in-use lock's calls and answers like Windows: shared locks coexist, an exclusive one does not."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.holders: dict[int, bool] = {}
        self.next = 100

    def open_fd(self, path: str) -> int:
        self.next += 1
        self.calls.append(("open", path))
        return self.next

    def LockFileEx(self, handle: int, flags: int, reserved: int, low: int, high: int, overlapped: Any) -> bool:
        self.calls.append(("LockFileEx", handle, flags, low, high, overlapped))
        exclusive = bool(flags & 0x2)
        if self.holders and (exclusive or any(self.holders.values())):
            return False
        self.holders[handle] = exclusive
        return True

    def close_fd(self, fd: int) -> None:
        self.calls.append(("close", fd))
        self.holders.pop(fd + 1000, None)


def test_the_windows_in_use_lock_is_a_byte_past_the_end_of_the_exe_opened_for_sharing() -> None:
    from gupper import frozen_archive

    k = Kernel32()
    api = WindowsInUse(k, lambda offset: ("OVERLAPPED", offset), k.open_fd, lambda fd: fd + 1000, k.close_fd)
    exe = Path("C:/Users/u/AppData/Local/Programs/app/versions/1.0.0/app.exe")
    held = hold_in_use(exe, api)
    assert held is not None and in_use(exe, api)
    held.release()
    assert not in_use(exe, api)
    assert [c for c in k.calls if c[0] == "open"] == [("open", str(exe))] * 3
    locks = [c for c in k.calls if c[0] == "LockFileEx"]
    assert [c[1:3] for c in locks] == [(1101, 0x1), (1102, 0x3), (1103, 0x3)]  # shared; exclusive tries, at once
    assert all(c[3:] == (1, 0, ("OVERLAPPED", LOCK_OFFSET)) for c in locks)  # one byte, far past the end
    assert [c[1] for c in k.calls if c[0] == "close"] == [102, 101, 103]  # every handle closed
    # by default the exe is opened as the running app's module archive is: shared with a later rename
    default = WindowsInUse(k, lambda offset: offset, os_handle=lambda fd: fd)
    assert default.open_fd is frozen_archive.open_shared


def folder_install(tmp_path: Path) -> FolderLayout:
    layout = FolderLayout(tmp_path / "install", "app")
    layout.version_dir("1.0.0").mkdir(parents=True)
    (layout.version_dir("1.0.0") / "app").write_bytes(fake_app("1.0.0"))
    (layout.version_dir("1.0.0") / "app").chmod(0o755)
    layout.current.symlink_to("versions/1.0.0")
    return layout


@pytest.mark.posix
def test_two_users_of_one_install_never_update_it_at_once(sim: Any, tmp_path: Path) -> None:
    """Two users (two state folders) start the same install; while one updates, the other is busy."""
    from .test_packages import folder_updater, serve_release

    layout = folder_install(tmp_path)
    serve_release(sim, tmp_path, "2.0.0")
    seen: list[Status] = []

    def other_user_starts(step: str) -> None:
        if step == "checked":
            other = folder_updater(sim, layout, state_dir=str(tmp_path / "state-of-bob"))
            seen.append(other.run(restart=False).status)

    alice = folder_updater(sim, layout, state_dir=str(tmp_path / "state-of-alice"))
    alice.checkpoint = other_user_starts
    assert alice.run(restart=False).status is Status.INSTALLED
    assert seen == [Status.BUSY]
    assert not alice.layout or not alice.layout.lock_path.exists()  # released, and gone
