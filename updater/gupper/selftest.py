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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import PreflightFailedError, PreflightInterruptedError
from .records import record

if TYPE_CHECKING:
    from .config import UpdaterConfig

log = logging.getLogger("gupper")

SELF_TEST_ENV = "GUPPER_SELF_TEST"
SUPPRESS_SPLASH_ENV = "PYINSTALLER_SUPPRESS_SPLASH_SCREEN"
"""Set for a self-test: PyInstaller (5.13 and later) then does not show a ``--splash`` build's splash screen."""
_ANSWER = "gupper-self-test"
_NOT_READY = "gupper-self-test-failed:"
NOT_READY_EXIT = 3
"""The exit code of a self-test whose version could not update itself later (:func:`answer_self_test`)."""
# Signals that come from outside (the OOM killer, a user, a logout), not from the program's own
# crash: death by one of these says nothing about the release. SIGSEGV, SIGILL, SIGABRT, SIGBUS and
# SIGFPE do: a binary that dies of them is refused.
_OUTSIDE_SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGXCPU")
# Windows exit codes of a process ended from outside: STATUS_CONTROL_C_EXIT (Ctrl+C, Ctrl+Close),
# DBG_TERMINATE_PROCESS (ended at logoff or shutdown). Task Manager's "End task" is exit code 1,
# which a Python app also returns for an uncaught exception; it counts as from outside only when
# the program printed nothing on stderr (a crash prints its traceback there).
_WINDOWS_OUTSIDE_CODES = frozenset({0xC000013A, 0x40010004})
_WINDOWS_END_TASK = 1
_KILL_WAIT = 5.0
"""Seconds to wait for the output pipes to close once the self-test's processes were killed."""


def ended_from_outside(returncode: int, stderr: bytes, os_name: str) -> bool:
    """Whether a self-test that exited with ``returncode`` was ended from outside (no verdict on the
    release) rather than by its own failure."""
    if os_name == "windows":
        code = returncode & 0xFFFFFFFF
        return code in _WINDOWS_OUTSIDE_CODES or (code == _WINDOWS_END_TASK and not stderr.strip())
    import signal

    return returncode < 0 and -returncode in {
        getattr(signal, name) for name in _OUTSIDE_SIGNALS if hasattr(signal, name)
    }


def answer_self_test(
    version: str, environ: Mapping[str, str] | None = None, config: UpdaterConfig | None = None
) -> None:
    """If this process was started as Gupper's pre-flight self-test, answer with ``version`` and
    exit at once; otherwise return at once.

    Before it answers it checks that this version could update itself later
    (:func:`update_path_loads`, with ``config``'s CA bundle and manifest URL when given): if not, the
    self-test fails with the reason on one line of its stderr and exit code :data:`NOT_READY_EXIT`,
    and the release is not installed.

    :class:`~gupper.Updater` calls it when it is created. An app that creates its updater only
    later (in a GUI's event loop, from a menu item) calls it first thing in ``main()``, before its
    UI: a pre-flight must never open windows or do the app's work.
    """
    nonce = (os.environ if environ is None else environ).get(SELF_TEST_ENV)
    if not nonce:
        return
    try:
        update_path_loads(config)
    except Exception as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        _say(2, sys.stderr, f"{_NOT_READY} {version} cannot update itself later: {reason}\n")
        os._exit(NOT_READY_EXIT)
    _say(1, sys.stdout, f"{_ANSWER} {nonce} {version}\n")
    os._exit(0)  # a self-test must not run the app, touch state, or update anything


def update_path_loads(config: UpdaterConfig | None = None) -> None:
    """Raise unless what a later update needs loads in this process: the transport (requests,
    urllib3, ssl), the CA bundle the store's certificate is checked against (``config.ca_bundle``,
    else ``REQUESTS_CA_BUNDLE``, else certifi's) and libsodium's signature check, on a known answer.
    Nothing is sent over the network.

    A start that only confirms a trial loads none of it (:mod:`gupper.transfer`); the pre-flight
    loads it all, so that a release that starts but could never update itself again (frozen without
    libsodium, or without certifi's ``cacert.pem``) is not installed.
    """
    from . import ed25519
    from .fetch import Fetcher
    from .transfer import FetchConfig

    with Fetcher(FetchConfig(ca_bundle=config.ca_bundle if config else None)) as fetcher:
        fetcher.load_trust(config.manifest_url if config else None)
    ed25519.self_check()


