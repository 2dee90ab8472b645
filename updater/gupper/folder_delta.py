"""Folder deltas: build the new version folder from the installed one plus only what changed.

A one-folder release of a typical app changes one or two files out of hundreds (the demo: the
3.6 MB executable of a 62 MB folder). The publisher therefore also stores, beside the archive,
the file list (``files_url``), every file by its sha256 (``blobs_url`` + hex) and, per earlier
release, an index of per-file bsdiff4 patches (an ``archive`` entry's ``patches``, format
:data:`PATCH_FORMAT`). The client plans (:func:`plan`, pure) from the installed version's list and
the new one: a file whose content the installed version already holds is hard-linked (copied
when linking is impossible or the mode differs); a changed file with a patch from the installed
file is patched; anything else is fetched whole. Every file is verified against the signed list
(sha256 of the list is signed as ``files_sha256``); every source file is re-hashed before use,
so a locally damaged file is fetched rather than copied. Any failure leaves the caller to fall
back to the full archive. See docs/packages.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ._fsutil import fsync_dir
from .bspatch import PatchError, apply_patch
from .errors import IntegrityError
from .manifest import canonical_bytes
from .package import LIST_NAME, LIST_TYPE, PackageEntry, create_new_file, file_sha256

INDEX_TYPE = "gupper-files-patches"
PATCH_FORMAT = "files-bsdiff4"
MAX_INDEX_BYTES = 4 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FILE_RE = re.compile(r"^[0-9a-f]{64}-[0-9a-f]{64}\.bsdiff4$")

Fetch = Callable[[str, int, str, BinaryIO], None]
"""``fetch(relative_url, size, sha256, out)``: write exactly that content to ``out`` or raise."""


@dataclass(frozen=True)
class FilePatch:
    """A bsdiff4 patch turning the installed file ``from_sha256`` into a listed file."""

    from_sha256: str
    file: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Step:
    """How one listed file of the new version is made: ``reuse`` a local file, ``patch`` one, or ``fetch`` it."""

    entry: PackageEntry
    action: str
    source: str = ""
    patch: FilePatch | None = None


@dataclass(frozen=True)
class Plan:
    """Every file of the new version and how to make it; ``download`` is what it costs in bytes."""

    steps: tuple[Step, ...]

    @property
    def download(self) -> int:
        """Bytes to fetch: whole files plus patches."""
        return sum(s.entry.size if s.action == "fetch" else s.patch.size if s.patch else 0 for s in self.steps)

    def count(self, action: str) -> int:
        """How many files are made by ``action``."""
        return sum(1 for s in self.steps if s.action == action)


@dataclass(frozen=True)
class Index:
    """A patch index from one earlier release (its sha256 is signed in the manifest): per-file
    patches, and how that release's file list becomes this one's (``remove`` paths, ``put``
    entries, the new ``post_install``), so an install holding the earlier list exactly need not
    fetch the new one."""

    patches: Mapping[str, FilePatch]
    remove: tuple[str, ...] = ()
    put: tuple[Mapping[str, Any], ...] = ()
    post_install: str | None = None


def list_delta(old: bytes, new: bytes) -> dict[str, Any]:
    """What turns file list ``old`` into ``new`` (publisher side; both already checked)."""
    before = {f["path"]: f for f in json.loads(old)["files"]}
    doc = json.loads(new)
    after = {f["path"]: f for f in doc["files"]}
    out: dict[str, Any] = {"remove": sorted(before.keys() - after.keys()), "put": [after[p] for p in sorted(after) if before.get(p) != after[p]]}
    if doc.get("post_install") is not None:
        out["post_install"] = doc["post_install"]
    return out


def apply_list_delta(old: bytes, index: Index) -> bytes:
    """The new file list from the installed one and an index's list delta (pure). The caller
    compares its sha256 with the signed ``files_sha256`` before trusting it."""
    files = {f["path"]: f for f in json.loads(old)["files"]}
    for path in index.remove:
        files.pop(path, None)
    for entry in index.put:
        files[entry["path"]] = dict(entry)
    doc: dict[str, Any] = {"_type": LIST_TYPE, "schema": 1, "files": [files[p] for p in sorted(files)]}
    if index.post_install is not None:
        doc["post_install"] = index.post_install
    return canonical_bytes(doc)


def index_bytes(patches: Mapping[str, FilePatch], delta: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a patch index (publisher side)."""
    doc = {"_type": INDEX_TYPE, "schema": 1, "patches": {p: vars(fp) for p, fp in sorted(patches.items())}, "list": dict(delta)}
    return canonical_bytes(doc)


