"""End to end with real parts: one-file PyInstaller builds of the demo app, the publisher CLI,
the moto S3 server process and its HTTPS front with a local CA."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import pytest

from gupper import anchors
from gupper.transfer import ANCHOR_MEMO_NAME
from gupper_publish.signing import build_signed, keygen, sign_manifest

from .e2e_support import E2E, PLATFORM, artifact, gupper_lines, meipass_dirs, no_leftovers, sha256

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(e2e: E2E) -> E2E:
    e2e.clear()
    return e2e


def test_up_to_date_app_runs_without_downloading(env: E2E, tmp_path: Path) -> None:
    (v1,) = env.build("1.0.0")
    env.publish(v1)
    exe = env.install(tmp_path, "1.0.0")
    proc = env.run_app(exe, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 1.0.0"]
    assert gupper_lines(proc.stderr) == []
    assert [r["path"] for r in env.served()] == ["/gupper/app/stable/latest.json"]
    no_leftovers(exe.parent, tmp_path)


def test_a_frozen_app_remembers_its_stores_root_in_a_public_bundle_and_checks_on_it_next(
    env: E2E, tmp_path: Path
) -> None:
    """The user's world: certifi's public roots plus a private CA in one bundle. The first start
    verifies against the whole bundle and remembers where the store's root is in it (the state
    folder's tls-anchors.json, gupper.anchors); the next start checks with that one root."""
    (v1,) = env.build("1.0.0")
    env.publish(v1)
    exe = env.install(tmp_path, "1.0.0")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + Path(env.store.ca).read_bytes())
    for _ in range(2):
        proc = env.run_app(exe, tmp_path, env={"REQUESTS_CA_BUNDLE": str(bundle)})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 1.0.0"]
        assert gupper_lines(proc.stderr) == []
    (memo,) = (tmp_path / "state").rglob(ANCHOR_MEMO_NAME)
    host = urlsplit(env.store.public_base).netloc
    data = bundle.read_bytes()
    assert anchors.recall(memo, data, anchors.digest(data), host) == Path(env.store.ca).read_bytes().strip()
    assert [r["status"] for r in env.served() if r["path"].endswith("latest.json")] == [200, 304]


