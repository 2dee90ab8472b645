"""Smallest headers that make a file an executable for a platform, for tests whose "builds" are
stand-ins: the publisher checks the ELF / PE / Mach-O header against the name before uploading.

Layouts: the ELF specification (64-byte ELF64 header), Microsoft's PE/COFF specification (DOS
header with ``e_lfanew``, ``PE\\0\\0``, COFF header), Apple's ``<mach-o/loader.h>`` (mach_header_64).
Real binaries (this interpreter, pip's Windows launchers) are in tests/test_exe_check.py.
"""

from __future__ import annotations

import struct

from gupper.platforms import parse_platform_key

ELF_MACHINE = {"amd64": 62, "arm64": 183}
PE_MACHINE = {"amd64": 0x8664, "arm64": 0xAA64}
MACHO_CPU = {"amd64": 0x01000007, "arm64": 0x0100000C}


def elf_header(arch: str = "amd64", e_type: int = 2) -> bytes:
    """An ELF64 little-endian header: executable (``e_type`` 2) for ``arch``."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHI", e_type, ELF_MACHINE[arch], 1) + bytes(64 - 16 - 8)


def pe_header(arch: str = "amd64", characteristics: int = 0x0022) -> bytes:
    """A DOS stub pointing at a PE COFF header: an executable image (0x0002) for ``arch``."""
    dos = b"MZ" + bytes(0x3C - 2) + struct.pack("<I", 0x40)
    return dos + b"PE\0\0" + struct.pack("<HHIIIHH", PE_MACHINE[arch], 0, 0, 0, 0, 0xF0, characteristics)


def macho_header(arch: str = "arm64", filetype: int = 2) -> bytes:
    """A mach_header_64 (little-endian): ``MH_EXECUTE`` (2) for ``arch``."""
    return struct.pack("<IiiIIIII", 0xFEEDFACF, MACHO_CPU[arch], 0, filetype, 0, 0, 0, 0)


def exe_stub(platform_key: str, body: bytes = b"") -> bytes:
    """``body`` behind the header of an executable for ``linux-amd64``, ``windows-arm64``, ..."""
    platform = parse_platform_key(platform_key)
    assert platform is not None, platform_key
    header = {"linux": elf_header, "windows": pe_header, "darwin": macho_header}[platform.os](platform.arch)
    return header + body


def stub_for(filename: str, body: bytes) -> bytes:
    """``body`` as an executable for the platform in ``filename`` (``app-1.0.0-linux-amd64``), if it names one."""
    parts = filename.removesuffix(".exe").rsplit("-", 2)
    platform = parse_platform_key("-".join(parts[-2:])) if len(parts) == 3 else None
    return (
        body if platform is None else exe_stub(platform.key, body)
    )  # a bad name stays as it is: the name check answers first
