"""Windows behaviour proven on any OS: Windows file semantics and antivirus locks injected through
``FileOps``, real processes killed between the two renames of the one-file swap, Ctrl+C sent to a
real waiting parent, the job object checked call by call against a recorded kernel32.

What only Windows can show (the real rename of a running exe, IsWow64Process2, the launcher's
Win32 branch) runs in the Windows job of .github/workflows/ci.yml.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gupper import InstallError, Status
from gupper.folder import FolderLayout, prune, publish_version, remove_tree, staging_dir, switch
from gupper.install import (
    RENAME_ATTEMPTS,
    FileOps,
    apply,
    check_writable,
    describe_write_error,
    make_backup,
    path_too_long,
    temp_path_for,
)
from gupper.platforms import Platform
from gupper.restart import (
    JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    Kernel32Api,
    exit_status,
    run_and_wait,
    std_handles,
)

from .conftest import MakeManifest, entry, fake_app
from .httpsim import Sim, serve
from .test_client import MANIFEST, make_updater

ROOT = Path(__file__).resolve().parent.parent
ACCESS_DENIED = PermissionError(errno.EACCES, "Access is denied")  # WinError 5
SHARING_VIOLATION = PermissionError(
    errno.EACCES, "The process cannot access the file because it is being used by another process"
)  # WinError 32


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """Restore the SIGINT/SIGBREAK handlers that an in-process Windows restart (run_and_wait) replaced."""
    names = [n for n in ("SIGINT", "SIGBREAK") if hasattr(signal, n)]
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names}
    yield
    for n, handler in saved.items():
        signal.signal(getattr(signal, n), handler)


class WinFS:
    """Windows semantics on real files: a running image may be renamed but not replaced or deleted;
    ``locks[kind]`` refusals (antivirus holding a fresh file) before an operation of that kind succeeds.

    Kinds: ``aside`` (renaming the running exe), ``in`` (renaming a file onto the exe's name),
    ``back`` (renaming the running image back onto it),
    ``prepare`` (renaming the new file before the swap), ``rename`` (any other rename, e.g. a
    version folder), ``replace``, ``rmtree``, ``unlink``, ``link``, ``create``.
    """

    def __init__(self, running: Path | None = None, **locks: int) -> None:
        self.running = {str(running)} if running else set()
        self.target = str(running) if running else ""
        self.locks = locks
        self.calls: list[str] = []
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] = lambda: None
        self.error = SHARING_VIOLATION

    def _locked(self, kind: str) -> None:
        if self.locks.get(kind, 0) > 0:
            self.locks[kind] -= 1
            self.calls.append(f"{kind} refused")
            raise self.error

    def rename(self, src: str, dst: str) -> None:
        if src == self.target:
            kind = "aside"
        elif dst == self.target:
            kind = "back" if src in self.running else "in"
        else:
            kind = "prepare" if dst.endswith(".tmp.exe") else "rename"
        self._locked(kind)
        if os.path.exists(dst):
            raise FileExistsError(errno.EEXIST, "Cannot create a file when that file already exists", dst)
        os.rename(src, dst)
        self.calls.append(kind)
        if src in self.running:
            self.running.discard(src)
            self.running.add(dst)

    def replace(self, src: str, dst: str) -> None:
        self._locked("replace")
        if dst in self.running:
            raise PermissionError(errno.EACCES, "Access is denied", dst)
        os.replace(src, dst)
        self.calls.append("replace")

    def unlink(self, path: str) -> None:
        self._locked("unlink")
        if path in self.running:
            raise PermissionError(errno.EACCES, "Access is denied", path)
        os.unlink(path)

    def rmtree(self, path: str) -> None:
        self._locked("rmtree")
        import shutil

        shutil.rmtree(path)
        self.calls.append("rmtree")

    def link(self, src: str, dst: str) -> None:
        self._locked("link")
        os.link(src, dst)

    def create(self, path: str) -> None:
        self._locked("create")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))

    def sleep(self, seconds: float) -> None:
        self.calls.append("sleep")
        self.sleeps.append(seconds)
        self.on_sleep()

    def ops(self) -> FileOps:
        return FileOps(
            replace=self.replace,
            rename=self.rename,
            unlink=self.unlink,
            sleep=self.sleep,
            fsync_dir=lambda p: None,
            rmtree=self.rmtree,
            link=self.link,
            create=self.create,
            barrier=lambda p: None,
        )


def exe_pair(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "app.exe"
    target.write_bytes(b"old")
    new = temp_path_for(target, "windows")
    new.write_bytes(b"new")
    return target, new


# --- the one-file swap: two renames back to back, every wait with the exe in place ---


@pytest.mark.parametrize(("prepare", "moving_in"), [(0, 0), (3, 0), (0, 3), (2, 5)])
def test_every_wait_of_the_windows_swap_happens_with_an_exe_in_place(
    tmp_path: Path, prepare: int, moving_in: int
) -> None:
    target, new = exe_pair(tmp_path)
    fs = WinFS(target, prepare=prepare, **{"in": moving_in})
    fs.on_sleep = lambda: assert_runnable(target)  # what a start at that moment would find
    apply(new, target, "windows", fs.ops())
    assert target.read_bytes() == b"new" and (tmp_path / "app.exe.old").read_bytes() == b"old"
    assert len(fs.sleeps) == prepare + moving_in
    # The two renames run back to back: nothing (no sleep, no other call) between moving the
    # running exe aside and moving the new one in.
    calls = fs.calls
    for i, call in enumerate(calls):
        if call == "aside":
            assert calls[i + 1] in ("in", "in refused"), calls
            if calls[i + 1] == "in refused":
                assert calls[i + 2] == "back", calls  # the undo, at once
    assert calls.count("aside") == moving_in + 1 and calls[-2:] == ["aside", "in"], calls


def assert_runnable(target: Path) -> None:
    assert target.is_file(), "the exe is missing while the updater waits"


def test_a_swap_refused_past_every_retry_leaves_the_old_exe_in_place(tmp_path: Path) -> None:
    target, new = exe_pair(tmp_path)
    fs = WinFS(target, **{"in": 100})
    fs.on_sleep = lambda: assert_runnable(target)
    with pytest.raises(
        InstallError, match=r"could not replace .*app\.exe: The process cannot access the file .*left as it was"
    ):
        apply(new, target, "windows", fs.ops())
    assert target.read_bytes() == b"old" and not (tmp_path / "app.exe.old").exists()
    assert len(fs.sleeps) == RENAME_ATTEMPTS - 1


def test_an_interrupt_between_the_two_renames_puts_the_exe_back(tmp_path: Path) -> None:
    target, new = exe_pair(tmp_path)
    fs = WinFS(target)
    real_rename = fs.rename

    def rename(src: str, dst: str) -> None:
        if dst == str(target) and src not in fs.running:
            raise KeyboardInterrupt  # Ctrl+C landing after the first rename, before the second
        real_rename(src, dst)

    ops = fs.ops()
    ops.rename = rename
    with pytest.raises(KeyboardInterrupt):
        apply(new, target, "windows", ops)
    assert target.read_bytes() == b"old"


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from gupper.install import FileOps, apply
target, new, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
calls = []
def rename(src, dst):
    kind = "aside" if src == str(target) else "in" if dst == str(target) else "prepare"
    if kill_at == kind + "-before":
        os.kill(os.getpid(), signal.SIGKILL)
    os.rename(src, dst)
    if kind == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # right after this rename returned
ops = FileOps(rename=rename, fsync_dir=lambda p: None, barrier=lambda p: None)
apply(new, target, "windows", ops)
"""


@pytest.mark.posix  # SIGKILL; on Windows the real swap of a running exe runs in tests/test_e2e.py
@pytest.mark.parametrize(
    "kill_at",
    ["prepare-before", "prepare", "aside", "in"],
    ids=["before-anything", "after-prepare", "between-the-renames", "after-both"],
)
def test_a_real_kill_at_each_step_of_the_windows_swap(tmp_path: Path, kill_at: str) -> None:
    """A real process running the Windows swap is SIGKILLed at each step. Everywhere but between the
    two renames an exe is in place; between them (two calls back to back, nothing in between) the
    old exe is complete as ``app.exe.old`` and the verified new one beside it: the instant
    docs/crash-safety.md names."""
    target, new = exe_pair(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(target), str(new), kill_at],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    if kill_at == "aside":
        assert "app.exe" not in files and files["app.exe.old"] == b"old"
        assert [name for name, data in files.items() if data == b"new" and name.endswith(".tmp.exe")], files
    else:
        assert files["app.exe"] == (b"new" if kill_at == "in" else b"old"), files


# --- antivirus locks on every other rename kind ---


def folder_layout(tmp_path: Path) -> FolderLayout:
    layout = FolderLayout(tmp_path / "root", "app.exe")
    for version in ("1.0.0", "2.0.0"):
        layout.version_dir(version).mkdir(parents=True)
        (layout.version_dir(version) / "app.exe").write_bytes(version.encode())
    layout.current.write_text("versions\\1.0.0\n")
    return layout


def test_a_version_folder_held_by_antivirus_is_moved_into_place_after_retries(tmp_path: Path) -> None:
    layout = folder_layout(tmp_path)
    staged = layout.versions / ".3.0.0.gupper-1.tmp"
    staged.mkdir()
    (staged / "app.exe").write_bytes(b"3")
    fs = WinFS(rename=3)
    final = publish_version(layout, staged, "3.0.0", fs.ops())
    assert (final / "app.exe").read_bytes() == b"3" and not staged.exists() and len(fs.sleeps) == 3


def test_a_version_folder_held_past_every_retry_is_one_line_about_the_lock_not_disk_space(tmp_path: Path) -> None:
    layout = folder_layout(tmp_path)
    staged = layout.versions / ".3.0.0.gupper-1.tmp"
    staged.mkdir()
    fs = WinFS(rename=100)
    with pytest.raises(InstallError) as info:
        publish_version(layout, staged, "3.0.0", fs.ops())
    message = str(info.value)
    assert (
        "no write permission" in message and "being used by another process" in message and "disk space" not in message
    )
    assert "\n" not in message and staged.is_dir()


def test_the_current_pointer_held_by_antivirus_is_switched_after_retries(tmp_path: Path) -> None:
    layout = folder_layout(tmp_path)
    fs = WinFS(replace=4)
    switch(layout, "2.0.0", "windows", fs.ops())
    assert layout.current_version("windows") == "2.0.0" and len(fs.sleeps) == 4


def test_the_current_pointer_held_past_every_retry_still_names_the_old_version(tmp_path: Path) -> None:
    layout = folder_layout(tmp_path)
    with pytest.raises(InstallError, match=r"could not switch .*current to 2\.0\.0: .*left as it was"):
        switch(layout, "2.0.0", "windows", WinFS(replace=100).ops())
    assert layout.current_version("windows") == "1.0.0"
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]  # the temp pointer removed


