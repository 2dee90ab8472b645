"""The one-folder documents: a release's file list and the patch index from an earlier release. Pure.

A one-folder release (``type: archive``) carries a **file list** (:class:`FileList`, stored as
:data:`LIST_NAME`, the archive's first member, and beside the archive for folder deltas): every
directory, file (size, sha256, mode) and symlink (target) of the package, as canonical JSON. Its
sha256 is signed in the manifest entry as ``files_sha256``. A **patch index**
(:class:`PatchIndex`, listed in the entry's ``patches`` with format ``files-bsdiff4``) holds the
per-file bsdiff4 patches from one earlier release and how that release's list becomes this one's
(:class:`ListDelta`). Both are refused with :class:`~gupper.errors.IntegrityError`: they arrive
under a signed sha256, so a bad one is a bad release, not a bad network. See docs/packages.md.

Parsing refuses every path or link that could resolve outside the package. Unknown fields are
kept (``unknown``) and written back, so a list re-serialises to the bytes its sha256 was signed
over.
"""

from __future__ import annotations

import json
import posixpath
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import IntegrityError
from ..records import field, record
from .canonical import canonical_bytes, is_sha256

LIST_NAME = ".gupper-files.json"
LIST_TYPE = "gupper-files"
INDEX_TYPE = "gupper-files-patches"
MAX_LIST_BYTES = 16 << 20
MAX_INDEX_BYTES = 4 << 20
MAX_ENTRIES = 100_000
MAX_DEPTH = 64
FILE_MODES = (0o644, 0o755)
_PATCH_FILE_RE = re.compile(r"[0-9a-f]{64}-[0-9a-f]{64}\.bsdiff4")

Json = dict[str, Any]


@record(frozen=True)
class PackageEntry:
    """One member of a package: ``kind`` is ``dir``, ``file`` or ``link``."""

    path: str
    kind: str
    size: int = 0
    sha256: str = ""
    mode: int = 0o755
    target: str = ""
    unknown: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, raw: Any) -> PackageEntry:
        """Parse one item of a list's ``files``.

        Raises:
            IntegrityError: not a dir, file or link with a safe path (and a safe target, or a
                size, sha256 and a mode of 0644 or 0755).
        """
        if not isinstance(raw, dict):
            raise IntegrityError("the package's file list holds a non-object entry; refused")
        path, kind = raw.get("path"), raw.get("type")
        if not isinstance(path, str):
            raise IntegrityError("the package's file list holds an entry without a path; refused")
        check_member_path(path)
        if kind == "dir":
            return cls(path, "dir", unknown=_unknown(raw, {"path", "type"}))
        if kind == "link":
            target = raw.get("target")
            if not isinstance(target, str):
                raise IntegrityError(f"link {path[:80]!r} has no target; refused")
            check_link_target(path, target)
            return cls(path, "link", target=target, unknown=_unknown(raw, {"path", "type", "target"}))
        if kind == "file":
            size, digest, mode = raw.get("size"), raw.get("sha256"), raw.get("mode")
            if (
                isinstance(size, bool)
                or not isinstance(size, int)
                or size < 0
                or not isinstance(digest, str)
                or len(digest) != 64
                or mode not in FILE_MODES
            ):
                raise IntegrityError(f"package member {path[:80]!r} has an unusable size, sha256 or mode; refused")
            return cls(
                path,
                "file",
                size=size,
                sha256=digest,
                mode=mode,
                unknown=_unknown(raw, {"path", "type", "size", "sha256", "mode"}),
            )
        raise IntegrityError(
            f"package member {path[:80]!r} has type {str(kind)[:20]!r}: only dir, file and link are allowed; refused"
        )

    def to_json(self) -> Json:
        """The entry as it appears in the list."""
        out: Json = dict(self.unknown)
        if self.kind == "file":
            out.update(path=self.path, type="file", size=self.size, sha256=self.sha256, mode=self.mode)
        elif self.kind == "link":
            out.update(path=self.path, type="link", target=self.target)
        else:
            out.update(path=self.path, type="dir")
        return out


def _unknown(raw: Mapping[str, Any], known: set[str]) -> Json:
    return {k: v for k, v in raw.items() if k not in known}


def check_member_path(path: str) -> None:
    """A relative POSIX path of plain names: no ``..``, ``.``, empty parts, absolute paths,
    backslashes, drive letters or control characters (each could land outside the package).

    Raises:
        IntegrityError: any of those.
    """
    if not path or len(path) > 4096 or path.startswith("/"):
        raise IntegrityError(f"package member {str(path)[:80]!r} is not a relative path; refused")
    if any(c in path for c in "\\:") or any(ord(c) < 32 for c in path):
        raise IntegrityError(f"package member {path[:80]!r} holds a character that is not allowed in a path; refused")
    parts = path.split("/")
    if len(parts) > MAX_DEPTH or any(p in ("", ".", "..") for p in parts) or path == LIST_NAME:
        raise IntegrityError(f"package member {path[:80]!r} could resolve outside the package; refused")


