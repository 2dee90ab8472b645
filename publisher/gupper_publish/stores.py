"""Where releases live: one small protocol, an S3 implementation and a local-folder one.

The publisher needs only these operations; anything S3-specific stays in :class:`S3Store`.
Both stores give the same guarantees: artifacts are created only if absent, and the manifest is
replaced only if nobody replaced it since it was read (compare-and-swap on its ETag). S3
implementations differ in how they take the requests behind those guarantees; :mod:`.s3compat`
names the differences and docs/s3-compatibility.md lists them per store.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import urlsplit

from . import locks, s3compat
from .artifacts import hash_file
from .errors import (
    AlreadyExistsError,
    ImmutableConflictError,
    PreconditionFailedError,
    StoreError,
    StoreUnsupportedError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARTIFACT_CACHE_CONTROL = "public, max-age=31536000, immutable"
MANIFEST_CACHE_CONTROL = "no-cache"
MANIFEST_CONTENT_TYPE = "application/json"
ARTIFACT_CONTENT_TYPE = "application/octet-stream"
# Builds of 20-30 MB go up in a few parallel parts; below the threshold one PUT is cheaper.
MULTIPART_THRESHOLD = 16 << 20
MULTIPART_CHUNKSIZE = 8 << 20
MULTIPART_CONCURRENCY = 8

Progress = Callable[[int], None]
"""Called with the number of bytes just sent (boto3's ``Callback`` convention)."""


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
        """Upload ``path`` to ``key`` only if ``key`` is absent; raises AlreadyExistsError otherwise.

        ``progress`` is called with byte counts as they are sent.
        """
        ...

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        """Write ``data`` if ``key``'s ETag is still ``expect_etag`` (None: still absent); return the new ETag.

        Raises PreconditionFailedError when another writer got there first.
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

    Compare-and-swap uses a lock file beside the manifest, there only while it is held
    (:mod:`.locks`); artifacts are created with a hard link, which fails atomically if the name is taken.
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
        return hash_file(self._path(key))[0]

    def read(self, key: str) -> Stored | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return Stored(data, hashlib.sha256(data).hexdigest())

    def _write_temp(
        self, path: Path, data: bytes | None, source: Path | None, progress: Progress | None = None
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        with temp.open("xb") as out:
            if source is not None:
                with source.open("rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
                        if progress is not None:
                            progress(len(block))
            elif data is not None:
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        temp.chmod(0o644)
        return temp

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
        dest = self._path(key)
        temp = self._write_temp(dest, None, path, progress)
        try:
            os.link(temp, dest)
        except FileExistsError as e:
            raise AlreadyExistsError(f"{key} already exists in {self.url}") from e
        finally:
            temp.unlink()

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Its file is removed on release: nothing stays beside what a static host serves (issue 22).
        with locks.held(dest.with_name(f".{dest.name}.lock"), timeout=60):
            current = self.read(key)
            if (current.etag if current else None) != expect_etag:
                raise PreconditionFailedError(f"{key} changed since it was read")
            temp = self._write_temp(dest, data, None)
            os.replace(temp, dest)
        return hashlib.sha256(data).hexdigest()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # A pruned release leaves empty <app>/<version>/[patches/] behind; a static host would list them.
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break  # not empty: something else still lives there
            parent = parent.parent


def _client_error_code(e: Exception) -> str:
    response: Any = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or str(
        response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


def _tls_reason(e: BaseException) -> str:
    """What the certificate check said (``certificate has expired``, ``unable to get local issuer
    certificate``, ...), from the first ssl error in ``e``'s chain (botocore wraps it in urllib3's)."""
    import ssl

    seen: list[BaseException] = []
    todo = [e]
    while todo and len(seen) < 16:
        x = todo.pop(0)
        if isinstance(x, ssl.SSLCertVerificationError):
            return str(x.verify_message)
        seen.append(x)
        todo += [c for c in (x.__cause__, x.__context__, *getattr(x, "args", ())) if isinstance(c, BaseException)]
        todo += [c for c in getattr(x, "kwargs", {}).values() if isinstance(c, BaseException)]
    return "the certificate could not be verified"


def _refuses_conditions(code: str, e: Exception) -> bool:
    """True when a conditional write's error says the store does not know the condition headers.

    501 NotImplemented is unambiguous; a 400 counts only when its message is about those headers
    (B2 answers unknown headers with "Unsupported header '...' received for this API call").
    """
    if code in {"NotImplemented", "501"}:
        return True
    message = str(getattr(e, "response", {}).get("Error", {}).get("Message", "")).lower()
    return code in {"InvalidArgument", "InvalidRequest", "400"} and (
        "if-match" in message or "if-none-match" in message
    )


class S3Store:
    """An S3-compatible bucket (AWS S3, MinIO, R2, Ceph RGW, ...) through boto3's standard configuration.

    Credentials, region and CA bundle come from boto3's usual chain (env vars, profiles, instance
    roles, ``AWS_CA_BUNDLE``); the endpoint from ``endpoint_url`` or ``AWS_ENDPOINT_URL``. How to
    word checksums, ETags and create-only uploads for this store comes from ``compat`` (a
    :mod:`~gupper_publish.s3compat` profile name, or ``auto`` to detect it on first use).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        client: S3Client | None = None,
        *,
        compat: str | s3compat.S3Compat = s3compat.AUTO,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_CHUNKSIZE,
        max_concurrency: int = MULTIPART_CONCURRENCY,
        max_single_put: int = s3compat.MAX_SINGLE_PUT,
    ) -> None:
        self.bucket = bucket
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.max_concurrency = max_concurrency
        self.max_single_put = max_single_put
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._compat = (
            compat
            if isinstance(compat, s3compat.S3Compat)
            else None
            if compat == s3compat.AUTO
            else s3compat.profile(compat)
        )
        if client is None:
            import boto3
            from botocore.config import Config

            # Path-style addressing works on AWS, MinIO, R2, RGW and moto alike; retries are boto3's.
            # Checksums only when an operation requires one: since boto3 1.36 the default sends every
            # upload as aws-chunked with a trailing CRC32, which RGW (411) and B2 refuse. The
            # checksums Gupper wants it asks for explicitly, per store (see _integrity).
            config = Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": 5},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        self.client = client
        self._if_match_quoted: bool | None = None
        self._versioning_checked = False

    @property
    def compat(self) -> s3compat.S3Compat:
        """The store's profile: given, or detected once from the endpoint or a HEAD of the bucket."""
        if self._compat is None:
            found = s3compat.by_endpoint(self.client.meta.endpoint_url)
            if found is None:
                found = s3compat.by_headers(self._bucket_headers())
            self._compat = found
        return self._compat

    def _bucket_headers(self) -> dict[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        meta: Any
        try:
            meta = self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:  # a missing bucket answers too: its headers still name the server
            meta = getattr(e, "response", None) or {}
        except BotoCoreError as e:
            raise self._translate(f"look up bucket {self.bucket}", e) from e
        return dict(meta.get("ResponseMetadata", {}).get("HTTPHeaders", {}))

    def _check_writable(self, what: str) -> None:
        """Refuse, before the first write, a store on which conditional writes cannot work.

        Ceph RGW with bucket versioning Enabled ignores ``If-None-Match`` and answers 412 to
        ``If-Match`` in both forms: the first publish went through, every later one failed after
        uploading its artifact (issue 22). Its versioning state is asked once per store.
        """
        if not self.compat.conditional_writes:
            raise self._unsupported(what)
        if self._versioning_checked or not self.compat.conditions_need_versioning_off:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            status = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except ClientError as e:
            if _client_error_code(e) in {"AccessDenied", "403"}:
                self._versioning_checked = True  # cannot tell: a refused condition still says what went wrong
                return
            raise self._translate(f"read the versioning of bucket {self.bucket}", e) from e
        except BotoCoreError as e:
            raise self._translate(f"read the versioning of bucket {self.bucket}", e) from e
        self._versioning_checked = True
        if status == "Enabled":
            raise StoreUnsupportedError(
                f"{what}: bucket {self.bucket} has versioning enabled, and {self.compat.name} then ignores "
                "If-None-Match and refuses If-Match, so gupper-publish cannot write it safely; suspend its "
                "versioning (aws s3api put-bucket-versioning --versioning-configuration Status=Suspended) or use "
                "another bucket (docs/s3-compatibility.md)"
            )

    def _unsupported(self, what: str) -> StoreUnsupportedError:
        note = f" ({self.compat.note})" if self.compat.note else ""
        return StoreUnsupportedError(
            f"{what}: {self.url} does not support conditional writes (If-None-Match/If-Match "
            f"on PutObject){note}; without them two publishers "
            "can silently overwrite each other's releases, so gupper-publish refuses. Use a "
            "store that has them (docs/s3-compatibility.md)"
        )

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (BotoCoreError, ClientError) as e:
            raise self._translate(what, e, conditional=any(k in kwargs for k in ("IfMatch", "IfNoneMatch"))) from e

    def _translate(self, what: str, e: Exception, *, conditional: bool = False) -> StoreError:
        """One StoreError (with what to do) for a botocore exception."""
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(e, NoCredentialsError):
            return StoreError(
                f"no credentials for {self.url}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            )
        if isinstance(e, ClientError):
            code = _client_error_code(e)
            if code in {"PreconditionFailed", "412"}:
                return PreconditionFailedError(f"{what}: changed or created by another writer")
            if code in {"NoSuchBucket"}:
                return StoreError(
                    f"bucket {self.bucket!r} does not exist at this endpoint; run 'gupper-publish init "
                    f"{self.url}' or check --endpoint-url"
                )
            if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                return StoreError(f"{what}: access denied ({code}); check the credentials and the bucket policy")
            if conditional and _refuses_conditions(code, e):
                return self._unsupported(what)
            if code in {"MissingContentLength", "411"}:
                return StoreError(
                    f"{what}: the store refused the request's framing ({code}); pass --s3-compat for "
                    "your store (docs/s3-compatibility.md)"
                )
            return StoreError(f"{what}: S3 error {code}: {e}")
        from botocore.exceptions import SSLError

        if isinstance(e, SSLError):
            return StoreError(
                f"{what}: TLS verification failed for {self.client.meta.endpoint_url} ({_tls_reason(e)}); if the "
                "store uses a private CA, point AWS_CA_BUNDLE at its certificate (PEM)"
            )
        return StoreError(f"{what}: {e}; check --endpoint-url/AWS_ENDPOINT_URL and that the store is up")

    def _objects(self, full_prefix: str) -> Iterator[dict[str, Any]]:
        """Every object listed under ``full_prefix`` (the whole key's start), page after page."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": full_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"list {full_prefix}", self.client.list_objects_v2, **kwargs)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def list(self, prefix: str) -> list[ObjectInfo]:
        full = self._key(prefix.rstrip("/")) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        return [
            ObjectInfo(
                obj["Key"][len(self.prefix) + 1 :] if self.prefix else obj["Key"], int(obj["Size"]), obj.get("ETag")
            )
            for obj in self._objects(full)
        ]

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            meta = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if _client_error_code(e) in {"404", "NoSuchKey", "NotFound"}:
                return None  # a missing bucket looks the same to a HEAD; read() (a GET) tells them apart
            raise self._translate(f"head {key}", e) from e
        except BotoCoreError as e:
            raise self._translate(f"head {key}", e) from e
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
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if _client_error_code(e) in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise self._translate(f"get {key}", e) from e
        except BotoCoreError as e:
            raise self._translate(f"get {key}", e) from e
        return Stored(obj["Body"].read(), obj["ETag"])

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
        self._check_writable(f"upload {key}")
        compat = self.compat
        size = path.stat().st_size
        if size >= self.multipart_threshold and compat.conditional_complete:
            self._create_multipart(
                key, path, sha256=sha256, content_type=content_type, cache_control=cache_control, progress=progress
            )
            return
        if size > self.max_single_put:
            raise StoreUnsupportedError(
                f"{key} is {size} bytes: on a store that ignores If-None-Match on "
                f"CompleteMultipartUpload ({compat.name}) an artifact can be created "
                f"create-only only by one PUT, and one PUT takes at most {self.max_single_put} "
                "bytes; if your store does honour it, pass --s3-compat "
                "(docs/s3-compatibility.md)"
            )
        # One create-only PUT, with a digest the store recomputes and refuses on mismatch.
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
                    **self._integrity(path, sha256),
                )
        except PreconditionFailedError as e:
            raise AlreadyExistsError(f"{key} already exists in {self.url}") from e
        if progress is not None:
            progress(size)

    def _integrity(self, path: Path, sha256: str) -> dict[str, str]:
        """The checksum header this store verifies for a single PUT of ``path``."""
        if self.compat.checksum == "sha256":
            return {
                "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
            }
        # RGW accepts a wrong x-amz-checksum-sha256 and stores none; Content-MD5 it checks (400 BadDigest).
        # The MD5 is taken in the same pass as a SHA-256 that must equal the one to be signed, so
        # the store's check ties the stored bytes to the manifest's digest, as SHA-256 does on AWS.
        md5, check = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                md5.update(block)
                check.update(block)
        if check.hexdigest() != sha256:
            raise StoreError(
                f"{path} changed after it was hashed (sha256 {check.hexdigest()[:12]}, expected "
                f"{sha256[:12]}); nothing was uploaded, publish it again"
            )
        return {"ContentMD5": base64.b64encode(md5.digest()).decode("ascii")}

    def _create_multipart(
        self, key: str, path: Path, *, sha256: str, content_type: str, cache_control: str, progress: Progress | None
    ) -> None:
        """Parallel multipart upload through boto3's transfer manager, still create-only.

        Each part carries its SHA256 where the store verifies one (S3 offers SHA256 only per part,
        as a composite checksum, for multipart objects; the whole file's digest goes in the
        metadata). The transfer manager takes no ``IfNoneMatch``, so a one-off event hook adds it
        to the CompleteMultipartUpload of this key: that is the request that makes the object
        appear, and with the condition a concurrent upload of the same name cannot replace it. A
        refused complete makes the transfer manager abort the upload, so no parts are left behind.
        Only stores whose profile says they honour that condition come here; the object is read
        back afterwards all the same, and one holding other bytes is refused loudly.
        """
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        full_key = self._key(key)

        def create_only(params: dict[str, Any], **_: Any) -> None:
            if params.get("Bucket") == self.bucket and params.get("Key") == full_key:
                params["IfNoneMatch"] = "*"

        event, hook_id = (
            "before-parameter-build.s3.CompleteMultipartUpload",
            f"gupper-create-only-{secrets.token_hex(8)}",
        )
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",  # the hook above is for the classic (botocore) client
        )
        extra = {"ContentType": content_type, "CacheControl": cache_control, "Metadata": {"sha256": sha256}}
        if self.compat.checksum == "sha256":
            extra["ChecksumAlgorithm"] = "SHA256"
        self.client.meta.events.register(event, create_only, unique_id=hook_id)
        try:
            self.client.upload_file(str(path), self.bucket, full_key, ExtraArgs=extra, Config=config, Callback=progress)
        except S3UploadFailedError as e:
            # boto3 wraps the ClientError without chaining it explicitly; it is the context.
            cause = e.__context__ if isinstance(e.__context__, ClientError) else e
            error = self._translate(f"upload {key}", cause)
            if isinstance(error, PreconditionFailedError):
                raise AlreadyExistsError(f"{key} already exists in {self.url}") from e
            raise error from e
        except (BotoCoreError, ClientError) as e:
            raise self._translate(f"upload {key}", e) from e
        finally:
            self.client.meta.events.unregister(event, unique_id=hook_id)
        self._verify_created(key, path.stat().st_size, sha256)

    def _verify_created(self, key: str, size: int, sha256: str) -> None:
        """Refuse loudly when the object just completed is not ours: the store let another upload replace it."""
        info = self.head(key)
        if info is None or info.size != size or info.sha256 != sha256:
            found = "nothing" if info is None else f"{info.size} bytes with sha256 {info.sha256}"
            raise ImmutableConflictError(
                f"{key}: after this publisher's multipart upload completed, the store holds "
                f"{found}, not this file: a concurrent upload of the same "
                f"name replaced it, so {self.url} does not honour If-None-Match on "
                "CompleteMultipartUpload. Check the release ('gupper-publish list'), "
                "and publish with --s3-compat generic (one create-only PUT per artifact); see docs/s3-compatibility.md"
            )

    def ensure_bucket(self) -> bool:
        """Create the bucket in the client's region if it is missing; True if this call created it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as e:
            code = _client_error_code(e)
            if code not in {"404", "NoSuchBucket", "NotFound"}:
                raise StoreError(
                    f"bucket {self.bucket!r} exists but these credentials cannot use it ({code}); pick "
                    "another name or fix the credentials"
                ) from e
        except BotoCoreError as e:
            raise self._translate(f"look up bucket {self.bucket}", e) from e
        region = self.client.meta.region_name
        # us-east-1 is the one region that refuses an explicit LocationConstraint.
        where: dict[str, Any] = (
            {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        try:
            self.client.create_bucket(Bucket=self.bucket, **where)
        except ClientError as e:
            if _client_error_code(e) == "BucketAlreadyOwnedByYou":  # a concurrent init got there first
                return False
            raise self._translate(f"create bucket {self.bucket}", e) from e
        except BotoCoreError as e:
            raise self._translate(f"create bucket {self.bucket}", e) from e
        return True

    def put_bucket_policy(self, policy: str) -> None:
        """Replace the bucket policy with ``policy`` (JSON text)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_bucket_policy(Bucket=self.bucket, Policy=policy)
        except ClientError as e:
            if _client_error_code(e) in {"AccessDenied", "403"}:
                raise StoreError(
                    f"bucket {self.bucket!r} refused a public-read policy: on AWS turn off "
                    "BlockPublicPolicy and RestrictPublicBuckets for it "
                    "(or serve through CloudFront with an Origin Access Control, see infra/README.md)"
                ) from e
            raise self._translate(f"put the policy of bucket {self.bucket}", e) from e
        except BotoCoreError as e:
            raise self._translate(f"put the policy of bucket {self.bucket}", e) from e

    def swap(self, key: str, data: bytes, *, expect_etag: str | None, content_type: str, cache_control: str) -> str:
        self._check_writable(f"write {key}")
        if expect_etag is None:
            return self._put_small(key, data, {"IfNoneMatch": "*"}, content_type, cache_control)
        if self._if_match_quoted is None:
            self._if_match_quoted = self.compat.if_match_quoted
        for attempt in range(2):
            form = s3compat.quoted(expect_etag) if self._if_match_quoted else s3compat.bare(expect_etag)
            try:
                return self._put_small(key, data, {"IfMatch": form}, content_type, cache_control)
            except PreconditionFailedError:
                # Lost a race, or the store wants the ETag in the other form (RGW compares it
                # literally): only an unchanged object tells the second apart from the first.
                current = self.head(key)
                if current is None or current.etag is None or s3compat.bare(current.etag) != s3compat.bare(expect_etag):
                    raise
                if attempt == 0:
                    self._if_match_quoted = not self._if_match_quoted
        raise StoreUnsupportedError(
            f"write {key}: {self.url} refused If-Match with the object's current ETag, quoted "
            "and unquoted, so it cannot replace an object "
            "only if unchanged (compare-and-swap), which safe concurrent publishing needs; see docs/s3-compatibility.md"
        )

    def _put_small(
        self, key: str, data: bytes, condition: dict[str, str], content_type: str, cache_control: str
    ) -> str:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
        resp = self._call(
            f"write {key}",
            self.client.put_object,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            CacheControl=cache_control,
            ContentMD5=md5,
            **condition,
        )
        return str(resp.get("ETag", ""))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete_object, Key=self._key(key))

    def list_from(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """Every object whose full key starts with ``prefix`` as it is (``logs/2026-12-`` too, not only a
        folder), with its size and last-modified time (seconds since the epoch): for reading access logs."""
        for obj in self._objects(prefix):
            yield obj["Key"], int(obj["Size"]), obj["LastModified"].timestamp()

    def stream(self, full_key: str) -> BinaryIO:
        """The body of the object at ``full_key`` (the whole key, not under the store prefix), read as it arrives."""
        body: BinaryIO = self._call(f"get {full_key}", self.client.get_object, Key=full_key)["Body"]
        return body


def open_store(url: str, *, endpoint_url: str | None = None, s3_compat: str = s3compat.AUTO) -> Store:
    """``s3://bucket[/prefix]`` → S3Store (``s3_compat``: a profile name or ``auto``); a path or ``file://`` URL →
    LocalStore."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"store URL {url!r} names no bucket; use s3://bucket[/prefix]")
        return S3Store(parts.netloc, parts.path, endpoint_url, compat=s3_compat)
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme and len(parts.scheme) > 1:
        raise StoreError(f"unsupported store URL {url!r}; use s3://bucket[/prefix] or a local folder")
    return LocalStore(Path(url))
