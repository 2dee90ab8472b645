"""Folder deltas: build the new version folder from the installed one plus only what changed.

A one-folder release of a typical app changes one or two files out of hundreds (the demo: the
3.6 MB executable of a 62 MB folder). The publisher therefore also stores, beside the archive,
the file list (``files_url``), every file by its sha256 (``blobs_url`` + hex) and, per earlier
release, an index of per-file bsdiff4 patches (an ``archive`` entry's ``patches``, format
``files-bsdiff4``; the documents are :mod:`gupper.wire.files`). The client plans (:func:`plan`,
pure) from the installed version's list and the new one: a file whose content the installed
version already holds is hard-linked (copied when linking is impossible or the mode differs); a
changed file with a patch from the installed file is patched; anything else is fetched whole.
Every file is verified against the signed list (sha256 of the list is signed as
``files_sha256``); every source file is re-hashed before use, so a locally damaged file is
fetched rather than copied. Any failure leaves the caller to fall back to the full archive. See
docs/packages.md.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from ._fsutil import CHUNK, durable_file, file_sha256, fsync_dir
from .bspatch import apply_patch
from .errors import IntegrityError, PatchError
from .records import record
from .wire.files import LIST_NAME, FilePatch, PackageEntry

Fetch = Callable[[str, int, str, BinaryIO], None]
"""``fetch(relative_url, size, sha256, out)``: write exactly that content to ``out`` or raise."""


@record(frozen=True)
class Step:
    """How one listed file of the new version is made: ``reuse`` a local file, ``patch`` one, or ``fetch`` it."""

    entry: PackageEntry
    action: str
    source: str = ""
    patch: FilePatch | None = None


@record(frozen=True)
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


@record
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
    with durable_file(dest / LIST_NAME, mode=0o666) as f:
        f.write(list_data)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(str(d))
    return done


@record(frozen=True)
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
    installed, dest, work, fetch, blob_url, patch_url = (
        where.installed,
        where.dest,
        where.work,
        where.fetch,
        where.blob_url,
        where.patch_url,
    )
    out = dest / e.path
    if step.action == "reuse" and e.size == 0:
        with durable_file(out):
            pass
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
            with durable_file(patch_file) as f:
                fetch(patch_url(step.patch.file), step.patch.size, step.patch.sha256, f)
            done.downloaded += step.patch.size
            with durable_file(out) as f:
                digest = apply_patch(source, patch_file, f, e.size)
            if digest == e.sha256:
                os.chmod(out, e.mode)
                done.patched += 1
                return
        except PatchError:
            pass
        finally:
            patch_file.unlink(missing_ok=True)
        out.unlink(missing_ok=True)  # a bad patch costs this file a whole download, not the delta
    with durable_file(out) as f:
        fetch(blob_url(e.sha256), e.size, e.sha256, f)
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
    with source.open("rb") as src, durable_file(out) as f:
        while block := src.read(CHUNK):
            digest.update(block)
            f.write(block)
    if digest.hexdigest() != e.sha256:
        raise IntegrityError(f"{source} changed while it was copied; refused")
    os.chmod(out, e.mode)
    done.copied += 1


def _is_regular(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False
