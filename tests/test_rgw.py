"""The publisher against a real Ceph RADOS Gateway (HTTPS on 127.0.0.1), unchanged: no env tricks.

Each of issue 13's failures is a test here: stock boto3's aws-chunked uploads (411 on
``channel.json`` and on multipart parts), a digest RGW does not check, ``If-Match`` compared
literally (every second write "busy"), and ``If-None-Match`` ignored on multipart completion
(two racing publishers leaving a release no client accepts). Then what holds on RGW beyond them:
yank, prune, ``init``'s bucket policy enforced for anonymous callers, and moving an app between
stores without tripping the clients' rollback check.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper import Platform, RollbackError, Updater, UpdaterConfig
from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper_publish import ImmutableConflictError, PublishOptions, S3Store, publish
from gupper_publish.cli import main
from gupper_publish.errors import AlreadyExistsError, StoreError, StoreUnsupportedError
from gupper_publish.s3compat import S3Compat

from .conftest import NOW
from .exe_stubs import stub_for
from .rgw_support import CephRGW, rgw_cluster
from .test_publish_concurrency import RELEASES, ROOT, run_publishers
from .test_publish_concurrency import build as concurrency_build

pytestmark = pytest.mark.rgw

KeyPair = tuple[Path, Ed25519PrivateKey, str]
HTTP_TIMEOUT = 10.0
MULTIPART = 16 << 20  # the CLI's multipart threshold


@pytest.fixture(scope="module")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephRGW]:
    yield from rgw_cluster(tmp_path_factory.mktemp("rgw"))


@pytest.fixture
def cli_env(rgw: CephRGW, s3: Any, monkeypatch: pytest.MonkeyPatch) -> CephRGW:
    """boto3's standard variables pointing at RGW (and its bucket made), as a user would set them for the CLI."""
    for name, value in rgw.s3_env().items():
        monkeypatch.setenv(name, value)
    # A CLI process reads them afresh; in this process boto3's default session may hold another test's credentials.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return rgw


@pytest.fixture(scope="module")
def s3(rgw: CephRGW) -> Any:
    # Checksums only when required: this client only inspects what the publisher did.
    client = boto3.client(
        "s3",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
        **rgw.boto3_kwargs(),
    )
    client.create_bucket(Bucket=rgw.bucket)
    return client


def rgw_store(rgw: CephRGW, prefix: str, **kw: Any) -> S3Store:
    """An S3Store on RGW with its own client, configured as the publisher configures its own."""
    client = boto3.client(
        "s3",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
        **rgw.boto3_kwargs(),
    )
    return S3Store(rgw.bucket, prefix, client=client, **kw)


def build(dist: Path, version: str, size: int = 3000, platform: str = "linux-amd64") -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    path = dist / f"app-{version}-{platform}"
    path.write_bytes(stub_for(path.name, os.urandom(size)))  # an executable header: the publisher checks it
    return path


def read_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_rgw_is_detected_and_publish_writes_state_and_manifest(
    tmp_path: Path, cli_env: CephRGW, s3: Any, keypair: KeyPair
) -> None:
    """Issue 13 (1): boto3's default aws-chunked PutObject got 411 MissingContentLength on channel.json."""
    url, key = f"s3://{cli_env.bucket}/first", str(keypair[0])
    v1 = build(tmp_path / "dist", "1.0.0")
    assert main(["publish", "--store", url, "--key", key, str(v1)]) == 0
    state = read_json(s3, cli_env.bucket, "first/app/stable/channel.json")
    assert state["serial"] == 1 and set(state["releases"]) == {"1.0.0"}
    manifest = verify_manifest(
        s3.get_object(Bucket=cli_env.bucket, Key="first/app/stable/latest.json")["Body"].read(),
        TrustedKeys.from_texts([keypair[2]]),
        app="app",
        channel="stable",
        now=NOW,
    )
    assert (
        manifest.serial == 1 and manifest.entries["linux-amd64"].sha256 == hashlib.sha256(v1.read_bytes()).hexdigest()
    )
    assert (
        s3.get_object(Bucket=cli_env.bucket, Key="first/app/1.0.0/app-1.0.0-linux-amd64")["Body"].read()
        == v1.read_bytes()
    )
    assert S3Store(cli_env.bucket).compat.name == "ceph"  # from RGW's own headers, nothing configured


