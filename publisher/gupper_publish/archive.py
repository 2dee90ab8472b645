"""Packing a one-folder build into a deterministic ``.tar.gz`` archive artifact.

The archive's first member is the file list (:class:`gupper.wire.files.FileList`), then every listed entry in
path order, with fixed metadata (mtime 0, uid/gid 0, no user or group names, modes 0755/0644)
and a gzip header without name or time: the same folder always gives the same bytes, so a
re-publish is a no-op and two CI runs agree. A ``.tar.gz`` given by the user is unpacked with
the standard library's ``data`` filter, a ``.zip`` by :func:`unpack_user_zip` (which trusts none of
its names, links, types or sizes), and either is packed again the same way (so its metadata never
reaches clients).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from gupper.errors import IntegrityError
from gupper.package import scan_folder
from gupper.wire.files import (
    LIST_NAME,
    MAX_DEPTH,
    MAX_ENTRIES,
    FileList,
    PackageEntry,
    check_link_target,
    check_member_path,
)

from .artifacts import ZIP_SUFFIX, parse_artifact_name
from .errors import PublishError
from .layout import ARCHIVE_SUFFIX

MAX_ZIP_BYTES = 8 << 30
"""The most a ``.zip`` input may unpack to, by the sizes its members declare (reading stops there)."""
MAX_LINK_BYTES = 4096
_CHUNK = 1 << 20
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    ValueError,
)


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, linkname
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def pack_folder(folder: Path, out: Path, post_install: str | None = None) -> str:
    """Write ``folder`` as a deterministic archive to ``out``; return the sha256 of its file list.

    ``post_install`` names an executable file in the folder that clients run before switching to it.
    """
    try:
        entries = scan_folder(folder)
    except IntegrityError as e:
        raise PublishError(f"cannot package {folder}: {e}") from e
    if not any(e.kind == "file" for e in entries):
        raise PublishError(f"{folder} holds no files; pass a one-folder build such as dist/app-1.2.0-linux-amd64/")
    try:
        listing = FileList.of(entries, post_install).to_bytes()
    except IntegrityError as e:
        raise PublishError(f"cannot package {folder}: {e}") from e
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_info(LIST_NAME, tarfile.REGTYPE, 0o644, len(listing)), io.BytesIO(listing))
        for entry in entries:
            _add(tar, folder, entry)
    return hashlib.sha256(listing).hexdigest()


def _add(tar: tarfile.TarFile, folder: Path, entry: PackageEntry) -> None:
    if entry.kind == "dir":
        tar.addfile(_info(entry.path, tarfile.DIRTYPE, 0o755))
    elif entry.kind == "link":
        tar.addfile(_info(entry.path, tarfile.SYMTYPE, 0o777, linkname=entry.target))
    else:
        with (folder / entry.path).open("rb") as f:
            tar.addfile(_info(entry.path, tarfile.REGTYPE, entry.mode, entry.size), f)


def unpack_user_archive(archive: Path, into: Path) -> Path:
    """Unpack a user's ``.tar.gz`` of a build folder into ``into``; return the build folder
    (the single top-level directory if there is exactly one, else ``into`` itself)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise PublishError(f"cannot unpack {archive} ({e}); pass the build folder itself") from e
    return _build_folder(into)