def test_old_versions_held_by_antivirus_are_pruned_after_retries(tmp_path: Path) -> None:
    layout = folder_layout(tmp_path)
    fs = WinFS(rmtree=2)
    assert prune(layout, {"2.0.0"}, fs.ops()) == ["1.0.0"]
    assert sorted(p.name for p in layout.versions.iterdir()) == ["2.0.0"] and len(fs.sleeps) == 2
    staged = layout.versions / ".x.tmp"
    staged.mkdir()
    remove_tree(staged, WinFS(rmtree=3).ops())
    assert not staged.exists()


def test_the_backup_held_by_antivirus_is_put_in_place_after_retries(tmp_path: Path) -> None:
    target = tmp_path / "app.exe"
    target.write_bytes(b"old")
    backup = tmp_path / ".app.exe.gupper-previous"
    backup.write_bytes(b"an older backup, being scanned")
    fs = WinFS(replace=3, link=1)  # the link refused once: the backup is then a copy
    make_backup(target, backup, fs.ops())
    assert backup.read_bytes() == b"old" and len(fs.sleeps) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".app.exe.gupper-previous", "app.exe"]


# --- writability: a real probe, not os.access ---


def publish_one(sim: Sim, make_manifest: MakeManifest, key: str) -> None:
    """Release 2.0.0 (a fake app) for the platform ``key`` on the simulator."""
    new, name = fake_app("2.0.0"), f"app-2.0.0-{key}" + (".exe" if key.startswith("windows") else "")
    sim.routes[f"/app/2.0.0/{name}"] = new
    sim.routes[MANIFEST] = make_manifest(
        platforms={key: entry("2.0.0", size=len(new), sha=hashlib.sha256(new).hexdigest(), url=f"../2.0.0/{name}")}
    )


