"""Gupper's user folders (gupper.folders): the same on every build of an app, and the ones
platformdirs gave on each system before its 4.x releases began to read ``XDG_*`` on macOS."""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from platformdirs.macos import MacOS
from platformdirs.unix import Unix

from gupper.folders import log_dir_for, state_dir_for, user_log_dir, user_state_dir
from gupper.logfile import default_log_dir
from gupper.state import default_state_dir

HOME = "/home/ada"


@pytest.mark.parametrize(
    "xdg", [None, "/srv/state", "relative/state", ""], ids=["unset", "absolute", "relative", "empty"]
)
@pytest.mark.posix  # platformdirs' Unix and MacOS classes expand "~" from USERPROFILE on Windows
def test_on_linux_the_folders_are_the_xdg_ones_platformdirs_gives(
    monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    monkeypatch.setenv("HOME", HOME)
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    env = dict(os.environ)
    assert state_dir_for("notes", "linux", env) == PurePosixPath(
        Unix("gupper", appauthor=False).user_state_dir, "notes"
    )
    assert log_dir_for("notes", "linux", env) == PurePosixPath(Unix("notes", appauthor=False).user_log_dir)
    expected = "/srv/state" if xdg == "/srv/state" else f"{HOME}/.local/state"  # the XDG spec: relative is ignored
    assert str(state_dir_for("notes", "linux", env)) == f"{expected}/gupper/notes"


@pytest.mark.posix
def test_on_macos_the_folders_do_not_move_with_xdg_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", HOME)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    env = dict(os.environ)
    state = PurePosixPath(HOME, "Library", "Application Support", "gupper", "notes")
    assert (
        state_dir_for("notes", "macos", env)
        == state
        == PurePosixPath(MacOS("gupper", appauthor=False).user_state_dir, "notes")
    )
    assert log_dir_for("notes", "macos", env) == PurePosixPath(HOME, "Library", "Logs", "notes")
    assert log_dir_for("notes", "macos", env) == PurePosixPath(MacOS("notes", appauthor=False).user_log_dir)
    # A shell profile that sets XDG_STATE_HOME: an app and its update must keep finding one state folder.
    monkeypatch.setenv("XDG_STATE_HOME", "/Users/ada/.state")
    assert state_dir_for("notes", "macos", dict(os.environ)) == state


def test_on_windows_the_folders_are_under_local_app_data() -> None:
    env = {"LOCALAPPDATA": "C:\\Users\\ada\\AppData\\Local", "USERPROFILE": "C:\\Users\\ada", "XDG_STATE_HOME": "/x"}
    assert state_dir_for("notes", "windows", env) == PureWindowsPath("C:/Users/ada/AppData/Local/gupper/notes")
    assert log_dir_for("notes", "windows", env) == PureWindowsPath("C:/Users/ada/AppData/Local/notes/Logs")
    # A service account without the variable: the same folder, from the profile.
    del env["LOCALAPPDATA"]
    assert state_dir_for("notes", "windows", env) == PureWindowsPath("C:/Users/ada/AppData/Local/gupper/notes")


@pytest.mark.posix  # the user database (pwd)
@pytest.mark.parametrize("home", ["", "relative"])
def test_a_home_that_is_no_absolute_path_is_taken_from_the_user_database(home: str) -> None:
    import pwd

    real = pwd.getpwuid(os.getuid()).pw_dir
    assert state_dir_for("notes", "linux", {"HOME": home}) == PurePosixPath(real, ".local", "state", "gupper", "notes")


@pytest.mark.posix
def test_the_updater_and_the_log_file_use_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", HOME)
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert str(default_state_dir("notes")) == "/srv/state/gupper/notes"
    assert str(default_log_dir("notes")) == "/srv/state/notes/log"


@pytest.mark.skipif(sys.platform != "win32", reason="the running system's own folders: Windows (the CI workflow's job)")
def test_on_a_windows_machine_the_folders_are_under_its_local_app_data() -> None:
    assert user_state_dir("notes") == Path(os.environ["LOCALAPPDATA"], "gupper", "notes")
    assert user_log_dir("notes") == Path(os.environ["LOCALAPPDATA"], "notes", "Logs")
