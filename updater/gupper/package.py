"""Multi-file packages (``type: archive``): the signed-for file list and safe extraction.

An archive is a deterministic ``.tar.gz`` whose first member is :data:`LIST_NAME`, the list of
every directory, file (size, sha256, mode) and symlink (target) in the package, as canonical
JSON. The manifest entry signs the archive's sha256 and the list's own sha256
(``files_sha256``), so the list is covered by the signature twice. Extraction trusts nothing in
the tar headers: every member must be in the list with the same type, size and link target, its
bytes must hash to the listed sha256, and the list itself refuses paths or links that could
resolve outside the package. See docs/packages.md.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from ._fsutil import fsync_dir
from .errors import IntegrityError
from .manifest import canonical_bytes

LIST_NAME = ".gupper-files.json"
LIST_TYPE = "gupper-files"
MAX_LIST_BYTES = 16 << 20
MAX_ENTRIES = 100_000
MAX_DEPTH = 64
FILE_MODES = (0o644, 0o755)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackageEntry:
    """One member of a package: ``kind`` is ``dir``, ``file`` or ``link``."""

    path: str
    kind: str
    size: int = 0
    sha256: str = ""
    mode: int = 0o755
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        """The entry as it appears in the list."""
        if self.kind == "file":
            return {"path": self.path, "type": "file", "size": self.size, "sha256": self.sha256, "mode": self.mode}
        if self.kind == "link":
            return {"path": self.path, "type": "link", "target": self.target}
        return {"path": self.path, "type": "dir"}


def check_member_path(path: str) -> None:
    """A relative POSIX path of plain names: no ``..``, ``.``, empty parts, absolute paths,
    backslashes, drive letters or control characters (each could land outside the package)."""
    if not path or len(path) > 4096 or path.startswith("/"):
        raise IntegrityError(f"package member {str(path)[:80]!r} is not a relative path; refused")
    if any(c in path for c in "\\:") or any(ord(c) < 32 for c in path):
        raise IntegrityError(f"package member {path[:80]!r} holds a character that is not allowed in a path; refused")
    parts = path.split("/")
    if len(parts) > MAX_DEPTH or any(p in ("", ".", "..") for p in parts) or path == LIST_NAME:
        raise IntegrityError(f"package member {path[:80]!r} could resolve outside the package; refused")


def check_link_target(path: str, target: str) -> None:
    """A link may only point inside the package: relative, ``..`` only as leading parts, never
    above the package root, and no ``..`` after a name (a name may itself be a link)."""
    if not target or target.startswith("/") or "\\" in target or ":" in target or any(ord(c) < 32 for c in target):
        raise IntegrityError(f"link {path[:80]!r} points to {str(target)[:80]!r}, outside the package; refused")
    parts = target.split("/")
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = parts[ups:]
    if any(p in ("", ".", "..") for p in rest) or ups > path.count("/"):
        raise IntegrityError(f"link {path[:80]!r} points to {target[:80]!r}, outside the package; refused")


def post_install_of(data: bytes) -> str | None:
    """The package's post-install hook (a listed executable file), or None; the list is checked."""
    entries = {e.path: e for e in parse_file_list(data)}
    hook = json.loads(data.decode("utf-8")).get("post_install")
    if hook is None:
        return None
    entry = entries.get(hook) if isinstance(hook, str) else None
    if entry is None or entry.kind != "file" or entry.mode != 0o755:
        raise IntegrityError(f"the package's post-install hook {str(hook)[:80]!r} is not a listed executable file; refused")
    return str(hook)


