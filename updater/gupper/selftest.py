"""Pre-flight: run a freshly downloaded binary in self-test mode before it may replace the app.

The new binary is started with ``GUPPER_SELF_TEST=<nonce>``; its :meth:`Updater.run` (called at
the app's start-up, after the app's own imports) answers with one line naming the nonce and its
version, and exits. A binary that crashes on start, hangs, is for another CPU, or reports another
version never gets installed.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
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


class Verdict(enum.Enum):
    """How a self-test went (:meth:`SelfTestRun.verdict`)."""

    PASSED = "passed"
    TIMED_OUT = "timed out"  # no exit within the timeout
    KILLED_FROM_OUTSIDE = "killed from outside"  # a signal from outside: no verdict on the binary
    WRONG_VERSION = "wrong version"  # it answered, with another version
    NO_ANSWER = "no answer"  # it exited 0 without answering: the app never reached Gupper
    FAILED = "failed"  # it exited with an error (a traceback in its output) or died of its own signal


@dataclass(frozen=True)
class SelfTestRun:
    """What a binary did when started in self-test mode: how it ended, the version it answered, what it printed."""

    returncode: int | None  # None: still running at the timeout, so it was killed
    answered: str | None  # the version in its answer to this run's nonce, if it answered
    output: str  # its stderr, then its stdout (decoded): the traceback of a failed start

    def verdict(self, expected_version: str) -> Verdict:
        """The outcome for a binary that should report ``expected_version``. Pure."""
        if self.returncode is None:
            return Verdict.TIMED_OUT
        if _from_outside(self.returncode):
            return Verdict.KILLED_FROM_OUTSIDE
        if self.answered is not None and self.answered != expected_version:
            return Verdict.WRONG_VERSION
        if self.returncode != 0:
            return Verdict.FAILED
        return Verdict.PASSED if self.answered is not None else Verdict.NO_ANSWER


def run_self_test(path: Path, env: Mapping[str, str], timeout: float) -> SelfTestRun:
    """Start ``path`` in self-test mode (``GUPPER_SELF_TEST`` set to a fresh nonce, added to ``env``),
    wait at most ``timeout`` seconds, and say what it did. The handshake the client's pre-flight and
    ``gupper-publish build`` both use.

    Raises:
        OSError: ``path`` cannot be started here (not executable, another CPU's binary, ...).
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
        return SelfTestRun(None, None, _text(e.stderr) + _text(e.stdout))
    prefix = f"{_ANSWER} {nonce} "
    stdout = _text(proc.stdout)
    answer = next((line for line in stdout.splitlines() if line.startswith(prefix)), None)
    answered = answer[len(prefix) :].strip() if answer is not None else None
    return SelfTestRun(proc.returncode, answered, _text(proc.stderr) + stdout)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def preflight(path: Path, expected_version: str, env: Mapping[str, str], timeout: float) -> None:
    """Run ``path`` in self-test mode and check its answer (:func:`run_self_test`).

    Raises:
        PreflightFailedError: it did not answer correctly in time (a verdict on the release).
        PreflightInterruptedError: it was killed by a signal from outside (no verdict; try again).
    """
    try:
        run = run_self_test(path, env, timeout)
    except OSError as e:
        raise PreflightFailedError(
            f"the new version {expected_version} cannot be started here ({e.strerror or e}); not installed"
        ) from e
    verdict = run.verdict(expected_version)
    if verdict is Verdict.PASSED:
        return
    if verdict is Verdict.TIMED_OUT:
        raise PreflightFailedError(
            f"the new version {expected_version} did not answer its self-test within {timeout:g} s; not installed"
        )
    if verdict is Verdict.KILLED_FROM_OUTSIDE:
        raise PreflightInterruptedError(
            f"the self-test of {expected_version} was killed by signal {-(run.returncode or 0)} (not "
            "by its own crash); it is tried again next time"
        )
    if verdict is Verdict.WRONG_VERSION:
        raise PreflightFailedError(
            f"the release published as {expected_version} reports version {run.answered}; not installed"
        )
    raise PreflightFailedError(
        f"the new version {expected_version} failed its self-test (exit code {run.returncode}); not installed"
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
