"""Crash-safety end to end, with real one-file PyInstaller binaries, the S3 server process and
real process kills: whatever happens mid-update, the installed app stays runnable."""

from __future__ import annotations

import os
import random
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .e2e_support import E2E, gupper_lines, no_leftovers, sha256

pytestmark = [pytest.mark.e2e, pytest.mark.posix]

GREETING = "Hello from the Gupper demo app, version {}"
STEPS = [
    "checked",
    "download-started",
    "download-half",
    "downloaded",
    "preflight-passed",
    "backed-up",
    "trial-started",
    "swapped",
    "restarting",
]


@pytest.fixture
def env(e2e: E2E) -> E2E:
    e2e.clear()
    return e2e


def test_a_release_that_crashes_at_start_up_is_rolled_back_automatically(env: E2E, tmp_path: Path) -> None:
    (v1,) = env.build("1.0.0")
    (bad,) = env.build("3.0.0", fault="crash-after-update-check")  # passes pre-flight, crashes after
    env.publish(v1, bad)
    exe = env.install(tmp_path, "1.0.0")
    first = env.run_app(exe, tmp_path)  # v1 installs 3.0.0, execs it, 3.0.0 crashes (start 1 of its trial)
    assert first.returncode == 3 and "demo fault: crashing" in first.stderr and sha256(exe) == sha256(bad)
    second = env.run_app(exe, tmp_path)  # start 2: crashes again
    assert second.returncode == 3
    third = env.run_app(exe, tmp_path)  # start 3: over the limit → rolled back to 1.0.0, which runs
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines() == [GREETING.format("1.0.0")]
    rolled = (
        "gupper: 3.0.0 started 2 times without Updater.confirm() (it crashed at start, or "
        "the app never calls confirm()); rolled back to 1.0.0"
    )
    assert any(line.startswith(rolled) for line in gupper_lines(third.stderr)), third.stderr
    assert sha256(exe) == sha256(v1)
    no_leftovers(exe.parent, tmp_path)
    fourth = env.run_app(exe, tmp_path)  # 3.0.0 is marked bad: not fetched again
    assert fourth.returncode == 0 and fourth.stdout.splitlines() == [GREETING.format("1.0.0")]
    assert len(env.artifact_gets()) == 1


def test_a_release_that_fails_preflight_is_never_swapped_in(env: E2E, tmp_path: Path) -> None:
    (v1,) = env.build("1.0.0")
    (broken,) = env.build("3.0.0", fault="crash-on-start")  # dies before it can answer the self-test
    env.publish(v1, broken)
    exe = env.install(tmp_path, "1.0.0")
    proc = env.run_app(exe, tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines() == [GREETING.format("1.0.0")]
    assert gupper_lines(proc.stderr)[-1] == (
        "gupper: update failed, carrying on with 1.0.0: the new version 3.0.0 failed its "
        "self-test (exit code 3); not installed"
    )
    assert sha256(exe) == sha256(v1)
    no_leftovers(exe.parent, tmp_path)
    again = env.run_app(exe, tmp_path)
    assert again.returncode == 0 and len(env.artifact_gets()) == 1  # marked bad: skipped, not fetched again


def test_two_instances_started_together_install_once_and_both_exit_0(env: E2E, tmp_path: Path) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1, v2)
    exe = env.install(tmp_path, "1.0.0")
    run_env = env.app_env(tmp_path)
    procs = [
        subprocess.Popen([str(exe)], env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sha256(exe) == sha256(v2)
    assert len(env.artifact_gets()) == 1
    greetings = sorted(o[0].strip() for o in outs)
    assert GREETING.format("2.0.0") in greetings and set(greetings) <= {
        GREETING.format("1.0.0"),
        GREETING.format("2.0.0"),
    }
    no_leftovers(exe.parent, tmp_path)


def _after_kill(env: E2E, exe: Path, tmp: Path, v1: Path, v2: Path) -> None:
    """The invariant: a complete old or new binary that runs, and a next start that finishes the update."""
    assert sha256(exe) in {sha256(v1), sha256(v2)}
    proc = env.run_app(exe, tmp)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], proc.stderr
    assert sha256(exe) == sha256(v2)


def test_sigkill_at_every_step_boundary_leaves_a_runnable_app(env: E2E, tmp_path: Path) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1, v2)
    kills = 0
    for step in STEPS:
        tmp = tmp_path / step
        exe = env.install(tmp, "1.0.0")
        killed = env.run_app(exe, tmp, env={"GUPPER_DEMO_KILL_AT": step})
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, killed.returncode, killed.stderr)
        kills += 1
        _after_kill(env, exe, tmp, v1, v2)
        no_leftovers(exe.parent, tmp)
    print(f"\nstep kills: {kills} of {len(STEPS)} steps, 0 failures")


