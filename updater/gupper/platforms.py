"""Operating-system and CPU names, and the key that joins them in a manifest.

Shared by the client and the publisher so that both spell ``linux-amd64`` the same way.

Two CPUs matter on a machine that emulates another one: the one this binary was built for
(:func:`current_platform`, what a build is named after) and the machine's own (native) CPU. On
an Apple silicon Mac an x86_64 app runs under Rosetta and ``platform.machine()`` says
``x86_64``; on Windows on ARM an x64 app runs emulated and, depending on the Python version,
``platform.machine()`` names either CPU (CPython gh-98962). So the native CPU comes from the OS
(``sysctl.proc_translated`` / ``hw.optional.arm64`` on macOS, ``IsWow64Process2`` on Windows),
the binary's own from how the interpreter was built, and :func:`platform_candidates` offers the
native build first with the binary's own as the fallback (as electron-updater does on Macs).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection, Sequence

from .records import record

OS_ALIASES: dict[str, str] = {
    "linux": "linux",
    "darwin": "darwin",
    "macos": "darwin",
    "windows": "windows",
    "win32": "windows",
}
ARCH_ALIASES: dict[str, str] = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "x64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
}
OS_NAMES = ("linux", "darwin", "windows")
ARCH_NAMES = ("amd64", "arm64")

WINDOWS_INTERPRETERS: dict[str, str] = {"win-amd64": "amd64", "win-arm64": "arm64", "win32": "x86"}
"""``sysconfig.get_platform()`` on Windows names the CPU the interpreter was compiled for."""

IMAGE_FILE_MACHINES: dict[int, str] = {0x8664: "amd64", 0xAA64: "arm64", 0x014C: "x86", 0x01C4: "arm"}
"""``IMAGE_FILE_MACHINE_*`` values that ``IsWow64Process2`` reports as the native machine."""


@record(frozen=True, order=True)
class Platform:
    """A normalised os/arch pair, e.g. ``Platform("linux", "amd64")``."""

    os: str
    arch: str

    @property
    def key(self) -> str:
        """The manifest key, e.g. ``linux-amd64``."""
        return f"{self.os}-{self.arch}"

    @property
    def exe_suffix(self) -> str:
        """``.exe`` on Windows, nothing elsewhere."""
        return ".exe" if self.os == "windows" else ""


def normalize_os(name: str) -> str | None:
    """Return the canonical OS name for ``name`` (``macos`` → ``darwin``), or None."""
    return OS_ALIASES.get(name.lower())


def normalize_arch(name: str) -> str | None:
    """Return the canonical CPU name for ``name`` (``x86_64`` → ``amd64``), or None."""
    return ARCH_ALIASES.get(name.lower())


def parse_platform_key(key: str) -> Platform | None:
    """Parse ``linux-amd64`` (or an alias such as ``macos-aarch64``) into a Platform."""
    os_part, sep, arch_part = key.partition("-")
    if not sep:
        return None
    os_name, arch = normalize_os(os_part), normalize_arch(arch_part)
    if os_name is None or arch is None:
        return None
    return Platform(os_name, arch)


def _binary_arch(raw_os: str, machine: str, interpreter: str | None) -> str:
    """The CPU name this binary was built for: on Windows the interpreter's build (``platform.machine()``
    may name the host there), elsewhere ``uname`` (which Rosetta and qemu-user answer as the emulated CPU)."""
    if raw_os == "win32" and interpreter is not None:
        return WINDOWS_INTERPRETERS.get(interpreter.lower(), machine)
    return machine


def _machine() -> str:
    """``platform.machine()``, without importing ``platform`` on POSIX (it is ``uname`` there)."""
    if sys.platform != "win32":
        return os.uname().machine
    import platform

    return platform.machine()


def current_platform(
    sys_platform: str | None = None, machine: str | None = None, interpreter: str | None = None
) -> Platform:
    """Return the platform this binary was built for; the arguments exist so tests can inject another OS.

    ``interpreter`` is ``sysconfig.get_platform()`` (read when the OS is not injected).

    Raises:
        ValueError: an OS or CPU Gupper does not ship builds for.
    """
    raw_os = sys.platform if sys_platform is None else sys_platform
    if interpreter is None and sys_platform is None and raw_os == "win32":
        import sysconfig

        interpreter = sysconfig.get_platform()
    raw_arch = _binary_arch(raw_os, _machine() if machine is None else machine, interpreter)
    os_name = normalize_os("linux" if raw_os.startswith("linux") else raw_os)
    arch = normalize_arch(raw_arch)
    if os_name is None or arch is None:
        raise ValueError(
            f"unsupported platform {raw_os}/{raw_arch}: Gupper ships linux, darwin, windows on amd64, arm64"
        )
    return Platform(os_name, arch)


Sysctl = Callable[[str], int | None]
"""Reads an integer sysctl by name (macOS); None when the name does not exist."""

MachineQuery = Callable[[], tuple[int, int] | None]
"""``IsWow64Process2`` for this process: (process machine, native machine), or None when unavailable."""


def _darwin_sysctl(name: str) -> int | None:
    import ctypes
    import ctypes.util

    path = ctypes.util.find_library("c")
    try:
        sysctlbyname = ctypes.CDLL(path).sysctlbyname
    except (OSError, AttributeError):
        return None
    # Declared: an undeclared int argument may reach a size_t parameter with garbage in its upper half (arm64).
    sysctlbyname.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    sysctlbyname.restype = ctypes.c_int
    return read_sysctl_int(sysctlbyname, name)


def read_sysctl_int(sysctlbyname: Callable[..., int], name: str) -> int | None:
    """``sysctlbyname(name)`` as an int through the C function given; None when it fails (unknown name)."""
    import ctypes

    value = ctypes.c_int64(0)  # hw.optional.* and sysctl.proc_translated are 4-byte ints; 8 bytes leave room
    size = ctypes.c_size_t(ctypes.sizeof(value))
    if sysctlbyname(name.encode(), ctypes.pointer(value), ctypes.pointer(size), None, 0) != 0:
        return None
    if size.value == 4:
        return ctypes.c_int32(value.value & 0xFFFFFFFF).value
    return value.value


def darwin_native_arch(sysctl: Sysctl = _darwin_sysctl) -> str | None:
    """``arm64`` on Apple silicon, also for an x86_64 process under Rosetta; None otherwise (Intel)."""
    if sysctl("sysctl.proc_translated") == 1 or sysctl("hw.optional.arm64") == 1:
        return "arm64"
    return None


def _windows_machines() -> tuple[int, int] | None:  # pragma: no cover - Windows only, run by the Windows CI job
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    try:
        query = kernel32.IsWow64Process2  # Windows 10 1709 and later
    except AttributeError:
        return None
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.GetCurrentProcess.argtypes = []
    query.restype = wintypes.BOOL
    query.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.USHORT), ctypes.POINTER(wintypes.USHORT)]
    process, native = wintypes.USHORT(0), wintypes.USHORT(0)
    if not query(kernel32.GetCurrentProcess(), ctypes.byref(process), ctypes.byref(native)):
        return None
    return process.value, native.value


def windows_native_arch(query: MachineQuery = _windows_machines) -> str | None:
    """The CPU Windows itself runs on (``IsWow64Process2``'s native machine), even for an emulated x64 process."""
    got = query()
    return IMAGE_FILE_MACHINES.get(got[1]) if got is not None else None


def platform_candidates(
    sys_platform: str | None = None,
    machine: str | None = None,
    interpreter: str | None = None,
    native_arch: Callable[[str], str | None] | None = None,
) -> tuple[Platform, ...]:
    """The platforms this machine runs, best first: its native CPU, then this binary's own.

    They differ under emulation (an x86_64 app under Rosetta, an x64 app on Windows on ARM): the
    native build is preferred when the manifest has one, the binary's own otherwise. The arguments
    inject another OS for tests; ``native_arch(os_name)`` returns the native CPU name or None.
    """
    own = current_platform(sys_platform, machine, interpreter)
    if native_arch is None:
        native_arch = _native_arch
    native = normalize_arch(native_arch(own.os) or "")
    if native is None or native == own.arch:
        return (own,)
    return (Platform(own.os, native), own)


def _native_arch(os_name: str) -> str | None:
    if os_name == "darwin":
        return darwin_native_arch()
    if os_name == "windows":
        return windows_native_arch()
    return None


def pick_key(available: Collection[str], candidates: Sequence[Platform]) -> str:
    """The first candidate's key the manifest has, else the first candidate's (which then reports "no release")."""
    for plat in candidates:
        if plat.key in available:
            return plat.key
    return candidates[0].key