def parse_index(data: bytes) -> Index:
    """Parse a patch index (its sha256 is signed in the manifest)."""
    try:
        doc: Any = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("_type") != INDEX_TYPE or doc.get("schema") != 1 or not isinstance(doc.get("patches"), dict):
            raise ValueError("not a schema 1 patch index")
        out = {}
        for path, raw in doc["patches"].items():
            fp = FilePatch(raw["from_sha256"], raw["file"], raw["size"], raw["sha256"])
            if not (_SHA256_RE.match(fp.from_sha256) and _SHA256_RE.match(fp.sha256) and _FILE_RE.match(fp.file)):
                raise ValueError(f"patch for {path[:80]!r} has an unusable name or digest")
            if isinstance(fp.size, bool) or not isinstance(fp.size, int) or fp.size <= 0:
                raise ValueError(f"patch for {path[:80]!r} has an unusable size")
            out[str(path)] = fp
        delta = doc.get("list", {})
        remove, put, hook = delta.get("remove", []), delta.get("put", []), delta.get("post_install")
        if not (
            isinstance(remove, list)
            and all(isinstance(r, str) for r in remove)
            and isinstance(put, list)
            and all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in put)
        ):
            raise ValueError("its list delta is not lists of paths and entries")
        if hook is not None and not isinstance(hook, str):
            raise ValueError("its post_install is not a path")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"the folder patch index is unusable ({e}); refused") from e
    return Index(out, tuple(remove), tuple(put), hook)


def plan(installed: Sequence[PackageEntry], new: Sequence[PackageEntry], patches: Mapping[str, FilePatch]) -> Plan:
    """How to make each file of ``new`` from the ``installed`` version: pure, no I/O.

    Reuse goes by content (a file moved or copied within the package is reused too); a patch is
    used only when its source is a file the installed version lists with that sha256.
    """
    by_hash: dict[str, PackageEntry] = {}
    for e in installed:
        if e.kind == "file":
            by_hash.setdefault(e.sha256, e)
    steps = []
    for e in new:
        if e.kind != "file":
            continue
        have = by_hash.get(e.sha256)
        patch = patches.get(e.path)
        if have is not None or e.size == 0:
            steps.append(Step(e, "reuse", have.path if have else ""))
        elif patch is not None and patch.from_sha256 in by_hash and patch.size < e.size:
            steps.append(Step(e, "patch", by_hash[patch.from_sha256].path, patch))
        else:
            steps.append(Step(e, "fetch"))
    return Plan(tuple(steps))


@dataclass
class Built:
    """What :func:`build` did, for the log line and the tests."""

    linked: int = 0
    copied: int = 0
    patched: int = 0
    fetched: int = 0
    downloaded: int = 0