@pytest.mark.soak  # 50 runs of the app, each killed and then run to the end: minutes
@pytest.mark.parametrize("seed", [20261128])
def test_sigkill_at_random_moments_leaves_a_runnable_app(env: E2E, tmp_path: Path, seed: int) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1, v2)
    # How long a whole update takes here bounds the random kill times.
    probe = tmp_path / "probe"
    exe = env.install(probe, "1.0.0")
    began = time.monotonic()
    assert env.run_app(exe, probe).returncode == 0
    span = time.monotonic() - began
    rng = random.Random(seed)
    runs = int(os.environ.get("GUPPER_RANDOM_KILLS", "50"))
    outcomes = {"old": 0, "new": 0}
    partials = resumed = 0
    for i in range(runs):
        tmp = tmp_path / f"r{i}"
        exe = env.install(tmp, "1.0.0")
        proc = subprocess.Popen(
            [str(exe)],
            env=env.app_env(tmp),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=rng.uniform(0.05, span))  # the fault injection itself: kill at a random moment
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole app: bootloader and Python child
            proc.wait(timeout=30)
        outcomes["new" if sha256(exe) == sha256(v2) else "old"] += 1
        partial = exe.parent / ".app.gupper-partial"
        left = partial.exists() and partial.stat().st_size > 0
        env.access_log.write_text("")
        _after_kill(env, exe, tmp, v1, v2)
        if left:
            # The next start resumes it (a Range request) or reuses it whole (no artifact GET at all):
            # it never fetches the whole file from zero. The killed run's own GET (no Range) may show
            # in the log too: the front logs a request when its response ends, which for a killed
            # client can be after the log was emptied (seen on a loaded CI machine); it never sent
            # the whole file to a client that was killed mid-transfer.
            partials += 1
            gets = env.artifact_gets()
            whole = v2.stat().st_size
            assert not [g for g in gets if not g.get("range") and g["bytes_sent"] >= whole], gets
            resumed += 1
        assert set(p.name for p in exe.parent.iterdir()) == {"app"}
        shutil.rmtree(tmp, ignore_errors=True)  # SIGKILL of the bootloader leaves its _MEI dir (a PyInstaller limit)
    print(
        f"\nrandom kills: {runs} runs over 0-{span:.2f}s, found old {outcomes['old']} / "
        f"new {outcomes['new']}, 0 failures; "
        f"{partials} kill-left partials, {resumed} resumed or reused by the next start"
    )


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """A 30 MiB tmpfs: room for the installed app (~25 MB), not for a second copy."""
    mnt = Path(tempfile.mkdtemp(prefix="gupper-tmpfs-"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mnt)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        mnt.rmdir()
        pytest.skip(
            f"cannot mount a tmpfs here ({proc.stderr.strip()}); the RLIMIT_FSIZE test in "
            "test_resilience.py covers disk full"
        )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


def test_disk_full_gives_one_clear_line_and_leaves_nothing(env: E2E, tmp_path: Path, small_tmpfs: Path) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1, v2)
    exe = small_tmpfs / "app"
    shutil.copyfile(v1, exe)
    exe.chmod(0o755)
    proc = env.run_app(exe, tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines() == [GREETING.format("1.0.0")]
    (line,) = gupper_lines(proc.stderr)  # refused before the "updating" line and any download
    assert line.startswith(
        f"gupper: update failed, carrying on with 1.0.0: not enough disk space in {small_tmpfs} for 2.0.0: "
    )
    assert line.endswith("; free some disk space")
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["app"] and sha256(exe) == sha256(v1)
    assert env.artifact_gets() == []


def test_unwritable_install_dir_is_refused_before_downloading(env: E2E, tmp_path: Path) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1, v2)
    # A root-owned, read-only install dir (like /usr/local/bin) and a user who cannot write there.
    shared = Path(os.path.realpath(tempfile.mkdtemp(prefix="gupper-ro-")))  # macOS: /var is a link to /private/var
    try:
        shared.chmod(0o755)
        install, home = shared / "bin", shared / "home"
        install.mkdir(mode=0o755)
        home.mkdir()
        home.chmod(0o777)  # mkdir's mode is cut by the umask
        exe = install / "app"
        shutil.copyfile(v1, exe)
        exe.chmod(0o755)
        ca = shared / "ca.pem"
        shutil.copyfile(env.store.ca, ca)
        ca.chmod(0o644)
        run_env = env.app_env(home, {"REQUESTS_CA_BUNDLE": str(ca), "HOME": str(home)})
        (home / "tmpdir").chmod(0o777)
        kwargs: dict[str, object] = {"user": "nobody"} if os.geteuid() == 0 else {}
        if os.geteuid() != 0:
            install.chmod(0o555)
        proc = subprocess.run(
            [str(exe)], env=run_env, capture_output=True, text=True, timeout=120, check=False, **kwargs
        )  # type: ignore[call-overload]
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [GREETING.format("1.0.0")]
        *_, line = gupper_lines(proc.stderr)
        assert f"no write permission on {install}" in line and "reinstall the app in a folder you own" in line
        assert sorted(p.name for p in install.iterdir()) == ["app"] and sha256(exe) == sha256(v1)
        assert env.artifact_gets() == []  # refused before downloading a byte
        assert stat.S_IMODE(exe.stat().st_mode) == 0o755
    finally:
        for p in shared.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)