def check_link_target(path: str, target: str) -> None:
    """A link may only point inside the package: relative, ``..`` only as leading parts, never
    above the package root, and no ``..`` after a name (a name may itself be a link).

    Raises:
        IntegrityError: a target that could resolve outside the package.
    """
    if not target or target.startswith("/") or "\\" in target or ":" in target or any(ord(c) < 32 for c in target):
        raise IntegrityError(f"link {path[:80]!r} points to {str(target)[:80]!r}, outside the package; refused")
    parts = target.split("/")
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = parts[ups:]
    if any(p in ("", ".", "..") for p in rest) or ups > path.count("/"):
        raise IntegrityError(f"link {path[:80]!r} points to {target[:80]!r}, outside the package; refused")


@record(frozen=True)
class FileList:
    """A package's file list: its entries (sorted by path) and its post-install hook, if any."""

    entries: tuple[PackageEntry, ...]
    post_install: str | None = None
    unknown: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, entries: Iterable[PackageEntry], post_install: str | None = None) -> FileList:
        """A list of ``entries`` in path order, checked as a client checks it.

        Raises:
            IntegrityError: the same checks as :meth:`from_bytes`.
        """
        made = cls(tuple(sorted(entries, key=lambda e: e.path)), post_install)
        return cls.from_bytes(made.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> FileList:
        """Parse and check a file list.

        Raises:
            IntegrityError: not a schema 1 Gupper file list, over :data:`MAX_ENTRIES`, a path
                listed twice, an entry under something that is not a listed directory, any
                unsafe path or link, or a post-install hook that is not a listed executable file.
        """
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise IntegrityError("the package's file list is not valid JSON; refused") from e
        if (
            not isinstance(doc, dict)
            or doc.get("_type") != LIST_TYPE
            or doc.get("schema") != 1
            or not isinstance(doc.get("files"), list)
        ):
            raise IntegrityError("the package's file list is not a schema 1 gupper file list; refused")
        raw_entries: list[Any] = doc["files"]
        if len(raw_entries) > MAX_ENTRIES:
            raise IntegrityError(f"the package lists {len(raw_entries)} entries, over the {MAX_ENTRIES} limit; refused")
        entries: dict[str, PackageEntry] = {}
        for raw in raw_entries:
            entry = PackageEntry.from_json(raw)
            if entry.path in entries:
                raise IntegrityError(f"package member {entry.path[:80]!r} is listed twice; refused")
            entries[entry.path] = entry
        for entry in entries.values():
            parent = posixpath.dirname(entry.path)
            while parent:  # every ancestor a listed real directory: no writing through a link
                above = entries.get(parent)
                if above is None or above.kind != "dir":
                    raise IntegrityError(
                        f"package member {entry.path[:80]!r} lies under {parent[:80]!r}, which is not a "
                        "listed directory; refused"
                    )
                parent = posixpath.dirname(parent)
        hook = doc.get("post_install")
        if hook is not None:
            listed = entries.get(hook) if isinstance(hook, str) else None
            if listed is None or listed.kind != "file" or listed.mode != 0o755:
                raise IntegrityError(
                    f"the package's post-install hook {str(hook)[:80]!r} is not a listed executable file; refused"
                )
        return cls(tuple(entries.values()), hook, _unknown(doc, {"_type", "schema", "files", "post_install"}))

    def to_json(self) -> Json:
        """The list as a JSON object."""
        doc: Json = {**self.unknown, "_type": LIST_TYPE, "schema": 1, "files": [e.to_json() for e in self.entries]}
        if self.post_install is not None:
            doc["post_install"] = self.post_install
        return doc

    def to_bytes(self) -> bytes:
        """The canonical bytes (what ``files_sha256`` signs)."""
        return canonical_bytes(self.to_json())

    def by_path(self) -> dict[str, PackageEntry]:
        """Path → entry."""
        return {e.path: e for e in self.entries}


def list_from_wire(data: bytes) -> bytes:
    """A file list as stored beside an archive: gzip-compressed (a JSON list never starts with
    gzip's magic) or plain; decompression stops past :data:`MAX_LIST_BYTES` (no gzip bombs).

    Raises:
        IntegrityError: damaged gzip, more than one stream, trailing bytes or too large.
    """
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        d = zlib.decompressobj(wbits=31)
        out = d.decompress(data, MAX_LIST_BYTES + 1)
    except zlib.error as e:
        raise IntegrityError("the package's file list is damaged (gzip); refused") from e
    if len(out) > MAX_LIST_BYTES or not d.eof or d.unused_data:
        raise IntegrityError(
            f"the package's file list is not one gzip stream of at most {MAX_LIST_BYTES} bytes; refused"
        )
    return out


@record(frozen=True)
class FilePatch:
    """A bsdiff4 patch turning the installed file ``from_sha256`` into a listed file; ``file`` is
    its name under the release's ``patches/files/``."""

    from_sha256: str
    file: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, path: str, raw: Any) -> FilePatch:
        """Parse the patch for ``path``.

        Raises:
            IntegrityError: a missing field, an unusable name, digest or size.
        """
        if not isinstance(raw, dict):
            raise IntegrityError(
                f"the folder patch index is unusable (patch for {path[:80]!r} is not an object); refused"
            )
        fp = cls(raw.get("from_sha256"), raw.get("file"), raw.get("size"), raw.get("sha256"))  # type: ignore[arg-type]  # checked just below
        if not (
            is_sha256(fp.from_sha256)
            and is_sha256(fp.sha256)
            and isinstance(fp.file, str)
            and _PATCH_FILE_RE.fullmatch(fp.file)
        ):
            raise IntegrityError(
                f"the folder patch index is unusable (patch for {path[:80]!r} has an unusable name or digest); refused"
            )
        if isinstance(fp.size, bool) or not isinstance(fp.size, int) or fp.size <= 0:
            raise IntegrityError(
                f"the folder patch index is unusable (patch for {path[:80]!r} has an unusable size); refused"
            )
        return fp

    def to_json(self) -> Json:
        """The object as it appears in the index."""
        return {"from_sha256": self.from_sha256, "file": self.file, "size": self.size, "sha256": self.sha256}