def not_ready_reason(output: str) -> str | None:
    """``"<version> cannot update itself later: <why>"`` from a self-test's output, if that is how it
    failed (:func:`answer_self_test`); None otherwise. Pure."""
    line = next((line for line in output.splitlines() if line.startswith(_NOT_READY)), None)
    return None if line is None else line[len(_NOT_READY) :].strip()[:300]


def _say(fd: int, stream: Any, line: str) -> None:
    if stream is not None:
        with contextlib.suppress(OSError, ValueError):
            stream.write(line)
            stream.flush()
            return
    # gupper#16: a windowed (--noconsole) app has sys.stdout and sys.stderr None; fds 1 and 2 are the
    # pre-flight's pipes
    with contextlib.suppress(OSError):
        os.write(fd, line.encode())


class Verdict(enum.Enum):
    """How a self-test went (:meth:`SelfTestRun.verdict`)."""

    PASSED = "passed"
    TIMED_OUT = "timed out"  # no exit within the timeout (killed with every process it started)
    KILLED_FROM_OUTSIDE = "killed from outside"  # a signal, End task, a logoff: no verdict on the binary
    WRONG_VERSION = "wrong version"  # it answered, with another version
    NO_ANSWER = "no answer"  # it exited 0 without answering: the app never reached Gupper
    FAILED = "failed"  # it exited with an error (a traceback in its output) or died of its own signal


@record(frozen=True)
class SelfTestRun:
    """What a binary did when started in self-test mode: how it ended, the version it answered, what it printed."""

    returncode: int | None  # None: still running at the timeout, so it was killed
    answered: str | None  # the version in its answer to this run's nonce, if it answered
    output: str  # its stderr, then its stdout (decoded): the traceback of a failed start
    stderr: bytes = b""
    os_name: str = "linux"

    def verdict(self, expected_version: str) -> Verdict:
        """The outcome for a binary that should report ``expected_version``. Pure."""
        if self.returncode is None:
            return Verdict.TIMED_OUT
        if ended_from_outside(self.returncode, self.stderr, self.os_name):
            return Verdict.KILLED_FROM_OUTSIDE
        if self.answered is not None and self.answered != expected_version:
            return Verdict.WRONG_VERSION
        if self.returncode != 0:
            return Verdict.FAILED
        return Verdict.PASSED if self.answered is not None else Verdict.NO_ANSWER


def run_self_test(
    path: Path,
    env: Mapping[str, str],
    timeout: float,
    os_name: str | None = None,
    jobs: JobApi | None = None,
    popen: Callable[..., Any] | None = None,
) -> SelfTestRun:
    """Start ``path`` in self-test mode (``GUPPER_SELF_TEST`` set to a fresh nonce, added to ``env``),
    wait at most ``timeout`` seconds, and say what it did. The handshake the client's pre-flight and
    ``gupper-publish build`` both use.

    The self-test runs as a process tree of its own: its own process group and session on POSIX,
    a kill-on-close job object on Windows (``jobs``, kernel32 by default), so that a self-test that
    does not answer in time is killed with every process it started (a one-file build is a
    bootloader and its Python process), and whatever it left running after answering too.

    Raises:
        OSError: ``path`` cannot be started here (not executable, another CPU's binary, ...).
    """
    os_name = os_name or ("windows" if sys.platform == "win32" else sys.platform)
    nonce = secrets.token_hex(8)
    run_env = dict(env)
    run_env[SELF_TEST_ENV] = nonce
    run_env[SUPPRESS_SPLASH_ENV] = "1"  # a --splash build shows its splash screen at start: not in a self-test
    code, out, err = run_tree([str(path)], run_env, timeout, os_name=os_name, jobs=jobs, popen=popen)
    prefix = f"{_ANSWER} {nonce} "
    stdout = _text(out)
    answer = next((line for line in stdout.splitlines() if line.startswith(prefix)), None)
    answered = answer[len(prefix) :].strip() if answer is not None else None
    return SelfTestRun(code, answered, _text(err) + stdout, err, os_name)


