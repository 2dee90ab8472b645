"""Where Gupper keeps its files for a user: the state folder (:mod:`gupper.state`) and the log
folder (:mod:`gupper.logfile`), when the app names none.

The state folder must be the same for every build of an app: the version that installs an update
records the new version's trial there, and the new version counts its starts against that record
and ends it. So the folders are Gupper's own definition, fixed here, not a library's that moves
between releases (platformdirs 4.x began to honour ``XDG_STATE_HOME`` on macOS: an app built with
an older release and its update built with a newer one would look in two places). They are the
folders platformdirs gave on each system before that:

====================  ============================================  =================================
system                state folder                                  log folder
====================  ============================================  =================================
Linux, BSD, other     ``$XDG_STATE_HOME/gupper/<app>`` (absolute),   ``…/state/<app>/log``
                      else ``~/.local/state/gupper/<app>``
macOS                 ``~/Library/Application Support/gupper/<app>``  ``~/Library/Logs/<app>``
Windows               ``%LOCALAPPDATA%\\gupper\\<app>``                ``%LOCALAPPDATA%\\<app>\\Logs``
====================  ============================================  =================================

Pure: the system, the environment and the home folder are passed in (the running ones by default).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

__all__ = ["log_dir_for", "state_dir_for", "user_log_dir", "user_state_dir"]


def _system(os_name: str | None) -> str:
    if os_name is not None:
        return os_name
    return "windows" if sys.platform == "win32" else "macos" if sys.platform == "darwin" else "linux"


def _home(system: str, environ: Mapping[str, str]) -> str:
    if system == "windows":
        return environ.get("USERPROFILE") or os.path.expanduser("~")
    home = environ.get("HOME", "")
    if not PurePosixPath(home).is_absolute():  # an empty or relative HOME is no home: ask the user database
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    return home


def _base(system: str, environ: Mapping[str, str], home: str | None, kind: str) -> PurePath:
    home = home if home is not None else _home(system, environ)
    if system == "windows":
        local = environ.get("LOCALAPPDATA", "")
        return (
            PureWindowsPath(local)
            if PureWindowsPath(local).is_absolute()
            else PureWindowsPath(home, "AppData", "Local")
        )
    if system == "macos":
        return PurePosixPath(home, "Library", "Logs" if kind == "log" else "Application Support")
    state = environ.get("XDG_STATE_HOME", "")
    return PurePosixPath(state) if PurePosixPath(state).is_absolute() else PurePosixPath(home, ".local", "state")


def state_dir_for(
    app: str, os_name: str | None = None, environ: Mapping[str, str] | None = None, home: str | None = None
) -> PurePath:
    """The state folder for ``app`` on ``os_name`` (the table above). Pure but for the defaults."""
    system = _system(os_name)
    return _base(system, os.environ if environ is None else environ, home, "state") / "gupper" / app


def log_dir_for(
    app: str, os_name: str | None = None, environ: Mapping[str, str] | None = None, home: str | None = None
) -> PurePath:
    """The log folder for ``app`` on ``os_name`` (the table above). Pure but for the defaults."""
    system = _system(os_name)
    base = _base(system, os.environ if environ is None else environ, home, "log")
    if system == "macos":
        return base / app
    return base / app / ("Logs" if system == "windows" else "log")


def user_state_dir(app: str) -> Path:
    """This user's state folder for ``app`` on this system."""
    return Path(state_dir_for(app))


def user_log_dir(app: str) -> Path:
    """The folder :func:`gupper.log_to_file` writes ``app``'s log to on this system."""
    return Path(log_dir_for(app))