@record(frozen=True)
class ListDelta:
    """How an earlier release's file list becomes this one's: ``remove`` paths, ``put`` entries
    (new or changed), and the new list's ``post_install``."""

    remove: tuple[str, ...] = ()
    put: tuple[PackageEntry, ...] = ()
    post_install: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> ListDelta:
        """Parse an index's ``list``.

        Raises:
            IntegrityError: not lists of paths and entries, an unsafe entry, or a hook that is not a path.
        """
        if not isinstance(raw, dict):
            raise IntegrityError("the folder patch index is unusable (its list delta is not an object); refused")
        remove, put, hook = raw.get("remove", []), raw.get("put", []), raw.get("post_install")
        if not (isinstance(remove, list) and all(isinstance(r, str) for r in remove) and isinstance(put, list)):
            raise IntegrityError(
                "the folder patch index is unusable (its list delta is not lists of paths and entries); refused"
            )
        if hook is not None and not isinstance(hook, str):
            raise IntegrityError("the folder patch index is unusable (its post_install is not a path); refused")
        return cls(tuple(remove), tuple(PackageEntry.from_json(e) for e in put), hook)

    def to_json(self) -> Json:
        """The object as it appears under the index's ``list``."""
        out: Json = {"remove": list(self.remove), "put": [e.to_json() for e in self.put]}
        if self.post_install is not None:
            out["post_install"] = self.post_install
        return out

    def apply(self, old: FileList) -> FileList:
        """The new list from ``old`` (pure). Not checked here: the caller compares the sha256 of its
        bytes with the signed ``files_sha256`` before trusting it, then parses those bytes."""
        files = old.by_path()
        for path in self.remove:
            files.pop(path, None)
        for entry in self.put:
            files[entry.path] = entry
        return FileList(tuple(files[p] for p in sorted(files)), self.post_install)


@record(frozen=True)
class PatchIndex:
    """A patch index from one earlier release (its sha256 is signed in the manifest): per-file
    patches by path, and the list delta, so an install holding the earlier list exactly need not
    fetch the new one."""

    patches: Mapping[str, FilePatch]
    delta: ListDelta = field(default_factory=ListDelta)
    unknown: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> PatchIndex:
        """Parse a patch index.

        Raises:
            IntegrityError: not a schema 1 patch index, or any patch or list delta unusable.
        """
        try:
            doc: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise IntegrityError(f"the folder patch index is unusable ({e}); refused") from e
        if (
            not isinstance(doc, dict)
            or doc.get("_type") != INDEX_TYPE
            or doc.get("schema") != 1
            or not isinstance(doc.get("patches"), dict)
        ):
            raise IntegrityError("the folder patch index is unusable (not a schema 1 patch index); refused")
        patches = {str(path): FilePatch.from_json(str(path), raw) for path, raw in doc["patches"].items()}
        return cls(
            patches, ListDelta.from_json(doc.get("list", {})), _unknown(doc, {"_type", "schema", "patches", "list"})
        )

    def to_json(self) -> Json:
        """The index as a JSON object."""
        return {
            **self.unknown,
            "_type": INDEX_TYPE,
            "schema": 1,
            "patches": {p: fp.to_json() for p, fp in sorted(self.patches.items())},
            "list": self.delta.to_json(),
        }

    def to_bytes(self) -> bytes:
        """The canonical bytes (what the entry's ``patches`` item signs)."""
        return canonical_bytes(self.to_json())
