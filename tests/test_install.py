"""Installing a verified file: POSIX for real, Windows through injected filesystem semantics."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from gupper.errors import InstallError
from gupper.install import FileOps, apply, check_writable, cleanup_leftovers, copy_mode, resolve_target, temp_path_for
from gupper.restart import RESTARTED_ENV, child_environment, restart_windows

from .test_windows import keep_signal_handlers  # noqa: F401  (the fixture)


@pytest.mark.posix
def test_posix_apply_replaces_atomically_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "app"
    target.write_bytes(b"old")
    os.chmod(target, 0o750)
    new = temp_path_for(target)
    new.write_bytes(b"new")
    assert new.parent == target.parent and new.name.startswith(".app.gupper-")
    copy_mode(target, new)
    with target.open("rb") as running:  # an open handle keeps the old inode, as a running binary does
        apply(new, target, "linux")
        assert running.read() == b"old"
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o750
    assert not new.exists()


@pytest.mark.posix
def test_symlinked_executable_has_its_target_replaced_not_the_link(tmp_path: Path) -> None:
    real = tmp_path / "opt" / "app"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "bin-app"
    link.symlink_to(real)
    target = resolve_target(str(link))
    assert target == real
    new = temp_path_for(target)
    new.write_bytes(b"new")
    apply(new, target, "darwin")
    assert link.is_symlink() and link.read_bytes() == b"new"


class WindowsFS:
    """Windows semantics: a running image may be renamed but not replaced or deleted."""

    def __init__(self, running: Path, deny_renames: int = 0) -> None:
        self.running = {str(running)}
        self.deny_renames = deny_renames  # antivirus holding the fresh file this many times
        self.calls: list[str] = []

    def replace(self, src: str, dst: str) -> None:
        self.calls.append(f"replace {Path(dst).name}")
        if dst in self.running:
            raise PermissionError(5, "Access is denied", dst)
        os.replace(src, dst)

    def rename(self, src: str, dst: str) -> None:
        self.calls.append(f"rename {Path(src).name}->{Path(dst).name}")
        if self.deny_renames and ".gupper-" in src:
            self.deny_renames -= 1
            raise PermissionError(5, "Access is denied", src)
        if os.path.exists(dst):
            raise FileExistsError(17, "exists", dst)
        os.rename(src, dst)
        if src in self.running:
            self.running.discard(src)
            self.running.add(dst)

    def unlink(self, path: str) -> None:
        if path in self.running:
            raise PermissionError(5, "Access is denied", path)
        os.unlink(path)

    def ops(self) -> FileOps:
        return FileOps(
            replace=self.replace, rename=self.rename, unlink=self.unlink, sleep=lambda s: None, fsync_dir=lambda p: None
        )


def test_windows_semantics_refuse_the_posix_method(tmp_path: Path) -> None:
    target = tmp_path / "app.exe"
    target.write_bytes(b"old")
    new = temp_path_for(target)
    new.write_bytes(b"new")
    fs = WindowsFS(target)
    with pytest.raises(InstallError, match="left as it was"):
        apply(new, target, "linux", fs.ops())
    assert target.read_bytes() == b"old"


def test_windows_apply_moves_the_running_exe_aside_and_retries_through_antivirus(tmp_path: Path) -> None:
    target = tmp_path / "app.exe"
    target.write_bytes(b"old")
    new = temp_path_for(target)
    new.write_bytes(b"new")
    fs = WindowsFS(target, deny_renames=3)
    apply(new, target, "windows", fs.ops())
    assert target.read_bytes() == b"new"
    old = tmp_path / "app.exe.old"
    assert old.read_bytes() == b"old" and str(old) in fs.running
    # Next start: the old image is no longer running and is cleaned up with any temp files.
    fs.running.clear()
    (tmp_path / ".app.exe.gupper-123.tmp").write_bytes(b"partial")
    removed = cleanup_leftovers(target, fs.ops())
    assert sorted(p.name for p in removed) == [".app.exe.gupper-123.tmp", "app.exe.old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.exe"]


def test_windows_apply_puts_the_old_exe_back_if_the_new_one_cannot_move_in(tmp_path: Path) -> None:
    target = tmp_path / "app.exe"
    target.write_bytes(b"old")
    new = temp_path_for(target)
    new.write_bytes(b"new")
    fs = WindowsFS(target, deny_renames=100)
    with pytest.raises(InstallError):
        apply(new, target, "windows", fs.ops())
    assert target.read_bytes() == b"old"


def test_cleanup_leaves_unrelated_files_alone(tmp_path: Path) -> None:
    target = tmp_path / "app"
    target.write_bytes(b"x")
    for name in ["notes.old", ".other.gupper-1.tmp", "app.cfg", ".app.gupper-9.tmp"]:
        (tmp_path / name).write_bytes(b"x")
    removed = cleanup_leftovers(target)
    assert [p.name for p in removed] == [".app.gupper-9.tmp"]


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root can write anywhere")
def test_unwritable_install_dir_is_detected_before_download(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    (d / "app").write_bytes(b"x")
    d.chmod(0o555)
    try:
        with pytest.raises(InstallError, match="no write permission"):
            check_writable(d / "app")
    finally:
        d.chmod(0o755)


def test_child_environment_resets_pyinstaller_state_and_library_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    env = child_environment(
        {
            "_PYI_APPLICATION_HOME_DIR": "/tmp/_MEI1",
            "_PYI_PARENT_PROCESS_LEVEL": "1",
            "LD_LIBRARY_PATH": "/tmp/_MEI1",
            "LD_LIBRARY_PATH_ORIG": "/usr/lib/custom",
            "DYLD_LIBRARY_PATH": "/tmp/_MEI1",
            "HOME": "/home/u",
        },
        "2.0.0",
    )
    assert env == {
        "LD_LIBRARY_PATH": "/usr/lib/custom",
        "HOME": "/home/u",
        "PYINSTALLER_RESET_ENVIRONMENT": "1",
        RESTARTED_ENV: "2.0.0",
    }


class NoWindowsApi:
    """No console handler, no job: the Win32 side is checked in tests/test_windows.py."""

    def ignore_console_ctrl(self) -> None:
        pass

    def join_kill_on_close_job(self) -> object | None:
        return None

    def release_job(self, job: object) -> None:
        pass


@pytest.mark.usefixtures("keep_signal_handlers")
def test_windows_restart_runs_the_new_exe_and_exits_with_its_code() -> None:
    seen: list[object] = []

    class Exit(Exception):
        pass

    def fake_exit(code: int) -> None:
        seen.append(code)
        raise Exit

    def fake_run(cmd: list[str], env: dict[str, str], **handles: object) -> int:
        seen.append((cmd, env, sorted(handles)))
        return 3

    with pytest.raises(Exit):
        restart_windows("C:/app.exe", ["--x"], {"A": "1"}, run=fake_run, exit_=fake_exit, api=NoWindowsApi())  # type: ignore[arg-type]
    assert seen == [(["C:/app.exe", "--x"], {"A": "1"}, ["stderr", "stdin", "stdout"]), 3]
