"""The bundles users really ship (issue 21), end to end with real PyInstaller one-folder builds of the
demo app, published through the local S3 store:

- a one-folder build copied by hand (``cp -r dist/app-1.0.0-<platform> ~/opt/app``) updates itself
  twice, 1.0.0 -> 2.0.0 -> 3.0.0, arranging itself into ``versions/`` + ``current`` on the first
  update while a 1.0.0 started from the plain copy keeps running on its own files;
- SIGKILL at every step boundary of that first update leaves an app that starts from the same
  path and finishes the update.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from gupper.folder import FolderLayout

from .e2e_support import E2E, gupper_lines
from .test_e2e_folder import GREETING, STEPS, build_folders, same_tree

pytestmark = [pytest.mark.e2e, pytest.mark.posix]
WAIT = 120.0
"""Bound on waiting for a started app to print its first line."""


@pytest.fixture
def env(e2e: E2E) -> E2E:
    e2e.clear()
    return e2e


def copy_by_hand(tmp: Path, build: Path) -> Path:
    """What a user or an installer does with a one-folder build: the folder, copied as it is."""
    root = tmp / "opt" / "app"
    shutil.copytree(build, root, symlinks=True)
    return root


def test_a_one_folder_app_copied_by_hand_updates_itself_twice(env: E2E, tmp_path: Path) -> None:
    v1, v2, v3 = build_folders(env, "1.0.0", "2.0.0", "3.0.0")
    root = copy_by_hand(tmp_path, v1)
    layout = FolderLayout(root, "app")
    env.publish(v1)
    # A 1.0.0 started from the plain copy, still running through both updates (an app left open)
    holder = subprocess.Popen(
        [str(root / "app")],
        env=env.app_env(tmp_path, {"GUPPER_DEMO_HOLD": "1"}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and select.select([holder.stdout], [], [], WAIT)[0], "the holder never started"
        assert holder.stdout.readline().strip() == GREETING.format("1.0.0")
        env.publish(v2)
        first = env.run_app(root / "app", tmp_path)
        assert first.returncode == 0 and first.stdout.splitlines() == [GREETING.format("2.0.0")], first.stderr
        lines = gupper_lines(first.stderr)
        assert lines[0].startswith("gupper: updating app 1.0.0 -> 2.0.0 ("), lines
        arranged = f"gupper: arranged {root} for updates (versions/1.0.0 and current; app starts the app as before)"
        assert lines[1] == arranged
        assert "gupper: now running 2.0.0" in lines
        assert os.readlink(root / "app") == "current/app" and os.readlink(layout.current) == "versions/2.0.0"
        assert same_tree(layout.version_dir("2.0.0"), v2) and same_tree(layout.version_dir("1.0.0"), v1)
        assert (root / "_internal").is_dir()  # the running 1.0.0's own files: kept while it runs
        assert holder.poll() is None
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    env.publish(v3)
    second = env.run_app(root / "app", tmp_path)
    assert second.returncode == 0 and second.stdout.splitlines() == [GREETING.format("3.0.0")], second.stderr
    assert os.readlink(layout.current) == "versions/3.0.0" and same_tree(layout.version_dir("3.0.0"), v3)
    assert sorted(p.name for p in root.iterdir()) == ["app", "current", "versions"]  # the plain copy's files: gone
    assert sorted(p.name for p in layout.versions.iterdir()) == ["2.0.0", "3.0.0"]
    again = env.run_app(root / "app", tmp_path)
    assert again.returncode == 0 and again.stdout.splitlines() == [GREETING.format("3.0.0")]


def test_sigkill_at_every_step_of_the_first_update_of_a_copy_by_hand_leaves_an_app_that_starts(
    env: E2E, tmp_path: Path
) -> None:
    v1, v2 = build_folders(env, "1.0.0", "2.0.0")
    env.publish(v1, v2)
    kills = 0
    for step in STEPS:
        tmp = tmp_path / step
        root = copy_by_hand(tmp, v1)
        killed = env.run_app(root / "app", tmp, env={"GUPPER_DEMO_KILL_AT": step})
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, killed.returncode, killed.stderr)
        kills += 1
        assert os.access(root / "app", os.X_OK), step  # the plain app, or the link to current/app
        proc = env.run_app(root / "app", tmp)
        assert proc.returncode == 0, (step, proc.stderr)
        assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], (step, proc.stderr)
        layout = FolderLayout(root, "app")
        assert os.readlink(root / "app") == "current/app" and os.readlink(layout.current) == "versions/2.0.0", step
        assert same_tree(layout.version_dir("2.0.0"), v2), step
        assert sorted(p.name for p in root.iterdir()) == ["app", "current", "versions"], step
        assert {p.name for p in layout.versions.iterdir()} <= {"1.0.0", "2.0.0"}, step
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ncopy-by-hand first-update kills: {kills} of {len(STEPS)} steps, 0 failures")
