"""Pre-flight: run a freshly downloaded binary in self-test mode before it may replace the app.

The new binary is started with ``GUPPER_SELF_TEST=<nonce>``; its :meth:`Updater.run` (called at
the app's start-up, after the app's own imports) answers with one line naming the nonce and its
version, and exits. A binary that crashes on start, hangs, is for another CPU, or reports another
version never gets installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import PreflightFailedError, PreflightInterruptedError

log = logging.getLogger("gupper")

SELF_TEST_ENV = "GUPPER_SELF_TEST"
_ANSWER = "gupper-self-test"
# Signals that come from outside (the OOM killer, a user, a logout), not from the program's own
# crash: death by one of these says nothing about the release. SIGSEGV, SIGILL, SIGABRT, SIGBUS and
# SIGFPE do: a binary that dies of them is refused.
_OUTSIDE_SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGXCPU")


def _from_outside(returncode: int) -> bool:
    import signal

    return returncode < 0 and -returncode in {
        getattr(signal, name) for name in _OUTSIDE_SIGNALS if hasattr(signal, name)
    }


def answer_self_test(version: str, environ: Mapping[str, str] | None = None) -> None:
    """If this process was started as Gupper's pre-flight self-test, answer with ``version`` and
    exit at once; otherwise return at once.

    :class:`~gupper.Updater` calls it when it is created. An app that creates its updater only
    later (in a GUI's event loop, from a menu item) calls it first thing in ``main()``, before its
    UI: a pre-flight must never open windows or do the app's work.
    """
    nonce = (os.environ if environ is None else environ).get(SELF_TEST_ENV)
    if not nonce:
        return
    answer = f"{_ANSWER} {nonce} {version}\n"
    if sys.stdout is not None:
        sys.stdout.write(answer)
        sys.stdout.flush()
    else:  # gupper#16: a windowed (--noconsole) app has sys.stdout None; fd 1 is the pre-flight's pipe
        with contextlib.suppress(OSError):
            os.write(1, answer.encode())
    os._exit(0)  # a self-test must not run the app, touch state, or update anything


def preflight(path: Path, expected_version: str, env: Mapping[str, str], timeout: float) -> None:
    """Run ``path`` in self-test mode and check its answer.

    Raises:
        PreflightFailedError: it did not answer correctly in time (a verdict on the release).
        PreflightInterruptedError: it was killed by a signal from outside (no verdict; try again).
    """
    import subprocess  # here, not at import: a start that installs nothing never loads it

    nonce = secrets.token_hex(8)
    run_env = dict(env)
    run_env[SELF_TEST_ENV] = nonce
    try:
        proc = subprocess.run(
            [str(path)], env=run_env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise PreflightFailedError(
            f"the new version {expected_version} did not answer its self-test within {timeout:g} s; not installed"
        ) from e
    except OSError as e:
        raise PreflightFailedError(
            f"the new version {expected_version} cannot be started here ({e.strerror or e}); not installed"
        ) from e
    if _from_outside(proc.returncode):
        raise PreflightInterruptedError(
            f"the self-test of {expected_version} was killed by signal {-proc.returncode} (not "
            "by its own crash); it is tried again next time"
        )
    expected = f"{_ANSWER} {nonce} {expected_version}"
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    if proc.returncode == 0 and expected in lines:
        return
    answered = next((line for line in lines if line.startswith(f"{_ANSWER} {nonce} ")), None)
    if answered is not None:
        raise PreflightFailedError(
            f"the release published as {expected_version} reports version {answered.split()[-1]}; not installed"
        )
    raise PreflightFailedError(
        f"the new version {expected_version} failed its self-test (exit code {proc.returncode}); not installed"
    )


def scratch_dir(app: str) -> Path | None:
    """A fresh, private scratch folder for a self-test's one-file extraction, or None (then the
    self-test uses the normal temp folder). Under the system temp folder, where the app itself
    extracts, so that it allows executables; per user and per app, refused if anyone else made it."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"gupper-preflight-{app}{_uid_suffix()}"
    remove_scratch_dir(app)
    try:
        path.mkdir(mode=0o700)
    except OSError as e:
        log.debug("gupper: no private folder for the self-test (%s)", e)
        return None
    return path


def remove_scratch_dir(app: str) -> None:
    """Empty and remove the self-test's scratch folder, if it is ours (a real folder we own)."""
    import shutil
    import stat
    import tempfile

    path = Path(tempfile.gettempdir()) / f"gupper-preflight-{app}{_uid_suffix()}"
    try:
        st = path.lstat()
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return  # a link or someone else's: not ours to touch
    shutil.rmtree(path, ignore_errors=True)


def _uid_suffix() -> str:
    return f"-{os.getuid()}" if hasattr(os, "getuid") else ""