def test_an_acl_denied_folder_is_refused_before_downloading_with_a_permissions_line(
    tmp_path: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    """Program Files: ``os.access`` says writable (it ignores ACLs on Windows), creating a file is
    denied. The update stops before the download, with one line about permissions and where to
    install instead, not about disk space."""
    exe = tmp_path / "Program Files" / "App" / "app.exe"
    exe.parent.mkdir(parents=True)
    exe.write_bytes(fake_app("1.0.0"))
    assert os.access(exe.parent, os.W_OK)
    fs = WinFS(create=1)
    fs.error = ACCESS_DENIED
    with serve(tmp_path) as sim:
        publish_one(sim, make_manifest, "windows-amd64")
        updater = make_updater(
            sim, exe, keypair[2], platform=Platform("windows", "amd64"), state_dir=str(tmp_path / "state")
        )
        updater.file_ops = fs.ops()
        result = updater.run(restart=False)
    real = Path(os.path.realpath(exe))
    assert result.status is Status.FAILED
    assert result.message == (
        f"cannot update {real}: no write permission on {real.parent} (Access is denied); "
        r"reinstall the app in a folder you own (per user, under %LOCALAPPDATA%\Programs, "
        r"needs no administrator rights) "
        "or run the update with rights to that folder"
    )
    assert [r[1] for r in sim.requests] == ["/app/stable/latest.json"]  # nothing downloaded
    assert sorted(p.name for p in exe.parent.iterdir()) == ["app.exe"]


def test_the_probe_file_is_removed_and_other_failures_say_what_they_are(tmp_path: Path) -> None:
    target = tmp_path / "app"
    target.write_bytes(b"x")
    check_writable(target)
    assert [p.name for p in tmp_path.iterdir()] == ["app"]

    def fails(err: int, text: str) -> FileOps:
        def create(path: str) -> None:
            raise OSError(err, text)

        return FileOps(create=create)

    with pytest.raises(InstallError, match="is on a read-only volume; reinstall the app in a writable folder"):
        check_writable(target, ops=fails(errno.EROFS, "Read-only file system"))
    with pytest.raises(InstallError, match=r"no space left in .*; free some disk space"):
        check_writable(target, ops=fails(errno.ENOSPC, "No space left on device"))


ROOT_ONLY = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switches to the nobody user: needs root"
)