def build(
    the_plan: Plan,
    entries: Sequence[PackageEntry],
    list_data: bytes,
    installed_dir: Path,
    dest: Path,
    work: Path,
    fetch: Fetch,
    blob_url: Callable[[str], str],
    patch_url: Callable[[str], str],
    rehash_sources: bool = True,
) -> Built:
    """Make the new version in the fresh folder ``dest`` (temp files in the fresh folder ``work``).

    Directories and links come from the list; files by the plan. A reused or patched source is
    re-hashed first (unless the caller hashed the installed files just now: ``rehash_sources``
    False) and, if it changed on disk, or its patch fails, that file is fetched whole.
    Every written file is checked against the list, fsynced, and given its listed mode; the list
    is kept as ``dest/.gupper-files.json``, as extraction does. Raises on anything else (the
    caller removes ``dest`` and ``work`` and falls back to the archive).
    """
    done = Built()
    dest.mkdir(mode=0o755)
    work.mkdir(mode=0o700)
    dirs = {dest}
    for e in sorted(entries, key=lambda x: x.path):
        if e.kind == "dir":
            (dest / e.path).mkdir(mode=0o755)
            dirs.add(dest / e.path)
        elif e.kind == "link":
            os.symlink(e.target, dest / e.path)
    where = _Where(installed_dir, dest, work, fetch, blob_url, patch_url, rehash_sources)
    for step in the_plan.steps:
        _make(step, where, done)
    with (dest / LIST_NAME).open("xb") as f:
        f.write(list_data)
        os.fsync(f.fileno())
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(str(d))
    return done


@dataclass(frozen=True)
class _Where:
    """Where :func:`build` takes files from and puts them."""

    installed: Path
    dest: Path
    work: Path
    fetch: Fetch
    blob_url: Callable[[str], str]
    patch_url: Callable[[str], str]
    rehash: bool


def _make(step: Step, where: _Where, done: Built) -> None:
    e = step.entry
    installed, dest, work, fetch, blob_url, patch_url = where.installed, where.dest, where.work, where.fetch, where.blob_url, where.patch_url
    out = dest / e.path
    if step.action == "reuse" and e.size == 0:
        with create_new_file(out) as f:
            os.fsync(f.fileno())
        os.chmod(out, e.mode)
        done.copied += 1
        return
    source = installed / step.source if step.source else None
    if source is not None and not _is_regular(source):
        source = None
    wanted = step.patch.from_sha256 if step.patch else e.sha256
    if source is not None and where.rehash and file_sha256(source) != wanted:
        source = None  # changed on disk since it was installed: never copy it into the new version
    if source is not None and step.action == "reuse":
        _reuse(source, out, e, done)
        return
    if source is not None and step.patch is not None:
        patch_file = work / step.patch.file
        try:
            with create_new_file(patch_file) as f:
                fetch(patch_url(step.patch.file), step.patch.size, step.patch.sha256, f)
            done.downloaded += step.patch.size
            with create_new_file(out) as f:
                digest = apply_patch(source, patch_file, f, e.size)
                f.flush()
                os.fsync(f.fileno())
            if digest == e.sha256:
                os.chmod(out, e.mode)
                done.patched += 1
                return
        except PatchError:
            pass
        finally:
            patch_file.unlink(missing_ok=True)
        out.unlink(missing_ok=True)  # a bad patch costs this file a whole download, not the delta
    with create_new_file(out) as f:
        fetch(blob_url(e.sha256), e.size, e.sha256, f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(out, e.mode)
    done.fetched += 1
    done.downloaded += e.size


def _reuse(source: Path, out: Path, e: PackageEntry, done: Built) -> None:
    """Hard-link ``source`` (same content and mode) or copy it; the copy is verified as written."""
    # A link shares the mode; Windows has no 0644/0755 (only a read-only flag), so links always do there.
    if os.name != "posix" or (source.stat().st_mode & 0o777) == e.mode:
        try:
            os.link(source, out)  # source is a regular file (checked): no link to follow
            done.linked += 1
            return
        except OSError:
            pass  # another filesystem, FAT, or links not allowed: copy instead
    digest = hashlib.sha256()
    with source.open("rb") as src, create_new_file(out) as f:
        while block := src.read(1 << 20):
            digest.update(block)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    if digest.hexdigest() != e.sha256:
        raise IntegrityError(f"{source} changed while it was copied; refused")
    os.chmod(out, e.mode)
    done.copied += 1


def _is_regular(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False
