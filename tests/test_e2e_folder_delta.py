"""Folder deltas end to end: real PyInstaller one-folder builds published with per-file patches to the
S3 store process; the installed v1 builds v2 from its own files plus a patch for the one file that
changed, and SIGKILL at every step boundary of that path leaves a runnable v1 or v2."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from .e2e_support import E2E, PLATFORM, gupper_lines
from .test_e2e_folder import GREETING, STEPS, build_folders, install_folder, run, same_tree

pytestmark = [pytest.mark.e2e, pytest.mark.posix]


@pytest.fixture(scope="module")
def published(e2e: E2E) -> tuple[Path, Path, dict[str, object]]:
    e2e.clear()
    v1, v2 = build_folders(e2e, "1.0.0", "2.0.0")
    e2e.publish(v1, patches=3)
    e2e.publish(v2, patches=3)  # per-file patches from 1.0.0
    doc = json.loads(e2e.s3().get_object(Bucket=e2e.store.bucket, Key="app/stable/latest.json")["Body"].read())
    return v1, v2, doc["signed"]["platforms"][PLATFORM.key]


def test_a_folder_app_updates_by_patching_only_the_files_that_changed(
    e2e: E2E, tmp_path: Path, published: tuple[Path, Path, dict[str, object]]
) -> None:
    v1, v2, entry = published
    e2e.access_log.write_text("")
    layout = install_folder(tmp_path, v1, "1.0.0")
    proc = run(e2e, layout, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [GREETING.format("2.0.0")], proc.stderr
    lines = gupper_lines(proc.stderr)
    built = [line for line in lines if line.startswith("gupper: built 2.0.0 from 1.0.0:")]
    assert len(built) == 1 and " 1 patched, 0 fetched " in built[0], lines  # only the executable changes between builds
    assert os.readlink(layout.current) == "versions/2.0.0" and same_tree(layout.version_dir("2.0.0"), v2)
    served = e2e.served()
    gets = [r for r in served if r["method"] == "GET" and not r["path"].endswith("latest.json")]
    assert not [r for r in gets if r["path"].endswith(".tar.gz")]
    fetched = sum(r["bytes_sent"] for r in gets)
    total = sum(p.stat().st_size for p in v2.rglob("*") if p.is_file() and not p.is_symlink())
    print(
        f"\nfolder delta: {len(gets)} GETs, {fetched} body bytes vs archive "
        f"{entry['size']} bytes, folder {total} bytes; {built[0]}"
    )
    assert fetched < int(str(entry["size"])) // 100
    linked = [
        p
        for p in layout.version_dir("2.0.0").rglob("*")
        if p.is_file() and not p.is_symlink() and p.stat().st_nlink > 1
    ]
    assert len(linked) > 10  # unchanged files are hard links to 1.0.0's, not copies


def test_sigkill_at_every_step_of_a_folder_delta_leaves_a_runnable_app(
    e2e: E2E, tmp_path: Path, published: tuple[Path, Path, dict[str, object]]
) -> None:
    v1, v2, _entry = published
    for step in STEPS:
        tmp = tmp_path / step
        layout = install_folder(tmp, v1, "1.0.0")
        killed = run(e2e, layout, tmp, {"GUPPER_DEMO_KILL_AT": step})
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, killed.returncode, killed.stderr)
        assert layout.current_version("linux") in {"1.0.0", "2.0.0"} and (layout.current / "app").is_file(), step
        assert same_tree(layout.version_dir("1.0.0"), v1), step  # the installed version is never written to
        proc = run(e2e, layout, tmp)
        assert proc.returncode == 0 and proc.stdout.splitlines() == [GREETING.format("2.0.0")], (step, proc.stderr)
        assert same_tree(layout.version_dir("2.0.0"), v2), step
        assert sorted(p.name for p in layout.versions.iterdir()) == ["1.0.0", "2.0.0"], step  # no temp folder left
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nfolder delta step kills: {len(STEPS)} of {len(STEPS)} steps, 0 failures")