AS_NOBODY = """
import os, sys
from pathlib import Path
from gupper.install import check_writable
from gupper.errors import InstallError
target = Path(sys.argv[1])
if sys.argv[2] == "effective":
    os.setegid(65534); os.seteuid(65534)  # the real uid stays root: os.access answers for root
else:
    os.setgid(65534); os.setuid(65534)
print("os.access:", os.access(target.parent, os.W_OK))
try:
    check_writable(target)
    print("check_writable: passed")
except InstallError as e:
    print("check_writable:", e)
"""


@ROOT_ONLY
@pytest.mark.parametrize("who", ["effective", "real"])
def test_a_folder_this_user_cannot_write_is_refused_even_where_os_access_says_yes(tmp_path: Path, who: str) -> None:
    """A root-owned 0755 folder and a process running as nobody. With only the effective uid
    switched, ``os.access`` (which checks the real uid) says writable, like Windows ignoring ACLs;
    the probe is refused in both cases."""
    tmp_path.chmod(0o755)
    folder = tmp_path / "bin"
    folder.mkdir(mode=0o755)
    target = folder / "app"
    target.write_bytes(b"x")
    proc = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, str(target), who],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    access, verdict = proc.stdout.splitlines()
    assert access == f"os.access: {who == 'effective'}"
    assert verdict == (
        f"check_writable: cannot update {target}: no write permission on {folder} (Permission denied); "
        "reinstall the app in a folder you own or run the update with rights to that folder"
    )
    assert [p.name for p in folder.iterdir()] == ["app"]


