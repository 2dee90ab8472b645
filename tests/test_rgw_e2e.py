"""End to end through Ceph RGW's own HTTPS: real one-file PyInstaller builds of the demo app that
trust RGW's test CA and read their manifest from RGW, published by the unchanged CLI (store kind
detected), served to the app anonymously under the bucket policy ``gupper-publish init`` applied."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.build import build_app

from .e2e_support import E2E, gupper_lines, no_leftovers, sha256
from .rgw_support import CephRGW, rgw_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.rgw]


@pytest.fixture(scope="module")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephRGW]:
    yield from rgw_cluster(tmp_path_factory.mktemp("rgw-e2e"))


def cli(rgw: CephRGW, *args: str) -> subprocess.CompletedProcess[str]:
    """``gupper-publish`` as a user runs it: boto3's standard variables, no store-kind flag."""
    cmd = [sys.executable, "-m", "gupper_publish", *args]
    proc = subprocess.run(
        cmd, env=dict(os.environ, **rgw.s3_env()), text=True, capture_output=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_v1_updates_itself_to_v2_through_rgw(e2e: E2E, rgw: CephRGW, tmp_path: Path) -> None:
    store = f"s3://{rgw.bucket}"
    cli(rgw, "init", store)
    manifest_url = rgw.url("app/stable/latest.json")
    out, cache = e2e.build_dir / "dist-rgw", e2e.build_dir / "cache"
    v1, v2 = (build_app(v, manifest_url, [e2e.key.public], out, cache_dir=cache) for v in ("1.0.0", "2.0.0"))
    for build in (v1, v2):
        cli(rgw, "publish", "--store", store, "--key", str(e2e.key.path), "--patches", "0", str(build))

    exe = tmp_path / "install" / "app"
    exe.parent.mkdir()
    shutil.copyfile(v1, exe)
    exe.chmod(0o755)
    (tmp_path / "tmpdir").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "PYINSTALLER_", "AWS_"))}
    env.update(
        REQUESTS_CA_BUNDLE=rgw.ca,
        TMPDIR=str(tmp_path / "tmpdir"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        GUPPER_DEMO_DEBUG="1",
        NO_PROXY="127.0.0.1,localhost",
    )

    proc = subprocess.run([str(exe)], env=env, text=True, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Hello from the Gupper demo app, version 2.0.0"]
    assert gupper_lines(proc.stderr) == [
        f"gupper: updating app 1.0.0 -> 2.0.0 ({v2.stat().st_size} bytes)",
        "gupper: installed 2.0.0, restarting",
        "gupper: now running 2.0.0",
    ]
    assert sha256(exe) == sha256(v2)
    no_leftovers(exe.parent, tmp_path)
    again = subprocess.run([str(exe)], env=env, text=True, capture_output=True, timeout=120, check=False)
    assert (
        again.returncode == 0
        and again.stdout.splitlines() == ["Hello from the Gupper demo app, version 2.0.0"]
        and gupper_lines(again.stderr) == []
    )
