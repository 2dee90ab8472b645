"""Tests of the local S3 store (infra/): moto behind two HTTPS ports on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from gupper_infra.client import LocalStore, LocalStoreError, start_local_store

HTTP_TIMEOUT = 10.0
KEY = "releases/app-1.0.0.bin"
BODY = bytes(range(256)) * 4
CONTENT_TYPE = "application/octet-stream"
CACHE_CONTROL = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStore]:
    state_dir = tmp_path_factory.mktemp("localstore")
    with start_local_store(state_dir, access_log=state_dir / "access.log") as running:
        yield running


@pytest.fixture(scope="module")
def s3(store: LocalStore) -> Any:
    return boto3.client("s3", **store.boto3_kwargs())


@pytest.fixture(scope="module")
def etag(store: LocalStore, s3: Any) -> str:
    response = s3.put_object(
        Bucket=store.bucket,
        Key=KEY,
        Body=BODY,
        ContentType=CONTENT_TYPE,
        CacheControl=CACHE_CONTROL,
    )
    return str(response["ETag"])


def origin(store: LocalStore) -> str:
    parts = urlsplit(store.public_base)
    return f"{parts.scheme}://{parts.netloc}"


def read_access_log(store: LocalStore) -> list[dict[str, Any]]:
    path = store.state_dir / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ready_info_and_state_files(store: LocalStore) -> None:
    info = json.loads((store.state_dir / "store.json").read_text())
    assert info["s3_endpoint"] == store.s3_endpoint
    assert info["public_base"] == store.public_base
    assert store.public_base.startswith("https://127.0.0.1:")
    assert store.public_base.endswith("/gupper")
    assert info["pid"] == store.pid == store.process.pid
    assert store.ca_path.read_text().count("BEGIN CERTIFICATE") == 1
    for key_file in ("ca-key.pem", "server-key.pem"):
        mode = stat.S_IMODE((store.state_dir / key_file).stat().st_mode)
        assert mode == 0o600, key_file
    env = store.s3_env()
    assert env["AWS_CA_BUNDLE"] == store.ca
    assert env["AWS_ENDPOINT_URL"] == store.s3_endpoint


def test_anonymous_get_passes_object_and_headers(store: LocalStore, etag: str) -> None:
    r = requests.get(store.url(KEY), verify=store.ca, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.content == BODY
    assert r.headers["Content-Type"] == CONTENT_TYPE
    assert r.headers["Cache-Control"] == CACHE_CONTROL
    assert r.headers["ETag"] == etag
    assert int(r.headers["Content-Length"]) == len(BODY)

    # Credentials and signatures are stripped, not evaluated: still anonymous.
    r = requests.get(
        store.url(KEY) + "?X-Amz-Signature=bogus&X-Amz-Credential=x",
        headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x/y/z/s3/aws4_request"},
        verify=store.ca,
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 200
    assert r.content == BODY


def test_if_none_match_gives_304(store: LocalStore, etag: str) -> None:
    r = requests.get(
        store.url(KEY),
        headers={"If-None-Match": etag},
        verify=store.ca,
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 304
    assert r.content == b""


def get_until_server_closes(store: LocalStore, key: str, headers: dict[str, str]) -> bytes:
    """Raw HTTPS GET read to EOF: the server closes only after the response ended,
    so by then its access-log line has been written."""
    parts = urlsplit(store.url(key))
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    lines = [f"GET {parts.path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    context = ssl.create_default_context(cafile=store.ca)
    chunks = []
    with (
        socket.create_connection((host, port), timeout=HTTP_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(request)
        while data := tls.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_range_gives_206(store: LocalStore, etag: str) -> None:
    r = requests.get(
        store.url(KEY),
        headers={"Range": "bytes=2-5"},
        verify=store.ca,
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 206
    assert r.content == BODY[2:6]
    assert r.headers["Content-Range"] == f"bytes 2-5/{len(BODY)}"


def test_access_log_records_range_and_bytes_sent(store: LocalStore, etag: str) -> None:
    response = get_until_server_closes(store, KEY, {"Range": "bytes=10-19"})
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    assert body == BODY[10:20]

    entries = [e for e in read_access_log(store) if e["range"] == "bytes=10-19"]
    assert len(entries) == 1
    assert entries[0]["status"] == 206
    assert entries[0]["bytes_sent"] == 10
    assert entries[0]["method"] == "GET"
    assert entries[0]["path"] == f"/{store.bucket}/{KEY}"


def test_head_has_length_but_no_body(store: LocalStore, etag: str) -> None:
    r = requests.head(store.url(KEY), verify=store.ca, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(BODY)
    assert r.headers["ETag"] == etag
    assert r.content == b""

    missing = requests.head(store.url("no/such/key"), verify=store.ca, timeout=HTTP_TIMEOUT)
    assert missing.status_code == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
def test_writes_through_public_front_are_refused(store: LocalStore, s3: Any, etag: str, method: str) -> None:
    r = requests.request(method, store.url(KEY), data=b"evil", verify=store.ca, timeout=HTTP_TIMEOUT)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    unchanged = s3.get_object(Bucket=store.bucket, Key=KEY)
    assert unchanged["ETag"] == etag
    assert unchanged["Body"].read() == BODY


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/gupper",
        "/gupper/",
        "/gupper?list-type=2",
        "/gupper/?list-type=2&prefix=releases/",
        "/gupper/releases/?delimiter=/",
        "/other-bucket/key",
    ],
)
def test_listing_through_public_front_is_refused(store: LocalStore, etag: str, path: str) -> None:
    r = requests.get(origin(store) + path, verify=store.ca, timeout=HTTP_TIMEOUT)
    assert r.status_code == 403
    assert b"ListBucketResult" not in r.content


def test_default_trust_store_refuses_the_local_ca(store: LocalStore) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(store.url(KEY), verify=True, timeout=HTTP_TIMEOUT)


def test_conditional_put_on_existing_key_fails_with_412(store: LocalStore, s3: Any, etag: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=store.bucket, Key=KEY, Body=b"other", IfNoneMatch="*")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"


def test_restart_keeps_the_same_ca(tmp_path: Path) -> None:
    with start_local_store(tmp_path) as first:
        ca_before = first.ca_path.read_bytes()
        assert first.stop() == 0
    assert not (tmp_path / "store.json").exists()
    with start_local_store(tmp_path) as second:
        assert second.ca_path.read_bytes() == ca_before
        r = requests.get(second.url("missing"), verify=second.ca, timeout=HTTP_TIMEOUT)
        assert r.status_code == 404
        assert second.stop() == 0


def test_start_failure_reports_stderr(tmp_path: Path) -> None:
    with pytest.raises(LocalStoreError, match="invalid S3 bucket name"):
        start_local_store(tmp_path, bucket="Not_A_Bucket", timeout=30.0)
