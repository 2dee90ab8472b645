"""``publish --dry-run`` against the local S3 server process (moto behind its TLS front): it names
every key the publish would write, the patches it would make and the manifest it would sign, and
the bucket's objects and their bytes are the same afterwards; the real publish then writes exactly
those keys and signs the same content. README "Use it in your app" shows a dry run beside the real
publish: its commands are run here and its output is compared line by line (sizes, digests and
times aside)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store
from gupper_publish.cli import main

from .exe_stubs import exe_stub
from .test_readme_adoption import readme_blocks

KeyPair = tuple[Path, Ed25519PrivateKey, str]
README_BUCKET = "s3://my-bucket"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-dry-run")) as store:
        yield store


@pytest.fixture
def s3(running: RunningStore, monkeypatch: pytest.MonkeyPatch) -> Any:
    """boto3 for the test's own look at the bucket; the command's boto3 finds the store through the environment."""
    for name, value in running.s3_env().items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", **running.boto3_kwargs())


def objects(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[str, bytes]]:
    """Every object under ``prefix``: its ETag and its bytes."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=obj["Key"])
            out[obj["Key"]] = (got["ETag"], got["Body"].read())
    return out


def build(dist: Path, name: str, version: str) -> Path:
    """A stand-in one-file build: one changed constant between versions, like two reproducible builds."""
    dist.mkdir(parents=True, exist_ok=True)
    body = bytearray(i * 7919 % 251 for i in range(100_000))
    body[50_000 : 50_000 + len(version)] = version.encode()
    path = dist / f"{name}-{version}-linux-amd64"
    path.write_bytes(exe_stub("linux-amd64", bytes(body)))
    return path


def folder_build(dist: Path, version: str) -> Path:
    folder = dist / f"desk-{version}-linux-amd64"
    (folder / "_internal").mkdir(parents=True)
    for i in range(4):
        (folder / "_internal" / f"lib{i}.so").write_bytes(f"library {i} of {version}\n".encode() * 100)
    (folder / "desk").write_bytes(exe_stub("linux-amd64", b"entry point\n"))
    (folder / "desk").chmod(0o755)
    return folder


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = main(argv)
    said = capsys.readouterr()
    assert code == 0, said.err
    return said.out + said.err


def normalised(text: str) -> list[str]:
    """Lines with what differs from run to run (sizes, digests, times) replaced by placeholders."""
    text = re.sub(r"\b[0-9a-f]{12,64}\b", "<hex>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>", text)
    text = re.sub(r"\d+ bytes", "<n> bytes", text)
    text = re.sub(r'"size": \d+', '"size": <n>', text)
    return text.splitlines()


def test_the_readmes_dry_run_then_publish_against_s3(
    tmp_path: Path, running: RunningStore, s3: Any, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    (shown,) = [code for kind, arg, code in readme_blocks() if (kind, arg) == ("output", "publish-dry-run")]
    url, dist = f"s3://{running.bucket}/readme", tmp_path / "dist"
    build(dist, "notely", "1.1.0")
    run(["--store", url, "--key", str(keypair[0]), str(build(dist, "notely", "1.0.0"))], capsys)
    before = objects(s3, running.bucket, "readme")

    def fill(word: str) -> str:
        word = word.replace(README_BUCKET, url).replace("keys/release.key", str(keypair[0]))
        return str(tmp_path / word) if word.startswith("dist/") else word

    commands = [line.removeprefix("$ ") for line in shown.splitlines() if line.startswith("$ ")]
    assert [c.endswith("--dry-run") for c in commands] == [True, False]
    transcript = []
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "gupper-publish"
        said = run([fill(w) for w in words[1:]], capsys)
        if command.endswith("--dry-run"):
            after_dry_run = objects(s3, running.bucket, "readme")
            dry_run = said
        transcript += [f"$ {command}", *said.replace(url, README_BUCKET).replace(str(tmp_path) + "/", "").splitlines()]
    assert normalised("\n".join(transcript)) == normalised(shown)
    # The dry run changed nothing: the same objects with the same bytes (and ETags).
    assert after_dry_run == before
    # The real publish wrote exactly the keys the dry run named, and signed what it showed.
    named = {
        line.split()[2].removeprefix(f"s3://{running.bucket}/")
        for line in dry_run.splitlines()
        if line.startswith("would ")
    }
    after = objects(s3, running.bucket, "readme")
    assert (
        set(after) - set(before)
        == named - set(before)
        == {
            "readme/notely/1.1.0/notely-1.1.0-linux-amd64",
            "readme/notely/1.1.0/patches/notely-1.1.0-linux-amd64.from-1.0.0.bsdiff4",
        }
    )
    replaced = {k for k in before if after[k] != before[k]}
    assert replaced == named & set(before) == {"readme/notely/stable/channel.json", "readme/notely/stable/latest.json"}
    signed = json.loads(after["readme/notely/stable/latest.json"][1])["signed"]
    shown_payload = json.loads(dry_run[dry_run.index("{\n") : dry_run.rindex("}\n") + 1])
    for moment in ("created", "expires"):
        del signed[moment], shown_payload[moment]
    assert signed == shown_payload and signed["serial"] == 2


def test_a_dry_run_of_a_one_folder_release_and_of_a_republish(
    tmp_path: Path, running: RunningStore, s3: Any, keypair: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key = f"s3://{running.bucket}/folders", str(keypair[0])
    folder = folder_build(tmp_path / "dist", "1.0.0")
    dry = run(["publish", str(folder), "--store", url, "--key", key, "--dry-run"], capsys)
    assert objects(s3, running.bucket, "folders") == {}
    # The five files by content as one line; the archive, its file list, the state and the manifest by name.
    assert re.search(rf"^would upload  {url}/desk/1\.0\.0/files/sha256/ \(5 objects, \d+ bytes\)$", dry, re.M), dry
    assert f"would write   {url}/desk/stable/latest.json serial 1: linux-amd64 1.0.0" in dry
    doc = json.loads(run(["publish", str(folder), "--store", url, "--key", key, "--dry-run", "--json"], capsys))
    assert doc["dry_run"] is True and doc["signed"]["desk/stable/latest.json"]["serial"] == 1
    assert objects(s3, running.bucket, "folders") == {}
    run(["publish", str(folder), "--store", url, "--key", key], capsys)
    stored = objects(s3, running.bucket, "folders")
    assert sorted(k.removeprefix("folders/") for k in stored) == sorted(w["key"] for w in doc["writes"])
    # Publishing the same build again would change nothing, and the dry run says so.
    again = run(["publish", str(folder), "--store", url, "--key", key, "--dry-run"], capsys)
    assert "would " not in again and f"unchanged     {url}/desk/stable/latest.json serial 1" in again
    assert f"unchanged     {url}/desk/1.0.0/desk-1.0.0-linux-amd64.tar.gz (" in again
    assert objects(s3, running.bucket, "folders") == stored