# --- restart on Windows: the waiting parent ---


def test_std_handles_are_passed_explicitly_and_missing_ones_become_nul() -> None:
    assert std_handles(lambda fd: True) == {"stdin": 0, "stdout": 1, "stderr": 2}
    assert std_handles(lambda fd: fd != 1) == {"stdin": 0, "stdout": subprocess.DEVNULL, "stderr": 2}
    assert std_handles(lambda fd: False) == {}  # a windowed app: the new one starts as from a shortcut


def test_exit_codes_pass_through_os_exit() -> None:
    assert exit_status(0) == 0 and exit_status(3) == 3
    assert exit_status(0xC000013A) == -1073741510  # STATUS_CONTROL_C_EXIT: os._exit takes a C int
    assert exit_status(-signal.SIGINT) == 130


class Kernel32Recorder:
    """kernel32 as the waiting parent calls it, recorded (and a job object's limits kept)."""

    def __init__(self, assign: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.assign = assign
        self.handler: Any = None
        self.limit_flags: list[int] = []

    def SetConsoleCtrlHandler(self, handler: Any, add: bool) -> int:
        self.calls.append(("SetConsoleCtrlHandler", add))
        self.handler = handler
        return 1

    def CreateJobObjectW(self, attributes: None, name: None) -> int:
        self.calls.append(("CreateJobObjectW",))
        return 0x1234

    def SetInformationJobObject(self, job: int, info_class: int, info: Any, size: int) -> int:
        limits = info._obj  # what ctypes.byref points at
        assert size == ctypes.sizeof(limits)
        if sys.maxsize > 2**32:
            assert size == 144  # sizeof(JOBOBJECT_EXTENDED_LIMIT_INFORMATION) on 64-bit Windows
        assert type(limits).BasicLimitInformation.offset == 0 and type(limits).IoInfo.offset == (
            64 if sys.maxsize > 2**32 else 48
        )
        self.calls.append(("SetInformationJobObject", job, info_class, limits.BasicLimitInformation.LimitFlags))
        return 1

    def GetCurrentProcess(self) -> int:
        return -1

    def AssignProcessToJobObject(self, job: int, process: int) -> int:
        self.calls.append(("AssignProcessToJobObject", job, process))
        return int(self.assign)

    def CloseHandle(self, handle: int) -> int:
        self.calls.append(("CloseHandle", handle))
        return 1


def test_the_waiting_parent_ignores_ctrl_c_joins_a_kill_on_close_job_and_returns_the_childs_code(
    keep_signal_handlers: None,
) -> None:
    k = Kernel32Recorder()
    api = Kernel32Api(k, callback_type=ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32))
    seen: list[Any] = []

    def run(cmd: list[str], env: dict[str, str], **handles: Any) -> int:
        seen.append((cmd, env, handles, list(k.calls)))
        return 0xC000013A  # the app ended by Ctrl+C

    assert (
        run_and_wait(
            "C:/app.exe", ["--x"], {"A": "1"}, run=run, api=api, handles={"stdin": 0, "stdout": 1, "stderr": 2}
        )
        == -1073741510
    )
    ((cmd, env, handles, before_start),) = seen
    assert cmd == ["C:/app.exe", "--x"] and env == {"A": "1"} and handles == {"stdin": 0, "stdout": 1, "stderr": 2}
    kill = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert before_start == [  # all of it before the app starts: the app is created inside the job
        ("SetConsoleCtrlHandler", True),
        ("CreateJobObjectW",),
        ("SetInformationJobObject", 0x1234, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, kill),
        ("AssignProcessToJobObject", 0x1234, -1),
    ]
    assert k.calls[len(before_start) :] == [
        ("SetInformationJobObject", 0x1234, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, 0)
    ]  # released after a normal end
    assert k.handler(0) == 1 and k.handler(1) == 1  # CTRL_C_EVENT, CTRL_BREAK_EVENT: this process carries on


