"""Is a build an executable for the platform its name says? Pure: header bytes in, a verdict out.

Read from the headers alone, as the loaders do:

- Linux: ELF (``\\x7fELF``), 64-bit, an executable or position-independent executable (not an
  object file or core dump), System V or Linux ABI, CPU from ``e_machine``.
- Windows: PE (``MZ``, then ``PE\\0\\0`` at ``e_lfanew``), an executable image that is not a DLL,
  CPU from the COFF ``Machine`` field.
- macOS: Mach-O (64-bit, ``MH_EXECUTE``), CPU from ``cputype``; a universal (fat) binary must
  hold a slice for the CPU in the name, and that slice must itself be an executable. The fat
  magic is also Java's class-file magic: a count of architectures above 20 means a class file
  (the rule Apple's ``file`` uses).

Anything else gets a name (text, a ``#!`` script, a zip, a gzip, ...) so the refusal can say what
the file is. Layouts: the ELF specification, Microsoft's PE/COFF specification, Apple's
``<mach-o/loader.h>`` and ``<mach-o/fat.h>``.
"""

from __future__ import annotations

import posixpath
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, size)``: up to ``size`` bytes of the file from ``offset`` (fewer at its end)."""

HEAD = 4096

ELF_MACHINES = {62: "amd64", 183: "arm64", 3: "i386", 40: "arm", 243: "riscv", 21: "ppc64", 22: "s390x", 8: "mips"}
ELF_TYPES = {0: "a file of no ELF type", 1: "an object file (.o), not a linked program", 2: "", 3: "", 4: "a core dump"}
ELF_LINUX_ABIS = {0, 3}  # System V (what Linux toolchains write) and GNU/Linux
ELF_ABIS = {6: "Solaris", 9: "FreeBSD", 12: "OpenBSD", 2: "NetBSD"}
PE_MACHINES = {0x8664: "amd64", 0xAA64: "arm64", 0x014C: "i386", 0x01C4: "arm", 0x0200: "ia64"}
MACHO_CPUS = {
    0x01000007: "amd64",
    0x0100000C: "arm64",
    7: "i386",
    12: "arm",
    18: "ppc",
    0x01000012: "ppc64",
    0x0200000C: "arm64_32",
}
MH_EXECUTE = 2
MACHO_TYPES = {
    1: "an object file",
    6: "a dynamic library (.dylib)",
    8: "a bundle (plug-in)",
    7: "the dynamic linker",
    9: "a stub library",
}
MAX_FAT_ARCHS = 20
OS_FORMATS = {"linux": "an ELF executable", "windows": "a PE executable (.exe)", "darwin": "a Mach-O executable"}


@dataclass(frozen=True)
class Identified:
    """What a file is, as far as its header tells.

    ``os`` is the platform whose loader runs it (None: none of ours); ``archs`` the CPUs it is
    for (a universal binary has several); ``problem`` says why the loader would refuse it even
    so (a DLL, an object file, a library), or is empty.
    """

    what: str
    os: str | None = None
    archs: tuple[str, ...] = ()
    problem: str = ""


def identify(read_at: ReadAt) -> Identified:
    """Identify a file from its headers, read through ``read_at``."""
    head = read_at(0, HEAD)
    if head.startswith(b"\x7fELF"):
        return _elf(head)
    if head.startswith(b"MZ"):
        return _pe(head, read_at)
    magic = head[:4]
    if magic in (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xce"):
        return _macho(head)
    if magic in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
        return _fat(head, read_at)
    return Identified(_other(head))


def check(read_at: ReadAt, os_name: str, arch: str) -> str | None:
    """None if the file is an executable for ``os_name``/``arch``; else what it is instead, for a message."""
    found = identify(read_at)
    if found.os is None:
        return f"{found.what}, not {OS_FORMATS[os_name]}"
    if found.os != os_name:
        return f"{found.what} (a {_OS_TITLES[found.os]} program), not {OS_FORMATS[os_name]}"
    if found.problem:
        return f"{found.what}, but {found.problem}"
    if arch not in found.archs:
        return f"{found.what} for {' + '.join(found.archs) or 'an unknown CPU'}, not for {arch}"
    return None


_OS_TITLES = {"linux": "Linux", "windows": "Windows", "darwin": "macOS"}


def _u16(data: bytes, at: int, little: bool = True) -> int:
    if len(data) < at + 2:
        return -1
    return int(struct.unpack_from("<H" if little else ">H", data, at)[0])


def _u32(data: bytes, at: int, little: bool = True) -> int:
    if len(data) < at + 4:
        return -1
    return int(struct.unpack_from("<I" if little else ">I", data, at)[0])


def _elf(head: bytes) -> Identified:
    if len(head) < 20:
        return Identified("a truncated ELF file", "linux", problem="its header is cut short")
    bits, data, abi = head[4], head[5], head[7]
    if data not in (1, 2):
        return Identified("a damaged ELF file", "linux", problem="its header names no byte order")
    machine = _u16(head, 18, little=data == 1)
    arch = ELF_MACHINES.get(machine, f"ELF machine {machine}")
    what = f"an ELF {'64' if bits == 2 else '32' if bits == 1 else '?'}-bit file"
    if abi not in ELF_LINUX_ABIS:
        return Identified(f"{what} for {ELF_ABIS.get(abi, f'ABI {abi}')}")
    kind = ELF_TYPES.get(_u16(head, 16, little=data == 1), "of an unknown ELF type")
    if kind:
        return Identified(what, "linux", (arch,), f"it is {kind}")
    if bits != 2 and arch in ("amd64", "arm64"):
        arch += " (32-bit ABI)"  # x32 / ILP32: not what a 64-bit Linux runs by default
    return Identified(what.replace("file", "executable"), "linux", (arch,))


def _pe(head: bytes, read_at: ReadAt) -> Identified:
    at = _u32(head, 0x3C)
    if at < 0x40 or at > 1 << 24:
        return Identified("a DOS MZ file without a Windows PE header")
    pe = head[at : at + 24] if at + 24 <= len(head) else read_at(at, 24)
    if len(pe) < 24 or not pe.startswith(b"PE\0\0"):
        return Identified("a DOS MZ file without a Windows PE header")
    arch = PE_MACHINES.get(_u16(pe, 4), f"PE machine 0x{_u16(pe, 4):04x}")
    characteristics = _u16(pe, 22)
    if characteristics & 0x2000:
        return Identified("a Windows DLL", "windows", (arch,), "a DLL is a library, not a program")
    if not characteristics & 0x0002:
        return Identified(
            "a Windows PE object", "windows", (arch,), "it is not marked as an executable image (a link error?)"
        )
    return Identified("a Windows PE executable", "windows", (arch,))


def _macho(head: bytes) -> Identified:
    little = head[0] in (0xCF, 0xCE)
    bits = 64 if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf") else 32
    cpu = _u32(head, 4, little)
    arch = MACHO_CPUS.get(cpu, f"Mach-O CPU 0x{cpu:x}")
    filetype = _u32(head, 12, little)
    what = f"a Mach-O {bits}-bit file"
    if filetype != MH_EXECUTE:
        return Identified(
            what, "darwin", (arch,), f"it is {MACHO_TYPES.get(filetype, f'Mach-O file type {filetype}')}, not a program"
        )
    return Identified(what.replace("file", "executable"), "darwin", (arch,))


def _fat(head: bytes, read_at: ReadAt) -> Identified:
    wide = head[3] == 0xBF  # FAT_MAGIC_64: 64-bit offsets
    count = _u32(head, 4, little=False)
    if count < 1 or count > MAX_FAT_ARCHS:
        return Identified(
            "a Java class file" if not wide else "a file with a Mach-O universal header and a bad architecture count"
        )
    size = 32 if wide else 20
    archs, problems = [], []
    for i in range(count):
        entry = head[8 + i * size : 8 + (i + 1) * size]
        if len(entry) < size:
            return Identified(
                "a truncated Mach-O universal binary", "darwin", problem="its architecture table is cut short"
            )
        cpu = _u32(entry, 0, little=False)
        offset = int(struct.unpack_from(">Q", entry, 8)[0]) if wide else _u32(entry, 8, little=False)
        slice_ = (
            _macho(read_at(offset, 32))
            if read_at(offset, 4)[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe")
            else None
        )
        arch = MACHO_CPUS.get(cpu, f"Mach-O CPU 0x{cpu:x}")
        if slice_ is None:
            problems.append(f"its {arch} slice is not a Mach-O file")
        elif slice_.problem:
            problems.append(f"its {arch} slice: {slice_.problem}")
        elif slice_.archs != (arch,):
            problems.append(f"its {arch} slice holds code for {slice_.archs[0]}")
        else:
            archs.append(arch)
    return Identified("a Mach-O universal executable", "darwin", tuple(archs), "; ".join(problems) if not archs else "")


def _other(head: bytes) -> str:
    if not head:
        return "an empty file"
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].strip()[:60].decode("utf-8", "replace")
        return f"a script for {line or 'an unnamed interpreter'}"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a one-folder build? name it <app>-<version>-<os>-<arch>.zip)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file (a one-folder build? name it <app>-<version>-<os>-<arch>.tar.gz)"
    if _is_text(head):
        return f"a text file{_size_note(head)}"
    return "a file of an unknown kind (no ELF, PE or Mach-O header)"


def _size_note(head: bytes) -> str:
    return f" of {len(head)} bytes" if len(head) < HEAD else ""


def _is_text(head: bytes) -> bool:
    sample = head[:1024]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 3:  # a multi-byte character cut at the sample's end is still text
            return False
        text = sample[: e.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


# --- the I/O edge: a file on disk, or the entry point inside a packed one-folder build ---


def file_reader(f: IO[bytes]) -> ReadAt:
    """``read_at`` over a seekable binary file."""

    def read_at(offset: int, size: int) -> bytes:
        f.seek(offset)
        return f.read(size)

    return read_at


def check_file(path: Path, os_name: str, arch: str) -> str | None:
    """:func:`check` for a file on disk: None, or what the file is instead (``a text file of 6 bytes, not ...``)."""
    with path.open("rb") as f:
        return check(file_reader(f), os_name, arch)


def entry_points(app: str, os_name: str) -> tuple[str, ...]:
    """Where a one-folder build's executable is: named after the app, as ``pyinstaller --name APP`` writes it."""
    return (f"{app}.exe",) if os_name == "windows" else (app,)


