"""The Python API as docs/release-management.md shows it: its example run as written, against the
local S3 server process, with the key itself in GUPPER_SIGNING_KEY; every public name documented."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

import gupper_publish
from gupper.keys import TrustedKeys
from gupper.manifest import verify_manifest
from gupper_infra.client import LocalStore as RunningStore
from gupper_infra.client import start_local_store
from gupper_publish import keygen

from .exe_stubs import exe_stub

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "release-management.md"
TIMEOUT = 120


def example() -> str:
    section = DOC.read_text().split("\n## Python API\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "no python block under 'Python API'"
    return match.group(1)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStore]:
    with start_local_store(tmp_path_factory.mktemp("s3-api")) as store:
        yield store


def run_example(cwd: Path, running: RunningStore, prefix: str, key_text: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUPPER_", "AWS_"))}
    env |= running.s3_env() | {"GUPPER_STORE": f"s3://{running.bucket}/{prefix}", "GUPPER_SIGNING_KEY": key_text}
    return subprocess.run(
        [sys.executable, "-c", example()],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_documented_example_publishes_and_refuses_as_it_says(tmp_path: Path, running: RunningStore) -> None:
    key_path, _, public = keygen(tmp_path / "keys" / "release")
    build = tmp_path / "dist" / "myapp-1.2.0-linux-amd64"
    build.parent.mkdir()
    real = Path(os.path.realpath(sys.executable))
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        shutil.copyfile(real, build)  # a real ELF for the platform the example names
    else:
        build.write_bytes(exe_stub("linux-amd64", b"myapp 1.2.0\n" * 100))
    proc = run_example(tmp_path, running, "api", key_path.read_text())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"uploaded myapp/1.2.0/myapp-1.2.0-linux-amd64 {build.stat().st_size}",
        "manifest myapp/stable/latest.json serial 1 {'linux-amd64': '1.2.0'}",
    ]
    body = requests.get(running.url("api/myapp/stable/latest.json"), verify=running.ca, timeout=10).content
    manifest = verify_manifest(
        body, TrustedKeys.from_texts([public.to_text()]), app="myapp", channel="stable", now=datetime.now(UTC)
    )
    assert str(manifest.entries["linux-amd64"].version) == "1.2.0"
    # The refusal path as the example handles it: one line, nothing uploaded, the key not shown.
    build.write_text("hello\n")
    refused = run_example(tmp_path, running, "api-refused", key_path.read_text())
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "not published: myapp-1.2.0-linux-amd64 is a text file of 6 bytes, not an ELF "
        "executable; its name says linux-amd64: publish the build made "
        "for it (what PyInstaller wrote to dist/ on linux), or pass --force if this file "
        "really is what those installs should run\n"
    )
    assert requests.get(
        running.url("api-refused/myapp/stable/latest.json"), verify=running.ca, timeout=10
    ).status_code in (403, 404)


def test_public_names_are_documented() -> None:
    undocumented = [name for name in gupper_publish.__all__ if not inspect.getdoc(getattr(gupper_publish, name))]
    assert undocumented == []
