"""Multi-file packages (``type: archive``) on disk: safe extraction, and the list of a folder.

An archive is a deterministic ``.tar.gz`` whose first member is the file list
(:class:`~gupper.wire.files.FileList`, :data:`~gupper.wire.files.LIST_NAME`). The manifest
entry signs the archive's sha256 and the list's own sha256 (``files_sha256``), so the list is
covered by the signature twice. Extraction trusts nothing in the tar headers: every member must
be in the list with the same type, size and link target, its bytes must hash to the listed
sha256, and the list itself refuses paths or links that could resolve outside the package. See
docs/packages.md.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from ._fsutil import CHUNK, durable_file, file_sha256, fsync_dir
from .errors import IntegrityError
from .wire.files import LIST_NAME, MAX_LIST_BYTES, FileList, PackageEntry, check_link_target, check_member_path


def extract_package(archive: Path, dest: Path, files_sha256: str | None = None) -> list[PackageEntry]:
    """Extract ``archive`` into the new directory ``dest``, verifying every member against the list.

    Refused (IntegrityError, with ``dest`` possibly half-written: the caller removes it): a first
    member that is not the list or whose sha256 is not ``files_sha256``; any member not in the
    list, of another type (devices, FIFOs, hard links are never listable), with another size or
    link target, or whose bytes do not hash to the listed sha256; a listed entry that is missing.
    Nothing is ever written outside ``dest``: paths and links are checked before use, parent
    directories are created only from listed directories, and files are opened with
    ``O_EXCL | O_NOFOLLOW``. Files and directories are fsynced before returning.
    """
    dest.mkdir(mode=0o755)
    try:
        with tarfile.open(archive, "r|gz") as tar:
            return _extract(tar, dest, files_sha256)
    except (tarfile.TarError, EOFError, zlib.error, UnicodeError) as e:
        raise IntegrityError(f"the package archive is damaged ({type(e).__name__}); refused") from e


def _extract(tar: tarfile.TarFile, dest: Path, files_sha256: str | None) -> list[PackageEntry]:
    first = tar.next()
    if first is None or first.name != LIST_NAME or not first.isreg() or first.size > MAX_LIST_BYTES:
        raise IntegrityError(f"the package does not start with its file list {LIST_NAME}; refused")
    data = _read_member(tar, first, first.size)
    if files_sha256 is not None and hashlib.sha256(data).hexdigest() != files_sha256:
        raise IntegrityError("the package's file list does not match the signed files_sha256; refused")
    entries = list(FileList.from_bytes(data).entries)
    expected: Mapping[str, PackageEntry] = {e.path: e for e in entries}
    seen: set[str] = set()
    dirs = {dest}
    while (member := tar.next()) is not None:
        name = member.name
        entry = expected.get(name)
        if entry is None or name in seen:
            raise IntegrityError(
                f"the package holds {name[:80]!r}, which its file list does not name (or names once); refused"
            )
        seen.add(name)
        out = dest / name
        if entry.kind == "dir":
            if not member.isdir():
                raise IntegrityError(f"package member {name[:80]!r} is not the directory its list says; refused")
            out.mkdir(mode=0o755, exist_ok=True)
            os.chmod(out, 0o755)
            dirs.add(out)
        elif entry.kind == "link":
            if not member.issym() or member.linkname != entry.target:
                raise IntegrityError(f"package member {name[:80]!r} is not the link its list says; refused")
            os.symlink(entry.target, out)
        else:
            if not member.isreg() or member.size != entry.size:
                raise IntegrityError(
                    f"package member {name[:80]!r} is not a regular file of the listed {entry.size} bytes; refused"
                )
            _write_member(tar, member, out, entry)
    missing = sorted(expected.keys() - seen)
    if missing:
        raise IntegrityError(
            f"the package lacks {missing[0][:80]!r} (and {len(missing) - 1} more) named by its file list; refused"
        )
    with durable_file(dest / LIST_NAME, mode=0o666) as f:  # kept with the version: its hook, and what it should hold
        f.write(data)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(str(d))
    return entries


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise IntegrityError(f"package member {member.name[:80]!r} cannot be read; refused")
    data = f.read(limit + 1)
    if len(data) != member.size:
        raise IntegrityError(f"package member {member.name[:80]!r} is truncated; refused")
    return data


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, out: Path, entry: PackageEntry) -> None:
    source: IO[bytes] | None = tar.extractfile(member)
    if source is None:
        raise IntegrityError(f"package member {member.name[:80]!r} cannot be read; refused")
    digest = hashlib.sha256()
    written = 0
    with durable_file(out) as f:
        while block := source.read(min(CHUNK, entry.size - written + 1)):
            written += len(block)
            if written > entry.size:
                raise IntegrityError(
                    f"package member {member.name[:80]!r} holds more than its listed {entry.size} bytes; refused"
                )
            digest.update(block)
            f.write(block)
    if written != entry.size or digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"package member {member.name[:80]!r} does not match its listed size and sha256; refused")
    os.chmod(out, entry.mode)


def scan_folder(folder: Path) -> list[PackageEntry]:
    """The file list of a folder on disk (publisher side): dirs, files (modes 0644/0755), links.

    Refuses what a package cannot carry: devices, FIFOs, sockets, links pointing outside.
    """
    entries: list[PackageEntry] = []
    found: list[Path] = []
    for top, dirnames, filenames in os.walk(folder):  # never descends into linked directories
        found += [Path(top, n) for n in (*dirnames, *filenames)]
    for path in sorted(found):
        rel = path.relative_to(folder).as_posix()
        if rel == LIST_NAME:
            continue
        check_member_path(rel)
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            check_link_target(rel, target)
            entries.append(PackageEntry(rel, "link", target=target))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(PackageEntry(rel, "dir"))
        elif stat.S_ISREG(st.st_mode):
            mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            entries.append(PackageEntry(rel, "file", size=st.st_size, sha256=file_sha256(path), mode=mode))
        else:
            raise IntegrityError(
                f"{path} is a device, FIFO or socket; a package may hold only directories, files and links"
            )
    return list(FileList.of(entries).entries)  # the same checks the client makes
