"""Folder deltas at publish time: what a one-folder release needs so clients fetch only changed files.

Beside the archive ``<app>/<version>/<stem>.tar.gz`` the publisher stores (keys: :mod:`gupper_publish.layout`):

- ``<app>/<version>/files/<stem>.json.gz``: the file list (the archive's first member, gzipped;
  the sha256 of the uncompressed list is the signed ``files_sha256``);
- ``<app>/<version>/files/sha256/<hex>``: every file of the release by content;
- for each of the previous K archive releases of the platform, ``<app>/<version>/patches/
  <stem>.from-<old>.files.json``: an index of bsdiff4 patches, per path whose content changed, at
  ``<app>/<version>/patches/files/<old sha256>-<new sha256>.bsdiff4``; the index is listed in
  the entry's ``patches`` (format ``files-bsdiff4``) with its size and sha256.

Everything sits under the release's own folder, so ``prune`` removes it with the release, and a
client never needs another release's objects. See docs/packages.md.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from packaging.version import Version

from gupper.errors import IntegrityError
from gupper.folder_delta import plan
from gupper.package import extract_package
from gupper.wire.files import LIST_NAME, FileList, FilePatch, ListDelta, PackageEntry, PatchIndex, list_from_wire

from .channels import ArtifactRecord, PatchRecord
from .errors import AlreadyExistsError, PublishError
from .layout import blob_key, file_patch_key, file_patch_name, index_name, list_key, patch_key
from .locks import work_folder
from .stores import ARTIFACT_CACHE_CONTROL, ARTIFACT_CONTENT_TYPE, Store

log = logging.getLogger("gupper.publish")

MAX_PATCH_INPUT = 64 << 20  # bsdiff4 needs ~17x the file in memory: bigger files are fetched whole
__all__ = ["MAX_PATCH_INPUT", "list_delta", "list_to_wire", "prepare"]


def list_delta(old: FileList, new: FileList) -> ListDelta:
    """What turns file list ``old`` into ``new``: the paths gone, the entries new or changed, the new hook."""
    before, after = old.by_path(), new.by_path()
    changed = [after[p] for p in sorted(after) if p not in before or before[p].to_json() != after[p].to_json()]
    return ListDelta(tuple(sorted(before.keys() - after.keys())), tuple(changed), new.post_install)


def list_to_wire(data: bytes) -> bytes:
    """The stored form of a file list: deterministic gzip (no name, no time)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def read_list(store: Store, app: str, version: Version | str, file: str) -> bytes | None:
    """A release's stored file list (decompressed), or None if it has none or it is unreadable."""
    stored = store.read(list_key(app, version, file))
    if stored is None:
        return None
    try:
        return list_from_wire(stored.data)
    except IntegrityError:
        return None


def prepare(
    store: Store,
    app: str,
    version: Version,
    archive: Path,
    record: ArtifactRecord,
    previous: Sequence[tuple[Version, ArtifactRecord]],
) -> ArtifactRecord:
    """Upload the list, the files and the per-file patches of ``archive``; return its record with
    ``blobs`` set and a patch index from each previous release that has a list (re-runs find
    what an earlier run uploaded and upload nothing again)."""
    if record.files_sha256 is None:
        return record
    with work_folder() as tmp:
        folder = tmp / "release"
        try:
            entries = extract_package(archive, folder, record.files_sha256)
        except IntegrityError as e:
            raise PublishError(f"cannot read back {archive.name} ({e}); publish again") from e
        packed = tmp / "list.json.gz"
        packed.write_bytes(list_to_wire((folder / LIST_NAME).read_bytes()))
        _put(store, list_key(app, version, record.file), packed, hashlib.sha256(packed.read_bytes()).hexdigest())
        files = [entry for entry in entries if entry.kind == "file"]
        for f in {f.sha256: f for f in files}.values():
            _put(store, blob_key(app, version, f.sha256), folder / f.path, f.sha256)
        made = []
        for old_version, old in previous:
            index = _patches_from(store, app, (version, record.file), folder, files, (old_version, old), tmp)
            if index is not None:
                made.append(index)
    return replace(record, patches=tuple(made), blobs=True)