BUNDLE_PROGRAM = "Contents/MacOS/{app}"
BUNDLE_PLIST = "Contents/Info.plist"


def check_archive_entry(archive: Path, app: str, os_name: str, arch: str, kind: str = "archive") -> str | None:
    """For a packed one-folder build or app bundle (a ``.tar.gz``; ``kind`` ``archive`` or ``app``):
    None if it is what the client of ``os_name`` takes and its program is an executable for
    ``os_name``/``arch``; else what is wrong, as a clause (``has no entry point app ...``).

    Exactly what the client takes: a one-folder build has its executable at the top (a folder
    holding a bundle, ``X.app/Contents/MacOS/...``, is refused: publish the bundle itself); an app
    bundle has ``Contents/Info.plist`` naming the program ``Contents/MacOS/<app>``, for macOS or
    Linux (where the bundle logic is tested), never Windows."""
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        if kind == "app":
            return _check_bundle(tar, members, app, os_name, arch)
        candidates = entry_points(app, os_name)
        if BUNDLE_PLIST in members:
            return (
                f"is a macOS app bundle ({BUNDLE_PLIST}) named as a one-folder build: name it "
                f"{app}-<version>-{os_name}-{arch}.app (or publish it with --app {app} --version V)"
            )
        for name in candidates:
            found = _program(tar, members, name, os_name, arch)
            if found is not None:
                return None if found == "" else f"has an entry point {name} that is {found}"
        wrapped = sorted({n.split("/", 1)[0] for n in members if n.endswith(f".app/{BUNDLE_PLIST}")})
        if wrapped:
            return (
                f"holds the app bundle {wrapped[0]}, which no install takes from inside a folder: publish the bundle "
                f"itself (gupper-publish {wrapped[0]} --app {app} --version V)"
            )
    return (
        f"has no entry point {' or '.join(candidates)} (the executable is named after the "
        f"app, as 'pyinstaller --name {app}' does)"
    )


