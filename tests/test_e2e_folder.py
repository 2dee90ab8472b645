"""One-folder apps end to end: real PyInstaller one-folder builds published as archives through the
S3 store process, installed as ``<root>/versions/<version>/`` with a ``current`` link; SIGKILL at
every step boundary leaves a runnable v1 or v2."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.build import build_app
from updater.folder import FolderLayout
from updater.package import LIST_NAME

from .e2e_support import E2E, gupper_lines

pytestmark = [pytest.mark.e2e, pytest.mark.posix]

GREETING = "Hello from the Gupper demo app, version {}"
STEPS = ["checked", "download-started", "download-half", "downloaded", "extracted", "preflight-passed", "swapped", "trial-started", "restarting"]


@pytest.fixture
def env(e2e: E2E) -> E2E:
    e2e.clear()
    return e2e


def build_folders(env: E2E, *versions: str) -> list[Path]:
    """One-folder builds ``app-<version>-linux-amd64/`` (cached across the session by build_app)."""
    out = env.build_dir / "dist-onedir"

    def one(version: str) -> Path:
        return build_app(version, env.manifest_url, [env.key.public], out, cache_dir=env.build_dir / "cache", onedir=True)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, versions))


def install_folder(tmp: Path, build: Path, version: str) -> FolderLayout:
    """Install a one-folder build as an installer would: ``versions/<version>/`` and ``current``."""
    layout = FolderLayout(tmp / "install", "app")
    layout.versions.mkdir(parents=True)
    shutil.copytree(build, layout.version_dir(version), symlinks=True)
    layout.current.symlink_to(f"versions/{version}")
    return layout


def run(env: E2E, layout: FolderLayout, tmp: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return env.run_app(layout.current / "app", tmp, env=extra)


def same_tree(a: Path, b: Path) -> bool:
    def listing(root: Path) -> list[tuple[str, bytes]]:
        paths = [p for p in sorted(root.rglob("*")) if p.name != LIST_NAME]  # the updater keeps the file list with each version
        return [(p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() and not p.is_symlink() else b"") for p in paths]

    return listing(a) == listing(b)


def test_a_folder_app_updates_through_the_store_and_runs_the_new_version(env: E2E, tmp_path: Path) -> None:
    v1, v2 = build_folders(env, "1.0.0", "2.0.0")
    publish = env.publish(v1, v2)
    assert "app-2.0.0-linux-amd64.tar.gz" in publish.stdout
    layout = install_folder(tmp_path, v1, "1.0.0")
    proc = run(env, layout, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], proc.stderr
    lines = gupper_lines(proc.stderr)
    assert any(line.startswith("gupper: updating app 1.0.0 -> 2.0.0") for line in lines), lines
    assert "gupper: now running 2.0.0" in lines
    assert os.readlink(layout.current) == "versions/2.0.0"
    assert sorted(p.name for p in layout.versions.iterdir()) == ["1.0.0", "2.0.0"]
    assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"]
    assert same_tree(layout.version_dir("2.0.0"), v2)
    again = run(env, layout, tmp_path)
    assert again.returncode == 0 and again.stdout.splitlines() == [GREETING.format("2.0.0")]
    assert len(env.artifact_gets()) == 1


def test_sigkill_at_every_step_boundary_leaves_a_runnable_folder_app(env: E2E, tmp_path: Path) -> None:
    v1, v2 = build_folders(env, "1.0.0", "2.0.0")
    env.publish(v1, v2)
    kills = 0
    for step in STEPS:
        tmp = tmp_path / step
        layout = install_folder(tmp, v1, "1.0.0")
        killed = run(env, layout, tmp, {"GUPPER_DEMO_KILL_AT": step})
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, killed.returncode, killed.stderr)
        kills += 1
        assert layout.current_version("linux") in {"1.0.0", "2.0.0"}, step
        assert (layout.current / "app").is_file(), step
        proc = run(env, layout, tmp)
        assert proc.returncode == 0, (step, proc.stderr)
        assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], (step, proc.stderr)
        assert os.readlink(layout.current) == "versions/2.0.0" and same_tree(layout.version_dir("2.0.0"), v2), step
        assert sorted(p.name for p in layout.root.iterdir()) == ["current", "versions"], step
        assert set(p.name for p in layout.versions.iterdir()) <= {"1.0.0", "2.0.0"}, step
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nfolder step kills: {kills} of {len(STEPS)} steps, 0 failures")