def _patches_from(
    store: Store,
    app: str,
    new: tuple[Version, str],
    folder: Path,
    files: Sequence[PackageEntry],
    previous: tuple[Version, ArtifactRecord],
    tmp: Path,
) -> PatchRecord | None:
    """The patch index from a previous release: a bsdiff4 patch per path whose content changed."""
    (version, file), (old_version, old) = new, previous
    if not old.blobs or old.files_sha256 is None:
        return None
    listed = read_list(store, app, old_version, old.file)
    if listed is None or hashlib.sha256(listed).hexdigest() != old.files_sha256:
        log.warning("skipping folder patches from %s: its file list is missing or altered in the store", old_version)
        return None
    old_list = FileList.from_bytes(listed)
    before = {e.path: e for e in old_list.entries if e.kind == "file"}
    new_list = FileList.from_bytes((folder / LIST_NAME).read_bytes())
    patches: dict[str, FilePatch] = {}
    for e in files:
        was = before.get(e.path)
        if was is None or was.sha256 == e.sha256 or max(was.size, e.size) > MAX_PATCH_INPUT or was.size == 0:
            continue
        made = _file_patch(store, app, version, old_version, was, e, folder / e.path, tmp)
        if made is not None:
            patches[e.path] = made
    data = PatchIndex(
        patches, list_delta(old_list, new_list)
    ).to_bytes()  # written even without patches: it spares the list
    digest = hashlib.sha256(data).hexdigest()
    name = index_name(file, old_version)
    path = tmp / name
    path.write_bytes(data)
    _put(store, patch_key(app, version, name), path, digest)
    fetched = plan(old_list.entries, new_list.entries, patches).download
    return PatchRecord(str(old_version), old.files_sha256, name, len(data), digest, len(data) + fetched)


def _file_patch(
    store: Store,
    app: str,
    version: Version,
    old_version: Version,
    was: PackageEntry,
    e: PackageEntry,
    new_path: Path,
    tmp: Path,
) -> FilePatch | None:
    """A bsdiff4 patch from the old file to the new one (made once, content-addressed), or None
    when the old file is gone from the store or the patch would be no smaller than the file."""
    import bsdiff4

    name = file_patch_name(was.sha256, e.sha256)
    key = file_patch_key(app, version, name)
    existing = store.head(key)
    if existing is not None:
        return FilePatch(was.sha256, name, existing.size, store.sha256_of(key))
    old = store.read(blob_key(app, old_version, was.sha256))
    if old is None or hashlib.sha256(old.data).hexdigest() != was.sha256:
        log.warning(
            "skipping the patch for %s from %s: its file is missing or altered in the store", e.path, old_version
        )
        return None
    patch = bsdiff4.diff(old.data, new_path.read_bytes())
    if len(patch) >= e.size:
        return None
    digest = hashlib.sha256(patch).hexdigest()
    path = tmp / name
    path.write_bytes(patch)
    _put(store, key, path, digest)
    path.unlink()
    return FilePatch(was.sha256, name, len(patch), digest)


def _put(store: Store, key: str, path: Path, sha256: str) -> None:
    """Create ``key`` from ``path`` unless it is there already (content-addressed or immutable)."""
    existing = store.head(key)
    if existing is not None:
        if existing.sha256 is not None and existing.sha256 != sha256:
            raise PublishError(f"{key} already holds other content; delete it from the store and publish again")
        return
    with contextlib.suppress(AlreadyExistsError):  # a concurrent publisher of the same release wrote the same bytes
        store.create_file(
            key, path, sha256=sha256, content_type=ARTIFACT_CONTENT_TYPE, cache_control=ARTIFACT_CACHE_CONTROL
        )