def _check_bundle(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], app: str, os_name: str, arch: str
) -> str | None:
    import plistlib

    if os_name == "windows":
        return "is a macOS app bundle, which Windows installs cannot take: publish the one-folder build for Windows"
    plist = members.get(BUNDLE_PLIST)
    f = tar.extractfile(plist) if plist is not None and plist.isfile() else None
    if f is None:
        return f"is named as an app bundle but has no {BUNDLE_PLIST}: publish the .app PyInstaller wrote"
    try:
        with f:
            info = plistlib.loads(f.read(1 << 20))
    except (ValueError, plistlib.InvalidFileException) as e:
        return f"has a {BUNDLE_PLIST} that does not parse ({e})"
    named = info.get("CFBundleExecutable") if isinstance(info, dict) else None
    program = BUNDLE_PROGRAM.format(app=app)
    if named != app:
        return (
            f"has a {BUNDLE_PLIST} naming the program {named!r}, and installs run {program}: build it with --name {app}"
        )
    found = _program(tar, members, program, os_name, arch)
    if found is None:
        return f"has no program {program} (the executable is named after the app, as 'pyinstaller --name {app}' does)"
    return None if found == "" else f"has a program {program} that is {found}"


def _program(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, os_name: str, arch: str
) -> str | None:
    """None when ``name`` is no file in the archive; "" when it is an executable for ``os_name``/``arch``;
    else what it is instead. One link inside the folder is followed, as the loader would."""
    member = members.get(name)
    if member is not None and member.issym():
        member = members.get(posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname)))
    if member is None or not member.isfile():
        return None
    f = tar.extractfile(member)
    if f is None:
        return None
    with f:
        return check(file_reader(f), os_name, arch) or ""