def test_v1_updates_itself_to_v2_and_runs_it(env: E2E, tmp_path: Path) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1)
    env.publish(v2)
    exe = env.install(tmp_path, "1.0.0")
    proc = env.run_app(exe, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 2.0.0"]
    assert gupper_lines(proc.stderr) == [
        f"gupper: updating app 1.0.0 -> 2.0.0 ({v2.stat().st_size} bytes)",
        "gupper: installed 2.0.0, restarting",
        "gupper: now running 2.0.0",
    ]
    assert sha256(exe) == sha256(v2)
    # The exec'd v2 extracted its own bundle instead of running on v1's (PYINSTALLER_RESET_ENVIRONMENT).
    old_mei, new_mei = meipass_dirs(proc.stderr)
    assert old_mei != new_mei and Path(old_mei).name.startswith("_MEI") and Path(new_mei).name.startswith("_MEI")
    no_leftovers(exe.parent, tmp_path, updated=True)  # no temp file beside the exe, no _MEI dir left in TMPDIR
    assert env.run_app(exe, tmp_path, "--version").stdout.strip() == "2.0.0"
    artifact_gets = [r for r in env.served() if r["path"].endswith(artifact("2.0.0"))]
    assert (
        len(artifact_gets) == 1
        and artifact_gets[0]["status"] == 200
        and artifact_gets[0]["bytes_sent"] >= v2.stat().st_size
    )
    again = env.run_app(
        exe, tmp_path
    )  # the next start: up to date, and it removes what the update left (Windows: the old exe)
    assert (
        again.returncode == 0
        and again.stdout.splitlines() == ["Hello from the Gupper demo app, version 2.0.0"]
        and gupper_lines(again.stderr) == []
    )
    no_leftovers(exe.parent, tmp_path)


def _tamper(env: E2E, attack: str, tmp: Path, v2: Path) -> None:
    s3, bucket = env.s3(), env.store.bucket
    artifact_key, manifest_key = f"app/2.0.0/{artifact('2.0.0')}", "app/stable/latest.json"
    evil = bytearray(v2.read_bytes())
    evil[len(evil) // 2] ^= 0xFF
    if attack == "artifact":  # the store's holder swaps the binary, same size
        s3.put_object(Bucket=bucket, Key=artifact_key, Body=bytes(evil))
    elif attack == "manifest":  # ... and edits the manifest to match it
        import hashlib

        s3.put_object(Bucket=bucket, Key=artifact_key, Body=bytes(evil))
        doc = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
        doc["signed"]["platforms"][PLATFORM.key]["sha256"] = hashlib.sha256(evil).hexdigest()
        s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(doc).encode())
    elif attack == "other-key":  # a manifest properly signed, by a key the app does not trust
        other, _, _ = keygen(tmp / "other" / "k")
        s3.delete_object(Bucket=bucket, Key=manifest_key)
        env.publish(v2, key=other)
    elif attack == "expired":  # a replayed manifest whose lifetime ran out
        doc = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
        signed = build_signed(
            app="app",
            channel="stable",
            serial=doc["signed"]["serial"] + 1,
            now=datetime.now(UTC) - timedelta(days=40),
            expires_in=timedelta(days=30),
            platforms=doc["signed"]["platforms"],
        )
        s3.put_object(Bucket=bucket, Key=manifest_key, Body=sign_manifest(signed, [env.key.private]))


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ("artifact", "does not match the signed sha256"),
        ("manifest", "not signed with this app's key (or was altered)"),
        ("other-key", "0 valid signature(s) from trusted keys"),
        ("expired", "the publisher must re-sign it"),
    ],
)
def test_attacks_are_refused_and_the_installed_binary_still_runs(
    env: E2E, tmp_path: Path, attack: str, message: str
) -> None:
    v1, v2 = env.build("1.0.0", "2.0.0")
    env.publish(v1, v2)
    _tamper(env, attack, tmp_path, v2)
    exe = env.install(tmp_path, "1.0.0")
    before = sha256(exe)
    proc = env.run_app(exe, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 1.0.0"]
    *progress, line = gupper_lines(proc.stderr)
    assert line.startswith("gupper: update failed, carrying on with 1.0.0: ") and message in line
    assert progress in (
        [],
        [f"gupper: updating app 1.0.0 -> 2.0.0 ({v2.stat().st_size} bytes)"],
    )  # the one failure line is the last
    assert sha256(exe) == before
    no_leftovers(exe.parent, tmp_path)
    assert env.run_app(exe, tmp_path, "--version").stdout.strip() == "1.0.0"


def test_store_serves_artifacts_immutable_and_the_manifest_revalidated(env: E2E) -> None:
    import requests

    (v1,) = env.build("1.0.0")
    env.publish(v1)
    art = requests.head(env.store.url(f"app/1.0.0/{artifact('1.0.0')}"), verify=env.store.ca, timeout=10)
    man = requests.get(env.manifest_url, verify=env.store.ca, timeout=10)
    assert art.status_code == 200 and int(art.headers["Content-Length"]) == v1.stat().st_size
    assert art.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert art.headers["Content-Type"] == "application/octet-stream"
    assert man.headers["Cache-Control"] == "no-cache" and man.headers["Content-Type"] == "application/json"
    again = requests.get(
        env.manifest_url, verify=env.store.ca, timeout=10, headers={"If-None-Match": man.headers["ETag"]}
    )
    assert again.status_code == 304 and again.content == b""


def test_builds_are_reproducible_byte_for_byte(env: E2E, tmp_path: Path) -> None:
    from app.build import build_app

    (cached,) = env.build("1.0.0")
    fresh = build_app(
        "1.0.0", env.manifest_url, [env.key.public], tmp_path / "out", cache_dir=tmp_path / "cache", use_cache=False
    )
    assert fresh.read_bytes() == cached.read_bytes()


def test_store_down_runs_v1_with_one_warning(env: E2E, tmp_path: Path) -> None:
    exe = env.install(tmp_path, "1.0.0")
    env.store.stop()
    try:
        proc = env.run_app(exe, tmp_path)
    finally:
        env.restart_store()
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 1.0.0"]
    (line,) = gupper_lines(proc.stderr)
    assert "update failed, carrying on with 1.0.0" in line and "connection refused" in line
    no_leftovers(exe.parent, tmp_path)
    assert env.run_app(exe, tmp_path).returncode == 0  # the restarted store serves again (empty: no update)
