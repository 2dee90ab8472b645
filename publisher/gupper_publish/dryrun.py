"""Dry runs: a command run whole against a store that reads the real one and writes nowhere.

:class:`DryRunStore` wraps any :class:`~gupper_publish.stores.Store`: reads (list, head, read)
go to the real store, writes are kept in memory and answered as the store would (create-only
uploads and compare-and-swap included), and later reads in the same run see them. The command
itself runs unchanged (names checked, builds hashed, patches made, the manifest derived and
signed), so what a dry run reports is what the real command would write, minus whatever other
publishers change in between. Nothing is uploaded and nothing in the store changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import AlreadyExistsError, PreconditionFailedError
from .stores import ObjectInfo, Progress, Store, Stored

BLOB_FOLDERS = ("/files/sha256", "/patches/files")
"""Folders of content-addressed objects (a one-folder release's files, its per-file patches): told as one line each."""


@dataclass(frozen=True)
class Write:
    """One object a dry run would have written: an upload (create-only) or a replaced small object (swap)."""

    key: str
    size: int
    sha256: str
    data: bytes | None = None  # a swapped object's bytes (a manifest, a channel state)
    path: Path | None = None  # an upload's source file, valid while the command runs

    @property
    def etag(self) -> str:
        """The ETag this write answers with in the dry run."""
        return f'"dry-run-{self.sha256[:32]}"'


class DryRunStore:
    """A store that reads ``inner`` and keeps every write to itself (see the module docs)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.writes: list[Write] = []
        self._written: dict[str, Write] = {}
        self._deleted: set[str] = set()

    def list(self, prefix: str) -> list[ObjectInfo]:
        """The real listing with this run's writes and deletes applied."""
        base = prefix.rstrip("/") + "/" if prefix else ""
        found = {o.key: o for o in self.inner.list(prefix) if o.key not in self._deleted}
        for key, w in self._written.items():
            if key.startswith(base):
                found[key] = ObjectInfo(key, w.size, w.etag, w.sha256)
        return [found[k] for k in sorted(found)]

    def head(self, key: str) -> ObjectInfo | None:
        """This run's write of ``key``, else the real store's."""
        w = self._written.get(key)
        if w is not None:
            return ObjectInfo(key, w.size, w.etag, w.sha256)
        return None if key in self._deleted else self.inner.head(key)

    def sha256_of(self, key: str) -> str:
        """The sha256 of this run's write of ``key``, else the real store's."""
        w = self._written.get(key)
        return w.sha256 if w is not None else self.inner.sha256_of(key)

    def read(self, key: str) -> Stored | None:
        """This run's write of ``key`` (an upload read back from its source file), else the real store's."""
        w = self._written.get(key)
        if w is None:
            return None if key in self._deleted else self.inner.read(key)
        data = w.data if w.data is not None else w.path.read_bytes() if w.path is not None else b""
        return Stored(data, w.etag)

    def create_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        content_type: str,
        cache_control: str,
        progress: Progress | None = None,
    ) -> None:
        """Record an upload; AlreadyExistsError if ``key`` exists, as the real store answers."""
        if self.head(key) is not None:
            raise AlreadyExistsError(f"{key} already exists in {self.url}")
        self._keep(Write(key, path.stat().st_size, sha256, path=path))

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        """Record a compare-and-swap write; PreconditionFailedError if ``key`` is not at ``expect_etag``."""
        current = self.read(key)
        if (current.etag if current else None) != expect_etag:
            raise PreconditionFailedError(f"{key} changed since it was read")
        w = Write(key, len(data), hashlib.sha256(data).hexdigest(), data=data)
        self._keep(w)
        return w.etag

    def delete(self, key: str) -> None:
        """Record a delete: later reads in this run no longer see ``key``."""
        self._written.pop(key, None)
        self.writes = [w for w in self.writes if w.key != key]
        self._deleted.add(key)

    def _keep(self, w: Write) -> None:
        self._written[w.key] = w
        self._deleted.discard(w.key)
        self.writes = [*(old for old in self.writes if old.key != w.key), w]

    def written(self, key: str) -> bytes | None:
        """The bytes this run wrote to ``key`` with a swap (a manifest, a state), or None."""
        w = self._written.get(key)
        return w.data if w is not None else None


def blob_folder(key: str) -> str | None:
    """The content-addressed folder holding ``key`` (a one-folder release's files, its per-file patches), or None.
    Pure."""
    folder = key.rsplit("/", 1)[0]
    return folder if folder.endswith(BLOB_FOLDERS) else None