def parse_file_list(data: bytes) -> list[PackageEntry]:
    """Parse and check a package's file list; raises IntegrityError for anything unsafe."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise IntegrityError("the package's file list is not valid JSON; refused") from e
    if not isinstance(doc, dict) or doc.get("_type") != LIST_TYPE or doc.get("schema") != 1 or not isinstance(doc.get("files"), list):
        raise IntegrityError("the package's file list is not a schema 1 gupper file list; refused")
    raw_entries: list[Any] = doc["files"]
    if len(raw_entries) > MAX_ENTRIES:
        raise IntegrityError(f"the package lists {len(raw_entries)} entries, over the {MAX_ENTRIES} limit; refused")
    entries: dict[str, PackageEntry] = {}
    for raw in raw_entries:
        entry = _parse_entry(raw)
        if entry.path in entries:
            raise IntegrityError(f"package member {entry.path[:80]!r} is listed twice; refused")
        entries[entry.path] = entry
    for entry in entries.values():
        parent = posixpath.dirname(entry.path)
        while parent:  # every ancestor a listed real directory: no writing through a link
            above = entries.get(parent)
            if above is None or above.kind != "dir":
                raise IntegrityError(f"package member {entry.path[:80]!r} lies under {parent[:80]!r}, which is not a listed directory; refused")
            parent = posixpath.dirname(parent)
    return list(entries.values())


def _parse_entry(raw: Any) -> PackageEntry:
    if not isinstance(raw, dict):
        raise IntegrityError("the package's file list holds a non-object entry; refused")
    path, kind = raw.get("path"), raw.get("type")
    if not isinstance(path, str):
        raise IntegrityError("the package's file list holds an entry without a path; refused")
    check_member_path(path)
    if kind == "dir":
        return PackageEntry(path, "dir")
    if kind == "link":
        target = raw.get("target")
        if not isinstance(target, str):
            raise IntegrityError(f"link {path[:80]!r} has no target; refused")
        check_link_target(path, target)
        return PackageEntry(path, "link", target=target)
    if kind == "file":
        size, digest, mode = raw.get("size"), raw.get("sha256"), raw.get("mode")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or not isinstance(digest, str) or len(digest) != 64 or mode not in FILE_MODES:
            raise IntegrityError(f"package member {path[:80]!r} has an unusable size, sha256 or mode; refused")
        return PackageEntry(path, "file", size=size, sha256=digest, mode=mode)
    raise IntegrityError(f"package member {path[:80]!r} has type {str(kind)[:20]!r}: only dir, file and link are allowed; refused")


def file_list_bytes(entries: Sequence[PackageEntry], post_install: str | None = None) -> bytes:
    """The canonical bytes of a file list (sorted by path), as stored in the archive."""
    ordered = sorted(entries, key=lambda e: e.path)
    doc: dict[str, Any] = {"_type": LIST_TYPE, "schema": 1, "files": [e.to_json() for e in ordered]}
    if post_install is not None:
        doc["post_install"] = post_install
    data = canonical_bytes(doc)
    post_install_of(data)  # the same checks the client makes
    return data


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
    entries = parse_file_list(data)
    post_install_of(data)
    expected: Mapping[str, PackageEntry] = {e.path: e for e in entries}
    seen: set[str] = set()
    dirs = {dest}
    while (member := tar.next()) is not None:
        name = member.name
        entry = expected.get(name)
        if entry is None or name in seen:
            raise IntegrityError(f"the package holds {name[:80]!r}, which its file list does not name (or names once); refused")
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
                raise IntegrityError(f"package member {name[:80]!r} is not a regular file of the listed {entry.size} bytes; refused")
            _write_member(tar, member, out, entry)
    missing = sorted(expected.keys() - seen)
    if missing:
        raise IntegrityError(f"the package lacks {missing[0][:80]!r} (and {len(missing) - 1} more) named by its file list; refused")
    with (dest / LIST_NAME).open("xb") as f:  # kept with the version: its hook, and what it should hold
        f.write(data)
        os.fsync(f.fileno())
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
    with create_new_file(out) as f:
        while block := source.read(min(_CHUNK, entry.size - written + 1)):
            written += len(block)
            if written > entry.size:
                raise IntegrityError(f"package member {member.name[:80]!r} holds more than its listed {entry.size} bytes; refused")
            digest.update(block)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    if written != entry.size or digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"package member {member.name[:80]!r} does not match its listed size and sha256; refused")
    os.chmod(out, entry.mode)


def list_from_wire(data: bytes) -> bytes:
    """A file list as stored beside an archive: gzip-compressed (a JSON list never starts with
    gzip's magic) or plain; decompression stops past :data:`MAX_LIST_BYTES` (no gzip bombs)."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        d = zlib.decompressobj(wbits=31)
        out = d.decompress(data, MAX_LIST_BYTES + 1)
    except zlib.error as e:
        raise IntegrityError("the package's file list is damaged (gzip); refused") from e
    if len(out) > MAX_LIST_BYTES or not d.eof or d.unused_data:
        raise IntegrityError(f"the package's file list is not one gzip stream of at most {MAX_LIST_BYTES} bytes; refused")
    return out


def list_to_wire(data: bytes) -> bytes:
    """The stored form of a file list: deterministic gzip (no name, no time)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def create_new_file(path: Path) -> BinaryIO:
    """Open a new file for writing: never an existing one, never through a link (mode 0600 until done)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


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
            raise IntegrityError(f"{path} is a device, FIFO or socket; a package may hold only directories, files and links")
    parse_file_list(file_list_bytes(entries))  # the same checks the client makes
    return sorted(entries, key=lambda e: e.path)
