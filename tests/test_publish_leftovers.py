"""What a killed ``gupper-publish`` leaves behind, and that the next run removes it (issue 22 item 9).

Real processes killed with SIGKILL at a moment the test controls: a publish stopped while it
waits for the channel's lock (its work folder full), a writer stopped inside the folder store's
compare-and-swap (holding the lock), a process holding a work folder. Then the next real
``gupper-publish`` run, and what is left in TMPDIR and in the served channel folder.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper_publish.locks import OWNER, STALE, WORK_PREFIX, sweep

from .test_folder_delta import release

pytestmark = pytest.mark.posix  # SIGKILL, flock

KeyPair = tuple[Path, Ed25519PrivateKey, str]
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60


def env_with(tmpdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUPPER_")}
    env["TMPDIR"] = str(tmpdir)
    return env


def publish_cmd(store: Path, key: Path, build: Path) -> list[str]:
    command = ["publish", "--store", str(store), "--key", str(key), "--force", str(build)]
    return [sys.executable, "-m", "gupper_publish", *command]


def publish_again(store: Path, key: Path, build: Path, tmpdir: Path) -> None:
    """The next ``gupper-publish`` run, which must succeed."""
    done = subprocess.run(
        publish_cmd(store, key, build),
        env=env_with(tmpdir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """A bounded wait on a condition another process brings about."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.02)


def work_folders(tmpdir: Path) -> list[Path]:
    return sorted(p for p in tmpdir.iterdir() if p.name.startswith(WORK_PREFIX))


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def locks_in(store: Path) -> list[str]:
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*.lock"))


def test_a_publish_killed_mid_way_leaves_a_work_folder_the_next_publish_removes(
    tmp_path: Path, keypair: KeyPair
) -> None:
    store, tmpdir = tmp_path / "store", tmp_path / "tmp"
    tmpdir.mkdir()
    build = release(tmp_path / "dist", "1.0.0")
    channel = store / "app" / "stable"
    channel.mkdir(parents=True)
    # Another writer holds the channel: the publish uploads its release, then waits there.
    held = os.open(channel / ".channel.json.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(held, fcntl.LOCK_EX)
    proc = subprocess.Popen(
        publish_cmd(store, keypair[0], build), env=env_with(tmpdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: (store / "app" / "1.0.0").is_dir() or proc.poll() is not None, "the release's upload")
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
        os.close(held)  # the file stays, as a killed holder's would
    left = work_folders(tmpdir)
    kept = sum(size_of(f) for f in left)
    print(f"\na killed publish left {len(left)} work folder(s), {kept} bytes, in TMPDIR")
    assert left and kept > 300_000  # the release's archive at least
    publish_again(store, keypair[0], build, tmpdir)
    assert work_folders(tmpdir) == []
    assert locks_in(store) == []
    assert (channel / "latest.json").is_file()


HOLDER = """
import sys
from pathlib import Path
sys.path[:0] = [{root!r}]
from gupper_publish import LocalStore

class Stalled(LocalStore):
    def _write_temp(self, *args, **kwargs):
        print("inside", flush=True)  # inside the compare-and-swap, holding its lock
        sys.stdin.read()  # until killed
        raise SystemExit(1)

Stalled(Path({store!r})).swap("app/stable/channel.json", b"{{}}", expect_etag=None, content_type="x", cache_control="x")
"""


def test_a_writer_killed_inside_a_swap_leaves_no_lock_file_after_the_next_publish(
    tmp_path: Path, keypair: KeyPair
) -> None:
    """The folder store's lock files sat beside latest.json in the served channel folder for good."""
    store, tmpdir = tmp_path / "store", tmp_path / "tmp"
    tmpdir.mkdir()
    code = HOLDER.format(root=str(ROOT / "publisher"), store=str(store))
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env_with(tmpdir)
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "inside\n"
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.wait(TIMEOUT)
    assert locks_in(store) == ["app/stable/.channel.json.lock"]  # what the kill left
    start = time.monotonic()
    publish_again(store, keypair[0], release(tmp_path / "dist", "1.0.0"), tmpdir)
    assert time.monotonic() - start < 30  # a lock nobody holds is taken over, not waited on (60 s)
    assert locks_in(store) == []


KEEPER = """
import sys
sys.path[:0] = [{root!r}]
from gupper_publish.locks import work_folder
with work_folder() as folder:
    (folder / "archive.tar.gz").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    sys.stdin.read()  # until killed
"""


def test_sweep_removes_the_folders_of_dead_publishes_only(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    keeper = subprocess.Popen(
        [sys.executable, "-c", KEEPER.format(root=str(ROOT / "publisher"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env_with(tmpdir),
    )
    try:
        assert keeper.stdout is not None
        alive = Path(keeper.stdout.readline().strip())
        assert alive.parent == tmpdir and (alive / OWNER).is_file()
        assert sweep(tmpdir) == [] and alive.is_dir() and (alive / "archive.tar.gz").is_file()  # it still runs
        keeper.send_signal(signal.SIGKILL)
        assert keeper.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        keeper.kill()
        keeper.wait(TIMEOUT)
    legacy = tmpdir / "gupper-folder-abc123"  # what releases before owner files left
    legacy.mkdir()
    old = time.time() - STALE - 60
    os.utime(legacy, (old, old))
    unrelated = tmpdir / "something-else"
    unrelated.mkdir()
    recent = tmpdir / f"{WORK_PREFIX}recent"  # likewise, but younger than a day: it may be running
    recent.mkdir()
    (recent / "archive.tar.gz").write_bytes(b"x")
    # Made by a publish killed before it made its owner file (or by one about to make it, which
    # then takes another folder): empty, so it goes at once.
    ownerless = tmpdir / f"{WORK_PREFIX}killed-before-its-owner-file"
    ownerless.mkdir()
    assert sorted(sweep(tmpdir)) == sorted([alive, legacy, ownerless])
    assert recent.is_dir() and unrelated.is_dir() and not alive.exists() and not legacy.exists()
    assert not ownerless.exists()