def run_tree(
    argv: list[str],
    env: Mapping[str, str],
    timeout: float,
    *,
    cwd: Path | None = None,
    os_name: str | None = None,
    jobs: JobApi | None = None,
    popen: Callable[..., Any] | None = None,
) -> tuple[int | None, bytes, bytes]:
    """Run ``argv`` as a process tree of its own (see :func:`run_self_test`), without a console window
    on Windows; return its exit code (None: it was still running at ``timeout`` and was killed with
    every process it started), its stdout and its stderr. Whatever it left running is killed too.

    Raises:
        OSError: ``argv[0]`` cannot be started.
    """
    import subprocess  # here, not at import: a start that installs nothing never loads it

    os_name = os_name or ("windows" if sys.platform == "win32" else sys.platform)
    tree = _ProcessTree(os_name, jobs, popen or subprocess.Popen)
    proc = tree.start(argv, dict(env), cwd)
    try:
        out, err = _communicate(proc, tree, timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired as e:
        out, err, code = _bytes(e.stdout), _bytes(e.stderr), None
    finally:
        tree.kill()  # what it left running, if anything
        tree.close()
    return code, out, err


def _bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data if isinstance(data, bytes) else data.encode()


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def preflight(
    path: Path,
    expected_version: str,
    env: Mapping[str, str],
    timeout: float,
    os_name: str | None = None,
    jobs: JobApi | None = None,
    popen: Callable[..., Any] | None = None,
) -> None:
    """Run ``path`` in self-test mode and check its answer (:func:`run_self_test`).

    Raises:
        PreflightFailedError: it exited without the right answer, crashed or cannot start (a
            verdict on the release).
        PreflightInterruptedError: it was ended from outside (a signal, Windows' End task, a logoff)
            or did not answer within ``timeout`` (a busy machine, an antivirus scan): no verdict; try again.
    """
    try:
        run = run_self_test(path, env, timeout, os_name, jobs, popen)
    except OSError as e:
        raise PreflightFailedError(
            f"the new version {expected_version} cannot be started here ({e.strerror or e}); not installed"
        ) from e
    verdict = run.verdict(expected_version)
    if verdict is Verdict.PASSED:
        return
    if verdict is Verdict.TIMED_OUT:
        raise PreflightInterruptedError(
            f"the new version {expected_version} did not answer its self-test within {timeout:g} s (a busy "
            "machine, or a hung release); it is tried again next time"
        )
    code = run.returncode or 0
    if verdict is Verdict.KILLED_FROM_OUTSIDE:
        how = f"killed by signal {-code}" if code < 0 else f"ended from outside (exit code {code & 0xFFFFFFFF:#x})"
        raise PreflightInterruptedError(
            f"the self-test of {expected_version} was {how} (not by its own crash); it is tried again next time"
        )
    if verdict is Verdict.WRONG_VERSION:
        raise PreflightFailedError(
            f"the release published as {expected_version} reports version {run.answered}; not installed"
        )
    reason = not_ready_reason(run.output)
    if reason is not None:
        raise PreflightFailedError(
            f"the new version {reason}; not installed (fix the build: `gupper-publish build` runs the same self-test)"
        )
    raise PreflightFailedError(
        f"the new version {expected_version} failed its self-test (exit code {run.returncode}); not installed"
    )


_STEP = 0.25
"""Seconds between two looks at whether the self-test's own process has ended."""


def _communicate(proc: Any, tree: _ProcessTree, timeout: float) -> tuple[bytes, bytes]:
    """The self-test's output once its process has ended, within ``timeout`` (TimeoutExpired after
    the tree was killed). A process it left behind holding the output pipes open (a background
    child) does not make it wait: once the self-test's own process has ended, the tree is killed
    and the pipes close."""
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            out, err = proc.communicate(timeout=max(min(_STEP, left), 0))
            return bytes(out or b""), bytes(err or b"")
        except subprocess.TimeoutExpired:
            ended = proc.poll() is not None
            if not ended and left > _STEP:
                continue
            tree.kill()
            try:
                out, err = proc.communicate(timeout=_KILL_WAIT)
            except subprocess.TimeoutExpired:
                out, err = b"", b""
            if ended:
                return bytes(out or b""), bytes(err or b"")
            raise


class JobApi(Protocol):
    """The Win32 calls that keep a self-test's processes in one kill-on-close job (ctypes on
    Windows; a recorder in tests)."""

    def create_kill_on_close_job(self) -> object | None:
        """A new job object whose processes die when its last handle closes; None if unavailable."""

    def assign_and_resume(self, job: object, process: Any) -> None:
        """Put a process started suspended in ``job``, then let it run (so its children start inside)."""

    def terminate(self, job: object) -> None:
        """End every process in ``job``."""

    def close(self, job: object) -> None:
        """Close the job's handle (ending what is left in it)."""


CREATE_SUSPENDED = 0x00000004
CREATE_NO_WINDOW = 0x08000000
"""A console self-test or post-install hook opens no console window (a windowed app updating itself would flash one)."""


class _ProcessTree:
    """The self-test's processes: started as a tree of their own, killed as one."""

    def __init__(self, os_name: str, jobs: JobApi | None, popen: Callable[..., Any]) -> None:
        self.os_name, self.popen = os_name, popen
        self.jobs = jobs if jobs is not None or os_name != "windows" else windows_job_api()
        self.job: object | None = None
        self.proc: Any = None

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Any:
        import subprocess

        kw: dict[str, Any] = {
            "env": env,
            "cwd": cwd,
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
        }
        if self.os_name != "windows":
            self.proc = self.popen(argv, start_new_session=True, **kw)
            return self.proc
        self.job = self.jobs.create_kill_on_close_job() if self.jobs is not None else None
        flags = CREATE_NO_WINDOW | (CREATE_SUSPENDED if self.job is not None else 0)
        self.proc = self.popen(argv, creationflags=flags, **kw)
        if self.job is not None and self.jobs is not None:
            try:
                self.jobs.assign_and_resume(self.job, self.proc)
            except OSError:
                self.proc.kill()  # suspended and outside the job: it must not stay
                raise
        return self.proc

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.os_name != "windows":
            import signal

            with contextlib.suppress(OSError):  # already gone (ESRCH), or not ours to signal
                os.killpg(self.proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        elif self.job is not None and self.jobs is not None:
            self.jobs.terminate(self.job)
        else:
            with contextlib.suppress(OSError):
                self.proc.kill()

    def close(self) -> None:
        if self.job is not None and self.jobs is not None:
            self.jobs.close(self.job)
            self.job = None


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


class Kernel32Jobs:
    """:class:`JobApi` over kernel32 and ntdll (ctypes)."""

    def __init__(self, kernel32: Any, ntdll: Any) -> None:
        from .restart import _job_structures

        self.kernel32, self.ntdll = kernel32, ntdll
        self.limits = _job_structures()

    def create_kill_on_close_job(self) -> object | None:
        """CreateJobObjectW with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE."""
        from .restart import kill_on_close_job

        return kill_on_close_job(self.kernel32, self.limits)

    def assign_and_resume(self, job: object, process: Any) -> None:
        """AssignProcessToJobObject, then NtResumeProcess (subprocess keeps no thread handle to resume)."""
        import ctypes

        if not self.kernel32.AssignProcessToJobObject(job, int(process._handle)):
            raise OSError(ctypes.get_last_error(), "AssignProcessToJobObject failed")  # type: ignore[attr-defined,unused-ignore]
        if self.ntdll.NtResumeProcess(int(process._handle)) != 0:
            raise OSError(0, "NtResumeProcess failed")

    def terminate(self, job: object) -> None:
        """TerminateJobObject, exit code 1."""
        self.kernel32.TerminateJobObject(job, 1)

    def close(self, job: object) -> None:
        """CloseHandle (kill-on-close ends what is left)."""
        self.kernel32.CloseHandle(job)


def windows_job_api() -> JobApi | None:
    """The kernel32 implementation on Windows, None elsewhere."""
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes

    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.CreateJobObjectW.restype = wintypes.HANDLE
    k.CreateJobObjectW.argtypes = [wintypes.LPVOID, wintypes.LPCWSTR]
    k.SetInformationJobObject.restype = wintypes.BOOL
    k.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.LPVOID, wintypes.DWORD]
    k.AssignProcessToJobObject.restype = wintypes.BOOL
    k.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    k.TerminateJobObject.restype = wintypes.BOOL
    k.TerminateJobObject.argtypes = [wintypes.HANDLE, wintypes.UINT]
    k.CloseHandle.argtypes = [wintypes.HANDLE]
    nt = ctypes.WinDLL("ntdll")
    nt.NtResumeProcess.restype = ctypes.c_long
    nt.NtResumeProcess.argtypes = [wintypes.HANDLE]
    return Kernel32Jobs(k, nt)