def test_second_publish_and_yank_replace_state_with_rgws_if_match_form(
    tmp_path: Path, cli_env: CephRGW, s3: Any, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13 (3): RGW compares If-Match literally, so boto3's quoted ETag got 412 every time: exit 75, 'busy'."""
    url, key = f"s3://{cli_env.bucket}/second", str(keypair[0])
    dist = tmp_path / "dist"
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert main(["publish", "--store", url, "--key", key, str(build(dist, version))]) == 0, capsys.readouterr().err
    assert main(["yank", "app", "1.2.0", "--store", url, "--key", key]) == 0, capsys.readouterr().err
    assert main(["rollout", "app", "1.1.0", "--percent", "100", "--store", url, "--key", key]) == 0
    signed = read_json(s3, cli_env.bucket, "second/app/stable/latest.json")["signed"]
    assert (
        signed["serial"] == 4
        and signed["yanked"] == ["1.2.0"]
        and signed["platforms"]["linux-amd64"]["version"] == "1.1.0"
    )
    # The same holds when the store was declared as another kind: the unquoted form is found by behaviour.
    store = S3Store(cli_env.bucket, "second", compat="aws")
    opts = PublishOptions(keys=[keypair[1]], clock=lambda: NOW)
    assert publish(store, [build(dist, "1.3.0")], opts).manifests[0].serial == 5


def test_multipart_artifacts_go_up_without_flexible_checksums(
    tmp_path: Path, cli_env: CephRGW, s3: Any, keypair: KeyPair
) -> None:
    """Issue 13 (1b): UploadPart with a SHA256 checksum got 411 on RGW, so files of 16 MB or more could not be
    published."""
    url, key = f"s3://{cli_env.bucket}/big", str(keypair[0])
    big = build(tmp_path / "dist", "2.0.0", size=MULTIPART + 12345)
    assert main(["publish", "--store", url, "--key", key, "--patches", "0", str(big)]) == 0
    head = s3.head_object(Bucket=cli_env.bucket, Key="big/app/2.0.0/app-2.0.0-linux-amd64")
    assert (
        head["ContentLength"] == big.stat().st_size
        and head["Metadata"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    )
    assert (
        s3.get_object(Bucket=cli_env.bucket, Key="big/app/2.0.0/app-2.0.0-linux-amd64")["Body"].read()
        == big.read_bytes()
    )
    # Parallel parts without flexible checksums (the path of a store that honours If-None-Match on completion) work on
    # RGW too.
    store = rgw_store(
        cli_env,
        "parts",
        compat=S3Compat("md5-parts", conditional_complete=True),
        multipart_threshold=5 << 20,
        multipart_chunksize=5 << 20,
    )
    other = build(tmp_path / "dist2", "2.0.0", size=(5 << 20) * 2 + 7)
    store.create_file(
        "app/2.0.0/app-2.0.0-linux-amd64",
        other,
        sha256=hashlib.sha256(other.read_bytes()).hexdigest(),
        content_type="x",
        cache_control="x",
    )
    assert s3.head_object(Bucket=cli_env.bucket, Key="parts/app/2.0.0/app-2.0.0-linux-amd64")["ETag"].endswith('-3"')


def test_rgw_refuses_bytes_that_do_not_match_the_digest_sent(tmp_path: Path, rgw: CephRGW, s3: Any) -> None:
    """Issue 13 (2): RGW accepted a wrong x-amz-checksum-sha256 and stored none; now the digest sent is one RGW
    checks."""
    store = rgw_store(rgw, "digest")
    path = build(tmp_path, "1.0.0")
    good = hashlib.sha256(path.read_bytes()).hexdigest()

    # A file that changed since it was hashed (the digest to be signed) is refused before upload.
    with pytest.raises(StoreError, match="changed after it was hashed"):
        store.create_file(
            "app/1.0.0/app-1.0.0-linux-amd64", path, sha256="00" * 32, content_type="x", cache_control="x"
        )
    assert store.head("app/1.0.0/app-1.0.0-linux-amd64") is None

    def corrupt(request: Any, **_: Any) -> None:  # bytes damaged after the headers were made: in transit
        if request.method == "PUT" and "digest/" in request.url:
            data = bytearray(request.body.read() if hasattr(request.body, "read") else request.body)
            data[100] ^= 0xFF
            request.body = bytes(data)

    store.client.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(StoreError, match="BadDigest"):
        store.create_file("app/1.0.0/app-1.0.0-linux-amd64", path, sha256=good, content_type="x", cache_control="x")
    store.client.meta.events.unregister("before-send.s3.PutObject", corrupt)
    assert store.head("app/1.0.0/app-1.0.0-linux-amd64") is None


LYING = S3Compat("claims-conditional-complete", conditional_complete=True)


@pytest.mark.parametrize(
    ("size", "compat", "loser"),
    [
        (4096, "auto", "AlreadyExistsError"),
        (MULTIPART + 1, "auto", "AlreadyExistsError"),
        (MULTIPART + 1, LYING, "ImmutableConflictError"),
    ],
    ids=["small", "large", "multipart-on-a-store-wrongly-declared"],
)
def test_two_publishers_creating_one_artifact_at_once_cannot_both_win(
    tmp_path: Path, rgw: CephRGW, s3: Any, size: int, compat: str | S3Compat, loser: str
) -> None:
    """Issue 13 (4): RGW ignores If-None-Match on CompleteMultipartUpload, so two racing uploads of a new version both
    'created' it and the object kept one's bytes while channel.json recorded the other's sha256.

    Both publishers are held until both have passed the existence check, then send their creating request together.
    On RGW (detected) a large file goes up as one create-only PUT, which RGW does serialise. Declared as a store that
    honours the condition on completion, both completions succeed, and the read-back after completing (held until
    both completed) makes the publisher whose bytes were replaced fail loudly.
    """
    key = f"app/{size}/app-{size}-linux-amd64"
    prefix = f"race-{tmp_path.name}"
    files = [build(tmp_path / f"p{i}", str(size), size=size) for i in range(2)]
    before_create, after_complete = threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)
    outcomes: list[str] = ["", ""]

    def hold(**_: Any) -> None:
        before_create.wait()  # both passed the existence check; now both send the request that creates the object

    def completed(**_: Any) -> None:
        after_complete.wait()  # both completions answered; only now read back

    def publisher(i: int) -> None:
        store = rgw_store(rgw, prefix, compat=compat)
        events = store.client.meta.events
        for event in ("before-call.s3.PutObject", "before-call.s3.CompleteMultipartUpload"):
            events.register(event, hold)
        events.register("after-call.s3.CompleteMultipartUpload", completed)
        try:
            store.create_file(
                key,
                files[i],
                sha256=hashlib.sha256(files[i].read_bytes()).hexdigest(),
                content_type="x",
                cache_control="x",
            )
            outcomes[i] = "created"
        except (AlreadyExistsError, ImmutableConflictError) as e:
            outcomes[i] = type(e).__name__

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == sorted(["created", loser]), outcomes
    winner = files[outcomes.index("created")]
    assert s3.get_object(Bucket=rgw.bucket, Key=f"{prefix}/{key}")["Body"].read() == winner.read_bytes()


def test_a_store_without_conditional_writes_is_refused_with_a_clear_error(
    tmp_path: Path, cli_env: CephRGW, s3: Any, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that lacks conditional writes (Backblaze B2's S3 API documents none) gets one clear line and exit 1, not
    'busy' (75)."""
    url = f"s3://{cli_env.bucket}/b2"
    assert (
        main(["publish", "--store", url, "--key", str(keypair[0]), "--s3-compat", "b2", str(build(tmp_path, "1.0.0"))])
        == 1
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("gupper-publish: error: upload app/1.0.0/app-1.0.0-linux-amd64:")
        and "does not support conditional writes" in err
    )
    assert "busy" not in err and len(err.strip().splitlines()) == 1
    assert s3.list_objects_v2(Bucket=cli_env.bucket, Prefix="b2/").get("KeyCount") == 0  # nothing written
    with pytest.raises(StoreUnsupportedError):
        S3Store(cli_env.bucket, "b2", compat="b2").swap(
            "x", b"{}", expect_etag=None, content_type="x", cache_control="x"
        )


def test_init_policy_is_enforced_by_rgw_for_anonymous_callers(
    tmp_path: Path, cli_env: CephRGW, keypair: KeyPair
) -> None:
    """init on RGW: a new bucket, the GetObject-only policy, and RGW itself refusing anonymous LIST and PUT."""
    bucket = "gupper-init"
    url = f"s3://{bucket}/releases"
    assert main(["init", url]) == 0
    v1 = build(tmp_path, "1.0.0")
    assert main(["publish", "--store", url, "--key", str(keypair[0]), str(v1)]) == 0
    base = f"{cli_env.s3_endpoint}/{bucket}"
    got = requests.get(f"{base}/releases/app/1.0.0/app-1.0.0-linux-amd64", verify=cli_env.ca, timeout=HTTP_TIMEOUT)
    assert got.status_code == 200 and got.content == v1.read_bytes()
    manifest = requests.get(f"{base}/releases/app/stable/latest.json", verify=cli_env.ca, timeout=HTTP_TIMEOUT)
    assert manifest.status_code == 200 and manifest.headers["Cache-Control"] == "no-cache"
    again = requests.get(
        f"{base}/releases/app/stable/latest.json",
        headers={"If-None-Match": manifest.headers["ETag"]},
        verify=cli_env.ca,
        timeout=HTTP_TIMEOUT,
    )
    assert again.status_code == 304
    part = requests.get(
        f"{base}/releases/app/1.0.0/app-1.0.0-linux-amd64",
        headers={"Range": "bytes=10-19"},
        verify=cli_env.ca,
        timeout=HTTP_TIMEOUT,
    )
    assert part.status_code == 206 and part.content == v1.read_bytes()[10:20]
    assert requests.get(f"{base}?list-type=2", verify=cli_env.ca, timeout=HTTP_TIMEOUT).status_code == 403
    assert (
        requests.put(
            f"{base}/releases/app/1.0.0/app-1.0.0-linux-amd64", data=b"evil", verify=cli_env.ca, timeout=HTTP_TIMEOUT
        ).status_code
        == 403
    )
    assert (
        requests.get(
            f"{base}/releases/app/1.0.0/app-1.0.0-linux-amd64", verify=cli_env.ca, timeout=HTTP_TIMEOUT
        ).content
        == v1.read_bytes()
    )


def test_prune_deletes_old_releases_on_rgw(
    tmp_path: Path, cli_env: CephRGW, s3: Any, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key = f"s3://{cli_env.bucket}/prune", str(keypair[0])
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert main(["publish", "--store", url, "--key", key, str(build(tmp_path / "dist", version))]) == 0
    assert main(["prune", "app", "--keep", "1", "--store", url]) == 0, capsys.readouterr().err
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=cli_env.bucket, Prefix="prune/").get("Contents", [])}
    assert keys == {
        "prune/app/1.2.0/app-1.2.0-linux-amd64",
        "prune/app/stable/channel.json",
        "prune/app/stable/latest.json",
    }


def test_moving_an_app_to_a_new_store_continues_its_serial(
    tmp_path: Path, cli_env: CephRGW, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    """An install that saw serial 3 in the old place refuses the new place's serial 1 (with a hint) and takes
    --min-serial 4."""
    old, new, key = f"s3://{cli_env.bucket}/old-home", f"s3://{cli_env.bucket}/new-home", str(keypair[0])
    dist = tmp_path / "dist"
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert main(["publish", "--store", old, "--key", key, str(build(dist, version))]) == 0
    exe = tmp_path / "install" / "app"
    exe.parent.mkdir()
    exe.write_bytes(b"#!/bin/sh\necho 1.0.0\n")

    def check(prefix: str) -> None:
        config = UpdaterConfig(
            app="app",
            current_version="1.0.0",
            manifest_url=f"{cli_env.s3_endpoint}/{cli_env.bucket}/{prefix}/app/stable/latest.json",
            public_keys=(keypair[2],),
            ca_bundle=cli_env.ca,
            executable=str(exe),
            platform=Platform("linux", "amd64"),
            state_dir=str(tmp_path / "state"),
        )
        Updater(config).check()

    s3 = boto3.client("s3", config=Config(request_checksum_calculation="when_required"), **cli_env.boto3_kwargs())
    s3.put_bucket_policy(
        Bucket=cli_env.bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{cli_env.bucket}/*",
                    }
                ],
            }
        ),
    )
    check("old-home")  # the install has now seen serial 3
    assert main(["publish", "--store", new, "--key", key, str(dist / "app-1.2.0-linux-amd64")]) == 0
    with pytest.raises(RollbackError, match=r"serial 1 is older than serial 3 .*moved to a new store.*--min-serial 4"):
        check("new-home")
    capsys.readouterr()
    assert (
        main(["publish", "--store", new, "--key", key, "--min-serial", "4", "--json", str(build(dist, "1.3.0"))]) == 0
    )
    assert json.loads(capsys.readouterr().out)["manifests"][0]["serial"] == 4
    check("new-home")  # accepted: serial 4 > 3
    assert (
        main(["resign", "app", "--store", new, "--key", key, "--min-serial", "10", "--json"]) == 0
    )  # files copied over as they were: same way
    assert json.loads(capsys.readouterr().out)["manifests"][0]["serial"] == 10
    check("new-home")


def test_eight_concurrent_publisher_processes_on_rgw_lose_nothing(
    tmp_path: Path, rgw: CephRGW, s3: Any, keypair: KeyPair
) -> None:
    """tests/test_publish_concurrency.py's race, on RGW: eight real publisher processes, serial +8, every release
    served."""
    dist = tmp_path / "dist"
    dist.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), **rgw.s3_env())
    prefix = f"race8-{tmp_path.name}"
    url = f"s3://{rgw.bucket}/{prefix}"
    (seed,) = run_publishers(url, keypair[0], [(concurrency_build(dist, "0.9.0", "linux-amd64"), None)], env)
    assert seed.returncode == 0, seed.stderr
    results = run_publishers(url, keypair[0], [(concurrency_build(dist, v, p), r) for v, p, r in RELEASES], env)
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    manifest = verify_manifest(
        s3.get_object(Bucket=rgw.bucket, Key=f"{prefix}/app/stable/latest.json")["Body"].read(),
        TrustedKeys.from_texts([keypair[2]]),
        app="app",
        channel="stable",
        now=NOW,
    )
    assert manifest.serial == 1 + 8 and max(json.loads(r.stdout)["manifests"][0]["serial"] for r in results) == 9
    served = {(str(e.version), p) for p, e in manifest.entries.items()}
    served |= {(e.extra["fallback"]["version"], p) for p, e in manifest.entries.items() if "fallback" in e.extra}
    assert served == {(v, p) for v, p, _ in RELEASES}
    state = read_json(s3, rgw.bucket, f"{prefix}/app/stable/channel.json")
    assert state["serial"] == 9 and set(state["releases"]) == {"0.9.0"} | {v for v, _, _ in RELEASES}


def test_two_publisher_processes_racing_on_one_new_large_version_leave_a_consistent_release(
    tmp_path: Path, rgw: CephRGW, s3: Any, keypair: KeyPair
) -> None:
    """Issue 13 (4) with real processes: different 17 MB builds of one version at once; one wins, the other fails with
    one line, and the stored bytes are the ones channel.json and the signed manifest name."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **rgw.s3_env())
    prefix = f"race2-{tmp_path.name}"
    files = [build(tmp_path / f"p{i}", "3.0.0", size=MULTIPART + 1) for i in range(2)]
    results = run_publishers(f"s3://{rgw.bucket}/{prefix}", keypair[0], [(f, None) for f in files], env)
    assert sorted(r.returncode for r in results) == [0, 1], [r.stderr for r in results]
    (loser,) = [r for r in results if r.returncode == 1]
    # Where the loser learns it lost depends on timing: at the artifact's conditional write (the
    # other upload landed first) or at the channel state (the other publish had already finished
    # when this one read it). Either way it is one line telling the user to bump the version.
    assert loser.stderr.startswith("gupper-publish: error: ") and loser.stderr.count("\n") == 1, loser.stderr
    assert "releases are immutable, so bump the version" in loser.stderr and (
        "already published with different content" in loser.stderr
        or "already carries a different linux-amd64 file for 3.0.0" in loser.stderr
    ), loser.stderr
    stored = s3.get_object(Bucket=rgw.bucket, Key=f"{prefix}/app/3.0.0/app-3.0.0-linux-amd64")["Body"].read()
    state = read_json(s3, rgw.bucket, f"{prefix}/app/stable/channel.json")
    signed = read_json(s3, rgw.bucket, f"{prefix}/app/stable/latest.json")["signed"]
    digest = hashlib.sha256(stored).hexdigest()
    assert (
        state["releases"]["3.0.0"]["artifacts"]["linux-amd64"]["sha256"]
        == digest
        == signed["platforms"]["linux-amd64"]["sha256"]
    )


def test_a_bucket_with_versioning_enabled_is_refused_before_anything_is_uploaded(
    tmp_path: Path, cli_env: CephRGW, s3: Any, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22 item 10: with versioning on, RGW ignores If-None-Match and answers 412 to If-Match in
    both forms, so the first publish went through and every later one failed after uploading its
    artifact. Now the bucket's versioning is asked before the first write."""
    bucket = "versioned"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # What RGW does with the conditions there (if a later Ceph fixes it, this says so):
    first = s3.put_object(Bucket=bucket, Key="probe", Body=b"a")
    s3.put_object(Bucket=bucket, Key="probe", Body=b"b", IfNoneMatch="*")  # accepted over an existing object
    etag = s3.head_object(Bucket=bucket, Key="probe")["ETag"]
    assert etag != first["ETag"]
    for form in (etag, etag.strip('"')):
        with pytest.raises(Exception, match="PreconditionFailed"):
            s3.put_object(Bucket=bucket, Key="probe", Body=b"c", IfMatch=form)  # the current ETag, refused
    s3.delete_object(Bucket=bucket, Key="probe")

    url, key = f"s3://{bucket}/app-store", str(keypair[0])
    dist = tmp_path / "dist"
    capsys.readouterr()
    assert main(["publish", "--store", url, "--key", key, str(build(dist, "1.0.0"))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bucket versioned has versioning enabled, and ceph then ignores" in err, err
    assert "Status=Suspended" in err and "docs/s3-compatibility.md" in err
    assert s3.list_objects_v2(Bucket=bucket, Prefix="app-store/").get("KeyCount") == 0  # nothing uploaded

    # Suspended, the conditions work again: publishing goes on, release after release.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    for version in ("1.0.0", "1.1.0"):
        assert main(["publish", "--store", url, "--key", key, str(build(dist, version))]) == 0, capsys.readouterr().err
    state = read_json(s3, bucket, "app-store/app/stable/channel.json")
    assert state["serial"] == 2 and set(state["releases"]) == {"1.0.0", "1.1.0"}
