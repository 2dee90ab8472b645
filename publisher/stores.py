"""Where releases live: one small protocol, an S3 implementation and a local-folder one.

The publisher needs only these operations; anything S3-specific stays in :class:`S3Store`.
Both stores give the same guarantees: artifacts are created only if absent, and the manifest is
replaced only if nobody replaced it since it was read (compare-and-swap on its ETag).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .errors import AlreadyExists, PreconditionFailed, StoreError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARTIFACT_CACHE_CONTROL = "public, max-age=31536000, immutable"
MANIFEST_CACHE_CONTROL = "no-cache"
MANIFEST_CONTENT_TYPE = "application/json"
ARTIFACT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or HEAD tells about one object."""

    key: str
    size: int
    etag: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Stored:
    """A small object read whole, with the ETag to compare-and-swap against."""

    data: bytes
    etag: str


class Store(Protocol):
    """The storage operations the publisher uses. Keys are relative to the store's prefix."""

    url: str

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursive)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size and sha256 (when known without reading) of ``key``, or None if absent."""
        ...

    def sha256_of(self, key: str) -> str:
        """sha256 of ``key``'s content, reading it if the store keeps no checksum."""
        ...

    def read(self, key: str) -> Stored | None:
        """A small object's bytes and ETag, or None if absent."""
        ...

    def create_file(self, key: str, path: Path, *, sha256: str, content_type: str, cache_control: str) -> None:
        """Upload ``path`` to ``key`` only if ``key`` is absent; raises AlreadyExists otherwise."""
        ...

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        """Write ``data`` if ``key``'s ETag is still ``expect_etag`` (None: still absent); return the new ETag.

        Raises PreconditionFailed when another writer got there first.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (absent is fine)."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or any(p in {"", ".", ".."} for p in parts) or "\\" in key:
        raise StoreError(f"refusing store key {key!r}: it would escape the store prefix")
    return key


class LocalStore:
    """A plain directory, for static HTTPS hosting (nginx, GitHub Pages, ...) and for tests.

    Compare-and-swap uses a lock file beside the manifest; artifacts are created with a hard
    link, which fails atomically if the name is taken.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is not a directory; point the store at a folder")

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                out.append(ObjectInfo(path.relative_to(self.root).as_posix(), path.stat().st_size))
        return out

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return ObjectInfo(key, size)

    def sha256_of(self, key: str) -> str:
        digest = hashlib.sha256()
        with self._path(key).open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def read(self, key: str) -> Stored | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return Stored(data, hashlib.sha256(data).hexdigest())

    def _write_temp(self, path: Path, data: bytes | None, source: Path | None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        with temp.open("xb") as out:
            if source is not None:
                with source.open("rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
            elif data is not None:
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        temp.chmod(0o644)
        return temp

    def create_file(self, key: str, path: Path, *, sha256: str, content_type: str, cache_control: str) -> None:
        dest = self._path(key)
        temp = self._write_temp(dest, None, path)
        try:
            os.link(temp, dest)
        except FileExistsError as e:
            raise AlreadyExists(f"{key} already exists in {self.url}") from e
        finally:
            temp.unlink()

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        from filelock import FileLock

        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(dest.with_name(f".{dest.name}.lock")), timeout=60):
            current = self.read(key)
            if (current.etag if current else None) != expect_etag:
                raise PreconditionFailed(f"{key} changed since it was read")
            temp = self._write_temp(dest, data, None)
            os.replace(temp, dest)
        return hashlib.sha256(data).hexdigest()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


def _client_error_code(e: Exception) -> str:
    response: Any = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class S3Store:
    """An S3-compatible bucket (AWS S3, MinIO, R2, ...) through boto3's standard configuration.

    Credentials, region and CA bundle come from boto3's usual chain (env vars, profiles, instance
    roles, ``AWS_CA_BUNDLE``); the endpoint from ``endpoint_url`` or ``AWS_ENDPOINT_URL``.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        if client is None:
            import boto3
            from botocore.config import Config

            # Path-style addressing works on AWS, MinIO, R2 and moto alike; retries are boto3's.
            client = boto3.client("s3", endpoint_url=endpoint_url, config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 5}))
        self.client = client

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except NoCredentialsError as e:
            raise StoreError(f"no credentials for {self.url}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE") from e
        except ClientError as e:
            code = _client_error_code(e)
            if code in {"PreconditionFailed", "412"}:
                raise PreconditionFailed(f"{what}: changed or created by another writer") from e
            if code in {"NoSuchBucket"}:
                raise StoreError(f"bucket {self.bucket!r} does not exist at this endpoint; create it or check --endpoint-url") from e
            if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                raise StoreError(f"{what}: access denied ({code}); check the credentials and the bucket policy") from e
            raise StoreError(f"{what}: S3 error {code}: {e}") from e
        except BotoCoreError as e:
            raise StoreError(f"{what}: {e}; check --endpoint-url/AWS_ENDPOINT_URL and that the store is up") from e

    def list(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        full = self._key(prefix.rstrip("/")) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"list {full}", self.client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix) + 1 :] if self.prefix else obj["Key"]
                out.append(ObjectInfo(rel, int(obj["Size"]), obj.get("ETag")))
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            meta = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if _client_error_code(e) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StoreError(f"head {key}: S3 error {_client_error_code(e)}") from e
        return ObjectInfo(key, int(meta["ContentLength"]), meta.get("ETag"), meta.get("Metadata", {}).get("sha256"))

    def sha256_of(self, key: str) -> str:
        info = self.head(key)
        if info is not None and info.sha256:
            return info.sha256
        body = self._call(f"get {key}", self.client.get_object, Key=self._key(key))["Body"]
        digest = hashlib.sha256()
        for block in iter(lambda: body.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()

    def read(self, key: str) -> Stored | None:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if _client_error_code(e) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StoreError(f"get {key}: S3 error {_client_error_code(e)}") from e
        return Stored(obj["Body"].read(), obj["ETag"])

    def create_file(self, key: str, path: Path, *, sha256: str, content_type: str, cache_control: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        try:
            with path.open("rb") as body:
                self._call(
                    f"upload {key}",
                    self.client.put_object,
                    Key=self._key(key),
                    Body=body,
                    IfNoneMatch="*",
                    ContentType=content_type,
                    CacheControl=cache_control,
                    Metadata={"sha256": sha256},
                    ChecksumSHA256=checksum,
                )
        except PreconditionFailed as e:
            raise AlreadyExists(f"{key} already exists in {self.url}") from e

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        condition = {"IfMatch": expect_etag} if expect_etag else {"IfNoneMatch": "*"}
        resp = self._call(
            f"write {key}",
            self.client.put_object,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            CacheControl=cache_control,
            **condition,
        )
        return str(resp.get("ETag", ""))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete_object, Key=self._key(key))


def open_store(url: str, *, endpoint_url: str | None = None) -> Store:
    """``s3://bucket[/prefix]`` → S3Store; a path or ``file://`` URL → LocalStore."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"store URL {url!r} names no bucket; use s3://bucket[/prefix]")
        return S3Store(parts.netloc, parts.path, endpoint_url)
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme and len(parts.scheme) > 1:
        raise StoreError(f"unsupported store URL {url!r}; use s3://bucket[/prefix] or a local folder")
    return LocalStore(Path(url))
