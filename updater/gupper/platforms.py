"""Operating-system and CPU names, and the key that joins them in a manifest.

Shared by the client and the publisher so that both spell ``linux-amd64`` the same way.
"""

from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass

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


@dataclass(frozen=True, order=True)
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


def current_platform(sys_platform: str | None = None, machine: str | None = None) -> Platform:
    """Return this machine's platform; the arguments exist so tests can inject another OS.

    Raises ValueError for an OS or CPU Gupper does not ship builds for.
    """
    raw_os = sys.platform if sys_platform is None else sys_platform
    raw_arch = _platform.machine() if machine is None else machine
    os_name = normalize_os("linux" if raw_os.startswith("linux") else raw_os)
    arch = normalize_arch(raw_arch)
    if os_name is None or arch is None:
        raise ValueError(f"unsupported platform {raw_os}/{raw_arch}: Gupper ships linux, darwin, windows on amd64, arm64")
    return Platform(os_name, arch)