def test_a_job_that_cannot_be_joined_is_closed_and_the_app_still_starts(keep_signal_handlers: None) -> None:
    k = Kernel32Recorder(assign=False)
    api = Kernel32Api(k, callback_type=ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32))
    assert run_and_wait("C:/app.exe", [], {}, run=lambda cmd, env, **h: 7, api=api, handles={}) == 7
    assert k.calls[-1] == ("CloseHandle", 0x1234)


def test_an_app_that_cannot_start_is_an_install_error_and_the_job_is_released(keep_signal_handlers: None) -> None:
    k = Kernel32Recorder()
    api = Kernel32Api(k, callback_type=ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32))

    def run(cmd: list[str], env: dict[str, str], **handles: Any) -> int:
        raise OSError(errno.ENOENT, "The system cannot find the file specified")

    with pytest.raises(
        InstallError,
        match=r"installed, but the new version cannot be started \(The system cannot find the file specified\); "
        r"it runs",
    ):
        run_and_wait("C:/app.exe", [], {}, run=run, api=api, handles={})
    assert k.calls[-1] == ("SetInformationJobObject", 0x1234, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, 0)


CHILD = """
import signal, sys, threading
done = threading.Event()
def on_int(signum, frame):
    print("child: interrupted", flush=True)
    sys.exit(42)
signal.signal(signal.SIGINT, on_int)
print("child: ready", flush=True)
done.wait(60)
sys.exit(1)
"""

WAITING_PARENT = """
import os, sys
sys.stdout = sys.stderr = None  # a windowed (--noconsole) app
from gupper.restart import restart
restart(sys.executable, ["-c", sys.argv[1]], dict(os.environ), "windows")
"""


