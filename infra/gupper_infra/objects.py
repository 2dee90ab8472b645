"""The local store's objects on disk, so a restarted store has what was published.

moto keeps objects in memory: a restarted store was empty, and every installed app then
refused the next manifest's lower serial until a ``resign --min-serial``. :class:`ObjectMirror`
writes the current objects of every bucket to a data folder after each request that can change
them (a diff against what it wrote last: only changed objects are written, before the answer
goes out) and loads them back at start with their ETags (multipart ones too), metadata,
checksums and dates, so the ETags apps hold for ``304`` and ``If-Range`` stay valid.

Layout: ``DATA/<bucket>/<sha256 of the key>.json`` names the key and the file of its bytes,
``<sha256 of the key>.<sha256 of the bytes>.bin``. Bytes are written first, then the record
(each to a temp name, then renamed), then the previous bytes removed: a store killed at any
point loads the previous object or the new one whole, and unreferenced files are removed at
the next start. Bucket settings other than the default bucket's public-read policy (which the
store applies at every start) are not kept.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from moto.s3.exceptions import BucketAlreadyExists
from moto.s3.models import FakeKey, S3Backend

log = logging.getLogger("gupper_infra")
Record = dict[str, Any]


def _name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _write(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


class ObjectMirror:
    """Keeps ``data`` (a folder) equal to the objects of ``backend``; see the module's docstring."""

    def __init__(self, backend: S3Backend, data: Path, region: str) -> None:
        self.backend, self.data, self.region = backend, data, region
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], Record] = {}  # what is on disk, by (bucket, key)
        self._files: dict[tuple[str, str], str] = {}  # the file holding its bytes

    def load(self) -> int:
        """Create the buckets and objects the data folder holds (it may not exist yet); returns the objects loaded."""
        self.data.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for folder in sorted(p for p in self.data.iterdir() if p.is_dir()):
                with contextlib.suppress(BucketAlreadyExists):
                    self.backend.create_bucket(folder.name, self.region)
                kept: set[str] = set()
                for path in sorted(folder.glob("*.json")):
                    loaded = self._load_one(folder, path)
                    if loaded is not None:
                        record, file = loaded
                        kept.add(file)
                        self._known[(folder.name, record["key"])] = record
                        self._files[(folder.name, record["key"])] = file
                for path in folder.iterdir():  # bytes no record names, temp files of a killed write
                    if path.suffix != ".json" and path.name not in kept:
                        path.unlink(missing_ok=True)
            return len(self._known)

    def _load_one(self, folder: Path, path: Path) -> tuple[Record, str] | None:
        try:
            record: Record = json.loads(path.read_text(encoding="utf-8"))
            file = record.pop("file")
            value = (folder / file).read_bytes()
            if f"{_name(record['key'])}.{hashlib.sha256(value).hexdigest()}.bin" != file:
                raise ValueError("its bytes do not match their digest")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("localstore: skipping %s: %s", path, e)
            return None
        key = self.backend.put_object(folder.name, record["key"], value, disable_notification=True)
        key._etag = record["etag"].strip('"')  # moto's own field: multipart ETags are not an MD5 of the bytes
        key.set_metadata(dict(record["metadata"]), replace=True)
        key.checksum_algorithm, key.checksum_value = record["checksum_algorithm"], record["checksum_value"]
        key.last_modified = datetime.datetime.fromisoformat(record["last_modified"])
        return record, file

    def sync(self) -> None:
        """Write what changed since the last call (and remove what is gone): after each changing request."""
        with self._lock:
            seen: set[tuple[str, str]] = set()
            for bucket, name, key in self._objects():
                seen.add((bucket, name))
                record = self._record(name, key)
                if self._known.get((bucket, name)) != record:
                    self._store(bucket, name, key, record)
            for bucket, name in set(self._known) - seen:
                self._remove(bucket, name)

    def _objects(self) -> Iterator[tuple[str, str, FakeKey]]:
        for bucket_name, bucket in _settled(lambda: list(self.backend.buckets.items())):
            for name, key in _settled(lambda b=bucket: list(b.keys.items())):  # type: ignore[misc]
                if isinstance(key, FakeKey):  # not a delete marker
                    yield bucket_name, name, key

    @staticmethod
    def _record(name: str, key: FakeKey) -> Record:
        return {
            "key": name,
            "etag": key.etag,
            "metadata": dict(key.metadata),
            "checksum_algorithm": key.checksum_algorithm,
            "checksum_value": key.checksum_value,
            "last_modified": key.last_modified.isoformat(),
        }

    def _store(self, bucket: str, name: str, key: FakeKey, record: Record) -> None:
        folder = self.data / bucket
        folder.mkdir(parents=True, exist_ok=True)
        value = key.value
        file = f"{_name(name)}.{hashlib.sha256(value).hexdigest()}.bin"
        _write(folder / file, value)
        _write(folder / f"{_name(name)}.json", json.dumps({**record, "file": file}, sort_keys=True).encode())
        previous = self._files.get((bucket, name))
        if previous is not None and previous != file:
            (folder / previous).unlink(missing_ok=True)
        self._known[(bucket, name)], self._files[(bucket, name)] = record, file

    def _remove(self, bucket: str, name: str) -> None:
        del self._known[(bucket, name)]
        file = self._files.pop((bucket, name))
        folder = self.data / bucket
        (folder / f"{_name(name)}.json").unlink(missing_ok=True)
        (folder / file).unlink(missing_ok=True)


def _settled(snapshot: Callable[[], list[Any]]) -> Iterable[Any]:
    """``snapshot()``, taken again if another request changed the dict while it was copied."""
    for _ in range(10):
        with contextlib.suppress(RuntimeError):
            return snapshot()
    return snapshot()


class Persisting:
    """A WSGI middleware: the S3 app, with :meth:`ObjectMirror.sync` after each request that can change objects."""

    def __init__(self, app: Any, mirror: ObjectMirror) -> None:
        self.app, self.mirror = app, mirror

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        result = self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            try:
                self.mirror.sync()
            except OSError as e:  # a full disk: the store still answers; say so once per request
                log.error("localstore: cannot write objects to %s: %s", self.mirror.data, e)
        return result
