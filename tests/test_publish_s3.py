"""The publisher against the local S3 server process: multipart uploads with SHA256 checksums,
create-only artifacts, ``init`` of a bucket and what its public front then allows."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store
from gupper_publish import ImmutableConflictError, PublishOptions, S3Store, publish
from gupper_publish.cli import main
from gupper_publish.errors import AlreadyExistsError
from gupper_publish.publish import ProgressFactory
from gupper_publish.stores import Progress

from .conftest import NOW
from .exe_stubs import exe_stub

KeyPair = tuple[Path, Ed25519PrivateKey, str]
HTTP_TIMEOUT = 10.0
PART = 5 << 20  # S3's smallest part size


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-publish")) as store:
        yield store


@pytest.fixture(scope="module")
def s3(running: RunningStore) -> Any:
    return boto3.client("s3", **running.boto3_kwargs())


@pytest.fixture
def use_store_env(running: RunningStore, monkeypatch: pytest.MonkeyPatch) -> RunningStore:
    """Point boto3's default chain (as the CLI uses it) at the local store."""
    for name, value in running.s3_env().items():
        monkeypatch.setenv(name, value)
    return running


def big_build(dist: Path, version: str, size: int = 2 * PART + 1234) -> Path:
    dist.mkdir(exist_ok=True)
    path = dist / f"app-{version}-linux-amd64"
    path.write_bytes(exe_stub("linux-amd64", os.urandom(size)))
    return path


def recorder(sent: list[int]) -> ProgressFactory:
    from contextlib import contextmanager

    @contextmanager
    def factory(name: str, size: int) -> Iterator[Progress | None]:
        yield sent.append if name.startswith("uploading ") else None  # hashing reports through it too

    return factory


def test_a_large_artifact_goes_up_in_parallel_parts_each_with_its_sha256(
    tmp_path: Path, running: RunningStore, s3: Any, keypair: KeyPair
) -> None:
    store = S3Store(running.bucket, "multipart", client=s3, multipart_threshold=PART, multipart_chunksize=PART)
    build = big_build(tmp_path / "dist", "1.0.0")
    data = build.read_bytes()
    sent: list[int] = []
    report = publish(store, [build], PublishOptions(keys=[keypair[1]], clock=lambda: NOW), progress=recorder(sent))
    assert report.artifacts[0].status == "uploaded" and sum(sent) == len(data)
    head = s3.head_object(
        Bucket=running.bucket, Key="multipart/app/1.0.0/app-1.0.0-linux-amd64", ChecksumMode="ENABLED"
    )
    assert head["ETag"].endswith('-3"')  # three parts
    parts = [data[i : i + PART] for i in range(0, len(data), PART)]
    composite = base64.b64encode(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()).decode()
    assert head["ChecksumSHA256"].split("-")[0] == composite  # every part went up with its own, correct SHA256
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert (head["ContentType"], head["CacheControl"]) == (
        "application/octet-stream",
        "public, max-age=31536000, immutable",
    )
    public = requests.get(
        running.url("multipart/app/1.0.0/app-1.0.0-linux-amd64"), verify=running.ca, timeout=HTTP_TIMEOUT
    )
    assert public.status_code == 200 and public.content == data
    # Create-only holds for multipart too: the completing request carries If-None-Match: *,
    # and the refused upload is aborted rather than left as orphan parts.
    with pytest.raises(AlreadyExistsError):
        store.create_file(
            "app/1.0.0/app-1.0.0-linux-amd64", build, sha256="00" * 32, content_type="x", cache_control="x"
        )
    assert s3.list_multipart_uploads(Bucket=running.bucket, Prefix="multipart/").get("Uploads", []) == []
    assert s3.get_object(Bucket=running.bucket, Key="multipart/app/1.0.0/app-1.0.0-linux-amd64")["Body"].read() == data
    # Same name, other bytes: refused before any upload starts.
    other = big_build(tmp_path / "other", "1.0.0")
    with pytest.raises(ImmutableConflictError, match="bump the version"):
        publish(store, [other], PublishOptions(keys=[keypair[1]], clock=lambda: NOW))
    again = publish(store, [build], PublishOptions(keys=[keypair[1]], clock=lambda: NOW))
    assert again.artifacts[0].status == "unchanged" and not again.manifests[0].changed


def test_a_small_artifact_is_one_put_with_the_whole_files_sha256(
    tmp_path: Path, running: RunningStore, s3: Any, keypair: KeyPair
) -> None:
    store = S3Store(running.bucket, "single", client=s3)
    build = big_build(tmp_path / "dist", "1.0.0", size=4096)
    publish(store, [build], PublishOptions(keys=[keypair[1]], clock=lambda: NOW))
    head = s3.head_object(Bucket=running.bucket, Key="single/app/1.0.0/app-1.0.0-linux-amd64", ChecksumMode="ENABLED")
    assert (
        "-" not in head["ETag"]
        and head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(build.read_bytes()).digest()).decode()
    )