@pytest.fixture
def session_leader() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.posix
def test_ctrl_c_reaches_the_new_app_and_the_waiting_parent_leaves_with_its_code(
    session_leader: list[subprocess.Popen[bytes]],
) -> None:
    """The Windows restart for real (the POSIX build of it: no ctypes): a parent with no sys.stdout
    starts the new app and waits; Ctrl+C (SIGINT to the whole process group, as a console sends it
    to every process on it) lets the app decide, and the parent exits with the app's code, no
    traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITING_PARENT, CHILD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    session_leader.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready and proc.stdout.readline() == b"child: ready\n"
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 42
    assert proc.stdout.read() == b"child: interrupted\n"
    assert proc.stderr.read() == b""  # no KeyboardInterrupt traceback from the parent


RESTART_WITHOUT_STDOUT = """
import os, sys
sys.stdout = sys.stderr = None  # PyInstaller --noconsole
from gupper.restart import restart
restart(sys.executable, ["-c", "import sys; print('new version running'); sys.exit(5)"], dict(os.environ), sys.argv[1])
"""


@pytest.mark.parametrize("os_name", [pytest.param("linux", marks=pytest.mark.posix), "windows"])
def test_restart_from_an_app_without_stdout_runs_the_new_version(os_name: str) -> None:
    """On Windows (the CI job) this is the real thing: ctypes console handler, job object, handles."""
    proc = subprocess.run(
        [sys.executable, "-c", RESTART_WITHOUT_STDOUT, os_name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (5, "new version running\n", "")


@pytest.mark.posix  # execve
def test_a_restart_that_cannot_exec_is_an_install_error() -> None:
    from gupper.restart import restart

    with pytest.raises(
        InstallError, match=r"installed, but the new version cannot be started \(No such file or directory\)"
    ):
        restart(str(Path("/nonexistent/app")), [], {}, "linux")


WAITING_PARENT_OF_A_LONG_APP = """
import os, sys
sys.stdout = sys.stderr = None
from gupper.restart import restart
app = "import os, sys, time; print('pid', os.getpid(), flush=True); time.sleep(120)"
restart(sys.executable, ["-c", app], dict(os.environ), "windows")
"""


@pytest.mark.skipif(
    sys.platform != "win32", reason="job objects are Windows'; elsewhere the restart is an exec (same process)"
)
def test_killing_the_waiting_parent_kills_the_new_app() -> None:
    """The real job object: TerminateProcess of the waiting parent (Task Manager's End task) ends
    the app it started, instead of leaving it orphaned."""
    import queue
    import threading

    proc = subprocess.Popen(
        [sys.executable, "-c", WAITING_PARENT_OF_A_LONG_APP], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    lines: queue.Queue[bytes] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: lines.put(proc.stdout.readline() if proc.stdout else b""), daemon=True).start()
    word, pid = lines.get(timeout=60).split()
    assert word == b"pid"
    kernel32: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    kernel32.OpenProcess.restype = ctypes.c_void_p
    kernel32.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    kernel32.TerminateProcess.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
    app = kernel32.OpenProcess(0x00100000 | 0x0001, False, int(pid))  # SYNCHRONIZE | PROCESS_TERMINATE
    assert app, ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
    try:
        proc.kill()
        proc.wait(timeout=60)
        assert kernel32.WaitForSingleObject(app, 30_000) == 0  # WAIT_OBJECT_0: the app ended with its parent
    finally:
        kernel32.TerminateProcess(app, 1)
        kernel32.CloseHandle(app)


SELF_TEST_WITHOUT_STDOUT = """
import sys
sys.stdout = None  # PyInstaller --noconsole
from gupper.selftest import answer_self_test
answer_self_test("2.0.0", {"GUPPER_SELF_TEST": "n0nce"})
print("not reached", file=sys.stderr)
"""


def test_a_windowed_app_answers_its_self_test() -> None:
    """The pre-flight of a windowed build: its answer goes to the pipe on fd 1 (sys.stdout is None);
    without it every windowed release would fail its pre-flight and be marked bad."""
    proc = subprocess.run(
        [sys.executable, "-c", SELF_TEST_WITHOUT_STDOUT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "gupper-self-test n0nce 2.0.0\n", "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "[WinError 10061] No connection could be made because the target machine actively refused it",
            "connection refused",
        ),
        ("[Errno 111] Connection refused", "connection refused"),  # Linux
        ("[Errno 61] Connection refused", "connection refused"),  # macOS
        ("[WinError 10054] An existing connection was forcibly closed by the remote host", "connection reset"),
        ("[WinError 10051] A socket operation was attempted to an unreachable network", "network unreachable"),
    ],
)
def test_network_failures_read_the_same_on_every_os(text: str, reason: str) -> None:
    import requests

    from gupper.fetch import _reason

    error = requests.ConnectionError(
        "HTTPSConnectionPool(host='127.0.0.1', port=9): Max retries exceeded (Caused by "
        f"NewConnectionError('Failed to establish a new connection: {text}'))"
    )
    assert _reason(error) == reason


# --- long paths (issue 21, item 6) ---


def test_a_path_past_max_path_says_so_in_one_line_not_free_some_disk_space(tmp_path: Path) -> None:
    layout = folder_layout(tmp_path)
    long_name = "C:\\Users\\someone\\AppData\\Local\\Programs\\app\\versions\\" + "x" * 230 + "\\lib.pyd"
    exced_range = OSError(22, "The filename or extension is too long", "C:\\short")
    exced_range.winerror = 206  # type: ignore[attr-defined]  # ERROR_FILENAME_EXCED_RANGE (set so on Windows only)
    for error in (OSError(2, "The system cannot find the path specified", long_name), exced_range):
        message = describe_write_error(error, layout.versions, "windows")
        assert "past Windows' limit of 259 characters (MAX_PATH)" in message and "LongPathsEnabled" in message
        assert "disk space" not in message and "\n" not in message
    assert f"({len(long_name)} characters)" in describe_write_error(
        OSError(2, "not found", long_name), layout.versions, "windows"
    )
    # the same name is no path problem on Linux, and a short one none on Windows
    assert path_too_long(OSError(2, "not found", long_name), "linux") is None
    assert path_too_long(OSError(2, "not found", "C:\\a\\b"), "windows") is None
    linux = describe_write_error(OSError(errno.ENAMETOOLONG, "File name too long", "/a/b"), layout.versions, "linux")
    assert linux.startswith("the path /a/b (4 characters) is too long for this system")


def test_the_staging_folder_of_a_version_adds_few_characters_to_its_paths(tmp_path: Path) -> None:
    layout = folder_layout(tmp_path)
    staged = staging_dir(layout)
    # was .<version>.gupper-<12 hex>.tmp: 26 characters more than the version's own name
    assert staged.parent == layout.versions and len(staged.name) <= 11 and staged != staging_dir(layout)
    assert staged.name.startswith(".") and staged.name.endswith(".tmp")  # what the next start's clean-up removes


# --- the Windows one-folder layout: one path for every version (issue 21, item 3) ---


@pytest.mark.posix  # the app is a script standing in for one
def test_a_windows_folder_update_never_touches_what_runs_and_writes_the_switch_through_antivirus(
    sim: Any, tmp_path: Path
) -> None:
    """Nothing under current\\ (the running app's folder: Windows refuses to move or replace it) is
    renamed, replaced or removed by the update; the switch file is written whole, its rename retried
    while antivirus holds it; the switch itself is the launcher's (tests/test_launcher.py)."""
    from .test_packages import folder_updater, make_folder, serve_package

    root = tmp_path / "root"
    (root / "current").mkdir(parents=True)
    (root / "current" / "app.exe").write_bytes(fake_app("1.0.0"))
    (root / "current" / "app.exe").chmod(0o755)
    (root / "app.exe").write_bytes(b"the launcher")
    folder = make_folder(tmp_path / "dist", "2.0.0")
    (folder / "app").rename(folder / "app.exe")
    serve_package(sim, folder, tmp_path, "2.0.0", platform="windows-amd64")
    fs = WinFS(running=root / "current" / "app.exe", replace=2)
    touched: list[str] = []
    ops = fs.ops()
    for name in ("replace", "rename", "unlink", "rmtree", "write_file", "symlink", "link"):
        real = getattr(ops, name)

        def record(*args: str, _real: Callable[..., None] = real) -> None:
            touched.extend(str(a) for a in args)
            _real(*args)

        setattr(ops, name, record)
    updater = folder_updater(
        sim,
        FolderLayout(root, "app.exe"),
        file_ops=ops,
        executable=str(root / "current" / "app.exe"),
        platform=Platform("windows", "amd64"),
    )
    result = updater.run(restart=False)
    assert result.status is Status.INSTALLED, result.message
    assert not [p for p in touched if Path(p).is_relative_to(root / "current")], touched
    assert (root / "next").read_bytes() == b"versions\\2.0.0\r\nversions\\1.0.0\r\n"
    assert fs.calls.count("replace refused") == 2 and len(fs.sleeps) == 2  # antivirus on the switch file: retried
    assert (root / "versions" / "2.0.0" / "app.exe").read_bytes() == (folder / "app.exe").read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["app.exe", "current", "next", "versions"]


@pytest.mark.posix  # make_folder's build holds a symlink
def test_a_windows_folder_install_without_its_launcher_fails_in_one_line(sim: Any, tmp_path: Path) -> None:
    from .test_packages import folder_updater, make_folder, serve_package

    root = tmp_path / "root"
    (root / "current").mkdir(parents=True)
    (root / "current" / "app.exe").write_bytes(b"1")
    (root / "versions").mkdir()
    serve_package(sim, make_folder(tmp_path / "dist", "2.0.0"), tmp_path, "2.0.0", platform="windows-amd64")
    program = str(root / "current" / "app.exe")
    updater = folder_updater(
        sim, FolderLayout(root, "app.exe"), executable=program, platform=Platform("windows", "amd64")
    )
    result = updater.run(restart=False)
    assert result.status is Status.FAILED and result.message == (
        f"cannot update {root / 'current'}: the launcher {root / 'app.exe'} that switches versions is missing; "
        "reinstall the app (docs/packages.md, 'First install')"
    )
