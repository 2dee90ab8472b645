"""Desktop apps that ask first (issue 20), fast: one trial model for every flow, the first
periodic check soon after start, the restart contract for GUI apps, fresh backups, the pre-flight
as a process tree, what an update will download, the log file, and the UI-thread helpers. Real
TLS (the simulator), real processes for the restarts and the pre-flight. The tests not marked
posix run in the Windows job of the CI workflow too.

The real windowed apps (Tk and Qt under Xvfb), with a running app surviving a background install
of a real PyInstaller binary, are in tests/test_e2e_desktop.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper import (
    BackgroundUpdates,
    Platform,
    PreflightInterruptedError,
    Result,
    Status,
    UiQueue,
    Update,
    UpdateError,
    Updater,
    UpdaterConfig,
    log_to_file,
)
from gupper import restart as _restart
from gupper.install import backup_path_for, remove_backups
from gupper.selftest import ended_from_outside, preflight
from gupper.state import StateFile
from gupper_publish.signing import build_signed, public_key_of, sign_manifest

from .conftest import NOW, fake_app
from .httpsim import Sim
from .test_windows import WinFS

MANIFEST = "/app/stable/latest.json"
KEY = Ed25519PrivateKey.generate()
OLD = fake_app("1.0.0")
NEW = fake_app("2.0.0", pad=50_000)
ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0
"""Bound on every wait for a background thread or process in this module."""


def publish(sim: Sim, version: str, data: bytes, patches: list[dict[str, Any]] | None = None, serial: int = 1) -> None:
    path = f"/app/{version}/app-{version}-linux-amd64"
    sim.routes[path] = data
    entry: dict[str, Any] = {
        "version": version,
        "type": "binary",
        "url": f"../{version}/app-{version}-linux-amd64",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if patches:
        entry["patches"] = patches
    signed = build_signed(
        app="app",
        channel="stable",
        serial=serial,
        now=NOW,
        expires_in=timedelta(days=30),
        platforms={"linux-amd64": entry},
    )
    sim.routes[MANIFEST] = sign_manifest(signed, [KEY])


def config(sim: Sim, exe: Path, **kw: Any) -> UpdaterConfig:
    cfg = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url=sim.url(MANIFEST),
        public_keys=(public_key_of(KEY).to_text(),),
        ca_bundle=sim.ca_path,
        executable=str(exe),
        platform=Platform("linux", "amd64"),
        state_dir=str(exe.parent.parent / "state"),
        retries=0,
        download_attempts=1,
        read_timeout=2,
        preflight_timeout=10,
        report_outcomes=False,  # these tests count the requests of checks and downloads (tests/test_outcomes.py)
    )
    return replace(cfg, **kw)


def updater(sim: Sim, exe: Path, **kw: Any) -> Updater:
    return Updater(config(sim, exe, **kw), clock=lambda: NOW, environ={}, argv=["app"], restart_on_rollback=False)


def state(exe: Path) -> StateFile:
    return StateFile(exe.parent.parent / "state")


def collect(count: int) -> tuple[list[Result], threading.Event, Callable[[Result], None]]:
    """An ``on_result`` that keeps results and sets the event once ``count`` arrived."""
    results: list[Result] = []
    done = threading.Event()

    def on_result(result: Result) -> None:
        results.append(result)
        if len(results) >= count:
            done.set()

    return results, done, on_result


# --- 1. the first periodic check comes soon after start -------------------------------------


@pytest.mark.posix
def test_the_periodic_checker_checks_soon_after_start_not_after_a_whole_interval(sim: Sim, exe: Path) -> None:
    publish(sim, "1.0.0", OLD)
    results, done, on_result = collect(1)
    checker = updater(sim, exe).check_periodically(6 * 3600, on_result, first_check=0.05)
    try:
        assert done.wait(WAIT), "no check within the bound: the first check waited for the interval"
    finally:
        checker.stop()
    assert results[0].status is Status.UP_TO_DATE
    assert [p for _, p, _ in sim.requests].count(MANIFEST) == 1


@pytest.mark.posix
def test_the_first_check_never_waits_longer_than_the_interval(sim: Sim, exe: Path) -> None:
    publish(sim, "1.0.0", OLD)
    _results, done, on_result = collect(1)
    checker = updater(sim, exe).check_periodically(0.05, on_result, first_check=3600)
    try:
        assert done.wait(WAIT)
    finally:
        checker.stop()


# --- 2, 3. one trial model: a start is a process start, never a check ------------------------


def install_new(sim: Sim, exe: Path) -> None:
    publish(sim, "2.0.0", NEW)
    assert updater(sim, exe).run(restart=False).status is Status.INSTALLED
    trial = state(exe).load().trial
    assert trial is not None and trial.version == "2.0.0" and trial.starts == 0


@pytest.mark.posix
def test_a_new_version_that_dies_before_confirm_is_rolled_back_without_run(sim: Sim, exe: Path) -> None:
    """The GUI flow never calls run(): creating the updater is the start that counts."""
    install_new(sim, exe)
    for start in (1, 2):
        made = updater(sim, exe, current_version="2.0.0", trial_starts=2)  # the app then crashes building its window
        assert made.started is None
        trial = state(exe).load().trial
        assert trial is not None and trial.starts == start
    third = updater(sim, exe, current_version="2.0.0", trial_starts=2)
    assert third.started is not None and third.started.status is Status.ROLLED_BACK
    assert third.started.version == "1.0.0" and exe.read_bytes() == OLD
    saved = state(exe).load()
    assert saved.trial is None and "without Updater.confirm()" in saved.bad_versions["2.0.0"]
    assert sorted(p.name for p in exe.parent.iterdir()) == ["app"]  # the backup went back in, and is gone


@pytest.mark.posix
def test_creating_the_updater_of_a_failed_version_restarts_into_the_previous_one(sim: Sim, exe: Path) -> None:
    """A real process: the third start of an unconfirmed 2.0.0 rolls back and execs 1.0.0 at once."""
    install_new(sim, exe)
    for _ in (1, 2):
        updater(sim, exe, current_version="2.0.0", trial_starts=2)
    cfg = config(sim, exe, current_version="2.0.0", trial_starts=2)
    script = textwrap.dedent(
        f"""
        import logging, sys
        from gupper import Platform, Updater, UpdaterConfig
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        cfg = UpdaterConfig(app="app", current_version="2.0.0", manifest_url={cfg.manifest_url!r},
            public_keys={cfg.public_keys!r}, ca_bundle={cfg.ca_bundle!r}, executable={str(exe)!r},
            platform=Platform("linux", "amd64"), state_dir={cfg.state_dir!r}, trial_starts=2)
        Updater(cfg)
        print("still 2.0.0: not restarted")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["1.0.0"], (proc.stdout, proc.stderr)  # the fake 1.0.0 app, exec'd
    assert "rolled back to 1.0.0" in proc.stderr and exe.read_bytes() == OLD


