"""Packing a one-folder build into a deterministic ``.tar.gz`` archive artifact.

The archive's first member is the file list (:mod:`updater.package`), then every listed entry in
path order, with fixed metadata (mtime 0, uid/gid 0, no user or group names, modes 0755/0644)
and a gzip header without name or time: the same folder always gives the same bytes, so a
re-publish is a no-op and two CI runs agree. A ``.tar.gz`` given by the user is unpacked with
the standard library's ``data`` filter and packed again the same way (so its metadata never
reaches clients).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

from updater.errors import IntegrityError
from updater.package import LIST_NAME, PackageEntry, file_list_bytes, scan_folder

from .artifacts import ARCHIVE_SUFFIX
from .errors import PublishError


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
        listing = file_list_bytes(entries, post_install)
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
    (into / LIST_NAME).unlink(missing_ok=True)
    children = list(into.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return into


def archive_name_for(path: Path) -> str:
    """The artifact file name a folder (``app-1.2.0-linux-amd64/``) or archive publishes as."""
    name = path.name
    if name.endswith(ARCHIVE_SUFFIX):
        return name
    return name + ARCHIVE_SUFFIX


def make_archive(path: Path, workdir: Path, post_install: str | None = None) -> tuple[Path, str]:
    """The deterministic archive for a build folder or a user's ``.tar.gz``, written under
    ``workdir``; returns (archive path, file list sha256)."""
    out = workdir / archive_name_for(path)
    if path.is_dir():
        return out, pack_folder(path, out, post_install)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = unpack_user_archive(path, Path(tmp))
        return out, pack_folder(folder, out, post_install)
