"""What each S3 implementation does with the requests Gupper's safety rests on. Pure.

The publisher needs three things from a bucket: a create-only write (``If-None-Match: *``) for
immutable artifacts, a compare-and-swap (``If-Match: <etag>``) for the channel state and the
manifest, and an integrity check of the uploaded bytes. S3 implementations differ in exactly
these corners (docs/s3-compatibility.md has the table, with sources), so :class:`S3Compat`
names the differences and :data:`PROFILES` holds one per known store. :func:`detect` picks one
from the endpoint's host name or, for self-hosted servers, from the headers a HEAD of the
bucket answers with; anything unknown gets ``generic``, which is slower for large files but
assumes nothing beyond conditional ``PutObject``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import StoreError

# S3's limit for one PutObject (and RGW's default rgw_max_put_size).
MAX_SINGLE_PUT = 5 << 30


@dataclass(frozen=True)
class S3Compat:
    """How to talk to one kind of S3 store.

    - ``checksum``: ``sha256`` sends ``x-amz-checksum-sha256`` (whole file on a single PUT, per
      part on multipart uploads), for stores that verify it; ``md5`` sends ``Content-MD5`` on
      single PUTs, which every S3 implementation verifies, and sends multipart parts without a
      flexible checksum (a store that does not implement them refuses such parts).
    - ``if_match_quoted``: the form of the ETag in ``If-Match`` tried first (AWS takes the quoted
      ETag it returns; Ceph RGW compares literally and takes only the unquoted one). The store
      flips to the other form once if the first is refused while the ETag is unchanged.
    - ``conditional_complete``: the store honours ``If-None-Match: *`` on
      CompleteMultipartUpload. Without it, artifacts go up as one conditional PUT (up to 5 GiB),
      the only create-only write such a store offers.
    - ``conditional_writes``: the store implements ``If-None-Match``/``If-Match`` on PutObject at
      all. Without them concurrent publishers can lose releases, so the publisher refuses.
    - ``conditions_need_versioning_off``: the conditions stop working on a bucket with versioning
      enabled (Ceph RGW 16.2: ``If-None-Match`` ignored, ``If-Match`` refused in both forms); the
      publisher asks the bucket's versioning before its first write and refuses.
    """

    name: str
    checksum: str = "md5"
    if_match_quoted: bool = True
    conditional_complete: bool = False
    conditional_writes: bool = True
    conditions_need_versioning_off: bool = False
    note: str = ""


PROFILES: Mapping[str, S3Compat] = {
    p.name: p
    for p in (
        S3Compat("aws", checksum="sha256", conditional_complete=True),
        S3Compat("minio", checksum="sha256", conditional_complete=True),
        S3Compat("r2", checksum="sha256", conditional_complete=True),
        S3Compat(
            "b2",
            conditional_writes=False,
            note="Backblaze B2's S3 API documents no If-None-Match/If-Match on PutObject and no "
            "x-amz-checksum-* headers",
        ),
        S3Compat("ceph", if_match_quoted=False, conditions_need_versioning_off=True),
        S3Compat("moto", checksum="sha256", conditional_complete=True),
        S3Compat("generic"),
    )
}
AUTO = "auto"
CHOICES = (AUTO, *PROFILES)

# Hosted services are known by their endpoint's host name.
_HOSTS = (
    ("amazonaws.com", "aws"),
    ("amazonaws.com.cn", "aws"),
    ("r2.cloudflarestorage.com", "r2"),
    ("backblazeb2.com", "b2"),
)


def profile(name: str) -> S3Compat:
    """The profile called ``name``; says which exist for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise StoreError(f"unknown S3 store kind {name!r}; choose one of {', '.join(CHOICES)}") from None


def by_endpoint(endpoint_url: str | None) -> S3Compat | None:
    """The profile of a hosted service named by ``endpoint_url`` (None: AWS), or None to ask the server."""
    if not endpoint_url:
        return PROFILES["aws"]
    host = (urlsplit(endpoint_url).hostname or "").lower().rstrip(".")
    for suffix, name in _HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return PROFILES[name]
    return None


def by_headers(headers: Mapping[str, str]) -> S3Compat:
    """The profile of a self-hosted server from the headers of its answer to a HEAD of the bucket."""
    lowered = {k.lower(): v for k, v in headers.items()}
    server = lowered.get("server", "").lower()
    if any(k.startswith("x-rgw-") for k in lowered):  # RGW reports object counts and quotas on every HEAD bucket
        return PROFILES["ceph"]
    if server.startswith("minio"):
        return PROFILES["minio"]
    if server.startswith("amazons3"):
        return PROFILES["aws"]
    if server.startswith("werkzeug"):  # moto's server (the local store behind tests and the demo)
        return PROFILES["moto"]
    return PROFILES["generic"]


def quoted(etag: str) -> str:
    """``etag`` in double quotes, as HTTP writes entity tags."""
    return f'"{bare(etag)}"'


def bare(etag: str) -> str:
    """``etag`` without its double quotes (and without a weak ``W/`` prefix)."""
    return etag.removeprefix("W/").strip('"')
