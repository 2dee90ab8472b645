"""Tests of the local S3 store (infra/): moto behind two HTTPS ports on 127.0.0.1."""

from __future__ import annotations

import json
import os
import queue
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from gupper import Platform, Updater, UpdaterConfig
from gupper_infra.client import LocalStore, LocalStoreError, start_local_store

from .exe_stubs import exe_stub

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


def ports_of(store: LocalStore) -> list[str]:
    return [str(urlsplit(store.s3_endpoint).port), str(urlsplit(store.public_base).port)]


def publish_to(store: LocalStore, key: Path, build: Path) -> dict[str, Any]:
    """``gupper-publish publish --json`` in a subprocess pointed at ``store`` by its environment, as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUPPER_", "AWS_"))} | store.s3_env()
    command = [
        "publish",
        "--json",
        "--patches",
        "0",
        "--store",
        f"s3://{store.bucket}/apps",
        "--key",
        str(key),
        str(build),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "gupper_publish", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_killed_and_restarted_store_serves_what_was_published_with_its_serials_and_etags(
    tmp_path: Path, keypair: tuple[Path, Any, str]
) -> None:
    """Issue 22 item 11: objects lived in memory only, so installed apps refused the restarted store's
    serial 1 until a ``resign --min-serial``."""
    state, dist = tmp_path / "state", tmp_path / "dist"
    dist.mkdir()

    def build(version: str, size: int) -> Path:
        path = dist / f"app-{version}-linux-amd64"
        path.write_bytes(exe_stub("linux-amd64", os.urandom(size)))
        return path

    exe = tmp_path / "install" / "app"
    exe.parent.mkdir()
    exe.write_bytes(b"#!/bin/sh\necho 1.1.0\n")

    def check(store: LocalStore) -> Any:
        config = UpdaterConfig(
            app="app",
            current_version="1.1.0",
            manifest_url=store.url("apps/app/stable/latest.json"),
            public_keys=(keypair[2],),
            ca_bundle=store.ca,
            executable=str(exe),
            platform=Platform("linux", "amd64"),
            state_dir=str(tmp_path / "app-state"),
        )
        return Updater(config, environ={}).check()

    first = start_local_store(state, keep_objects=True)
    try:
        publish_to(first, keypair[0], build("1.0.0", 1000))
        big = publish_to(first, keypair[0], build("1.1.0", 17 << 20))  # over the multipart threshold
        assert big["manifests"][0]["serial"] == 2
        assert check(first) is None  # up to date; the install has seen serial 2
        manifest = requests.get(first.url("apps/app/stable/latest.json"), verify=first.ca, timeout=HTTP_TIMEOUT)
        artifact = requests.head(
            first.url("apps/app/1.1.0/app-1.1.0-linux-amd64"), verify=first.ca, timeout=HTTP_TIMEOUT
        )
        assert "-" in artifact.headers["ETag"]  # a multipart ETag, not an MD5 of the bytes
        first.process.kill()  # no clean shutdown: nothing may depend on one
        first.process.wait(timeout=10)
    finally:
        first.stop()
    objects = sorted(p.name for p in (state / "objects" / first.bucket).glob("*.json"))
    print(f"\nthe killed store left {len(objects)} objects in {state / 'objects'}")

    s3_port, public_port = ports_of(first)
    with start_local_store(
        state, extra_args=["--s3-port", s3_port, "--public-port", public_port], keep_objects=True
    ) as second:
        assert (second.s3_endpoint, second.public_base) == (first.s3_endpoint, first.public_base)  # the apps' URLs
        again = requests.get(
            second.url("apps/app/stable/latest.json"),
            headers={"If-None-Match": manifest.headers["ETag"]},
            verify=second.ca,
            timeout=HTTP_TIMEOUT,
        )
        assert again.status_code == 304  # the ETag an app holds still matches
        fresh = requests.get(second.url("apps/app/stable/latest.json"), verify=second.ca, timeout=HTTP_TIMEOUT)
        assert fresh.content == manifest.content
        body = requests.get(second.url("apps/app/1.1.0/app-1.1.0-linux-amd64"), verify=second.ca, timeout=HTTP_TIMEOUT)
        assert body.content == (dist / "app-1.1.0-linux-amd64").read_bytes()
        assert body.headers["ETag"] == artifact.headers["ETag"]
        third = publish_to(second, keypair[0], build("1.2.0", 1000))
        assert third["manifests"][0]["serial"] == 3  # the channel went on from its state, not from serial 1
        update = check(second)  # no RollbackError: serial 3 > 2
        assert update is not None and str(update.version) == "1.2.0"


def read_lines(stream: IO[str], until: str, timeout: float) -> list[str]:
    """Lines of ``stream`` up to the first that starts with ``until``, or all that came within ``timeout`` s."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while not (out and out[-1].startswith(until)):
        try:
            out.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return out


