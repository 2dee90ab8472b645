"""The update lock (``gupper._lock``): exclusive, never waits, gone with its holder, even a killed one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from gupper._lock import ExclusiveLock

HOLDER = """
import sys, time
sys.path[:0] = {paths!r}
from pathlib import Path
from gupper._lock import ExclusiveLock
assert ExclusiveLock(Path({path!r})).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_holder_is_refused_at_once_and_gets_it_after_a_release(tmp_path: Path) -> None:
    first, second = ExclusiveLock(tmp_path / "update.lock"), ExclusiveLock(tmp_path / "update.lock")
    assert first.acquire()
    assert not second.acquire()  # another open of the file: refused, even in this process
    first.release()
    assert second.acquire()
    second.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "update.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(paths=sys.path, path=str(path))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert not ExclusiveLock(path).acquire()  # held by another process
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lock = ExclusiveLock(path)
    assert lock.acquire()  # the OS dropped it with the process
    lock.release()