def _build_folder(into: Path) -> Path:
    """The build folder in an unpacked input: its single top-level directory, else ``into``."""
    (into / LIST_NAME).unlink(missing_ok=True)
    children = list(into.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return into


# --- .zip input ---


@dataclass(frozen=True)
class _ZipMember:
    """A zip member as it will be unpacked: checked path, kind (dir, file, link), link target."""

    info: zipfile.ZipInfo
    path: str
    kind: str
    target: str = ""


def unpack_user_zip(archive: Path, into: Path, *, max_bytes: int = MAX_ZIP_BYTES, need_modes: bool = True) -> Path:
    """Unpack a user's ``.zip`` of a build folder into the empty folder ``into``; return the build
    folder (the single top-level directory if there is exactly one, else ``into`` itself).

    Nothing in the zip is trusted: absolute paths, ``..``, backslashes, drive letters, control
    characters, duplicate names, devices and FIFOs, encrypted members, compression other than
    stored/deflate, symlinks (``S_IFLNK`` in the Unix mode, target as content) pointing outside
    the zip, members under a symlink or a file, and declared sizes adding up to more than
    ``max_bytes`` are refused before anything is written; each member is then read only up to its
    declared size. The executable bit comes from the member's Unix mode (``need_modes``: a zip
    without any Unix modes, e.g. made on Windows, is refused because executables would lose it).
    Symlinks pointing inside stay symlinks. Raises PublishError (one line naming the member).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _check_zip(archive, zf, max_bytes, need_modes)
            for m in members:
                try:
                    _unzip_member(archive, zf, m, into)
                except _READ_ERRORS as e:  # a bad CRC, a truncated member, a full disk
                    raise PublishError(
                        f"{archive.name}: cannot unpack member {m.info.filename[:120]!r} ({_one_line(e)}); "
                        f"{_zip_hint(archive)}"
                    ) from e
    except _READ_ERRORS as e:
        raise PublishError(f"cannot read {archive} as a zip ({_one_line(e)}); {_zip_hint(archive)}") from e
    return _build_folder(into)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _zip_hint(archive: Path) -> str:
    stem = archive.name.removesuffix(ZIP_SUFFIX)
    return f"pass the build folder itself, or zip it again with: cd dist && zip -r --symlinks {stem}.zip {stem}"


def _refuse(archive: Path, name: str, why: str) -> PublishError:
    return PublishError(f"{archive.name}: member {name[:120]!r} {why}; refused: {_zip_hint(archive)}")


def _path_problem(path: str) -> str | None:
    """Why a zip member path could land outside the unpack folder, or None."""
    if not path or path.startswith("/"):
        return "is an absolute path"
    if "\\" in path:
        return "holds a backslash (a Windows path)"
    if ":" in path:
        return "holds ':' (a drive letter or stream name)"
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        return "holds a control character"
    parts = path.split("/")
    if ".." in parts:
        return "climbs out of the folder with '..'"
    if any(p in ("", ".") for p in parts):
        return "holds an empty or '.' path part"
    if len(parts) > MAX_DEPTH or len(path) > 4096:
        return f"is nested deeper than {MAX_DEPTH} levels or longer than 4096 characters"
    return None


def _check_zip(archive: Path, zf: zipfile.ZipFile, max_bytes: int, need_modes: bool) -> list[_ZipMember]:
    """Every member checked before anything is written; link targets read (they are small)."""
    infos = [
        i for i in zf.infolist() if i.filename.split("/", 1)[0] != "__MACOSX"
    ]  # macOS resource forks: never part of a build
    if len(infos) > MAX_ENTRIES:
        raise PublishError(
            f"{archive.name} holds {len(infos)} members, over the {MAX_ENTRIES} limit; refused: {_zip_hint(archive)}"
        )
    if need_modes and infos and not any(i.external_attr >> 16 for i in infos):
        raise PublishError(
            f"{archive.name} carries no Unix permissions (made on Windows?), so the app would "
            f"lose its executable bit; refused: {_zip_hint(archive)}"
        )
    members: dict[str, _ZipMember] = {}
    total = 0
    for info in infos:
        name = info.filename
        path = name.removesuffix("/")
        if path == LIST_NAME:
            continue  # a stale file list: the publisher writes its own
        problem = _path_problem(path)
        if problem is not None:
            raise _refuse(archive, name, problem)
        try:
            check_member_path(path)  # the client's own rule, as a backstop
        except IntegrityError as e:
            raise _refuse(archive, name, f"is not a plain relative path ({e})") from e
        if path in members:
            raise _refuse(archive, name, "appears twice")
        if info.flag_bits & 0x1:
            raise _refuse(archive, name, "is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _refuse(
                archive, name, f"uses compression method {info.compress_type} (only stored and deflate are read)"
            )
        fmt = stat.S_IFMT(info.external_attr >> 16)
        if name.endswith("/") or fmt == stat.S_IFDIR:
            if fmt not in (0, stat.S_IFDIR):
                raise _refuse(archive, name, "is named like a directory but is not one")
            members[path] = _ZipMember(info, path, "dir")
        elif fmt == stat.S_IFLNK:
            members[path] = _link_member(archive, zf, info, path)
        elif fmt in (0, stat.S_IFREG):
            total += info.file_size
            if total > max_bytes:
                raise _refuse(
                    archive, name, f"takes the declared unpacked size past the {max_bytes}-byte limit (a zip bomb?)"
                )
            members[path] = _ZipMember(info, path, "file")
        else:
            raise _refuse(
                archive, name, "is a device, FIFO or socket; a package holds only directories, files and symlinks"
            )
    for m in members.values():
        parent = m.path.rpartition("/")[0]
        while parent:  # every ancestor a real directory: nothing is ever written through a link
            above = members.get(parent)
            if above is not None and above.kind != "dir":
                raise _refuse(
                    archive, m.info.filename, f"lies under {parent[:120]!r}, which is a {above.kind}, not a directory"
                )
            parent = parent.rpartition("/")[0]
    return list(members.values())


def _link_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> _ZipMember:
    if info.file_size > MAX_LINK_BYTES:
        raise _refuse(archive, info.filename, f"is a symlink with a target over {MAX_LINK_BYTES} bytes")
    with zf.open(info) as f:
        raw = f.read(MAX_LINK_BYTES + 1)
    try:
        target = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _refuse(archive, info.filename, "is a symlink whose target is not UTF-8") from e
    try:
        check_link_target(path, target)
    except IntegrityError as e:
        raise _refuse(archive, info.filename, f"is a symlink to {target[:120]!r}, outside the zip") from e
    return _ZipMember(info, path, "link", target)


def _unzip_member(archive: Path, zf: zipfile.ZipFile, m: _ZipMember, into: Path) -> None:
    parts = m.path.split("/")
    _make_dirs(archive, m, into, parts if m.kind == "dir" else parts[:-1])
    if m.kind == "dir":
        return
    out = into / m.path
    try:
        if m.kind == "link":
            os.symlink(m.target, out)
            return
        dst = os.fdopen(
            os.open(
                out,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0),
                0o600,
            ),
            "wb",
        )
    except FileExistsError as e:
        raise _refuse(archive, m.info.filename, "collides with another member (names differing only in case?)") from e
    size, written = m.info.file_size, 0
    with dst, zf.open(m.info) as src:
        while block := src.read(min(_CHUNK, size - written + 1)):
            written += len(block)
            if written > size:  # zipfile stops at the declared size too; never trust one check alone
                raise _refuse(archive, m.info.filename, f"holds more than its declared {size} bytes")
            dst.write(block)
    if written != size:
        raise _refuse(archive, m.info.filename, f"holds {written} bytes, not its declared {size}")
    os.chmod(out, 0o755 if (m.info.external_attr >> 16) & stat.S_IXUSR else 0o644)


def _make_dirs(archive: Path, m: _ZipMember, into: Path, parts: list[str]) -> None:
    """Create ``parts`` under ``into`` one level at a time, each a real directory (never a link)."""
    path = into
    for part in parts:
        path = path / part
        try:
            os.mkdir(path, 0o755)
        except FileExistsError as e:
            if path.is_symlink() or not path.is_dir():
                raise _refuse(
                    archive,
                    m.info.filename,
                    f"lies under {path.relative_to(into).as_posix()[:120]!r}, which is not a directory",
                ) from e


def archive_name_for(path: Path) -> str:
    """The artifact file name a folder (``app-1.2.0-linux-amd64/``), ``.tar.gz`` or ``.zip`` publishes as."""
    name = path.name
    if name.endswith(ARCHIVE_SUFFIX):
        return name
    if name.endswith(ZIP_SUFFIX) and not path.is_dir():
        name = name.removesuffix(ZIP_SUFFIX)
    return name + ARCHIVE_SUFFIX


def make_archive(
    path: Path, workdir: Path, post_install: str | None = None, name: str | None = None
) -> tuple[Path, str]:
    """The deterministic archive for a build folder or a user's ``.tar.gz`` or ``.zip``, written
    under ``workdir`` as ``name`` (default: :func:`archive_name_for` ``path``); returns (archive path, file
    list sha256)."""
    out = workdir / (name or archive_name_for(path))
    if path.is_dir():
        return out, pack_folder(path, out, post_install)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if path.name.endswith(ZIP_SUFFIX):
            windows = parse_artifact_name(out.name).platform.os == "windows"
            folder = unpack_user_zip(path, Path(tmp), need_modes=not windows)
        else:
            folder = unpack_user_archive(path, Path(tmp))
        return out, pack_folder(folder, out, post_install)
