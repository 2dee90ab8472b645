"""Starting the newly installed executable in place of this process.

A PyInstaller one-file binary that execs another one-file binary must make the child extract
its own bundle: without ``PYINSTALLER_RESET_ENVIRONMENT=1`` the child finds the parent's
``_PYI_*`` variables and runs the new code on the *old* extraction dir. The bootloader also
points ``LD_LIBRARY_PATH`` (``DYLD_LIBRARY_PATH`` on macOS) at that dir; restore the user's value.

POSIX replaces this process (``execve``: same pid, signals and exit code go to the new app).
Windows has no exec: this process starts the new exe and waits for it, as the one-folder
launcher (launcher/launcher.c) and PyInstaller's own one-file bootloader do. While it waits it
ignores Ctrl+C and Ctrl+Break (the new app, on the same console, gets them and decides), it
passes its standard handles explicitly (a windowed app has none: the child gets NUL instead of
an invalid handle), it puts itself and so the new app in a kill-on-close job object (killing the
waiting process kills the app it started), and it leaves with the app's exit code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import IO, Any, NoReturn, Protocol, cast

from .errors import InstallError

log = logging.getLogger("gupper")

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


def flush_std_streams() -> None:
    """Flush ``sys.stdout``/``sys.stderr`` before the process is replaced or waits: they are None in a
    windowed (``--noconsole``) PyInstaller app or ``pythonw``, and may be closed."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


