"""Starting the newly installed executable in place of this process.

A PyInstaller one-file binary that execs another one-file binary must make the child extract
its own bundle: without ``PYINSTALLER_RESET_ENVIRONMENT=1`` the child finds the parent's
``_PYI_*`` variables and runs the new code on the *old* extraction dir. The bootloader also
points ``LD_LIBRARY_PATH`` (``DYLD_LIBRARY_PATH`` on macOS) at that dir; restore the user's value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

RESTARTED_ENV = "_GUPPER_RESTARTED"
"""Set in the new process's environment to the version it was installed as (loop guard)."""

_LIBRARY_PATH_VARS = ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "LIBPATH")


def child_environment(environ: Mapping[str, str], installed_version: str) -> dict[str, str]:
    """The environment for the restarted executable: clean of the bootloader's changes."""
    env = {k: v for k, v in environ.items() if not k.startswith("_PYI_") and k != "_MEIPASS2"}
    for var in _LIBRARY_PATH_VARS:
        orig = env.pop(var + "_ORIG", None)
        if orig is not None:
            env[var] = orig
        elif getattr(sys, "frozen", False):
            env.pop(var, None)
    env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
    env[RESTARTED_ENV] = installed_version
    return env


def restart_posix(executable: str, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process image with ``executable`` (same pid, same argv)."""
    os.execve(executable, [executable, *argv], dict(env))


def restart_windows(
    executable: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    run: Callable[..., int] = subprocess.call,
    exit_: Callable[[int], NoReturn] = os._exit,
) -> NoReturn:
    """Windows has no exec: run the new exe to completion and leave with its exit code."""
    code = run([executable, *argv], env=dict(env))
    exit_(code)


def restart(executable: str, argv: Sequence[str], env: Mapping[str, str], os_name: str) -> NoReturn:
    """Run ``executable`` with ``argv`` in place of this process; never returns."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os_name == "windows":
        restart_windows(executable, argv, env)
    restart_posix(executable, argv, env)