@pytest.mark.posix
def test_periodic_checks_are_not_starts(sim: Sim, exe: Path) -> None:
    """A 2.0.0 that never confirms, started once, checking every few ms: still on start 1, not rolled back."""
    install_new(sim, exe)
    running = updater(sim, exe, current_version="2.0.0", trial_starts=2)
    results, done, on_result = collect(6)
    checker = running.check_periodically(0.01, on_result, first_check=0)
    try:
        assert done.wait(WAIT)
    finally:
        checker.stop()
    assert {r.status for r in results} <= {Status.UP_TO_DATE, Status.JUST_UPDATED}
    trial = state(exe).load().trial
    assert trial is not None and trial.version == "2.0.0" and trial.starts == 1
    assert exe.read_bytes() == NEW


@pytest.mark.posix
def test_runs_after_the_start_never_count_as_starts(sim: Sim, exe: Path) -> None:
    install_new(sim, exe)
    made = updater(sim, exe, current_version="2.0.0", trial_starts=5)
    for _ in range(4):
        made.run(restart=False)
    trial = state(exe).load().trial
    assert trial is not None and trial.starts == 1


@pytest.mark.posix
def test_a_trial_that_cannot_be_recorded_is_no_install(sim: Sim, exe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write-ahead: the trial is saved before the swap; when it cannot be, nothing is swapped."""
    publish(sim, "2.0.0", NEW)
    made = updater(sim, exe)
    real_save = StateFile.save

    def save(self: StateFile, st: Any) -> None:
        if st.trial is not None:
            raise OSError(30, "Read-only file system")
        real_save(self, st)

    monkeypatch.setattr(StateFile, "save", save)
    result = made.run(restart=False)
    assert result.status is Status.FAILED and "cannot record the trial of 2.0.0" in result.message
    assert exe.read_bytes() == OLD and sorted(p.name for p in exe.parent.iterdir()) == ["app"]


READ_ONLY_RUN = """
import json, sys
from gupper import Platform, Updater, UpdaterConfig
args = json.loads(sys.argv[1])
cfg = UpdaterConfig(app="app", current_version=args["version"], manifest_url=args["url"], public_keys=(args["key"],),
    ca_bundle=args["ca"], executable=args["exe"], platform=Platform("linux", "amd64"), state_dir=args["state"],
    retries=0, report_outcomes=False)
updater = Updater(cfg, environ={}, argv=["app"], restart_on_rollback=False)
if args["confirm"]:
    updater.confirm()
print(json.dumps({"status": updater.run(restart=False).status.value}))
"""


def test_a_state_folder_made_read_only_is_refused_before_the_check(sim: Sim, exe: Path) -> None:
    """The issue's case: the folder exists from an earlier run, its lock file still writable, the
    folder itself read-only. Locking works, saving state does not: no update may be installed then,
    since its trial could not be recorded. As root the run drops the capability that overrides
    file permissions (setpriv), so the folder's mode binds it as it binds a user."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("root without setpriv (util-linux): file modes would not bind the run")
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    state_dir = exe.parent.parent / "state"

    def run(version: str, confirm: bool = False) -> str:
        args = {
            "version": version,
            "url": sim.url(MANIFEST),
            "key": public_key_of(KEY).to_text(),
            "ca": sim.ca_path,
            "exe": str(exe),
            "state": str(state_dir),
            "confirm": confirm,
        }
        proc = subprocess.run(
            [*drop, sys.executable, "-c", READ_ONLY_RUN, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        status: str = json.loads(proc.stdout)["status"]
        return status + "\n" + proc.stderr

    publish(sim, "2.0.0", NEW)
    assert run("1.0.0").startswith("installed")  # the state folder and its lock file now exist
    assert run("2.0.0", confirm=True).startswith("up-to-date")
    publish(sim, "3.0.0", fake_app("3.0.0"), serial=2)
    sim.requests.clear()
    state_dir.chmod(0o555)  # read-only folder; the lock file in it stays writable
    try:
        out = run("2.0.0")
    finally:
        state_dir.chmod(0o755)
    assert out.startswith("failed"), out
    assert "cannot use the updater's state folder" in out and "set UpdaterConfig.state_dir" in out
    assert not sim.requests and exe.read_bytes() == NEW


# --- 5. the restart contract ------------------------------------------------------------------


@pytest.mark.posix
def test_restart_from_another_thread_is_refused_and_names_restart_on_exit(sim: Sim, exe: Path) -> None:
    made = updater(sim, exe)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            made.restart("1.0.0")
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(WAIT)
    assert len(errors) == 1 and isinstance(errors[0], UpdateError) and "restart_on_exit()" in str(errors[0])


NEW_APP = """#!{python}
import os, sys
sys.path[:0] = {paths!r}
old_pid = os.getppid()  # the old version started this one
print("new: waiting", flush=True)
from gupper import Platform, Updater, UpdaterConfig
Updater(UpdaterConfig(app="app", current_version="2.0.0", manifest_url="https://127.0.0.1:9/latest.json",
    public_keys={keys!r}, executable=__file__, platform=Platform("linux", "amd64"), state_dir={state!r}))
saved = open({saved!r}).read() if os.path.exists({saved!r}) else None
try:  # ended: gone, or a zombie its parent (the test) has not reaped yet
    old_alive = open(f"/proc/{{old_pid}}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX"
except FileNotFoundError:
    old_alive = False
print(f"new: running saved={{saved}} old_alive={{old_alive}}", flush=True)
"""

OLD_APP = """
import atexit, sys
from gupper import Platform, Updater, UpdaterConfig
made = Updater(UpdaterConfig(app="app", current_version="1.0.0", manifest_url="https://127.0.0.1:9/latest.json",
    public_keys={keys!r}, executable={exe!r}, platform=Platform("linux", "amd64"), state_dir={state!r}))

def save_work():  # the app's own last step on quit: runs after Gupper started the new version
    sys.stdin.readline()  # the test lets it finish once the new version is seen waiting
    with open({saved!r}, "w") as f:
        f.write("work")

atexit.register(save_work)
made.restart_on_exit("2.0.0")
print("old: quitting", flush=True)
"""


@pytest.mark.posix
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_restart_on_exit_starts_the_new_version_only_once_the_old_one_has_ended(tmp_path: Path) -> None:
    exe, saved, state_dir = tmp_path / "app", tmp_path / "saved.txt", str(tmp_path / "state")
    keys = (public_key_of(KEY).to_text(),)
    exe.write_text(
        NEW_APP.format(
            python=sys.executable, paths=[str(ROOT / "updater")], keys=keys, state=state_dir, saved=str(saved)
        )
    )
    exe.chmod(0o755)
    old = subprocess.Popen(
        [sys.executable, "-c", OLD_APP.format(keys=keys, exe=str(exe), state=state_dir, saved=str(saved))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert old.stdout is not None and old.stdin is not None
        assert old.stdout.readline() == "old: quitting\n"
        # The old process is in its exit: Gupper started the new one, which waits for the handover.
        assert old.stdout.readline() == "new: waiting\n"
        assert not saved.exists()
        old.stdin.write("go\n")
        old.stdin.close()
        rest = old.stdout.read()  # the new process shares the pipe: end of file once both have ended
        assert old.wait(WAIT) == 0
    finally:
        old.kill()
    assert rest.splitlines() == ["new: running saved=work old_alive=False"], rest


# --- 6. a fresh backup per install: a second update in one session (Windows) -----------------


class MappedWinFS(WinFS):
    """Windows semantics plus what a hard link to a running image is: the same running file."""

    def link(self, src: str, dst: str) -> None:
        super().link(src, dst)
        if src in self.running:
            self.running.add(dst)

    def replace(self, src: str, dst: str) -> None:
        super().replace(src, dst)
        if src in self.running:  # the same file under its new name
            self.running.discard(src)
            self.running.add(dst)


def publish_windows(sim: Sim, version: str, data: bytes, serial: int) -> None:
    name = f"app-{version}-windows-amd64.exe"
    sim.routes[f"/app/{version}/{name}"] = data
    entry = {
        "version": version,
        "type": "binary",
        "url": f"../{version}/{name}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    signed = build_signed(
        app="app",
        channel="stable",
        serial=serial,
        now=NOW,
        expires_in=timedelta(days=30),
        platforms={"windows-amd64": entry},
    )
    sim.routes[MANIFEST] = sign_manifest(signed, [KEY])


@pytest.mark.posix
def test_a_second_update_in_one_session_takes_a_fresh_backup_name_on_windows(sim: Sim, tmp_path: Path) -> None:
    """v1 updates to v2 and waits for it (its image, and the hard-link backup of it, stay mapped);
    v2 confirms, then updates to v3 in the same session: the first backup can be neither replaced
    nor deleted, so the second must not need to."""
    (tmp_path / "install").mkdir()
    exe = tmp_path / "install" / "app.exe"
    exe.write_bytes(OLD)
    exe.chmod(0o755)
    fs = MappedWinFS(exe)
    win = {"platform": Platform("windows", "amd64")}

    def made(version: str) -> Updater:
        u = Updater(
            config(sim, exe, current_version=version, **win),
            clock=lambda: NOW,
            environ={},
            argv=["app"],
            restart_on_rollback=False,
        )
        u.file_ops = fs.ops()
        return u

    publish_windows(sim, "2.0.0", NEW, serial=1)
    assert made("1.0.0").run(restart=False).status is Status.INSTALLED
    fs.running.add(str(exe))  # the waiting parent started v2
    v2 = made("2.0.0")
    v2.confirm()
    first_backups = [p for p in exe.parent.iterdir() if ".gupper-previous-" in p.name]
    assert len(first_backups) == 1 and str(first_backups[0]) in fs.running  # still v1's mapped image
    v3 = fake_app("3.0.0")
    publish_windows(sim, "3.0.0", v3, serial=2)
    result = v2.run(restart=False)
    assert result.status is Status.INSTALLED, result.message
    assert exe.read_bytes() == v3
    trial = state(exe).load().trial
    assert trial is not None and Path(trial.backup).name != first_backups[0].name
    assert Path(trial.backup).read_bytes() == NEW


def test_backups_no_trial_refers_to_are_removed_and_a_mapped_one_waits(tmp_path: Path) -> None:
    target = tmp_path / "app.exe"
    target.write_bytes(b"v2")
    kept, mapped, stale = backup_path_for(target), backup_path_for(target), backup_path_for(target)
    assert len({kept.name, mapped.name, stale.name}) == 3
    for p in (kept, mapped, stale):
        p.write_bytes(b"old")
    (tmp_path / f"{mapped.name}.1234.tmp").write_bytes(b"a half-made backup: the temp sweep's, not this")
    fs = WinFS(mapped)
    removed = remove_backups(target, kept, fs.ops())
    assert removed == [stale]
    assert kept.exists() and mapped.exists() and not stale.exists()


# --- 7, 8. the pre-flight as a process tree; what ends it from outside ----------------------

HANGING_TREE = """#!/bin/sh
if [ -n "$GUPPER_SELF_TEST" ]; then
  sleep 300 &
  echo $! > "{pids}"
  echo $$ >> "{pids}"
  exec sleep 300
fi
"""


def ended(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` ends within ``timeout`` (a pidfd turns readable when it does)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


@pytest.mark.posix
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfd_open is Linux's")
def test_a_hung_preflight_is_killed_with_every_process_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    app = tmp_path / "app-2.0.0"
    app.write_text(HANGING_TREE.format(pids=pids))
    app.chmod(0o755)
    with pytest.raises(PreflightInterruptedError, match=r"did not answer its self-test within 0\.5 s"):
        preflight(app, "2.0.0", dict(os.environ), 0.5)
    child, parent = (int(line) for line in pids.read_text().split())
    assert ended(parent, WAIT) and ended(child, WAIT), "the self-test's processes outlived its timeout"


@pytest.mark.posix
def test_a_preflight_that_answers_leaves_no_process_behind(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    app = tmp_path / "app-2.0.0"
    app.write_text(
        "#!/bin/sh\nsleep 300 &\necho $! > " + str(pids) + '\necho "gupper-self-test $GUPPER_SELF_TEST 2.0.0"\n'
    )
    app.chmod(0o755)
    preflight(app, "2.0.0", dict(os.environ), 10)
    assert ended(int(pids.read_text()), WAIT)


@pytest.mark.posix
def test_a_preflight_suppresses_the_splash_screen_of_a_splash_build(tmp_path: Path) -> None:
    """PyInstaller's bootloader shows a ``--splash`` image at start unless this variable is set (issue 21, item 7)."""
    app = tmp_path / "app-2.0.0"
    app.write_text(
        '#!/bin/sh\n[ "$PYINSTALLER_SUPPRESS_SPLASH_SCREEN" = 1 ] || { echo "splash shown" >&2; exit 5; }\n'
        'echo "gupper-self-test $GUPPER_SELF_TEST 2.0.0"\n'
    )
    app.chmod(0o755)
    preflight(app, "2.0.0", {k: v for k, v in os.environ.items() if not k.startswith("PYINSTALLER_")}, 10)


@pytest.mark.parametrize(
    ("code", "stderr", "outside"),
    [
        (0xC000013A, b"", True),  # STATUS_CONTROL_C_EXIT: Ctrl+C, Ctrl+Close
        (0x40010004, b"", True),  # DBG_TERMINATE_PROCESS: logoff, shutdown
        (1, b"", True),  # Task Manager's End task
        (1, b"Traceback (most recent call last):\n  ...\nImportError: x\n", False),  # an uncaught exception
        (3, b"", False),
        (0xC0000005, b"", False),  # an access violation: the program's own crash
        (-9, b"", False),  # a POSIX code means nothing on Windows
    ],
)
def test_windows_exit_codes_of_an_outside_kill_are_interruptions(code: int, stderr: bytes, outside: bool) -> None:
    assert ended_from_outside(code, stderr, "windows") is outside


@pytest.mark.posix
def test_posix_outside_signals_are_interruptions_and_crash_signals_are_verdicts() -> None:
    assert ended_from_outside(-9, b"", "linux") and ended_from_outside(-15, b"", "darwin")
    assert not ended_from_outside(-11, b"", "linux") and not ended_from_outside(1, b"", "linux")


class FakeProc:
    def __init__(self, code: int, out: bytes = b"", err: bytes = b"", hang: bool = False) -> None:
        self.returncode, self.out, self.err, self.hang, self.pid = code, out, err, hang, 4242
        self._handle = 77
        self.killed = False

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        if self.hang and not self.killed:
            raise subprocess.TimeoutExpired("app", timeout or 0)
        return self.out, self.err

    def kill(self) -> None:
        self.killed = True

    def poll(self) -> int | None:
        return None if self.hang and not self.killed else self.returncode


class JobRecorder:
    def __init__(self, proc: FakeProc) -> None:
        self.proc = proc
        self.calls: list[str] = []

    def create_kill_on_close_job(self) -> object:
        self.calls.append("create")
        return "job"

    def assign_and_resume(self, job: object, process: Any) -> None:
        self.calls.append(f"assign {job} {process._handle}")

    def terminate(self, job: object) -> None:
        self.calls.append(f"terminate {job}")
        self.proc.killed = True

    def close(self, job: object) -> None:
        self.calls.append(f"close {job}")


def test_the_windows_preflight_runs_in_a_job_started_suspended_and_a_hang_ends_the_job(tmp_path: Path) -> None:
    proc = FakeProc(0, hang=True)
    jobs = JobRecorder(proc)
    started: list[dict[str, Any]] = []

    def popen(argv: list[str], **kw: Any) -> FakeProc:
        started.append(kw)
        return proc

    with pytest.raises(PreflightInterruptedError, match="did not answer"):
        preflight(tmp_path / "app.exe", "2.0.0", {}, 1, os_name="windows", jobs=jobs, popen=popen)
    flags = started[0]["creationflags"]
    assert flags & 0x4 and flags & 0x08000000  # CREATE_SUSPENDED, CREATE_NO_WINDOW: no console flash
    assert jobs.calls == ["create", "assign job 77", "terminate job", "terminate job", "close job"]


def test_an_end_task_of_the_windows_preflight_is_retried_not_a_verdict(tmp_path: Path) -> None:
    proc = FakeProc(1)
    with pytest.raises(PreflightInterruptedError, match=r"ended from outside \(exit code 0x1\)"):
        preflight(
            tmp_path / "app.exe", "2.0.0", {}, 1, os_name="windows", jobs=JobRecorder(proc), popen=lambda a, **k: proc
        )


# --- 9. what the dialog can say it will download ---------------------------------------------


@pytest.mark.posix
def test_download_size_is_the_patch_when_one_applies_and_the_full_file_otherwise(sim: Sim, exe: Path) -> None:
    patch = {
        "format": "bsdiff4",
        "url": "../2.0.0/patches/app.from-1.0.0.bsdiff4",
        "size": 4266,
        "sha256": "ab" * 32,
        "from_sha256": hashlib.sha256(OLD).hexdigest(),
        "from_version": "1.0.0",
    }
    publish(sim, "2.0.0", NEW, patches=[patch])
    update = updater(sim, exe).check()
    assert update is not None and update.size == len(NEW) and update.download_size == 4266
    other = dict(patch, from_sha256="cd" * 32)
    publish(sim, "2.0.0", NEW, patches=[other], serial=2)
    update = updater(sim, exe).check()
    assert update is not None and update.download_size == len(NEW)


@pytest.mark.posix
def test_download_size_of_a_kept_partial_is_what_is_left(sim: Sim, exe: Path) -> None:
    publish(sim, "2.0.0", NEW)
    made = updater(sim, exe)
    update = made.check()
    assert update is not None
    partial = exe.parent / ".app.gupper-partial"
    partial.write_bytes(NEW[:20_000])
    from gupper.download import Blob

    made.downloads.record(Blob(update.url, len(NEW), hashlib.sha256(NEW).hexdigest()), partial, '"etag"')
    again = made.check()
    assert again is not None and again.download_size == len(NEW) - 20_000


# --- 10. a log file for windowed apps ----------------------------------------------------------


def test_log_to_file_keeps_gupper_lines_rotated_and_is_added_once(tmp_path: Path) -> None:
    logger = logging.getLogger("gupper")
    before = list(logger.handlers), logger.level
    try:
        path = log_to_file("notes", directory=tmp_path, max_bytes=2_000, backups=2)
        assert log_to_file("notes", directory=tmp_path) == path == tmp_path / "notes.log"
        assert len(logger.handlers) == len(before[0]) + 1
        logger.info("gupper: updating notes 1.0.0 -> 1.1.0")
        for i in range(100):
            logger.info("gupper: line %d %s", i, "x" * 50)
    finally:
        for h in logger.handlers[len(before[0]) :]:
            h.close()
            logger.removeHandler(h)
        logger.setLevel(before[1])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["notes.log", "notes.log.1", "notes.log.2"]
    assert all(p.stat().st_size <= 2_100 for p in tmp_path.iterdir())
    assert "gupper: line 99" in path.read_text()


@pytest.mark.posix
def test_a_windowed_app_without_stderr_keeps_its_update_lines_in_the_log_file(
    sim: Sim, exe: Path, tmp_path: Path
) -> None:
    """A real process with sys.stdout and sys.stderr None, as a --windowed PyInstaller app has."""
    publish(sim, "1.0.0", OLD)
    cfg = config(sim, exe)
    logs = tmp_path / "logs"
    script = textwrap.dedent(
        f"""
        import sys
        sys.stdout = sys.stderr = None
        from gupper import Platform, Updater, UpdaterConfig, log_to_file
        log_to_file("app", directory={str(logs)!r})
        cfg = UpdaterConfig(app="app", current_version="1.0.0", manifest_url={cfg.manifest_url!r},
            public_keys={cfg.public_keys!r}, ca_bundle={cfg.ca_bundle!r}, executable={str(exe)!r},
            platform=Platform("linux", "amd64"), state_dir={cfg.state_dir!r})
        Updater(cfg).run()
        Updater(UpdaterConfig(app="app", current_version="1.0.0", manifest_url="https://127.0.0.1:9/x/stable/latest.json",
            public_keys={cfg.public_keys!r}, executable={str(exe)!r}, connect_timeout=1, retries=0,
            platform=Platform("linux", "amd64"), state_dir={cfg.state_dir!r})).run()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT, check=False)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""
    lines = (logs / "app.log").read_text().splitlines()
    assert any("WARNING gupper: update failed, carrying on with 1.0.0" in line for line in lines), lines


# --- 11. the UI-thread helpers -------------------------------------------------------------------


class FakeToolkit:
    """A UI thread with a timer, as Tk's ``root.after`` / Qt's ``QTimer.singleShot`` give one."""

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.timers: list[Callable[[], None]] = []
        self.wake = threading.Event()

    def after(self, ms: int, fn: Callable[[], None]) -> None:
        assert threading.current_thread() is self.thread
        self.timers.append(fn)

    def run_until(self, done: Callable[[], bool], ui: UiQueue) -> None:
        """Turn the loop (the timer's tick pumps the queue) until ``done``, bounded."""
        import time

        deadline = time.monotonic() + WAIT
        while not done():
            assert time.monotonic() < deadline, "the UI thread never got what it waited for"
            timers, self.timers = self.timers, []
            for fn in timers:
                fn()
            if not done():
                ui_wait(ui, deadline)


def ui_wait(ui: UiQueue, deadline: float) -> None:
    """Block until something is posted (no busy loop): wrap post() with an event."""
    event: threading.Event = ui._posted  # type: ignore[attr-defined]
    import time

    event.wait(max(deadline - time.monotonic(), 0))
    event.clear()


@pytest.fixture
def ui() -> UiQueue:
    queue = UiQueue()
    queue._posted = threading.Event()  # type: ignore[attr-defined]
    post = queue.post

    def posting(work: Callable[[], None]) -> None:
        post(work)
        queue._posted.set()  # type: ignore[attr-defined]

    queue.post = posting  # type: ignore[method-assign]
    return queue


@pytest.mark.posix
def test_background_updates_ask_install_with_progress_and_restart_on_the_ui_thread(
    sim: Sim, exe: Path, ui: UiQueue
) -> None:
    publish(sim, "2.0.0", NEW)
    toolkit = FakeToolkit()
    ui.attach(toolkit.after)
    made = updater(sim, exe)
    seen: list[tuple[str, Any, bool]] = []

    def on_ui() -> bool:
        return threading.current_thread() is toolkit.thread

    offers: list[Update] = []
    ready: list[Result] = []

    def on_available(update: Update) -> None:
        seen.append(("available", update.version, on_ui()))
        offers.append(update)
        updates.install(update)

    def on_progress(done: int, total: int) -> None:
        seen.append(("progress", (done, total), on_ui()))

    def on_ready(result: Result) -> None:
        seen.append(("ready", result.version, on_ui()))
        ready.append(result)

    updates = BackgroundUpdates(
        made, ui, on_available=on_available, on_ready=on_ready, on_progress=on_progress, interval=3600, first_check=0
    )
    updates.start()
    try:
        toolkit.run_until(lambda: bool(ready), ui)
    finally:
        updates.stop()
    assert all(on for _, _, on in seen), seen
    assert seen[0][:2] == ("available", "2.0.0") and seen[-1][:2] == ("ready", "2.0.0")
    assert ("progress", (len(NEW), len(NEW)), True) in seen
    assert exe.read_bytes() == NEW and updates.ready == "2.0.0"
    updates.restart_when_closed()
    assert made._exit_launch is not None and made._exit_launch[0] == str(exe)
    made._exit_launch = None  # this test process must not start the app at its exit


@pytest.mark.posix
def test_a_declined_update_is_not_offered_again_in_the_session(sim: Sim, exe: Path, ui: UiQueue) -> None:
    publish(sim, "2.0.0", NEW)
    toolkit = FakeToolkit()
    ui.attach(toolkit.after)
    offers: list[str] = []
    checked: list[Result] = []
    updates: BackgroundUpdates

    def on_available(update: Update) -> None:
        offers.append(update.version)
        if len(offers) == 1:
            updates.decline(update)

    updates = BackgroundUpdates(
        updater(sim, exe),
        ui,
        on_available=on_available,
        on_ready=lambda r: None,
        on_checked=checked.append,
        interval=0.02,
        first_check=0,
    )
    updates.start()
    try:
        toolkit.run_until(lambda: len(checked) >= 3, ui)  # three periodic checks after the decline
        assert offers == ["2.0.0"] and {r.status for r in checked} == {Status.DEFERRED}
        updates.check_now()  # "Check for updates…": the user asks, so it is offered again
        toolkit.run_until(lambda: len(offers) == 2, ui)
    finally:
        updates.stop()
    assert exe.read_bytes() == OLD


# --- 4. a running app keeps reading its own module archive (unit; the real binaries: test_e2e_desktop) ---


def fake_pyinstaller(tmp_path: Path, payload: bytes, offset: int = 1000) -> tuple[dict[str, Any], Path]:
    """The two bootstrap modules of a PyInstaller 6 app, as far as the pinning reads them: the
    reader module (whose global ``open`` the reader calls) and the importer's ``pyz_archive``."""
    import types

    exe = tmp_path / "app"
    exe.write_bytes(b"\0" * offset + b"PYZ\0" + payload)
    reader_module = types.ModuleType("pyimod01_archive")
    importers = types.ModuleType("pyimod02_importers")
    importers.pyz_archive = types.SimpleNamespace(_filename=str(exe), _start_offset=offset)  # type: ignore[attr-defined]

    def extract(start: int, length: int) -> bytes:  # what ZlibArchiveReader.extract does with the file
        with reader_module.open(str(exe), "rb") as fp:
            fp.seek(offset + start)
            data: bytes = fp.read(length)
            return data

    reader_module.open = open  # type: ignore[attr-defined]  # as if looked up in builtins
    reader_module.extract = extract  # type: ignore[attr-defined]
    return {"pyimod01_archive": reader_module, "pyimod02_importers": importers}, exe


@pytest.mark.parametrize("pread", [True, False], ids=["pread", "seek-and-read"])
def test_a_pinned_archive_reads_the_old_bytes_after_the_file_is_replaced(tmp_path: Path, pread: bool) -> None:
    from gupper.frozen_archive import pin_own_archive

    modules, exe = fake_pyinstaller(tmp_path, b"OLD-MODULES" * 100)
    assert pin_own_archive(modules, candidates=lambda p: [p]) is True
    if not pread:  # Windows has no pread: the lock-and-seek path
        modules["pyimod01_archive"].open.pinned._pread = None
    new = tmp_path / "app.new"
    new.write_bytes(b"\0" * 1000 + b"PYZ\0" + b"NEW-MODULES" * 100)
    os.replace(new, exe)  # an update renames the new binary over the running one
    extract = modules["pyimod01_archive"].extract
    assert extract(4, 11) == b"OLD-MODULES" and extract(4 + 11 * 99, 11) == b"OLD-MODULES"
    with modules["pyimod01_archive"].open(str(tmp_path / "other"), "wb") as f:  # any other file: as before
        f.write(b"x")
    assert pin_own_archive(modules) is True  # once is enough: a second call keeps the first handle
    assert extract(4, 11) == b"OLD-MODULES"


def test_threads_reading_a_pinned_archive_at_once_each_get_their_own_bytes(tmp_path: Path) -> None:
    from gupper.frozen_archive import pin_own_archive

    payload = bytes(range(256)) * 400
    modules, _exe = fake_pyinstaller(tmp_path, payload)
    assert pin_own_archive(modules, candidates=lambda p: [p])
    extract = modules["pyimod01_archive"].extract
    wrong: list[int] = []

    def reader(k: int) -> None:
        for i in range(300):
            start = (k * 7919 + i * 104729) % (len(payload) - 300)
            if extract(4 + start, 300) != payload[start : start + 300]:
                wrong.append(start)

    workers = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(WAIT)
    assert not wrong


def test_pinning_takes_the_first_candidate_holding_the_archive_and_leaves_unknown_apps_alone(tmp_path: Path) -> None:
    from gupper.frozen_archive import own_file_candidates, pin_own_archive

    modules, _exe = fake_pyinstaller(tmp_path, b"OLD")
    other = tmp_path / "not-the-app"
    other.write_bytes(b"no archive here")
    assert pin_own_archive(modules, candidates=lambda p: [str(other), p])
    assert modules["pyimod01_archive"].open.pinned.read_at(1000, 4) == b"PYZ\0"
    assert own_file_candidates("/opt/app", "linux") == ["/proc/self/exe", "/opt/app"]
    assert own_file_candidates("C:\\app.exe", "win32") == ["C:\\app.exe"]
    assert pin_own_archive({}) is False  # not a PyInstaller app (or one whose loader we do not know)
    (tmp_path / "short").mkdir()
    cut, cut_exe = fake_pyinstaller(tmp_path / "short", b"")
    cut_exe.write_bytes(b"too short: no archive at the offset")
    assert pin_own_archive(cut, candidates=lambda p: [p]) is False


# --- 5. the handover on Windows, injected ------------------------------------------------------


class HandoverRecorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def inheritable_handle_to_self(self) -> int:
        self.calls.append("duplicate")
        return 4321

    def startupinfo_with_handles(self, handles: list[int]) -> Any:
        self.calls.append(f"startupinfo {handles}")
        return {"handle_list": handles}

    def wait(self, handle: int, timeout: float) -> bool:
        self.calls.append(f"wait {handle} {timeout:g}")
        return True


def test_the_windows_handover_passes_a_handle_to_this_process_and_breaks_away_from_jobs() -> None:
    api = HandoverRecorder()
    started: list[tuple[list[str], dict[str, Any]]] = []

    def popen(argv: list[str], **kw: Any) -> None:
        if kw["creationflags"] & 0x01000000 and len(started) == 0:
            started.append((argv, kw))
            raise PermissionError(5, "Access is denied")  # a job that allows no breakaway
        started.append((argv, kw))

    _restart.launch_after_exit("C:\\app\\app.exe", ["--x"], {"A": "1"}, "windows", popen=popen, api=api)
    assert api.calls == ["duplicate", "startupinfo [4321]"]
    (argv, first), (_, second) = started
    assert argv == ["C:\\app\\app.exe", "--x"] and first["env"][_restart.HANDOVER_ENV] == "handle:4321"
    assert first["creationflags"] & 0x01000000 and not second["creationflags"] & 0x01000000
    assert first["startupinfo"] == {"handle_list": [4321]} and first["close_fds"] is True
    environ = {_restart.HANDOVER_ENV: "handle:4321", "B": "2"}
    assert _restart.wait_for_handover(environ, 30, api=api) and environ == {"B": "2"}
    assert api.calls[-1] == "wait 4321 30"


@pytest.mark.posix
def test_the_wait_for_an_old_process_that_never_ends_is_bounded() -> None:
    read, write = os.pipe()  # the write end stays open here: the "old process" never ends
    try:
        environ = {_restart.HANDOVER_ENV: f"fd:{read}"}
        assert _restart.wait_for_handover(environ, 0.2) is False and not environ
    finally:
        os.close(write)


def test_a_version_started_without_a_handover_does_not_wait() -> None:
    environ = {"B": "2"}
    assert _restart.wait_for_handover(environ, 30) and environ == {"B": "2"}


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="backups name their user on POSIX")
def test_a_start_by_another_user_of_a_shared_install_keeps_the_backup_of_someone_elses_trial(tmp_path: Path) -> None:
    """User A installed 2.0.0 into a shared one-file install (A's trial, A's backup); user B, with no
    trial in B's own state, starts the app: B's start must not remove the backup A's rollback needs."""
    target = tmp_path / "app"
    target.write_bytes(b"v2")
    own = backup_path_for(target)
    assert own.name.startswith(f".app.gupper-previous-u{os.getuid()}-")
    others = tmp_path / f".app.gupper-previous-u{os.getuid() + 1}-abcdef012345"
    legacy = tmp_path / ".app.gupper-previous-abcdef012345"  # named before backups named their user
    for p in (own, others, legacy):
        p.write_bytes(b"v1")
    assert sorted(p.name for p in remove_backups(target, None)) == sorted([own.name, legacy.name])
    assert others.exists()