def test_the_export_lines_it_prints_point_a_shell_at_it(tmp_path: Path) -> None:
    """``python -m gupper_infra.localstore`` as README "Use it in your app" runs it: the lines it prints,
    pasted into a shell with no AWS settings, are all boto3 (and so gupper-publish) needs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = [sys.executable, "-m", "gupper_infra.localstore", "--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(
        [*command, "--s3-port", "0", "--public-port", "0", "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = read_lines(proc.stdout, until="#", timeout=60)  # READY, the exports, a comment
        assert lines[0].startswith("GUPPER-STORE-READY ") and lines[-1].startswith("# the apps' manifest URLs")
        exports = "".join(lines[1:-1])
        assert all(line.startswith("export ") for line in lines[1:-1]), exports
        probe = (
            "import boto3; print(boto3.client('s3').head_bucket(Bucket='gupper')['ResponseMetadata']['HTTPStatusCode'])"
        )
        shell = subprocess.run(
            ["bash", "-c", f'{exports}\n"$0" -c "$1"', sys.executable, probe],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shell.stdout.strip() == "200", shell.stderr
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # --exit-on-stdin-eof: it stops
        assert proc.wait(timeout=30) == 0


def test_fixed_default_ports_and_a_busy_one_is_one_line(store: LocalStore, tmp_path: Path) -> None:
    from gupper_infra.localstore import PUBLIC_PORT, S3_PORT, parse_args

    args = parse_args(["--state-dir", str(tmp_path)])
    assert (args.s3_port, args.public_port) == (S3_PORT, PUBLIC_PORT) == (19443, 19444)  # the demo's too
    s3_port, public_port = ports_of(store)
    with pytest.raises(
        LocalStoreError,
        match=rf"(?m)^localstore: error: port {s3_port} on 127.0.0.1 is in use \(another store\?\); pass --s3-port",
    ) as err:
        start_local_store(tmp_path / "second", extra_args=["--s3-port", s3_port, "--public-port", public_port])
    assert str(err.value).split("---\n")[-1].count("\n") == 1, str(err.value)  # its stderr: one line


@pytest.mark.parametrize("handler_name", ["_PublicHandler", "_S3Handler"])
def test_both_servers_answer_without_nagle_as_production_servers_do(tmp_path: Path, handler_name: str) -> None:
    """Each accepted connection has TCP_NODELAY set (read from the server's own socket), so a response
    written in pieces never waits for the client's delayed ACK: the bench times the client, not that."""
    import trustme

    from gupper_infra import localstore

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        conn = environ["werkzeug.socket"]  # the accepted connection, as the handler set it up
        body = str(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    handler = getattr(localstore, handler_name)
    server = localstore._TLSServer("127.0.0.1", 0, app, handler, server_ctx, verbose=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        answer = requests.get(f"https://127.0.0.1:{server.port}/x", verify=str(ca_file), timeout=HTTP_TIMEOUT)
    finally:
        server.shutdown()
        thread.join(timeout=5.0)
    assert answer.status_code == 200
    assert int(answer.text) != 0
