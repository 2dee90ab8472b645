"""Delta updates end to end: real one-file builds, a bsdiff4 patch made by gupper-publish, the S3
server process; the bytes fetched are the patch plus the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .e2e_support import E2E, PLATFORM, artifact, gupper_lines, no_leftovers, sha256

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def published(e2e: E2E) -> tuple[Path, Path, dict[str, object]]:
    e2e.clear()
    v1, v2 = e2e.build("1.0.0", "2.0.0")
    e2e.publish(v1)
    e2e.publish(v2, patches=3)  # bsdiff4 from 1.0.0
    doc = json.loads(e2e.s3().get_object(Bucket=e2e.store.bucket, Key="app/stable/latest.json")["Body"].read())
    (patch,) = doc["signed"]["platforms"][PLATFORM.key]["patches"]
    return v1, v2, patch


def test_v1_updates_to_v2_through_a_patch(
    e2e: E2E, tmp_path: Path, published: tuple[Path, Path, dict[str, object]]
) -> None:
    v1, v2, patch = published
    assert patch["from_version"] == "1.0.0" and patch["from_sha256"] == sha256(v1)
    e2e.access_log.write_text("")
    exe = e2e.install(tmp_path, "1.0.0")
    proc = e2e.run_app(exe, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 2.0.0"]
    assert (
        f"gupper: applied a {patch['size']}-byte patch instead of downloading {v2.stat().st_size} bytes"
        in gupper_lines(proc.stderr)
    )
    assert sha256(exe) == sha256(v2)
    served = [r for r in e2e.served() if "/outcomes/" not in r["path"]]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in served) == [
        f"{artifact('2.0.0')}.from-1.0.0.bsdiff4",
        "latest.json",
    ]  # the restarted v2 does not check again
    reports = [r["path"] for r in e2e.served() if "/outcomes/" in r["path"]]
    assert reports == [f"/{e2e.store.bucket}/app/stable/outcomes/2.0.0/{PLATFORM.key}/confirmed"]
    fetched = (
        sum(r["bytes_sent"] for r in served if r["path"].endswith(".bsdiff4")),
        sum(r["bytes_sent"] for r in served if r["path"].endswith("latest.json")),
    )
    print(
        f"\ndelta update: patch {patch['size']} bytes (sent {fetched[0]} with headers) + "
        f"manifest {fetched[1]} bytes vs full {v2.stat().st_size} bytes"
    )
    assert fetched[0] < int(str(patch["size"])) + 1024  # the patch and its headers, nothing more
    no_leftovers(exe.parent, tmp_path, updated=True)


def test_a_corrupt_patch_falls_back_to_the_full_file(
    e2e: E2E, tmp_path: Path, published: tuple[Path, Path, dict[str, object]]
) -> None:
    _v1, v2, _patch = published
    key = f"app/2.0.0/patches/{artifact('2.0.0')}.from-1.0.0.bsdiff4"
    good = e2e.s3().get_object(Bucket=e2e.store.bucket, Key=key)["Body"].read()
    e2e.s3().put_object(Bucket=e2e.store.bucket, Key=key, Body=good[:-10] + b"\0" * 10)
    try:
        e2e.access_log.write_text("")
        exe = e2e.install(tmp_path, "1.0.0")
        proc = e2e.run_app(exe, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 2.0.0"]
        lines = gupper_lines(proc.stderr)
        assert any(
            line.startswith("gupper: delta update failed (") and line.endswith("downloading the full file")
            for line in lines
        ), lines
        assert sha256(exe) == sha256(v2)
        assert any(r["path"].endswith("/" + artifact("2.0.0")) for r in e2e.served())
        no_leftovers(exe.parent, tmp_path, updated=True)
    finally:
        e2e.s3().put_object(Bucket=e2e.store.bucket, Key=key, Body=good)