def restart_posix(executable: str, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process image with ``executable`` (same pid, same argv)."""
    os.execve(executable, [executable, *argv], dict(env))


# --- Windows: the waiting parent ------------------------------------------------------------

Handle = int | IO[Any]


def std_handles(is_open: Callable[[int], bool] | None = None) -> dict[str, Handle]:
    """``stdin``/``stdout``/``stderr`` for the new app: this process's fds 0-2 where open, each missing
    one replaced by ``subprocess.DEVNULL``; nothing at all when none is open (a windowed app started
    from a shortcut: the new one then starts exactly as it would from there).

    Passing them explicitly makes ``subprocess`` hand exactly these handles to the child
    (``STARTF_USESTDHANDLES``, nothing else inherited). Left implicit with some missing, Windows
    fails with "The handle is invalid" (PyInstaller issues 3392, 4930).
    """
    check = is_open or _fd_is_open
    names = ("stdin", "stdout", "stderr")
    present = [check(fd) for fd in range(3)]
    if not any(present):
        return {}
    import subprocess

    return {name: fd if ok else subprocess.DEVNULL for fd, (name, ok) in enumerate(zip(names, present, strict=True))}


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)  # Windows: checks the fd's OS handle too (a windowed process has none)
    except OSError:
        return False
    return True


def exit_status(code: int) -> int:
    """A child's exit code as this process can pass it to ``os._exit``: Windows codes are unsigned
    32-bit (0xC000013A after Ctrl+C), ``os._exit`` takes a C int; a POSIX child killed by signal N
    (``-N`` from subprocess) becomes 128+N, as a shell reports it."""
    if code < 0:
        return 128 - code
    return code - (1 << 32) if code >= 1 << 31 else code


class WindowsApi(Protocol):
    """The Win32 calls the waiting parent makes (ctypes on Windows; a recorder in tests)."""

    def ignore_console_ctrl(self) -> None:
        """Let Ctrl+C/Ctrl+Break and console close pass this process by (any thread)."""

    def join_kill_on_close_job(self) -> object | None:
        """Put this process in a new job that kills its members when its last handle closes; the job, or None."""

    def release_job(self, job: object) -> None:
        """Lift the kill-on-close limit, so that closing the handle at exit kills nothing."""


def _ignore_interrupts_in_python() -> None:
    """No KeyboardInterrupt in the waiting parent. A handler (not SIG_IGN) is reset by exec on POSIX
    and is not inherited on Windows, so the child keeps the default behaviour."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set there; on Windows the console handler covers this
    import signal

    for name in ("SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, _ignored)


def _ignored(signum: int, frame: object) -> None:
    log.debug("gupper: signal %d ignored while the new version runs", signum)


def run_and_wait(
    executable: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    run: Callable[..., int] | None = None,
    api: WindowsApi | None = None,
    handles: Mapping[str, Handle] | None = None,
) -> int:
    """Start ``executable`` as the Windows restart does and wait for it; return its exit status for ``os._exit``.

    Raises InstallError when it cannot be started.
    """
    if api is not None:
        api.ignore_console_ctrl()
    _ignore_interrupts_in_python()
    job = api.join_kill_on_close_job() if api is not None else None
    if run is None:
        import subprocess  # here, not at import: a start that restarts nothing never loads it

        run = cast("Callable[..., int]", subprocess.call)
    call = run
    try:
        code = call([executable, *argv], env=dict(env), **dict(handles if handles is not None else std_handles()))
    except OSError as e:
        raise InstallError(
            f"installed, but the new version cannot be started ({e.strerror or e}); it runs from the next start"
        ) from e
    finally:
        if job is not None and api is not None:
            api.release_job(job)
    return exit_status(code)


def restart_windows(
    executable: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    run: Callable[..., int] | None = None,
    exit_: Callable[[int], NoReturn] = os._exit,
    api: WindowsApi | None = None,
) -> NoReturn:
    """Windows has no exec: run the new exe to completion and leave with its exit code."""
    api = api if api is not None else windows_api()  # held until exit: it owns the registered console handler
    code = run_and_wait(executable, argv, env, run, api)
    exit_(code)


def restart(executable: str, argv: Sequence[str], env: Mapping[str, str], os_name: str) -> NoReturn:
    """Run ``executable`` with ``argv`` in place of this process; never returns.

    Raises InstallError (the new version is installed; it runs from the next start) when it
    cannot be started, so that the caller carries on with the running version.
    """
    flush_std_streams()
    if os_name == "windows":
        restart_windows(executable, argv, env)
    try:
        restart_posix(executable, argv, env)
    except OSError as e:
        raise InstallError(
            f"installed, but the new version cannot be started ({e.strerror or e}); it runs from the next start"
        ) from e


# --- GUI apps: the new version starts once this process has ended -----------------------------

HANDOVER_ENV = "_GUPPER_HANDOVER"
"""Set for a version started by :func:`launch_after_exit`: what tells it that the old process has ended."""

HANDOVER_TIMEOUT = 30.0
"""How long a new version waits, at most, for the process that started it to end."""


def launch_after_exit(
    executable: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    os_name: str,
    popen: Callable[..., Any] | None = None,
    api: HandoverApi | None = None,
) -> None:
    """Start ``executable`` now as a process of its own (not a child that dies with this one), which
    waits in :func:`wait_for_handover` until this process has ended, then runs.

    For GUI apps that quit themselves: this process finishes what it does on exit (saving files,
    releasing a single-instance lock) before the new version does anything, and nothing ties the
    two together afterwards (no job object, no waiting parent). POSIX: the new process gets the
    read end of a pipe whose write end only this process holds; it reads end-of-file when this
    process is gone. Windows: it gets an inheritable handle to this process and waits on it.

    Raises:
        InstallError: the new version cannot be started (this process carries on).
    """
    import subprocess

    run = popen or subprocess.Popen
    child_env = dict(env)
    kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "close_fds": True}
    read_fd = None
    if os_name == "windows":
        win = api if api is not None else windows_handover_api()
        if win is not None:
            handle = win.inheritable_handle_to_self()
            child_env[HANDOVER_ENV] = f"handle:{handle}"
            kwargs["startupinfo"] = win.startupinfo_with_handles([handle])
        kwargs["creationflags"] = 0x00000200 | 0x01000000  # CREATE_NEW_PROCESS_GROUP | CREATE_BREAKAWAY_FROM_JOB
        kwargs.update(std_handles())
    else:
        read_fd, write_fd = os.pipe()  # both close-on-exec: only the new process gets the read end
        _HANDOVER_FDS.append(write_fd)  # held until this process ends
        child_env[HANDOVER_ENV] = f"fd:{read_fd}:{os.getpid()}"
        kwargs.update(pass_fds=(read_fd,), start_new_session=True)
    flush_std_streams()
    try:
        try:
            run([executable, *argv], env=child_env, **kwargs)
        except PermissionError:
            if os_name != "windows":
                raise
            kwargs["creationflags"] &= ~0x01000000  # in a job that allows no breakaway: start inside it
            run([executable, *argv], env=child_env, **kwargs)
    except OSError as e:
        raise InstallError(f"cannot start {executable} ({e.strerror or e}); it runs from the next start") from e
    finally:
        if read_fd is not None:
            os.close(read_fd)


def hand_over(
    executable: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    popen: Callable[..., Any] | None = None,
    exit_: Callable[[int], NoReturn] = os._exit,
) -> NoReturn:
    """Start ``executable`` as :func:`launch_after_exit` does (with this OS's calls), then end this
    process at once (exit code 0): for a restart whose new version can run only once this process has
    ended (a Windows folder install's launcher switches ``current`` then).

    Raises:
        InstallError: the new version cannot be started (this process carries on).
    """
    launch_after_exit(executable, argv, env, "windows" if sys.platform == "win32" else sys.platform, popen)
    flush_std_streams()
    exit_(0)


_HANDOVER_FDS: list[int] = []


def wait_for_handover(
    environ: MutableMapping[str, str], timeout: float = HANDOVER_TIMEOUT, api: HandoverApi | None = None
) -> bool:
    """In a version started by :func:`launch_after_exit`: wait until the process that started it has
    ended, at most ``timeout`` seconds; True when it has. Returns at once otherwise. The variable
    is removed, so that processes this one starts do not wait too."""
    spec = environ.pop(HANDOVER_ENV, None)
    if not spec:
        return True
    kind, _, value = spec.partition(":")
    number_text, _, pid_text = value.partition(":")
    try:
        number = int(number_text)
        pid = int(pid_text) if pid_text else None
    except ValueError:
        return True
    if kind == "fd" and os.name == "posix":
        deadline = time.monotonic() + timeout
        ended = _wait_for_eof(number, timeout)
        if ended and pid is not None:
            _wait_for_exit(pid, max(deadline - time.monotonic(), 0.0))
        return ended
    if kind == "handle":
        win = api if api is not None else windows_handover_api()
        return win.wait(number, timeout) if win is not None else True
    return True


def _wait_for_eof(fd: int, timeout: float) -> bool:
    import select

    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            os.read(fd, 1)  # b"": the writer, the old process, has closed its files
        return bool(ready)
    except (OSError, ValueError):
        return True  # not our pipe (closed, or never inherited): nothing to wait for
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _wait_for_exit(pid: int, timeout: float) -> None:
    """After the pipe's end of file, the old process is in its exit (it closes its files first):
    on Linux wait, within ``timeout``, until it has ended (a pidfd turns readable); elsewhere the
    closed pipe is the signal."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return
    import select

    try:
        fd = opener(pid)
    except OSError:
        return  # already gone (and reaped)
    try:
        select.select([fd], [], [], timeout)
    except (OSError, ValueError):
        pass
    finally:
        os.close(fd)


class HandoverApi(Protocol):
    """The Win32 calls of a handover (ctypes on Windows; a recorder in tests)."""

    def inheritable_handle_to_self(self) -> int:
        """A handle to this process (SYNCHRONIZE access) that a child may inherit."""

    def startupinfo_with_handles(self, handles: list[int]) -> Any:
        """A ``subprocess.STARTUPINFO`` that lets the child inherit exactly ``handles``."""

    def wait(self, handle: int, timeout: float) -> bool:
        """Wait until the process ``handle`` refers to has ended (True), at most ``timeout`` s; close it."""


# --- ctypes, Windows only ---------------------------------------------------------------------

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
"""``JobObjectExtendedLimitInformation``, the information class of SetInformationJobObject."""


def _job_structures() -> type[Any]:
    """``JOBOBJECT_EXTENDED_LIMIT_INFORMATION`` with fixed-size fields (144 bytes on 64-bit Windows, 112 on 32-bit)."""
    import ctypes

    dword, size_t, large = ctypes.c_uint32, ctypes.c_size_t, ctypes.c_int64

    class BasicLimits(ctypes.Structure):
        _fields_ = [
            ("PerProcessUserTimeLimit", large),
            ("PerJobUserTimeLimit", large),
            ("LimitFlags", dword),
            ("MinimumWorkingSetSize", size_t),
            ("MaximumWorkingSetSize", size_t),
            ("ActiveProcessLimit", dword),
            ("Affinity", size_t),
            ("PriorityClass", dword),
            ("SchedulingClass", dword),
        ]

    class IoCounters(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_uint64) for name in ("Read", "Write", "Other", "ReadBytes", "WriteBytes", "OtherBytes")
        ]

    class ExtendedLimits(ctypes.Structure):
        _fields_ = [
            ("BasicLimitInformation", BasicLimits),
            ("IoInfo", IoCounters),
            ("ProcessMemoryLimit", size_t),
            ("JobMemoryLimit", size_t),
            ("PeakProcessMemoryUsed", size_t),
            ("PeakJobMemoryUsed", size_t),
        ]

    return ExtendedLimits


def kill_on_close_job(kernel32: Any, limits_type: type[Any]) -> object | None:
    """A new job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE (its processes die with its last
    handle), or None when Windows refuses one."""
    import ctypes

    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return None
    limits = limits_type()
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    if not kernel32.SetInformationJobObject(
        job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(limits), ctypes.sizeof(limits)
    ):
        kernel32.CloseHandle(job)
        return None
    handle: object = job
    return handle


class Kernel32Api:
    """:class:`WindowsApi` over kernel32 (ctypes), the same calls as launcher/launcher.c."""

    def __init__(self, kernel32: Any, callback_type: Callable[[Callable[[int], bool]], Any] | None = None) -> None:
        """``callback_type`` wraps the console handler (``WINFUNCTYPE(c_int, c_uint32)``, the default, on Windows)."""
        self.kernel32 = kernel32
        self.limits = _job_structures()
        self.callback_type = callback_type
        self._handler: Any = None  # the ctypes callback must outlive the registration

    def ignore_console_ctrl(self) -> None:
        """Register a console control handler that returns TRUE: Ctrl+C/Ctrl+Break do not end this
        process (the new app on the same console gets them too); console close, logoff and shutdown
        end it only after the app had its time (Windows ends it when its timeout runs out)."""
        import ctypes

        def handler(ctrl_type: int) -> bool:
            if ctrl_type not in (
                0,
                1,
            ):  # CTRL_C_EVENT, CTRL_BREAK_EVENT: handled; others: wait like PyInstaller's bootloader
                threading.Event().wait(20)
            return True

        wrap = self.callback_type or ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint32)  # type: ignore[attr-defined,unused-ignore]
        self._handler = wrap(handler)
        if not self.kernel32.SetConsoleCtrlHandler(self._handler, True):
            log.debug("gupper: SetConsoleCtrlHandler failed")

    def join_kill_on_close_job(self) -> object | None:
        """A new job with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, this process assigned to it before the app
        starts (so the app and its children are created inside it: no window where one escapes)."""
        job = kill_on_close_job(self.kernel32, self.limits)
        if job is None:
            return None
        if not self.kernel32.AssignProcessToJobObject(job, self.kernel32.GetCurrentProcess()):
            log.debug("gupper: could not join a job object; the new app is not tied to this process")  # best effort
            self.kernel32.CloseHandle(job)
            return None
        handle: object = job
        return handle

    def release_job(self, job: object) -> None:
        """Clear the job's limits: at this process's normal exit nothing it left running is killed."""
        import ctypes

        limits = self.limits()
        self.kernel32.SetInformationJobObject(
            job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(limits), ctypes.sizeof(limits)
        )


def windows_api() -> WindowsApi | None:
    """The kernel32 implementation on Windows, None elsewhere."""
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes

    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.GetCurrentProcess.restype = wintypes.HANDLE
    k.GetCurrentProcess.argtypes = []
    k.CreateJobObjectW.restype = wintypes.HANDLE
    k.CreateJobObjectW.argtypes = [wintypes.LPVOID, wintypes.LPCWSTR]
    k.SetInformationJobObject.restype = wintypes.BOOL
    k.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.LPVOID, wintypes.DWORD]
    k.AssignProcessToJobObject.restype = wintypes.BOOL
    k.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    k.CloseHandle.argtypes = [wintypes.HANDLE]
    handler_routine = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)  # PHANDLER_ROUTINE
    k.SetConsoleCtrlHandler.restype = wintypes.BOOL
    k.SetConsoleCtrlHandler.argtypes = [handler_routine, wintypes.BOOL]
    return Kernel32Api(k, handler_routine)


class Kernel32Handover:
    """:class:`HandoverApi` over kernel32 (ctypes)."""

    SYNCHRONIZE = 0x00100000
    WAIT_OBJECT_0 = 0

    def __init__(self, kernel32: Any) -> None:
        self.kernel32 = kernel32

    def inheritable_handle_to_self(self) -> int:
        """DuplicateHandle of the current process, SYNCHRONIZE access only, inheritable."""
        import ctypes
        from ctypes import wintypes

        handle = wintypes.HANDLE()
        me = self.kernel32.GetCurrentProcess()
        if not self.kernel32.DuplicateHandle(me, me, me, ctypes.byref(handle), self.SYNCHRONIZE, True, 0):
            raise OSError(ctypes.get_last_error(), "DuplicateHandle failed")  # type: ignore[attr-defined,unused-ignore]
        return int(handle.value or 0)

    def startupinfo_with_handles(self, handles: list[int]) -> Any:
        """STARTUPINFO whose attribute list names the handles to inherit (PROC_THREAD_ATTRIBUTE_HANDLE_LIST)."""
        import subprocess

        info = subprocess.STARTUPINFO()  # type: ignore[attr-defined,unused-ignore]
        info.lpAttributeList = {"handle_list": list(handles)}
        return info

    def wait(self, handle: int, timeout: float) -> bool:
        """WaitForSingleObject on the inherited handle, then CloseHandle."""
        try:
            return bool(self.kernel32.WaitForSingleObject(handle, int(timeout * 1000)) == self.WAIT_OBJECT_0)
        finally:
            self.kernel32.CloseHandle(handle)


def windows_handover_api() -> HandoverApi | None:
    """The kernel32 implementation on Windows, None elsewhere."""
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes

    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.GetCurrentProcess.restype = wintypes.HANDLE
    k.GetCurrentProcess.argtypes = []
    k.DuplicateHandle.restype = wintypes.BOOL
    k.DuplicateHandle.argtypes = [
        wintypes.HANDLE,
        wintypes.HANDLE,
        wintypes.HANDLE,
        ctypes.POINTER(wintypes.HANDLE),
        wintypes.DWORD,
        wintypes.BOOL,
        wintypes.DWORD,
    ]
    k.WaitForSingleObject.restype = wintypes.DWORD
    k.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    k.CloseHandle.argtypes = [wintypes.HANDLE]
    return Kernel32Handover(k)