def test_cli_release_commands_work_against_s3(
    tmp_path: Path, use_store_env: RunningStore, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key = f"s3://{use_store_env.bucket}/cli", str(keypair[0])
    dist = tmp_path / "dist"
    assert main(["publish", "--store", url, "--key", key, str(big_build(dist, "1.0.0", 1000))]) == 0
    assert (
        main(
            [
                "publish",
                "--store",
                url,
                "--key",
                key,
                "--channel",
                "beta",
                "--rollout",
                "10",
                str(big_build(dist, "1.1.0", 1000)),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "promote",
                "app",
                "1.1.0",
                "--from",
                "beta",
                "--to",
                "stable",
                "--rollout",
                "25",
                "--store",
                url,
                "--key",
                key,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["list", "app", "--store", url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["apps"]["app"]["channels"]
    assert doc["stable"]["platforms"]["linux-amd64"] == {
        "version": "1.1.0",
        "rollout": {"percent": 25, "id": "1.1.0"},
        "fallback": "1.0.0",
    }
    assert doc["beta"]["platforms"]["linux-amd64"]["rollout"] == {"percent": 10, "id": "1.1.0"}
    manifest = requests.get(
        use_store_env.url("cli/app/stable/latest.json"), verify=use_store_env.ca, timeout=HTTP_TIMEOUT
    )
    assert manifest.status_code == 200 and manifest.json()["signed"]["serial"] == 2


def test_init_creates_the_bucket_and_a_get_only_policy_that_the_public_front_enforces(
    tmp_path: Path, keypair: KeyPair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A store of its own: this test deletes the bucket the store made at start, for init to make it again.
    with start_local_store(tmp_path / "store") as running:
        for name, value in running.s3_env().items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", **running.boto3_kwargs())
        s3.delete_bucket(Bucket=running.bucket)
        url = f"s3://{running.bucket}/releases"
        build = big_build(tmp_path / "dist", "1.0.0", 2000)
        assert main(["publish", "--store", url, "--key", str(keypair[0]), str(build)]) == 1
        assert f"run 'gupper-publish init s3://{running.bucket}/releases'" in capsys.readouterr().err

        assert main(["init", url]) == 0
        policy = json.loads(s3.get_bucket_policy(Bucket=running.bucket)["Policy"])
        assert [(s["Effect"], s["Principal"], s["Action"], s["Resource"]) for s in policy["Statement"]] == [
            ("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{running.bucket}/releases/*")
        ]
        assert main(["init", url, "--json"]) == 0  # again: finds the bucket, same policy
        assert main(["publish", "--store", url, "--key", str(keypair[0]), str(build)]) == 0
        s3.put_object(Bucket=running.bucket, Key="private/notes.txt", Body=b"not for the public")

        artifact_url = running.url("releases/app/1.0.0/app-1.0.0-linux-amd64")
        got = requests.get(artifact_url, verify=running.ca, timeout=HTTP_TIMEOUT)
        assert got.status_code == 200 and got.content == build.read_bytes()
        assert (
            requests.get(
                running.url("releases/app/stable/latest.json"), verify=running.ca, timeout=HTTP_TIMEOUT
            ).status_code
            == 200
        )
        assert (
            requests.get(running.url("private/notes.txt"), verify=running.ca, timeout=HTTP_TIMEOUT).status_code == 403
        )  # outside the prefix
        assert requests.put(artifact_url, data=b"evil", verify=running.ca, timeout=HTTP_TIMEOUT).status_code == 405
        assert requests.delete(artifact_url, verify=running.ca, timeout=HTTP_TIMEOUT).status_code == 405
        assert requests.get(running.public_base, verify=running.ca, timeout=HTTP_TIMEOUT).status_code == 403
        listing = requests.get(
            running.public_base + "/",
            params={"list-type": "2", "prefix": "releases/"},
            verify=running.ca,
            timeout=HTTP_TIMEOUT,
        )
        assert listing.status_code == 403
        assert (
            s3.get_object(Bucket=running.bucket, Key="releases/app/1.0.0/app-1.0.0-linux-amd64")["Body"].read()
            == build.read_bytes()
        )


def test_a_store_whose_certificate_is_not_trusted_names_aws_ca_bundle(
    tmp_path: Path,
    use_store_env: RunningStore,
    keypair: KeyPair,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 22 item 6: the line said only "check --endpoint-url/AWS_ENDPOINT_URL and that the store is up"."""
    monkeypatch.delenv("AWS_CA_BUNDLE")  # the local store's certificate comes from a test CA nothing else trusts
    url, key = f"s3://{use_store_env.bucket}/untrusted", str(keypair[0])
    assert main(["publish", "--store", url, "--key", key, str(big_build(tmp_path / "dist", "1.0.0", 1000))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TLS verification failed for https://127.0.0.1:" in err, err
    assert "(unable to get local issuer certificate)" in err and "point AWS_CA_BUNDLE at its certificate" in err, err
