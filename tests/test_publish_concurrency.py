"""Eight real ``python -m gupper_publish`` processes publishing into one app at once, on the local S3
server process and on the folder store: no release is lost and the serial grows by exactly one per
publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store

from .conftest import NOW
from .exe_stubs import exe_stub

ROOT = Path(__file__).resolve().parent.parent
KeyPair = tuple[Path, Ed25519PrivateKey, str]
PROCESS_TIMEOUT = 120.0

# Eight releases that all change the manifest whatever order they land in: one complete release
# per platform, plus two staged ones above two of them (served with the complete one as fallback).
RELEASES = [
    ("1.0.0", "linux-amd64", None),
    ("1.0.1", "linux-arm64", None),
    ("1.0.2", "darwin-amd64", None),
    ("1.0.3", "darwin-arm64", None),
    ("1.0.4", "windows-amd64", None),
    ("1.0.5", "windows-arm64", None),
    ("2.0.0", "linux-amd64", 50),
    ("2.0.1", "darwin-arm64", 50),
]


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-concurrency")) as running:
        yield running


def build(dist: Path, version: str, platform: str) -> Path:
    path = dist / f"app-{version}-{platform}{'.exe' if platform.startswith('windows') else ''}"
    path.write_bytes(exe_stub(platform, f"build of {version} for {platform}\n".encode() * 64))
    return path


def run_publishers(
    store_url: str, key: Path, files: list[tuple[Path, int | None]], env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """Start every publisher before waiting for any, then wait for each with a deadline."""
    procs = []
    for path, rollout in files:
        cmd = [
            sys.executable,
            "-m",
            "gupper_publish",
            "publish",
            "--store",
            store_url,
            "--key",
            str(key),
            "--json",
            str(path),
        ]
        cmd += ["--rollout", str(rollout)] if rollout is not None else []
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    done = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:  # only after a timeout: never leave publishers running
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return done


@pytest.mark.parametrize("kind", ["s3", "folder"])
def test_eight_concurrent_publisher_processes_lose_nothing_and_bump_the_serial_by_eight(
    kind: str, tmp_path: Path, keypair: KeyPair, request: pytest.FixtureRequest
) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    read: Any
    if kind == "s3":
        running: RunningStore = request.getfixturevalue("s3_store")
        env.update(running.s3_env())
        prefix = f"race-{tmp_path.name}"
        store_url = f"s3://{running.bucket}/{prefix}"
        s3 = boto3.client("s3", **running.boto3_kwargs())

        def read(key: str) -> bytes:
            return bytes(s3.get_object(Bucket=running.bucket, Key=f"{prefix}/{key}")["Body"].read())
    else:
        store_url = str(tmp_path / "store")

        def read(key: str) -> bytes:
            return (tmp_path / "store" / key).read_bytes()

    # An existing manifest to grow from (serial 1).
    (seed,) = run_publishers(store_url, keypair[0], [(build(dist, "0.9.0", "linux-amd64"), None)], env)
    assert seed.returncode == 0, seed.stderr
    before = json.loads(read("app/stable/latest.json"))["signed"]["serial"]

    results = run_publishers(store_url, keypair[0], [(build(dist, v, p), r) for v, p, r in RELEASES], env)
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    reported = sorted(json.loads(r.stdout)["manifests"][0]["serial"] for r in results)

    manifest = verify_manifest(
        read("app/stable/latest.json"), TrustedKeys.from_texts([keypair[2]]), app="app", channel="stable", now=NOW
    )
    assert manifest.serial == before + 8
    assert max(reported) == before + 8  # someone wrote the last serial, and nobody wrote one beyond it
    served = {(str(e.version), p) for p, e in manifest.entries.items()}
    served |= {(e.extra["fallback"]["version"], p) for p, e in manifest.entries.items() if "fallback" in e.extra}
    assert served == {(v, p) for v, p, _ in RELEASES}
    assert {p: e.extra.get("rollout") for p, e in manifest.entries.items() if "rollout" in e.extra} == {
        "linux-amd64": {"percent": 50, "id": "2.0.0"},
        "darwin-arm64": {"percent": 50, "id": "2.0.1"},
    }
    state = json.loads(read("app/stable/channel.json"))
    assert state["serial"] == before + 8 and set(state["releases"]) == {"0.9.0"} | {v for v, _, _ in RELEASES}
